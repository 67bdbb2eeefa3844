//! Storage: the [`Store`] trait and its two backends, [`SqliteStore`] (embedded, the
//! default) and [`PgStore`] (PostgreSQL over TCP).
//!
//! Both run the same SQL (sqlx binds `$1`-style parameters on both; no query is ever
//! built from input text), each with its own migrations in `migrations/<backend>/`.
//! Checkout decrements stock with a conditional `UPDATE ... WHERE stock >= $n` inside
//! the transaction that writes the order, so two checkouts can never sell the same
//! unit: on PostgreSQL the row lock makes the second update re-check the condition, on
//! SQLite the transaction takes the write lock up front (`BEGIN IMMEDIATE`).

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod config;
mod connect;
pub mod context;
pub mod db;
mod domains;
mod metered;
mod orders;
mod orders_pg;
mod postgres;
pub mod sharded;

/// The store's traits, for code that calls a domain's methods on a concrete
/// store (`SqliteStore`, `PgStore`, ...) rather than on an `Arc<dyn Store>`.
pub mod prelude {
    pub use crate::{Accounts, Carts, Catalog, Orders, Seeding, Store};
}
pub mod split;
mod sql;
mod sqlite;
mod statements;

pub use connect::{connect_pool, db_address, CONNECT_TIMEOUT};
pub use db::{Db, Reader};
pub use domains::{db_of, domain_router, DomainStore, DOMAIN_ROUTES};
pub use metered::MeteredStore;
pub use orders::OrderRepo;
pub use orders_pg::PgOrders;
pub use postgres::PgStore;
pub use sqlite::{private_dir, private_file, SqliteStore};

/// The most of one product a cart holds.
pub const MAX_QUANTITY: i64 = 99;

/// Which backend a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// SQLite, embedded in the process.
    Sqlite,
    /// PostgreSQL over TCP.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        })
    }
}

/// A product category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Category {
    /// Its id.
    pub id: i64,
    /// Its URL name (`books`).
    pub slug: String,
    /// Its display name (`Books`).
    pub name: String,
}

/// A product of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Product {
    /// Its id.
    pub id: i64,
    /// Its category's id.
    pub category_id: i64,
    /// Its category's URL name.
    pub category_slug: String,
    /// Its category's display name.
    pub category_name: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its price in cents.
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i64,
}

/// Which page of a listing to read: 1-based page number and page size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// The page number, from 1.
    pub number: u32,
    /// Items per page.
    pub size: u32,
}

impl Page {
    pub(crate) fn offset(self) -> i64 {
        i64::from(self.number.saturating_sub(1)) * i64::from(self.size)
    }
}

/// One page of products and how many match in all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductPage {
    /// The products on this page.
    pub items: Vec<Product>,
    /// How many products match in all.
    pub total: i64,
    /// This page's number, from 1.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
}

impl ProductPage {
    /// The number of pages (at least 1).
    pub fn pages(&self) -> u32 {
        let size = i64::from(self.page_size.max(1));
        u32::try_from(((self.total + size - 1) / size).max(1)).unwrap_or(u32::MAX)
    }
}

/// A customer account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    /// Its id.
    pub id: i64,
    /// Its email address (lower case).
    pub email: String,
    /// Its display name.
    pub name: String,
}

/// One line of a cart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CartLine {
    /// The product's id.
    pub product_id: i64,
    /// The product's name.
    pub name: String,
    /// The product's current price in cents.
    pub price_cents: i64,
    /// How many units are in the cart.
    pub quantity: i64,
    /// Units in stock now.
    pub stock: i64,
}

impl CartLine {
    /// What `lines` cost at their current prices, in cents (saturating).
    pub fn total(lines: &[CartLine]) -> i64 {
        lines
            .iter()
            .map(|l| l.price_cents.saturating_mul(l.quantity))
            .fold(0, i64::saturating_add)
    }
}

/// A customer's cart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cart {
    /// Its lines, by product id.
    pub lines: Vec<CartLine>,
    /// The sum of price times quantity, in cents.
    pub total_cents: i64,
}

/// One line of an order, with the price paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrderLine {
    /// The product's id.
    pub product_id: i64,
    /// The product's name when ordered.
    pub name: String,
    /// The unit price paid, in cents.
    pub unit_price_cents: i64,
    /// Units ordered.
    pub quantity: i64,
}

