//! [`DomainStore`]: the business split of stage 6. Users, catalog and orders live in
//! databases of their own; scalekit-shard's domain split ([`DOMAIN_ROUTES`]) says
//! which table is in which, and the store looks each table's [`Db`] up through it.
//!
//! What one database used to do, the store now does itself:
//! - **Joins across domains** are composed: the cart reads its lines from the users
//!   database and the products' names, prices and stock from the catalog, one
//!   query each (`= ANY($1)`); an order's lines come from the orders database and
//!   the products' names from the catalog.
//! - **Foreign keys across databases** are gone: a product is looked up in the
//!   catalog before it goes into a cart.
//! - **Checkout** spans the catalog (stock) and the orders database, without a
//!   distributed transaction: a saga of local transactions, inside one users
//!   transaction that locks the user's row and cart lines for its length (a
//!   second checkout of the same cart, a double click, waits and finds it empty).
//!   1. Stock is taken for every line in one catalog transaction (a conditional
//!      `UPDATE`, in product order as before: no oversell, no deadlock). Lines
//!      whose product left the catalog are skipped.
//!   2. The order is written by the [`OrderRepo`]. If that fails or panics, the
//!      stock is given back (a compensating transaction) and an error returned.
//!   3. The ordered quantities (and the lines of products gone) leave the cart,
//!      in the users transaction, which then commits.
//!
//!   The saga runs in a task of its own, in the request's context (so its writes
//!   count for the session's reads), so a client that goes away mid-checkout
//!   does not stop it between steps. If the task is dropped between steps 1 and 2
//!   (a runtime shutdown, a panic), a guard gives the stock back from a thread
//!   of its own and logs it. What it cannot cover: a crash of the process (or a
//!   lost catalog connection) between steps 1 and 2, or during a compensation,
//!   leaves stock taken for no order (undersold, never oversold; logged with the
//!   units to add back); an order whose commit succeeded but whose reply was lost
//!   is reported failed and its stock given back although it was written (rare;
//!   those units could be sold twice); a crash between 2 and 3 leaves the cart
//!   full after the order is placed (the customer sees the order and the cart).
//!
//! | file | what |
//! | --- | --- |
//! | `mod.rs` | the routes, the store and how it connects |
//! | `repos.rs` | the catalog, accounts, carts and seeding over their databases |
//! | `saga.rs` | checkout (the saga and its compensation) and the order history |

use std::collections::HashMap;
use std::sync::Arc;

use scalekit_shard::{Engines, Query, Router, RouterConfig};

use super::{Db, OrderRepo, PgOrders, StoreError, StoreResult};
use crate::config::DomainsConfig;

/// The domain split of stage 6, in scalekit-shard's routing language: each logical
/// table in one database. [`DomainStore`] needs `users`, `sessions` and
/// `cart_items` together (`migrations/users`), `categories` and `products` together
/// (`migrations/catalog`), and `orders` with `order_items` (`migrations/orders`).
pub const DOMAIN_ROUTES: &str = r#"
databases = ["users", "catalog", "orders"]
[tables.users]
database = "users"
[tables.sessions]
database = "users"
[tables.cart_items]
database = "users"
[tables.categories]
database = "catalog"
[tables.products]
database = "catalog"
[tables.orders]
database = "orders"
[tables.order_items]
database = "orders"
"#;

/// The columns of a [`Product`]: `products p JOIN categories c` (both in the catalog).
macro_rules! product_select {
    () => {
        "SELECT p.id, p.category_id, c.slug AS category_slug, c.name AS category_name, \
         p.name, p.description, p.price_cents, p.stock \
         FROM products p JOIN categories c ON c.id = p.category_id"
    };
}

/// A routing or wiring mistake, as a store error.
fn config_error(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::Configuration(message.into()))
}

/// The router of [`DOMAIN_ROUTES`].
pub fn domain_router() -> StoreResult<Router> {
    RouterConfig::from_toml(DOMAIN_ROUTES)
        .and_then(|c| c.build(&Engines::new()))
        .map_err(|e| config_error(format!("the domain routes: {e}")))
}

/// The [`Db`] that `router` puts `table` in, from `dbs` (by database name).
pub fn db_of(router: &Router, dbs: &HashMap<String, Db>, table: &str) -> StoreResult<Db> {
    let target = router
        .locate(table, &Query::all())
        .map_err(|e| config_error(format!("table {table}: {e}")))?;
    if &*target.table != table {
        return Err(config_error(format!(
            "table {table} is routed to table {target}; the domain split keeps table names"
        )));
    }
    dbs.get(&*target.database).cloned().ok_or_else(|| {
        config_error(format!(
            "table {table} lives in database {:?}, which has no connection",
            target.database
        ))
    })
}

