//! The SQL both backends share. sqlx's generic `Database` bounds make one generic
//! implementation unreadable, so a macro writes the same `impl Store` for each
//! backend's concrete types: one text of every query, checked against both databases
//! by the same tests. A backend provides `BACKEND`, `begin_write()`, `write_pool()`
//! (the primary), `catalog_reader()` (reads that need not see the session's own
//! writes), `session_reader()` (reads that must: session, cart, orders) and
//! `wrote()` (called after each committed write). SQLite reads and writes its one
//! pool; PostgreSQL sends reads through its [`Db`](super::Db) (stage 5: to
//! replicas) and writes to the primary.

/// The columns of a [`Product`](super::Product), from `products p JOIN categories c`.
macro_rules! product_select {
    () => {
        "SELECT p.id, p.category_id, c.slug AS category_slug, c.name AS category_name, \
         p.name, p.description, p.price_cents, p.stock \
         FROM products p JOIN categories c ON c.id = p.category_id"
    };
}
pub(crate) use product_select;

macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            fn backend(&self) -> $crate::Backend {
                Self::BACKEND
            }
            async fn ping(&self) -> $crate::StoreResult<()> {
                sqlx::query("SELECT 1").execute(self.write_pool()).await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::Catalog for $store {
            async fn categories(&self) -> $crate::StoreResult<Vec<$crate::Category>> {
                let r = self.catalog_reader();
                Ok(r.check(
                    sqlx::query_as("SELECT id, slug, name FROM categories ORDER BY name")
                        .fetch_all(&*r)
                        .await,
                )?)
            }
            async fn list_products(
                &self,
                category: Option<&str>,
                page: $crate::Page,
            ) -> $crate::StoreResult<$crate::ProductPage> {
                let r = self.catalog_reader();
                let (items, total) = match category {
                    Some(slug) => {
                        let items = sqlx::query_as(concat!(
                            $crate::sql::product_select!(),
                            " WHERE c.slug = $1 ORDER BY p.id LIMIT $2 OFFSET $3"
                        ))
                        .bind(slug)
                        .bind(i64::from(page.size))
                        .bind(page.offset())
                        .fetch_all(&*r)
                        .await;
                        let items = r.check(items)?;
                        let total = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM products p JOIN categories c \
                             ON c.id = p.category_id WHERE c.slug = $1",
                        )
                        .bind(slug)
                        .fetch_one(&*r)
                        .await;
                        let total: i64 = r.check(total)?;
                        (items, total)
                    }
                    None => {
                        let items = sqlx::query_as(concat!(
                            $crate::sql::product_select!(),
                            " ORDER BY p.id LIMIT $1 OFFSET $2"
                        ))
                        .bind(i64::from(page.size))
                        .bind(page.offset())
                        .fetch_all(&*r)
                        .await;
                        let items = r.check(items)?;
                        let total = sqlx::query_scalar("SELECT COUNT(*) FROM products")
                            .fetch_one(&*r)
                            .await;
                        let total: i64 = r.check(total)?;
                        (items, total)
                    }
                };
                Ok($crate::ProductPage { items, total, page: page.number, page_size: page.size })
            }
            async fn product(&self, id: i64) -> $crate::StoreResult<Option<$crate::Product>> {
                let r = self.catalog_reader();
                Ok(r.check(
                    sqlx::query_as(concat!($crate::sql::product_select!(), " WHERE p.id = $1"))
                        .bind(id)
                        .fetch_optional(&*r)
                        .await,
                )?)
            }
            async fn search(
                &self,
                query: &str,
                page: $crate::Page,
            ) -> $crate::StoreResult<$crate::ProductPage> {
                let patterns = $crate::like_patterns(query);
                if patterns.is_empty() {
                    return Ok($crate::ProductPage {
                        items: Vec::new(),
                        total: 0,
                        page: page.number,
                        page_size: page.size,
                    });
                }
                // Only the number of clauses depends on the input; the words are bound.
                let filter = |qb: &mut sqlx::QueryBuilder<'_, $db>| {
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
                let mut qb = sqlx::QueryBuilder::<$db>::new($crate::sql::product_select!());
                filter(&mut qb);
                qb.push(" ORDER BY p.id LIMIT ");
                qb.push_bind(i64::from(page.size));
                qb.push(" OFFSET ");
                qb.push_bind(page.offset());
                let r = self.catalog_reader();
                let items = r.check(qb.build_query_as().fetch_all(&*r).await)?;
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT COUNT(*) FROM products p JOIN categories c ON c.id = p.category_id",
                );
                filter(&mut qb);
                let total: i64 = r.check(qb.build_query_scalar().fetch_one(&*r).await)?;
                Ok($crate::ProductPage { items, total, page: page.number, page_size: page.size })
            }
            async fn update_product(
                &self,
                id: i64,
                price_cents: i64,
                stock: i64,
            ) -> $crate::StoreResult<()> {
                let done = sqlx::query($crate::statements::UPDATE_PRODUCT)
                    .bind(price_cents)
                    .bind(stock)
                    .bind(id)
                    .execute(self.write_pool())
                    .await?;
                self.wrote().await;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NoSuchProduct(id));
                }
                Ok(())
            }
            async fn count_products(&self) -> $crate::StoreResult<i64> {
                let r = self.catalog_reader();
                Ok(r.check(sqlx::query_scalar("SELECT COUNT(*) FROM products").fetch_one(&*r).await)?)
            }
        }

        #[async_trait::async_trait]
        impl $crate::Accounts for $store {
            async fn create_user(
                &self,
                user: &$crate::NewUser,
                now: i64,
            ) -> $crate::StoreResult<$crate::User> {
                let row = sqlx::query_as(
                    "INSERT INTO users (email, name, password_hash, created_at) \
                     VALUES ($1, $2, $3, $4) RETURNING id, email, name",
                )
                .bind(&user.email)
                .bind(&user.name)
                .bind(&user.password_hash)
                .bind(now)
                .fetch_one(self.write_pool())
                .await;
                match row {
                    Ok(user) => {
                        self.wrote().await;
                        Ok(user)
                    }
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        Err($crate::StoreError::EmailTaken)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            async fn user_credentials(
                &self,
                email: &str,
            ) -> $crate::StoreResult<Option<($crate::User, String)>> {
                let row: Option<(i64, String, String, String)> = sqlx::query_as(
                    "SELECT id, email, name, password_hash FROM users WHERE email = $1",
                )
                .bind(email)
                // The primary: signing in must find an account made a moment ago
                // elsewhere (no session position ties the two).
                .fetch_optional(self.write_pool())
                .await?;
                Ok(row.map(|(id, email, name, hash)| ($crate::User { id, email, name }, hash)))
            }
            async fn create_session(
                &self,
                token: &str,
                user_id: i64,
                expires_at: i64,
            ) -> $crate::StoreResult<()> {
                sqlx::query("INSERT INTO sessions (token, user_id, expires_at) VALUES ($1, $2, $3)")
                    .bind($crate::token_digest(token))
                    .bind(user_id)
                    .bind(expires_at)
                    .execute(self.write_pool())
                    .await?;
                self.wrote().await;
                Ok(())
            }
            async fn session_user(
                &self,
                token: &str,
                now: i64,
            ) -> $crate::StoreResult<Option<$crate::User>> {
                let r = self.session_reader().await?;
                Ok(r.check(
                    sqlx::query_as(
                        "SELECT u.id, u.email, u.name FROM sessions s JOIN users u ON u.id = s.user_id \
                         WHERE s.token = $1 AND s.expires_at > $2",
                    )
                    .bind($crate::token_digest(token))
                    .bind(now)
                    .fetch_optional(&*r)
                    .await,
                )?)
            }
            async fn delete_session(&self, token: &str) -> $crate::StoreResult<()> {
                sqlx::query("DELETE FROM sessions WHERE token = $1")
                    .bind($crate::token_digest(token))
                    .execute(self.write_pool())
                    .await?;
                self.wrote().await;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::Carts for $store {
            async fn cart(&self, user_id: i64) -> $crate::StoreResult<$crate::Cart> {
                let r = self.session_reader().await?;
                let lines: Vec<$crate::CartLine> = r.check(
                    sqlx::query_as(
                        "SELECT ci.product_id, p.name, p.price_cents, ci.quantity, p.stock \
                         FROM cart_items ci JOIN products p ON p.id = ci.product_id \
                         WHERE ci.user_id = $1 ORDER BY ci.product_id",
                    )
                    .bind(user_id)
                    .fetch_all(&*r)
                    .await,
                )?;
                let total_cents = $crate::CartLine::total(&lines);
                Ok($crate::Cart { lines, total_cents })
            }
            async fn add_to_cart(
                &self,
                user_id: i64,
                product_id: i64,
                quantity: i64,
            ) -> $crate::StoreResult<()> {
                self.require_product(product_id).await?;
                let quantity = quantity.clamp(1, $crate::MAX_QUANTITY);
                sqlx::query(
                    "INSERT INTO cart_items (user_id, product_id, quantity) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = \
                     CASE WHEN cart_items.quantity + excluded.quantity > $4 THEN $4 \
                     ELSE cart_items.quantity + excluded.quantity END",
                )
                .bind(user_id)
                .bind(product_id)
                .bind(quantity)
                .bind($crate::MAX_QUANTITY)
                .execute(self.write_pool())
                .await?;
                self.wrote().await;
                Ok(())
            }
            async fn set_cart_quantity(
                &self,
                user_id: i64,
                product_id: i64,
                quantity: i64,
            ) -> $crate::StoreResult<()> {
                if quantity <= 0 {
                    sqlx::query("DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2")
                        .bind(user_id)
                        .bind(product_id)
                        .execute(self.write_pool())
                        .await?;
                    self.wrote().await;
                    return Ok(());
                }
                self.require_product(product_id).await?;
                sqlx::query(
                    "INSERT INTO cart_items (user_id, product_id, quantity) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = excluded.quantity",
                )
                .bind(user_id)
                .bind(product_id)
                .bind(quantity.min($crate::MAX_QUANTITY))
                .execute(self.write_pool())
                .await?;
                self.wrote().await;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::Orders for $store {
            async fn checkout(
                &self,
                user_id: i64,
                now: i64,
            ) -> $crate::StoreResult<$crate::Order> {
                let mut tx = self.begin_write().await?;
                let wanted: Vec<(i64, i64)> = sqlx::query_as($crate::statements::CART_LINES)
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?;
                if wanted.is_empty() {
                    return Err($crate::StoreError::EmptyCart);
                }
                let mut lines = Vec::with_capacity(wanted.len());
                // In product order, so concurrent checkouts lock rows in the same order.
                for (product_id, quantity) in wanted {
                    let row: Option<(String, i64)> = sqlx::query_as($crate::statements::RESERVE_STOCK)
                    .bind(quantity)
                    .bind(product_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((name, unit_price_cents)) = row else {
                        let name: Option<String> =
                            sqlx::query_scalar($crate::statements::PRODUCT_NAME)
                                .bind(product_id)
                                .fetch_optional(&mut *tx)
                                .await?;
                        return Err($crate::StoreError::OutOfStock {
                            product_id,
                            name: name.unwrap_or_default(),
                        });
                    };
                    lines.push($crate::OrderLine { product_id, name, unit_price_cents, quantity });
                }
                let total_cents = $crate::OrderLine::total(&lines);
                let id: i64 = sqlx::query_scalar($crate::statements::INSERT_ORDER)
                .bind(user_id)
                .bind(total_cents)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let mut qb = sqlx::QueryBuilder::<$db>::new($crate::statements::INSERT_ORDER_ITEMS);
                qb.push_values(&lines, |mut b, l| {
                    b.push_bind(id)
                        .push_bind(l.product_id)
                        .push_bind(l.name.clone())
                        .push_bind(l.unit_price_cents)
                        .push_bind(l.quantity);
                });
                qb.build().execute(&mut *tx).await?;
                sqlx::query($crate::statements::CLEAR_CART)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                self.wrote().await;
                Ok($crate::Order { id, total_cents, created_at: now, lines })
            }
            async fn orders(
                &self,
                user_id: i64,
            ) -> $crate::StoreResult<Vec<$crate::OrderSummary>> {
                let r = self.session_reader().await?;
                Ok(r.check(
                    sqlx::query_as(
                        "SELECT id, total_cents, created_at FROM orders WHERE user_id = $1 ORDER BY id DESC",
                    )
                    .bind(user_id)
                    .fetch_all(&*r)
                    .await,
                )?)
            }
            async fn order(
                &self,
                user_id: i64,
                order_id: i64,
            ) -> $crate::StoreResult<Option<$crate::Order>> {
                let r = self.session_reader().await?;
                let head: Option<$crate::OrderSummary> = r.check(
                    sqlx::query_as(
                        "SELECT id, total_cents, created_at FROM orders WHERE id = $1 AND user_id = $2",
                    )
                    .bind(order_id)
                    .bind(user_id)
                    .fetch_optional(&*r)
                    .await,
                )?;
                let Some(head) = head else { return Ok(None) };
                let lines = r.check(
                    sqlx::query_as(
                        "SELECT product_id, name, unit_price_cents, quantity FROM order_items \
                         WHERE order_id = $1 ORDER BY product_id",
                    )
                    .bind(order_id)
                    .fetch_all(&*r)
                    .await,
                )?;
                Ok(Some($crate::Order {
                    id: head.id,
                    total_cents: head.total_cents,
                    created_at: head.created_at,
                    lines,
                }))
            }
        }

        #[async_trait::async_trait]
        impl $crate::Seeding for $store {
            async fn insert_categories(
                &self,
                categories: &[(String, String)],
            ) -> $crate::StoreResult<Vec<$crate::Category>> {
                let mut tx = self.begin_write().await?;
                for (slug, name) in categories {
                    sqlx::query("INSERT INTO categories (slug, name) VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING")
                        .bind(slug)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                self.wrote().await;
                // From the primary: a replica may not have the new rows yet.
                Ok(sqlx::query_as("SELECT id, slug, name FROM categories ORDER BY name")
                    .fetch_all(self.write_pool())
                    .await?)
            }
            async fn insert_products(
                &self,
                products: &[$crate::NewProduct],
                now: i64,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.begin_write().await?;
                // 6 parameters a row: 1,000 rows stay under both backends' limits.
                for chunk in products.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
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
                self.wrote().await;
                Ok(())
            }
            async fn insert_users(
                &self,
                users: &[$crate::NewUser],
                now: i64,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.begin_write().await?;
                for chunk in users.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
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
                self.wrote().await;
                Ok(())
            }
            async fn analyze(&self) -> $crate::StoreResult<()> {
                sqlx::query("ANALYZE").execute(self.write_pool()).await?;
                Ok(())
            }
        }

        impl $store {
            async fn require_product(&self, id: i64) -> $crate::StoreResult<()> {
                let r = self.session_reader().await?;
                let found: Option<i64> = r.check(
                    sqlx::query_scalar("SELECT id FROM products WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&*r)
                        .await,
                )?;
                found.map(|_| ()).ok_or($crate::StoreError::NoSuchProduct(id))
            }
        }
    };
}
pub(crate) use impl_store;