impl OrderLine {
    /// What `lines` cost at the prices paid, in cents (saturating): an order's
    /// total, computed the same way by every store.
    ///
    /// ```
    /// use storefront_storage::OrderLine;
    /// let line = |unit_price_cents, quantity| OrderLine {
    ///     product_id: 1,
    ///     name: "Kettle".into(),
    ///     unit_price_cents,
    ///     quantity,
    /// };
    /// assert_eq!(OrderLine::total(&[line(250, 2), line(100, 1)]), 600);
    /// assert_eq!(OrderLine::total(&[line(i64::MAX, 2), line(1, 1)]), i64::MAX);
    /// ```
    pub fn total(lines: &[OrderLine]) -> i64 {
        lines
            .iter()
            .map(|l| l.unit_price_cents.saturating_mul(l.quantity))
            .fold(0, i64::saturating_add)
    }
}

/// An order, without its lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrderSummary {
    /// Its id.
    pub id: i64,
    /// What was paid, in cents.
    pub total_cents: i64,
    /// When it was placed (Unix seconds).
    pub created_at: i64,
}

/// An order with its lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Its id.
    pub id: i64,
    /// What was paid, in cents.
    pub total_cents: i64,
    /// When it was placed (Unix seconds).
    pub created_at: i64,
    /// What was bought.
    pub lines: Vec<OrderLine>,
}

/// A product to insert (seeding).
#[derive(Clone, Debug)]
pub struct NewProduct {
    /// Its category's id.
    pub category_id: i64,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its price in cents.
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i64,
}

/// An account to insert (seeding).
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Its email address (lower case).
    pub email: String,
    /// Its display name.
    pub name: String,
    /// Its PHC-format argon2 hash.
    pub password_hash: String,
}

/// What a store operation can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// An account with this email address exists already.
    EmailTaken,
    /// No product has this id.
    NoSuchProduct(i64),
    /// Checkout of an empty cart.
    EmptyCart,
    /// Not enough units of a product are left for the cart.
    OutOfStock {
        /// The product's id.
        product_id: i64,
        /// The product's name.
        name: String,
    },
    /// The database failed or could not be reached.
    Database(sqlx::Error),
    /// A database could not be reached at start (see [`connect_pool`]).
    Unreachable {
        /// Where: `host:port/database`, without user or password.
        address: String,
        /// Why: refused, no answer, unknown host, no such database, bad password...
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    Migrate(sqlx::migrate::MigrateError),
    /// A cached load failed (the error is shared by every caller that waited on it).
    Loader(std::sync::Arc<StoreError>),
    /// A cache held a value of the wrong kind for its key.
    Corrupt(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmailTaken => f.write_str("an account with this email address exists already"),
            Self::NoSuchProduct(id) => write!(f, "no product has id {id}"),
            Self::EmptyCart => f.write_str("the cart is empty"),
            Self::OutOfStock { name, .. } => {
                write!(f, "not enough of \"{name}\" is left in stock for this cart")
            }
            Self::Database(e) => write!(f, "database error: {e}"),
            Self::Unreachable { address, source } => write!(
                f,
                "cannot reach the PostgreSQL database {address}: {source} (is the server up, and are the stage file's database URLs right?)"
            ),
            Self::Migrate(e) => write!(f, "cannot migrate the database schema: {e}"),
            Self::Loader(e) => e.fmt(f),
            Self::Corrupt(what) => write!(f, "cache corrupt: {what}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Database(e) | Self::Unreachable { source: e, .. } => Some(e),
            Self::Migrate(e) => Some(e),
            Self::Loader(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(e)
    }
}

/// Shorthand for results of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The shop's storage: one repository per domain ([`Catalog`], [`Accounts`],
/// [`Carts`], [`Orders`], and [`Seeding`] for the demo data), which every backend
/// implements (SQLite and PostgreSQL in `sql.rs`, the business split's
/// [`DomainStore`]) and every layer over a store passes on or changes
/// (`MeteredStore`, the caches' `CachedStore`). The app holds an `Arc<dyn
/// Store>`; the domain traits' methods are callable on it directly.
///
/// Every method is one short transaction or less; inputs are bound as
/// parameters, never spliced into SQL. Callers validate input first (the HTTP
/// layer does); the store enforces integrity (unique emails, stock never below 0).
#[async_trait]
pub trait Store: Catalog + Accounts + Carts + Orders + Seeding + fmt::Debug + 'static {
    /// Which backend this is.
    fn backend(&self) -> Backend;
    /// Checks that the database answers (readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Why the store serves in a degraded way, if it does (a cache tier it skips
    /// while down): `/readyz` answers `degraded: <cause>`. `None` by default; a
    /// store that wraps another passes the inner one's on.
    fn degraded(&self) -> Option<String> {
        None
    }
}

/// The catalog: categories and products (the catalog database from stage 6 on).
#[async_trait]
pub trait Catalog: Send + Sync {
    /// All categories, by name.
    async fn categories(&self) -> StoreResult<Vec<Category>>;
    /// A page of products by id, of one category (by slug) or all.
    async fn list_products(&self, category: Option<&str>, page: Page) -> StoreResult<ProductPage>;
    /// One product.
    async fn product(&self, id: i64) -> StoreResult<Option<Product>>;
    /// Products whose name or category contains every word of `query` (case-insensitive).
    async fn search(&self, query: &str, page: Page) -> StoreResult<ProductPage>;
    /// Sets a product's price and stock (shop admin; cache invalidation in later stages).
    async fn update_product(&self, id: i64, price_cents: i64, stock: i64) -> StoreResult<()>;
    /// How many products the catalog holds.
    async fn count_products(&self) -> StoreResult<i64>;
}

/// Accounts and their sessions (the users database from stage 6 on).
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates an account; [`StoreError::EmailTaken`] if the email is in use.
    async fn create_user(&self, user: &NewUser, now: i64) -> StoreResult<User>;
    /// An account and its password hash, by email.
    async fn user_credentials(&self, email: &str) -> StoreResult<Option<(User, String)>>;
    /// Stores a session token for a user until `expires_at` (Unix seconds). The
    /// backends keep only its SHA-256 ([`token_digest`]): a copy of the database
    /// holds no token that would sign anyone in.
    async fn create_session(&self, token: &str, user_id: i64, expires_at: i64) -> StoreResult<()>;
    /// The user of an unexpired session.
    async fn session_user(&self, token: &str, now: i64) -> StoreResult<Option<User>>;
    /// Ends a session (no error if it does not exist).
    async fn delete_session(&self, token: &str) -> StoreResult<()>;
}

