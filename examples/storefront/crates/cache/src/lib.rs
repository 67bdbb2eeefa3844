//! Stage 3: caches. [`CachedStore`] wraps any [`Store`] with two
//! [`scalekit_cache::TieredCache`]s, each an in-process L1 over a shared Redis L2:
//!
//! - **products** (product pages): invalidated on every change of the product
//!   (price, stock, checkout) in this process's L1, in Redis, and through
//!   [`RedisCoherence`] in every other instance's L1; L1 entries also expire after
//!   `product_ttl_secs`, which bounds how long a missed invalidation can last.
//! - **listings** (catalog pages, search results, categories): a listing depends on
//!   many products, so it is not invalidated per product; it expires instead, after
//!   `listing_ttl_secs` in L1 and 4 times that in Redis. A price change shows on
//!   product pages at once and on listings within that time.
//!
//! Everything else (accounts, sessions, carts, orders) goes straight to the store.
//!
//! Redis sits behind a circuit breaker (`remote.rs`, its figures in [`RemoteStats`]): when it is down, an L1 miss
//! goes to the database at once instead of waiting on it, `/readyz` says
//! `degraded: <cause>` ([`Store::degraded`]), and the ops page and `/metrics` count
//! its failures apart from its misses.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use scalekit_cache::{Cache, RedisCoherence, RedisTier, TierError, TieredCache, TieredStats};
use serde::{Deserialize, Serialize};

pub use crate::config::CacheConfig;
use storefront_contract::ops::{CacheTotals, TierFaults, TierTotals};
pub mod config;
mod remote;

pub use remote::{RemoteStats, TierOptions};

use storefront_storage::{
    context, Accounts, Backend, Cart, Carts, Catalog, Category, NewProduct, NewUser, Order,
    OrderSummary, Orders, Page, Product, ProductPage, Seeding, Store, StoreError, StoreResult,
    User,
};

/// What the caches hold.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Cached {
    /// A product page's product.
    Product(Product),
    /// A listing or search page.
    Page(ProductPage),
    /// All categories.
    Categories(Vec<Category>),
}

/// Hit counters of both caches.
#[derive(Clone, Debug)]
pub struct CacheStats {
    /// The product cache.
    pub products: TieredStats,
    /// The listings cache.
    pub listings: TieredStats,
    /// Redis, both caches together: its answers, failures and skipped calls
    /// apart (the tiered caches' own `l2_misses` count a failed read as a miss).
    pub remote: RemoteStats,
}

/// A [`Store`] with product pages, listings and search results cached in L1 + Redis.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    /// Shared with the tasks that invalidate after a checkout.
    products: Arc<TieredCache<String, Cached>>,
    listings: TieredCache<String, Cached>,
    /// Redis's breaker and counters.
    remote: remote::Remote,
    /// How long a product may stay in L1 (for the degraded message).
    product_ttl_secs: u64,
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn product_key(id: i64) -> String {
    format!("p:{id}")
}

