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
//! Over 800 lines: `DomainStore` implements the whole `Store` trait (22 methods)
//! over three databases, and the checkout saga with its compensation belongs
//! beside the methods it spans. Splitting `Store` into one repository trait per
//! domain (catalog, accounts, carts, orders) would divide it; that is the next
//! step of the storefront's reshaping, not done yet.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use scalekit_shard::{Engines, Query, Router, RouterConfig};

use super::{
    context, Backend, Cart, CartLine, Category, Db, NewProduct, NewUser, Order, OrderLine,
    OrderRepo, OrderSummary, Page, PgOrders, Product, ProductPage, Store, StoreError, StoreResult,
    User, MAX_QUANTITY,
};
use crate::config::DomainsConfig;
use crate::{Accounts, Carts, Catalog, Orders, Seeding};

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

    /// [`connect`](Self::connect), each database read through `replicas` when
    /// given (stage 5's streaming replicas, which hold every database of the
    /// primary), and with orders in `orders` when given (stage 7's sharded orders)
    /// instead of `PgOrders` over `config.orders`.
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

    /// Step 1 of checkout: takes the stock of every line in one catalog
    /// transaction, in product order; nothing is taken if one line is short. Lines
    /// whose product left the catalog are skipped and named in [`Taken::gone`]. The
    /// stock taken is held by the returned guard, armed as soon as it is committed.
    async fn take_stock(&self, wanted: &[(i64, i64)]) -> StoreResult<Taken> {
        let mut tx = self.catalog.primary().begin().await?;
        let mut lines = Vec::with_capacity(wanted.len());
        let mut taken = Vec::with_capacity(wanted.len());
        let mut gone = Vec::new();
        for &(product_id, quantity) in wanted {
            let row: Option<(String, i64)> = sqlx::query_as(crate::statements::RESERVE_STOCK)
                .bind(quantity)
                .bind(product_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((name, unit_price_cents)) = row else {
                let name: Option<String> = sqlx::query_scalar(crate::statements::PRODUCT_NAME)
                    .bind(product_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                match name {
                    Some(name) => return Err(StoreError::OutOfStock { product_id, name }),
                    None => {
                        gone.push(product_id);
                        continue;
                    }
                }
            };
            taken.push((product_id, quantity));
            lines.push(OrderLine {
                product_id,
                name,
                unit_price_cents,
                quantity,
            });
        }
        if taken.is_empty() {
            tx.rollback().await?;
            return Ok(Taken {
                lines,
                gone,
                guard: StockGuard::default(),
            });
        }
        tx.commit().await?;
        let guard = StockGuard {
            catalog: Some(self.catalog.clone()),
            taken,
        };
        self.catalog.wrote().await;
        Ok(Taken { lines, gone, guard })
    }

    /// The compensation of [`take_stock`](Self::take_stock): gives the units back,
    /// in one transaction, in product order, and disarms the guard once committed.
    async fn give_back(&self, guard: &mut StockGuard) -> StoreResult<()> {
        let mut tx = self.catalog.primary().begin().await?;
        give_back_in(&mut tx, &guard.taken).await?;
        tx.commit().await?;
        guard.disarm();
        self.catalog.wrote().await;
        Ok(())
    }

    /// Gives the stock of a failed step 2 back; a failure is logged with the units.
    async fn compensate(&self, user_id: i64, guard: &mut StockGuard, cause: &StoreError) {
        if let Err(undo) = self.give_back(guard).await {
            tracing::error!(
                user_id,
                taken = ?guard.taken,
                "checkout: the order failed ({cause}) and the stock taken for it \
                 could not be given back ({undo}): add these units back by hand"
            );
            guard.disarm();
        }
    }

    /// The checkout saga (see the module docs).
    async fn checkout_saga(&self, user_id: i64, now: i64) -> StoreResult<Order> {
        // The users database's transaction spans the saga: the user's row and cart
        // lines stay locked until the checked-out quantities leave the cart, so a
        // second checkout of the same cart (a double click) waits and then finds
        // it empty. NO KEY UPDATE leaves inserts into the cart (whose foreign key
        // takes KEY SHARE on the user) free.
        let mut cart = self.carts.primary().begin().await?;
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(user_id)
            .execute(&mut *cart)
            .await?;
        let wanted: Vec<(i64, i64)> = sqlx::query_as(crate::statements::CART_LINES_LOCKED)
            .bind(user_id)
            .fetch_all(&mut *cart)
            .await?;
        if wanted.is_empty() {
            return Err(StoreError::EmptyCart);
        }
        let Taken {
            lines,
            gone,
            mut guard,
        } = self.take_stock(&wanted).await?;
        // What leaves the cart: the lines ordered, and those whose product is gone.
        let leaving: Vec<(i64, i64)> = wanted
            .iter()
            .copied()
            .filter(|(id, _)| gone.contains(id) || guard.taken.iter().any(|(t, _)| t == id))
            .collect();
        if lines.is_empty() {
            // Every product is gone: the cart is empty for good.
            remove_from_cart(&mut cart, user_id, &leaving).await?;
            cart.commit().await?;
            self.carts.wrote().await;
            return Err(StoreError::EmptyCart);
        }
        // A panic in the repository is an error like another: the stock goes back.
        let placed = CatchUnwind(Box::pin(self.orders.place(user_id, &lines, now))).await;
        let order = match placed {
            Ok(Ok(order)) => order,
            Ok(Err(e)) => {
                self.compensate(user_id, &mut guard, &e).await;
                return Err(e);
            }
            Err(panic) => {
                let e = internal_error(format!(
                    "the checkout's order failed: {}",
                    panic_message(&*panic)
                ));
                tracing::error!(user_id, "checkout: {e}");
                self.compensate(user_id, &mut guard, &e).await;
                return Err(e);
            }
        };
        guard.disarm();
        let emptied = async {
            remove_from_cart(&mut cart, user_id, &leaving).await?;
            cart.commit().await
        }
        .await;
        match emptied {
            Ok(()) => self.carts.wrote().await,
            // The order stands: report it, and leave the cart as it is.
            Err(e) => tracing::warn!(
                user_id,
                order_id = order.id,
                "checkout: order placed, but the cart could not be emptied: {e}"
            ),
        }
        Ok(order)
    }
}

/// What [`DomainStore::take_stock`] did.
struct Taken {
    /// The order's lines: the products still in the catalog.
    lines: Vec<OrderLine>,
    /// Products of the cart the catalog no longer has.
    gone: Vec<i64>,
    /// The stock taken, given back unless disarmed.
    guard: StockGuard,
}

/// Stock taken by a checkout and not yet sold: when dropped armed (the saga task
/// panicked or was dropped by a runtime shutdown between steps 1 and 2), it gives
/// the units back from a thread of its own over a new connection, since the
/// runtime may be going away, and logs what it did.
#[derive(Debug, Default)]
struct StockGuard {
    /// The catalog, while armed.
    catalog: Option<Db>,
    /// `(product, units)` taken, in product order.
    taken: Vec<(i64, i64)>,
}

impl StockGuard {
    fn disarm(&mut self) {
        self.catalog = None;
    }
}

impl Drop for StockGuard {
    fn drop(&mut self) {
        let Some(catalog) = self.catalog.take() else {
            return;
        };
        let taken = std::mem::take(&mut self.taken);
        let options = catalog.primary().connect_options();
        tracing::error!(
            ?taken,
            "checkout stopped between taking stock and placing the order: giving the stock back"
        );
        let units = taken.clone();
        let spawned = std::thread::Builder::new()
            .name("checkout-give-back".into())
            .spawn(move || {
                let done = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))
                    .and_then(|rt| {
                        rt.block_on(async {
                            use sqlx::Connection;
                            let mut conn = sqlx::PgConnection::connect_with(&options).await?;
                            let mut tx = conn.begin().await?;
                            give_back_in(&mut tx, &taken).await?;
                            tx.commit().await?;
                            Ok::<_, StoreError>(())
                        })
                    });
                match done {
                    Ok(()) => tracing::warn!(?taken, "checkout: stock given back"),
                    Err(e) => tracing::error!(
                        ?taken,
                        "checkout: the stock could not be given back ({e}): \
                         add these units back by hand"
                    ),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(
                taken = ?units,
                "checkout: cannot start giving the stock back ({e}): add these units back by hand"
            );
        }
    }
}

/// Adds `taken` units back to the products, in product order.
async fn give_back_in(
    tx: &mut sqlx::PgConnection,
    taken: &[(i64, i64)],
) -> Result<(), sqlx::Error> {
    for &(product_id, quantity) in taken {
        sqlx::query(crate::statements::RELEASE_STOCK)
            .bind(quantity)
            .bind(product_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Takes `leaving` (product, units) out of a user's cart: a line at or below
/// the units leaves, a larger one keeps the rest.
async fn remove_from_cart(
    tx: &mut sqlx::PgConnection,
    user_id: i64,
    leaving: &[(i64, i64)],
) -> Result<(), sqlx::Error> {
    let (ids, quantities): (Vec<i64>, Vec<i64>) = leaving.iter().copied().unzip();
    sqlx::query(
        "DELETE FROM cart_items c USING unnest($2::bigint[], $3::bigint[]) AS w(id, q) \
         WHERE c.user_id = $1 AND c.product_id = w.id AND c.quantity <= w.q",
    )
    .bind(user_id)
    .bind(&ids)
    .bind(&quantities)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE cart_items c SET quantity = c.quantity - w.q \
         FROM unnest($2::bigint[], $3::bigint[]) AS w(id, q) \
         WHERE c.user_id = $1 AND c.product_id = w.id",
    )
    .bind(user_id)
    .bind(&ids)
    .bind(&quantities)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// An error of the store's own (not the database's), as a store error.
fn internal_error(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::Io(std::io::Error::other(message)))
}

/// What a panic said, if it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .map_or_else(|| "it panicked".to_owned(), |m| format!("it panicked: {m}"))
}

/// A future whose panics are caught and returned (`futures`' `catch_unwind`).
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let future = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

#[async_trait]
impl Store for DomainStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }
    async fn ping(&self) -> StoreResult<()> {
        for db in &self.all {
            sqlx::query("SELECT 1").execute(db.primary()).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Catalog for DomainStore {
    async fn categories(&self) -> StoreResult<Vec<Category>> {
        let reader = self.catalog.reader().await?;
        Ok(
            sqlx::query_as("SELECT id, slug, name FROM categories ORDER BY name")
                .fetch_all(&*reader)
                .await?,
        )
    }
    async fn list_products(&self, category: Option<&str>, page: Page) -> StoreResult<ProductPage> {
        let reader = self.catalog.reader().await?;
        let (items, total) = match category {
            Some(slug) => {
                let items = sqlx::query_as(concat!(
                    product_select!(),
                    " WHERE c.slug = $1 ORDER BY p.id LIMIT $2 OFFSET $3"
                ))
                .bind(slug)
                .bind(i64::from(page.size))
                .bind(page.offset())
                .fetch_all(&*reader)
                .await?;
                let total: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM products p JOIN categories c \
                     ON c.id = p.category_id WHERE c.slug = $1",
                )
                .bind(slug)
                .fetch_one(&*reader)
                .await?;
                (items, total)
            }
            None => {
                let items = sqlx::query_as(concat!(
                    product_select!(),
                    " ORDER BY p.id LIMIT $1 OFFSET $2"
                ))
                .bind(i64::from(page.size))
                .bind(page.offset())
                .fetch_all(&*reader)
                .await?;
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
                    .fetch_one(&*reader)
                    .await?;
                (items, total)
            }
        };
        Ok(ProductPage {
            items,
            total,
            page: page.number,
            page_size: page.size,
        })
    }
    async fn product(&self, id: i64) -> StoreResult<Option<Product>> {
        let reader = self.catalog.reader().await?;
        Ok(
            sqlx::query_as(concat!(product_select!(), " WHERE p.id = $1"))
                .bind(id)
                .fetch_optional(&*reader)
                .await?,
        )
    }
    async fn search(&self, query: &str, page: Page) -> StoreResult<ProductPage> {
        let patterns = super::like_patterns(query);
        if patterns.is_empty() {
            return Ok(ProductPage {
                items: Vec::new(),
                total: 0,
                page: page.number,
                page_size: page.size,
            });
        }
        // Only the number of clauses depends on the input; the words are bound.
        let filter = |qb: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>| {
            qb.push(" WHERE ");
            for (i, p) in patterns.iter().enumerate() {
                if i > 0 {
                    qb.push(" AND ");
                }
                qb.push("(lower(p.name) LIKE ");
                qb.push_bind(p.clone());
                qb.push(" ESCAPE '\\' OR lower(c.name) LIKE ");
                qb.push_bind(p.clone());
                qb.push(" ESCAPE '\\')");
            }
        };
        let reader = self.catalog.reader().await?;
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(product_select!());
        filter(&mut qb);
        qb.push(" ORDER BY p.id LIMIT ");
        qb.push_bind(i64::from(page.size));
        qb.push(" OFFSET ");
        qb.push_bind(page.offset());
        let items = qb.build_query_as().fetch_all(&*reader).await?;
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "SELECT COUNT(*) FROM products p JOIN categories c ON c.id = p.category_id",
        );
        filter(&mut qb);
        let total: i64 = qb.build_query_scalar().fetch_one(&*reader).await?;
        Ok(ProductPage {
            items,
            total,
            page: page.number,
            page_size: page.size,
        })
    }
    async fn update_product(&self, id: i64, price_cents: i64, stock: i64) -> StoreResult<()> {
        let done = sqlx::query(crate::statements::UPDATE_PRODUCT)
            .bind(price_cents)
            .bind(stock)
            .bind(id)
            .execute(self.catalog.primary())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchProduct(id));
        }
        self.catalog.wrote().await;
        Ok(())
    }
    async fn count_products(&self) -> StoreResult<i64> {
        let reader = self.catalog.reader().await?;
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM products")
            .fetch_one(&*reader)
            .await?)
    }
}

