//! The SQL of the operations that more than one store runs, written once: the
//! single-database stores (`sql.rs`, SQLite and PostgreSQL), the business
//! split's `DomainStore` (`domains.rs`) and the orders repository
//! (`orders_pg.rs`). Every value is a bound parameter (`$1`, ...; SQLite reads
//! the same numbered form).

/// A cart's lines, in product order (so that concurrent checkouts take row
/// locks in the same order): `user_id`.
pub(crate) const CART_LINES: &str =
    "SELECT product_id, quantity FROM cart_items WHERE user_id = $1 ORDER BY product_id";

/// [`CART_LINES`] with the rows locked until the transaction ends (PostgreSQL):
/// `user_id`.
pub(crate) const CART_LINES_LOCKED: &str =
    "SELECT product_id, quantity FROM cart_items WHERE user_id = $1 ORDER BY product_id FOR UPDATE";

/// Takes `quantity` units of a product if that many are left, returning its name
/// and price; no row when there are not: `quantity`, `product_id`.
pub(crate) const RESERVE_STOCK: &str =
    "UPDATE products SET stock = stock - $1 WHERE id = $2 AND stock >= $1 \
     RETURNING name, price_cents";

/// Gives units back (a checkout that failed after it took them): `quantity`,
/// `product_id`.
pub(crate) const RELEASE_STOCK: &str = "UPDATE products SET stock = stock + $1 WHERE id = $2";

/// A product's name (for the message of an item out of stock): `product_id`.
pub(crate) const PRODUCT_NAME: &str = "SELECT name FROM products WHERE id = $1";

/// A product's new price and stock: `price_cents`, `stock`, `product_id`.
pub(crate) const UPDATE_PRODUCT: &str =
    "UPDATE products SET price_cents = $1, stock = $2 WHERE id = $3";

/// A new order, returning its id: `user_id`, `total_cents`, `created_at`.
pub(crate) const INSERT_ORDER: &str =
    "INSERT INTO orders (user_id, total_cents, created_at) VALUES ($1, $2, $3) RETURNING id";

/// The head of a multi-row insert of an order's lines (the rows follow as
/// `VALUES`: `order_id`, `product_id`, `name`, `unit_price_cents`, `quantity`).
pub(crate) const INSERT_ORDER_ITEMS: &str =
    "INSERT INTO order_items (order_id, product_id, name, unit_price_cents, quantity) ";

/// Empties a cart after its order was placed: `user_id`.
pub(crate) const CLEAR_CART: &str = "DELETE FROM cart_items WHERE user_id = $1";
