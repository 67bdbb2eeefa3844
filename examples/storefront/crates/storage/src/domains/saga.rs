//! Checkout over three databases (the saga of the module docs, with its
//! compensation) and the order history.

use std::collections::HashMap;

use async_trait::async_trait;

use super::DomainStore;
use crate::Db;
use crate::Orders;
use crate::{context, Order, OrderLine, OrderSummary, StoreError, StoreResult};

impl DomainStore {
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