#[async_trait]
impl Accounts for DomainStore {
    async fn create_user(&self, user: &NewUser, now: i64) -> StoreResult<User> {
        let row = sqlx::query_as(
            "INSERT INTO users (email, name, password_hash, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id, email, name",
        )
        .bind(&user.email)
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(now)
        .fetch_one(self.users.primary())
        .await;
        match row {
            Ok(user) => {
                self.users.wrote().await;
                Ok(user)
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }
    async fn user_credentials(&self, email: &str) -> StoreResult<Option<(User, String)>> {
        let reader = self.users.reader().await?;
        let row: Option<(i64, String, String, String)> =
            sqlx::query_as("SELECT id, email, name, password_hash FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(&*reader)
                .await?;
        Ok(row.map(|(id, email, name, hash)| (User { id, email, name }, hash)))
    }
    async fn create_session(&self, token: &str, user_id: i64, expires_at: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO sessions (token, user_id, expires_at) VALUES ($1, $2, $3)")
            .bind(super::token_digest(token))
            .bind(user_id)
            .bind(expires_at)
            .execute(self.users.primary())
            .await?;
        self.users.wrote().await;
        Ok(())
    }
    async fn session_user(&self, token: &str, now: i64) -> StoreResult<Option<User>> {
        let reader = self.users.reader().await?;
        Ok(sqlx::query_as(
            "SELECT u.id, u.email, u.name FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token = $1 AND s.expires_at > $2",
        )
        .bind(super::token_digest(token))
        .bind(now)
        .fetch_optional(&*reader)
        .await?)
    }
    async fn delete_session(&self, token: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token = $1")
            .bind(super::token_digest(token))
            .execute(self.users.primary())
            .await?;
        self.users.wrote().await;
        Ok(())
    }
}

#[async_trait]
impl Carts for DomainStore {
    async fn cart(&self, user_id: i64) -> StoreResult<Cart> {
        let wanted: Vec<(i64, i64)> = {
            let reader = self.carts.reader().await?;
            sqlx::query_as(crate::statements::CART_LINES)
                .bind(user_id)
                .fetch_all(&*reader)
                .await?
        };
        if wanted.is_empty() {
            return Ok(Cart::default());
        }
        let ids: Vec<i64> = wanted.iter().map(|&(id, _)| id).collect();
        let products: Vec<(i64, String, i64, i64)> = {
            let reader = self.catalog.reader().await?;
            sqlx::query_as("SELECT id, name, price_cents, stock FROM products WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&*reader)
                .await?
        };
        let products: HashMap<i64, (String, i64, i64)> = products
            .into_iter()
            .map(|(id, name, price, stock)| (id, (name, price, stock)))
            .collect();
        // A line whose product left the catalog is not shown (a join would drop it too).
        let lines: Vec<CartLine> = wanted
            .into_iter()
            .filter_map(|(product_id, quantity)| {
                let (name, price_cents, stock) = products.get(&product_id)?.clone();
                Some(CartLine {
                    product_id,
                    name,
                    price_cents,
                    quantity,
                    stock,
                })
            })
            .collect();
        let total_cents = CartLine::total(&lines);
        Ok(Cart { lines, total_cents })
    }
    async fn add_to_cart(&self, user_id: i64, product_id: i64, quantity: i64) -> StoreResult<()> {
        self.require_product(product_id).await?;
        let quantity = quantity.clamp(1, MAX_QUANTITY);
        sqlx::query(
            "INSERT INTO cart_items (user_id, product_id, quantity) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = \
             LEAST(cart_items.quantity + excluded.quantity, $4)",
        )
        .bind(user_id)
        .bind(product_id)
        .bind(quantity)
        .bind(MAX_QUANTITY)
        .execute(self.carts.primary())
        .await?;
        self.carts.wrote().await;
        Ok(())
    }
    async fn set_cart_quantity(
        &self,
        user_id: i64,
        product_id: i64,
        quantity: i64,
    ) -> StoreResult<()> {
        if quantity <= 0 {
            sqlx::query("DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2")
                .bind(user_id)
                .bind(product_id)
                .execute(self.carts.primary())
                .await?;
            self.carts.wrote().await;
            return Ok(());
        }
        self.require_product(product_id).await?;
        sqlx::query(
            "INSERT INTO cart_items (user_id, product_id, quantity) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = excluded.quantity",
        )
        .bind(user_id)
        .bind(product_id)
        .bind(quantity.min(MAX_QUANTITY))
        .execute(self.carts.primary())
        .await?;
        self.carts.wrote().await;
        Ok(())
    }
}

#[async_trait]
impl Orders for DomainStore {
    async fn checkout(&self, user_id: i64, now: i64) -> StoreResult<Order> {
        // A task of its own: dropping this future (the client went away) must not
        // stop the saga between its steps. It runs in this request's context, so
        // its writes are recorded for the session's next reads.
        let this = self.clone();
        let saga = context::spawn(async move { this.checkout_saga(user_id, now).await });
        match saga.await {
            Ok(result) => result,
            Err(e) => {
                let e = internal_error(format!("the checkout task failed: {e}"));
                tracing::error!(user_id, "checkout: {e}");
                Err(e)
            }
        }
    }
    async fn orders(&self, user_id: i64) -> StoreResult<Vec<OrderSummary>> {
        self.orders.orders(user_id).await
    }
    async fn order(&self, user_id: i64, order_id: i64) -> StoreResult<Option<Order>> {
        let Some(mut order) = self.orders.order(user_id, order_id).await? else {
            return Ok(None);
        };
        let ids: Vec<i64> = order.lines.iter().map(|l| l.product_id).collect();
        let names: Vec<(i64, String)> = {
            let reader = self.catalog.reader().await?;
            sqlx::query_as("SELECT id, name FROM products WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&*reader)
                .await?
        };
        // The catalog names the products; the name kept with the order stands in
        // for a product the catalog no longer has.
        let names: HashMap<i64, String> = names.into_iter().collect();
        for line in &mut order.lines {
            if let Some(name) = names.get(&line.product_id) {
                line.name.clone_from(name);
            }
        }
        Ok(Some(order))
    }
}

#[async_trait]
impl Seeding for DomainStore {
    async fn insert_categories(
        &self,
        categories: &[(String, String)],
    ) -> StoreResult<Vec<Category>> {
        let mut tx = self.catalog.primary().begin().await?;
        for (slug, name) in categories {
            sqlx::query(
                "INSERT INTO categories (slug, name) VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING",
            )
            .bind(slug)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.catalog.wrote().await;
        self.categories().await
    }
    async fn insert_products(&self, products: &[NewProduct], now: i64) -> StoreResult<()> {
        let mut tx = self.catalog.primary().begin().await?;
        // 6 parameters a row: 1,000 rows stay far under PostgreSQL's 65,535.
        for chunk in products.chunks(1000) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO products (category_id, name, description, price_cents, stock, created_at) ",
            );
            qb.push_values(chunk, |mut b, p| {
                b.push_bind(p.category_id)
                    .push_bind(p.name.clone())
                    .push_bind(p.description.clone())
                    .push_bind(p.price_cents)
                    .push_bind(p.stock)
                    .push_bind(now);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.catalog.wrote().await;
        Ok(())
    }
    async fn insert_users(&self, users: &[NewUser], now: i64) -> StoreResult<()> {
        let mut tx = self.users.primary().begin().await?;
        for chunk in users.chunks(1000) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO users (email, name, password_hash, created_at) ",
            );
            qb.push_values(chunk, |mut b, u| {
                b.push_bind(u.email.clone())
                    .push_bind(u.name.clone())
                    .push_bind(u.password_hash.clone())
                    .push_bind(now);
            });
            qb.push(" ON CONFLICT (email) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.users.wrote().await;
        Ok(())
    }
}

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