/// The shop over three databases: users, catalog and orders (see the module docs).
#[derive(Clone, Debug)]
pub struct DomainStore {
    /// `users` and `sessions`.
    users: Db,
    /// `cart_items`.
    carts: Db,
    /// `categories` and `products`.
    catalog: Db,
    /// `orders` and `order_items`.
    orders: Arc<dyn OrderRepo>,
    /// Every database, for [`Store::ping`].
    all: Vec<Db>,
}

impl DomainStore {
    /// Connects to the three databases of `config`, migrates each, and routes the
    /// tables by [`DOMAIN_ROUTES`], orders in a [`PgOrders`].
    pub async fn connect(config: &DomainsConfig) -> StoreResult<Self> {
        Self::connect_with_orders(config, None, None).await
    }

    /// [`connect`](Self::connect), each database read through the replicas
    /// `replicas` gives its server when given (the one primary's, or each
    /// cluster's own), and with orders in `orders` when given (stage 7's sharded
    /// orders) instead of `PgOrders` over `config.orders`.
    pub async fn connect_with_orders(
        config: &DomainsConfig,
        replicas: Option<&crate::config::ReplicasConfig>,
        orders: Option<Arc<dyn OrderRepo>>,
    ) -> StoreResult<Self> {
        let router = domain_router()?;
        let mut dbs = HashMap::new();
        for (name, url) in config.urls() {
            let db = Db::connect(url, replicas, config.max_connections).await?;
            dbs.insert(name.to_owned(), db);
        }
        let orders = match orders {
            Some(orders) => orders,
            None => Arc::new(PgOrders::new(db_of(&router, &dbs, "orders")?).await?),
        };
        Self::new(&router, &dbs, orders).await
    }

    /// The store over `dbs` (by the database names of `router`), with orders in
    /// `orders`. Migrates the users and catalog databases. Fails when the router
    /// splits a group of tables the store queries together (a join, a migration).
    pub async fn new(
        router: &Router,
        dbs: &HashMap<String, Db>,
        orders: Arc<dyn OrderRepo>,
    ) -> StoreResult<Self> {
        let together = |tables: &[&str]| -> StoreResult<Db> {
            let first = router
                .locate(tables[0], &Query::all())
                .map_err(|e| config_error(format!("table {}: {e}", tables[0])))?;
            for t in &tables[1..] {
                let other = router
                    .locate(t, &Query::all())
                    .map_err(|e| config_error(format!("table {t}: {e}")))?;
                if other.database != first.database {
                    return Err(config_error(format!(
                        "tables {} must live in one database: {first} and {other} are apart",
                        tables.join(", ")
                    )));
                }
            }
            db_of(router, dbs, tables[0])
        };
        let users = together(&["users", "sessions", "cart_items"])?;
        let catalog = together(&["categories", "products"])?;
        sqlx::migrate!("./migrations/users")
            .run(users.primary())
            .await?;
        sqlx::migrate!("./migrations/catalog")
            .run(catalog.primary())
            .await?;
        let mut names: Vec<&String> = dbs.keys().collect();
        names.sort();
        Ok(Self {
            carts: db_of(router, dbs, "cart_items")?,
            users,
            catalog,
            orders,
            all: names
                .into_iter()
                .filter_map(|n| dbs.get(n).cloned())
                .collect(),
        })
    }

    async fn require_product(&self, id: i64) -> StoreResult<()> {
        let reader = self.catalog.reader().await?;
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM products WHERE id = $1")
            .bind(id)
            .fetch_optional(&*reader)
            .await?;
        found.map(|_| ()).ok_or(StoreError::NoSuchProduct(id))
    }
}

mod repos;
mod saga;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_routes_put_each_table_in_its_domain() {
        let router = domain_router().unwrap_or_else(|e| panic!("{e}"));
        for (table, database) in [
            ("users", "users"),
            ("sessions", "users"),
            ("cart_items", "users"),
            ("categories", "catalog"),
            ("products", "catalog"),
            ("orders", "orders"),
            ("order_items", "orders"),
        ] {
            let target = router.locate(table, &Query::all()).ok();
            assert_eq!(
                target.map(|t| t.to_string()),
                Some(format!("{database}.{table}"))
            );
        }
    }
}
