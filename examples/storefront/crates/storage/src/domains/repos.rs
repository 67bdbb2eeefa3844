//! The catalog, accounts, carts and seeding of [`DomainStore`], each on its
//! domain's database; the cart's and the order's joins across databases are
//! composed here.

use std::collections::HashMap;

use async_trait::async_trait;

use super::DomainStore;
use crate::{Accounts, Carts, Catalog, Seeding};
use crate::{
    Backend, Cart, CartLine, Category, NewProduct, NewUser, Page, Product, ProductPage, Store,
    StoreError, StoreResult, User, MAX_QUANTITY,
};

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
        let patterns = crate::like_patterns(query);
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
            .bind(crate::token_digest(token))
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
        .bind(crate::token_digest(token))
        .bind(now)
        .fetch_optional(&*reader)
        .await?)
    }
    async fn delete_session(&self, token: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token = $1")
            .bind(crate::token_digest(token))
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
    async fn analyze(&self) -> StoreResult<()> {
        for db in [&self.catalog, &self.users, &self.carts] {
            sqlx::query("ANALYZE").execute(db.primary()).await?;
        }
        Ok(())
    }
}