/// Carts (beside the accounts from stage 6 on).
#[async_trait]
pub trait Carts: Send + Sync {
    /// A user's cart.
    async fn cart(&self, user_id: i64) -> StoreResult<Cart>;
    /// Adds units of a product to the cart (capped at [`MAX_QUANTITY`]).
    async fn add_to_cart(&self, user_id: i64, product_id: i64, quantity: i64) -> StoreResult<()>;
    /// Sets the units of a product in the cart; 0 removes the line.
    async fn set_cart_quantity(
        &self,
        user_id: i64,
        product_id: i64,
        quantity: i64,
    ) -> StoreResult<()>;
}

/// Checkout and the order history (the orders database from stage 6 on, its
/// shards in stage 7; where an order is written is an [`OrderRepo`]).
#[async_trait]
pub trait Orders: Send + Sync {
    /// Turns the cart into an order: stock decremented, order written and cart
    /// emptied in one transaction (across databases: a saga that gives the stock
    /// back), or nothing changes.
    async fn checkout(&self, user_id: i64, now: i64) -> StoreResult<Order>;
    /// A user's orders, newest first.
    async fn orders(&self, user_id: i64) -> StoreResult<Vec<OrderSummary>>;
    /// One of a user's orders.
    async fn order(&self, user_id: i64, order_id: i64) -> StoreResult<Option<Order>>;
}

/// Bulk inserts for the demo data (`storefront seed`).
#[async_trait]
pub trait Seeding: Send + Sync {
    /// Inserts categories (seeding), returning them with their ids.
    async fn insert_categories(
        &self,
        categories: &[(String, String)],
    ) -> StoreResult<Vec<Category>>;
    /// Inserts products in one transaction with multi-row statements (seeding).
    async fn insert_products(&self, products: &[NewProduct], now: i64) -> StoreResult<()>;
    /// Inserts accounts in one transaction, skipping emails in use (seeding).
    async fn insert_users(&self, users: &[NewUser], now: i64) -> StoreResult<()>;
    /// Refreshes the query planner's statistics after a bulk load (`ANALYZE`),
    /// so the first queries are planned on what the tables hold rather than
    /// on whenever autovacuum next passes (up to a minute later).
    async fn analyze(&self) -> StoreResult<()>;
}

