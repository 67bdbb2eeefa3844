//! [`MeteredStore`]: counts the calls that reach the database.

use std::sync::Arc;

use async_trait::async_trait;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{
    Accounts, Backend, Cart, Carts, Catalog, Category, NewProduct, NewUser, Order, OrderSummary,
    Orders, Page, Product, ProductPage, Seeding, Store, StoreResult, User,
};

/// A [`Store`] that counts every call passed to the store it wraps (one call is one
/// database round trip or transaction) in a counter (the ops recorder's). Put it right above
/// the database and below the caches, so that a cache hit counts no query:
/// `store::open` → `MeteredStore` → `CachedStore`.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    queries: Arc<AtomicU64>,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl MeteredStore {
    /// Counts `inner`'s calls in `queries` (one relaxed increment a call).
    pub fn new(inner: Arc<dyn Store>, queries: Arc<AtomicU64>) -> Self {
        Self { inner, queries }
    }

    /// [`MeteredStore::new`], ready to use as an `Arc<dyn Store>`.
    pub fn wrap(inner: Arc<dyn Store>, queries: Arc<AtomicU64>) -> Arc<dyn Store> {
        Arc::new(Self::new(inner, queries))
    }

    fn count(&self) -> &dyn Store {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.inner.as_ref()
    }
}

#[async_trait]
impl Store for MeteredStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.count().ping().await
    }
    fn degraded(&self) -> Option<String> {
        self.inner.degraded()
    }
}

#[async_trait]
impl Catalog for MeteredStore {
    async fn categories(&self) -> StoreResult<Vec<Category>> {
        self.count().categories().await
    }
    async fn list_products(&self, category: Option<&str>, page: Page) -> StoreResult<ProductPage> {
        self.count().list_products(category, page).await
    }
    async fn product(&self, id: i64) -> StoreResult<Option<Product>> {
        self.count().product(id).await
    }
    async fn search(&self, query: &str, page: Page) -> StoreResult<ProductPage> {
        self.count().search(query, page).await
    }
    async fn update_product(&self, id: i64, price_cents: i64, stock: i64) -> StoreResult<()> {
        self.count().update_product(id, price_cents, stock).await
    }
    async fn count_products(&self) -> StoreResult<i64> {
        self.count().count_products().await
    }
}

#[async_trait]
impl Accounts for MeteredStore {
    async fn create_user(&self, user: &NewUser, now: i64) -> StoreResult<User> {
        self.count().create_user(user, now).await
    }
    async fn user_credentials(&self, email: &str) -> StoreResult<Option<(User, String)>> {
        self.count().user_credentials(email).await
    }
    async fn create_session(&self, token: &str, user_id: i64, expires_at: i64) -> StoreResult<()> {
        self.count()
            .create_session(token, user_id, expires_at)
            .await
    }
    async fn session_user(&self, token: &str, now: i64) -> StoreResult<Option<User>> {
        self.count().session_user(token, now).await
    }
    async fn delete_session(&self, token: &str) -> StoreResult<()> {
        self.count().delete_session(token).await
    }
}

#[async_trait]
impl Carts for MeteredStore {
    async fn cart(&self, user_id: i64) -> StoreResult<Cart> {
        self.count().cart(user_id).await
    }
    async fn add_to_cart(&self, user_id: i64, product_id: i64, quantity: i64) -> StoreResult<()> {
        self.count()
            .add_to_cart(user_id, product_id, quantity)
            .await
    }
    async fn set_cart_quantity(
        &self,
        user_id: i64,
        product_id: i64,
        quantity: i64,
    ) -> StoreResult<()> {
        self.count()
            .set_cart_quantity(user_id, product_id, quantity)
            .await
    }
}

#[async_trait]
impl Orders for MeteredStore {
    async fn checkout(&self, user_id: i64, now: i64) -> StoreResult<Order> {
        self.count().checkout(user_id, now).await
    }
    async fn orders(&self, user_id: i64) -> StoreResult<Vec<OrderSummary>> {
        self.count().orders(user_id).await
    }
    async fn order(&self, user_id: i64, order_id: i64) -> StoreResult<Option<Order>> {
        self.count().order(user_id, order_id).await
    }
}

#[async_trait]
impl Seeding for MeteredStore {
    async fn insert_categories(
        &self,
        categories: &[(String, String)],
    ) -> StoreResult<Vec<Category>> {
        self.count().insert_categories(categories).await
    }
    async fn insert_products(&self, products: &[NewProduct], now: i64) -> StoreResult<()> {
        self.count().insert_products(products, now).await
    }
    async fn insert_users(&self, users: &[NewUser], now: i64) -> StoreResult<()> {
        self.count().insert_users(users, now).await
    }
    async fn analyze(&self) -> StoreResult<()> {
        self.count().analyze().await
    }
}