/// The same words in any case and spacing share one cache entry.
fn normalise(query: &str) -> String {
    query
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

impl CachedStore {
    /// Wraps `inner`, with L2 and invalidations in the Redis (one server or a
    /// cluster) `config` names, under
    /// `config.namespace` (instances that share a namespace share the caches).
    pub async fn connect(inner: Arc<dyn Store>, config: &CacheConfig) -> Result<Self, TierError> {
        Self::connect_with(inner, config, TierOptions::default()).await
    }

    /// [`connect`](Self::connect) with Redis's time limit, breaker and clock from
    /// `options`.
    pub async fn connect_with(
        inner: Arc<dyn Store>,
        config: &CacheConfig,
        options: TierOptions,
    ) -> Result<Self, TierError> {
        let target = config.redis_target().map_err(TierError::Config)?;
        let remote = remote::Remote::new(&target.to_string(), &options)?;
        let tier = |name: &str| {
            RedisTier::builder(target.clone(), format!("{}:{name}", config.namespace))
                .timeout(options.timeout)
                .build()
        };
        let product_tier = tier("products").await?;
        let listing_tier = tier("listings").await?;
        let l1 = |ttl: u64| {
            Cache::builder()
                .max_capacity(config.l1_capacity)
                .time_to_live(Duration::from_secs(ttl.max(1)))
                .build()
        };
        let products = Arc::new(
            TieredCache::builder(
                l1(config.product_ttl_secs)?,
                remote.guard(product_tier.clone()),
            )
            .l2_ttl(Duration::from_secs(config.product_ttl_secs.max(1) * 10))
            .coherence(RedisCoherence::new(&product_tier))
            .build()?,
        );
        let listings = TieredCache::builder(
            l1(config.listing_ttl_secs)?,
            remote.guard(listing_tier.clone()),
        )
        .l2_ttl(Duration::from_secs(config.listing_ttl_secs.max(1) * 4))
        .coherence(RedisCoherence::new(&listing_tier))
        .build()?;
        let store = Self {
            inner,
            products,
            listings,
            remote,
            product_ttl_secs: config.product_ttl_secs,
        };
        // Serve only once other instances' product changes reach this L1.
        if !store.wait_subscribed(options.subscribe_wait).await {
            tracing::warn!("the cache invalidation subscription is not up yet: this instance may serve a changed product for up to {} s", config.product_ttl_secs);
        }
        Ok(store)
    }

    /// Both caches' counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            products: self.products.stats(),
            listings: self.listings.stats(),
            remote: self.remote.stats(),
        }
    }

    /// Why the caches serve in a degraded way, if they do: Redis skipped behind
    /// its open breaker, or other instances' invalidations not arriving. `None`
    /// when all is well.
    pub fn degraded(&self) -> Option<String> {
        let mut causes: Vec<String> = self.remote.degraded().into_iter().collect();
        if !self.subscribed() {
            causes.push(format!(
                "cache invalidations from other instances are not arriving (no subscription at {}): a product page may be up to {} s old",
                self.remote.address(),
                self.product_ttl_secs.max(1)
            ));
        }
        (!causes.is_empty()).then(|| causes.join("; "))
    }

    /// Whether both caches hear the other instances' invalidations now.
    pub fn subscribed(&self) -> bool {
        self.products.is_coherent() && self.listings.is_coherent()
    }

    /// Waits until [`subscribed`](Self::subscribed) holds or `within` has
    /// passed, and returns it.
    pub async fn wait_subscribed(&self, within: Duration) -> bool {
        self.products.wait_coherent(within).await && self.listings.wait_coherent(within).await
    }

    async fn listing<F>(&self, key: String, load: F) -> StoreResult<Cached>
    where
        F: std::future::Future<Output = StoreResult<Cached>>,
    {
        self.listings
            .try_get_with(key, load)
            .await
            .map_err(StoreError::Loader)
    }

    async fn forget_product(&self, id: i64) {
        forget_product(&self.products, id).await;
    }
}

async fn forget_product(products: &TieredCache<String, Cached>, id: i64) {
    if let Err(e) = products.invalidate(&product_key(id)).await {
        // L1 here and elsewhere is cleared anyway; Redis keeps the old value
        // until its TTL.
        tracing::warn!(product = id, error = %e, "cannot invalidate the product in Redis");
    }
}

fn page_of(cached: Cached) -> StoreResult<ProductPage> {
    match cached {
        Cached::Page(page) => Ok(page),
        other => Err(StoreError::Corrupt(format!(
            "a listing key holds {other:?}"
        ))),
    }
}

impl storefront_ops::CacheFigures for CachedStore {
    fn totals(&self) -> CacheTotals {
        let s = self.stats();
        CacheTotals {
            l1: Some(TierTotals {
                hits: s.products.l1.hits + s.listings.l1.hits,
                misses: s.products.l1.misses + s.listings.l1.misses,
            }),
            // What Redis answered; its failures and the calls its breaker
            // skipped are counted apart, not as misses.
            l2: Some(TierTotals {
                hits: s.remote.hits,
                misses: s.remote.misses,
            }),
            l2_faults: Some(TierFaults {
                errors: s.remote.errors,
                skipped: s.remote.skipped,
            }),
        }
    }

    fn degraded(&self) -> Option<String> {
        CachedStore::degraded(self)
    }
}

#[async_trait]
impl Store for CachedStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    fn degraded(&self) -> Option<String> {
        let mine = CachedStore::degraded(self);
        match (mine, self.inner.degraded()) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        }
    }
}