/// Turns a search query into `LIKE` patterns: one per word, lower case, with `%`,
/// `_` and `\` escaped (the SQL says `ESCAPE '\'`). At most 5 words are used.
/// What the database keeps of a session token: its SHA-256, in hex. The token is
/// 32 random bytes, so a fast hash is enough (no salt or stretching needed, unlike
/// a password).
pub fn token_digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn like_patterns(query: &str) -> Vec<String> {
    query
        .split_whitespace()
        .take(5)
        .map(|word| {
            let mut p = String::with_capacity(word.len() + 2);
            p.push('%');
            for c in word.to_lowercase().chars() {
                if matches!(c, '%' | '_' | '\\') {
                    p.push('\\');
                }
                p.push(c);
            }
            p.push('%');
            p
        })
        .collect()
}

/// Opens the store a stage's configuration names: its `[database]`, and from stage
/// 5 on the sections that split it. A relative SQLite file is placed under
/// `data_dir`.
pub async fn open(
    config: &config::Databases<'_>,
    data_dir: &std::path::Path,
) -> StoreResult<std::sync::Arc<dyn Store>> {
    Ok(open_parts(config, data_dir).await?.store)
}

/// What [`open_parts`] opened: the store, and in stage 7 the sharded orders it
/// holds (for the ops page and the admin pages).
#[derive(Debug)]
pub struct Opened {
    /// The store.
    pub store: std::sync::Arc<dyn Store>,
    /// Stage 7: the orders' shards, also reachable through `store`.
    pub sharding: Option<sharded::ShardedOrders>,
}

/// [`open`], also handing back the sharded orders of a stage with `[sharding]`.
pub async fn open_parts(
    config: &config::Databases<'_>,
    data_dir: &std::path::Path,
) -> StoreResult<Opened> {
    use crate::config::DatabaseConfig;
    if let Some(domains) = config.domains {
        let sharding = match config.sharding {
            Some(sharding) => Some(
                sharded::ShardedOrders::connect_with_replicas(sharding, config.replicas).await?,
            ),
            None => None,
        };
        let orders = sharding
            .clone()
            .map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn OrderRepo>);
        return Ok(Opened {
            store: std::sync::Arc::new(
                DomainStore::connect_with_orders(domains, config.replicas, orders).await?,
            ),
            sharding,
        });
    }
    let database = config.database;
    let store: std::sync::Arc<dyn Store> = match database {
        DatabaseConfig::Sqlite { file, .. } if file.as_os_str() == ":memory:" => {
            std::sync::Arc::new(SqliteStore::in_memory().await?)
        }
        DatabaseConfig::Sqlite { file, .. } => {
            std::sync::Arc::new(SqliteStore::open(&data_dir.join(file)).await?)
        }
        DatabaseConfig::Postgres { .. } => {
            let url = database.postgres_url().unwrap_or_default();
            match config.replicas {
                // Stage 5: reads on the replicas.
                Some(replicas) => std::sync::Arc::new(
                    PgStore::open(Db::connect(&url, Some(replicas), 16).await?).await?,
                ),
                None => std::sync::Arc::new(PgStore::connect(&url).await?),
            }
        }
    };
    Ok(Opened {
        store,
        sharding: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_digests_are_sha256_in_hex() {
        assert_eq!(
            token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn the_database_keeps_no_session_token() {
        let store = SqliteStore::in_memory().await.unwrap();
        let user = store
            .create_user(
                &NewUser {
                    email: "a@example.com".into(),
                    name: "A".into(),
                    password_hash: "x".into(),
                },
                1,
            )
            .await
            .unwrap();
        let token = "ab".repeat(32);
        store.create_session(&token, user.id, 100).await.unwrap();
        let kept: Vec<String> = sqlx::query_scalar("SELECT token FROM sessions")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(kept, [token_digest(&token)]);
        assert_eq!(
            store.session_user(&token, 50).await.unwrap().map(|u| u.id),
            Some(user.id)
        );
        assert_eq!(
            store.session_user(&kept[0], 50).await.unwrap(),
            None,
            "the digest is no token"
        );
        store.delete_session(&token).await.unwrap();
        assert_eq!(store.session_user(&token, 50).await.unwrap(), None);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(
            like_patterns("  Red  50%_off\\ "),
            ["%red%", "%50\\%\\_off\\\\%"]
        );
        assert!(like_patterns("   ").is_empty());
        assert_eq!(like_patterns("a b c d e f g").len(), 5);
    }

    #[test]
    fn pages_round_up() {
        let page = |total| ProductPage {
            items: vec![],
            total,
            page: 1,
            page_size: 10,
        };
        assert_eq!(page(0).pages(), 1);
        assert_eq!(page(10).pages(), 1);
        assert_eq!(page(11).pages(), 2);
    }
}