#[async_trait]
impl Catalog for CachedStore {
    async fn categories(&self) -> StoreResult<Vec<Category>> {
        let inner = &self.inner;
        match self
            .listing("c".into(), async {
                inner.categories().await.map(Cached::Categories)
            })
            .await?
        {
            Cached::Categories(c) => Ok(c),
            other => Err(StoreError::Corrupt(format!(
                "the categories key holds {other:?}"
            ))),
        }
    }
    async fn list_products(&self, category: Option<&str>, page: Page) -> StoreResult<ProductPage> {
        let key = format!("l:{}:{}:{}", category.unwrap_or(""), page.number, page.size);
        let inner = &self.inner;
        page_of(
            self.listing(key, async {
                inner.list_products(category, page).await.map(Cached::Page)
            })
            .await?,
        )
    }
    async fn product(&self, id: i64) -> StoreResult<Option<Product>> {
        let inner = &self.inner;
        // A missing product is not cached: it may be added later.
        let load = async {
            match inner.product(id).await? {
                Some(p) => Ok(Cached::Product(p)),
                None => Err(StoreError::NoSuchProduct(id)),
            }
        };
        match self.products.try_get_with(product_key(id), load).await {
            Ok(Cached::Product(p)) => Ok(Some(p)),
            Ok(other) => Err(StoreError::Corrupt(format!(
                "a product key holds {other:?}"
            ))),
            Err(e) if matches!(*e, StoreError::NoSuchProduct(_)) => Ok(None),
            Err(e) => Err(StoreError::Loader(e)),
        }
    }
    async fn search(&self, query: &str, page: Page) -> StoreResult<ProductPage> {
        let query = normalise(query);
        let key = format!("s:{}:{}:{query}", page.number, page.size);
        let inner = &self.inner;
        page_of(
            self.listing(key, async {
                inner.search(&query, page).await.map(Cached::Page)
            })
            .await?,
        )
    }
    async fn update_product(&self, id: i64, price_cents: i64, stock: i64) -> StoreResult<()> {
        let result = self.inner.update_product(id, price_cents, stock).await;
        self.forget_product(id).await;
        result
    }
    async fn count_products(&self) -> StoreResult<i64> {
        self.inner.count_products().await
    }
}

#[async_trait]
impl Accounts for CachedStore {
    async fn create_user(&self, user: &NewUser, now: i64) -> StoreResult<User> {
        self.inner.create_user(user, now).await
    }
    async fn user_credentials(&self, email: &str) -> StoreResult<Option<(User, String)>> {
        self.inner.user_credentials(email).await
    }
    async fn create_session(&self, token: &str, user_id: i64, expires_at: i64) -> StoreResult<()> {
        self.inner.create_session(token, user_id, expires_at).await
    }
    async fn session_user(&self, token: &str, now: i64) -> StoreResult<Option<User>> {
        self.inner.session_user(token, now).await
    }
    async fn delete_session(&self, token: &str) -> StoreResult<()> {
        self.inner.delete_session(token).await
    }
}

#[async_trait]
impl Carts for CachedStore {
    async fn cart(&self, user_id: i64) -> StoreResult<Cart> {
        self.inner.cart(user_id).await
    }
    async fn add_to_cart(&self, user_id: i64, product_id: i64, quantity: i64) -> StoreResult<()> {
        self.inner.add_to_cart(user_id, product_id, quantity).await
    }
    async fn set_cart_quantity(
        &self,
        user_id: i64,
        product_id: i64,
        quantity: i64,
    ) -> StoreResult<()> {
        self.inner
            .set_cart_quantity(user_id, product_id, quantity)
            .await
    }
}

#[async_trait]
impl Orders for CachedStore {
    async fn checkout(&self, user_id: i64, now: i64) -> StoreResult<Order> {
        // A task of its own (in the request's context): a client that hangs up
        // mid-checkout drops this future, and the invalidation must still follow
        // the checkout, or product pages show the old stock until their TTL.
        let inner = self.inner.clone();
        let products = self.products.clone();
        let task = context::spawn(async move {
            let result = inner.checkout(user_id, now).await;
            match &result {
                // Stock changed: product pages must show it.
                Ok(order) => {
                    for line in &order.lines {
                        forget_product(&products, line.product_id).await;
                    }
                }
                // The page that let the customer order it showed stale stock.
                Err(StoreError::OutOfStock { product_id, .. }) => {
                    forget_product(&products, *product_id).await
                }
                Err(_) => {}
            }
            result
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Database(sqlx::Error::Io(
                std::io::Error::other(format!("the checkout task failed: {e}")),
            ))),
        }
    }
    async fn orders(&self, user_id: i64) -> StoreResult<Vec<OrderSummary>> {
        self.inner.orders(user_id).await
    }
    async fn order(&self, user_id: i64, order_id: i64) -> StoreResult<Option<Order>> {
        self.inner.order(user_id, order_id).await
    }
}

#[async_trait]
impl Seeding for CachedStore {
    async fn insert_categories(
        &self,
        categories: &[(String, String)],
    ) -> StoreResult<Vec<Category>> {
        let result = self.inner.insert_categories(categories).await;
        let _ = self.listings.invalidate(&"c".to_owned()).await;
        result
    }
    async fn insert_products(&self, products: &[NewProduct], now: i64) -> StoreResult<()> {
        self.inner.insert_products(products, now).await
    }
    async fn insert_users(&self, users: &[NewUser], now: i64) -> StoreResult<()> {
        self.inner.insert_users(users, now).await
    }
    async fn analyze(&self) -> StoreResult<()> {
        self.inner.analyze().await
    }
}
