//! Stage 6's checkout saga over three databases on PostgreSQL: a double click
//! places one order, a raised line keeps the raise, a panic or a runtime shut
//! down mid-checkout gives the stock back, the saga's writes are recorded for
//! read-your-writes, and products gone from the catalog leave the cart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "common/suite.rs"]
mod suite;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use storefront_storage::prelude::*;
use storefront_storage::{
    domain_router, Db, DomainStore, Order, OrderLine, OrderRepo, OrderSummary, PgOrders,
    StoreError, StoreResult,
};

use common::domains::*;
use suite::*;

/// Db handles on the three databases of `dbs`, with fake replicas (the primary's
/// own pool) when `replicas`: then [`Db::wrote`] records positions.
async fn db_handles(dbs: &Databases, replicas: bool) -> HashMap<String, Db> {
    let mut handles = HashMap::new();
    for (domain, url) in dbs.config.urls() {
        let pool = PgPoolOptions::new()
            .max_connections(12)
            .connect_with(PgConnectOptions::from_str(url).unwrap())
            .await
            .unwrap();
        let db = if replicas {
            Db::with_replicas(
                domain,
                ("primary".into(), pool.clone()),
                vec![("replica".into(), pool)],
                std::time::Duration::from_secs(1),
            )
            .unwrap()
        } else {
            Db::single(pool)
        };
        handles.insert(domain.to_owned(), db);
    }
    handles
}

/// A [`DomainStore`] over `dbs` with orders in `repo` (given the orders database).
async fn store_with<R: OrderRepo>(
    dbs: &Databases,
    replicas: bool,
    repo: impl FnOnce(PgOrders) -> R,
) -> Arc<DomainStore> {
    let handles = db_handles(dbs, replicas).await;
    let orders = PgOrders::new(handles["orders"].clone()).await.unwrap();
    Arc::new(
        DomainStore::new(&domain_router().unwrap(), &handles, Arc::new(repo(orders)))
            .await
            .unwrap(),
    )
}

/// Orders in a [`PgOrders`], placed only once the gate opens; `entered` is told
/// when a placement waits at the gate.
#[derive(Debug)]
struct GatedOrders {
    inner: PgOrders,
    gate: Arc<tokio::sync::Semaphore>,
    entered: Arc<tokio::sync::Notify>,
}

impl GatedOrders {
    fn new(inner: PgOrders) -> Self {
        Self {
            inner,
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            entered: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

#[async_trait]
impl OrderRepo for GatedOrders {
    async fn place(&self, user_id: i64, lines: &[OrderLine], now: i64) -> StoreResult<Order> {
        self.entered.notify_one();
        let _permit = self.gate.acquire().await;
        self.inner.place(user_id, lines, now).await
    }
    async fn orders(&self, user_id: i64) -> StoreResult<Vec<OrderSummary>> {
        self.inner.orders(user_id).await
    }
    async fn order(&self, user_id: i64, order_id: i64) -> StoreResult<Option<Order>> {
        self.inner.order(user_id, order_id).await
    }
}

/// Orders whose placement panics.
#[derive(Debug)]
struct PanickingOrders;

#[async_trait]
impl OrderRepo for PanickingOrders {
    async fn place(&self, _user_id: i64, _lines: &[OrderLine], _now: i64) -> StoreResult<Order> {
        panic!("a bug in the order repository")
    }
    async fn orders(&self, _user_id: i64) -> StoreResult<Vec<OrderSummary>> {
        Ok(Vec::new())
    }
    async fn order(&self, _user_id: i64, _order_id: i64) -> StoreResult<Option<Order>> {
        Ok(None)
    }
}

/// Waits (bounded: 10 s) for `entered`.
async fn entered(notify: &tokio::sync::Notify) {
    tokio::time::timeout(std::time::Duration::from_secs(10), notify.notified())
        .await
        .expect("the checkout reaches place()");
}

/// A product's stock read on the catalog's primary.
async fn stock_of(dbs: &Databases, id: i64) -> i64 {
    let pool = dbs.pool("catalog").await;
    let stock = sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    stock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_double_click_places_one_order() {
    let Some(dbs) = Databases::new("double_click").await else {
        return;
    };
    let store = store_with(&dbs, false, |o| o).await;
    let ids = common::catalog(store.as_ref(), 2, 100).await;
    let u = user(store.as_ref(), "twice@example.com").await;
    store.add_to_cart(u, ids[0], 2).await.unwrap();
    store.add_to_cart(u, ids[1], 1).await.unwrap();
    let clicks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.checkout(u, 10 + i).await })
        })
        .collect();
    let mut placed = 0;
    for click in clicks {
        match click.await.unwrap() {
            Ok(_) => placed += 1,
            Err(StoreError::EmptyCart) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(placed, 1);
    assert_eq!(store.orders(u).await.unwrap().len(), 1);
    assert_eq!(stock_of(&dbs, ids[0]).await, 98);
    assert_eq!(stock_of(&dbs, ids[1]).await, 99);
    assert!(store.cart(u).await.unwrap().lines.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_line_raised_during_checkout_keeps_the_raise() {
    let Some(dbs) = Databases::new("raised").await else {
        return;
    };
    let gated = Arc::new(std::sync::OnceLock::new());
    let store = store_with(&dbs, false, |o| {
        let g = GatedOrders::new(o);
        let _ = gated.set((g.gate.clone(), g.entered.clone()));
        g
    })
    .await;
    let (gate, entered_place) = gated.get().cloned().unwrap();
    let ids = common::catalog(store.as_ref(), 2, 10).await;
    let u = user(store.as_ref(), "raise@example.com").await;
    store.add_to_cart(u, ids[0], 2).await.unwrap();
    let checkout = tokio::spawn({
        let store = store.clone();
        async move { store.checkout(u, 10).await }
    });
    entered(&entered_place).await;
    // One more while the order is being placed: it is not part of this order.
    let raise = tokio::spawn({
        let store = store.clone();
        let id = ids[0];
        async move { store.add_to_cart(u, id, 1).await }
    });
    // The raise is done, or waits for a lock the checkout holds, before the order
    // goes through.
    let users = dbs.pool("users").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !raise.is_finished() {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&users)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the raise neither ran nor waits"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    users.close().await;
    gate.add_permits(1);
    let order = checkout.await.unwrap().unwrap();
    raise.await.unwrap().unwrap();
    assert_eq!(order.lines.len(), 1);
    assert_eq!(order.lines[0].quantity, 2);
    let cart = store.cart(u).await.unwrap();
    assert_eq!(cart.lines.len(), 1, "{cart:?}");
    assert_eq!(cart.lines[0].quantity, 1, "{cart:?}");
    assert_eq!(stock_of(&dbs, ids[0]).await, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_place_gives_the_stock_back() {
    let Some(dbs) = Databases::new("panic").await else {
        return;
    };
    let store = store_with(&dbs, false, |_| PanickingOrders).await;
    let ids = common::catalog(store.as_ref(), 2, 5).await;
    let u = user(store.as_ref(), "panic@example.com").await;
    store.add_to_cart(u, ids[0], 3).await.unwrap();
    store.add_to_cart(u, ids[1], 1).await.unwrap();
    let before = store.cart(u).await.unwrap();
    let result = store.checkout(u, 10).await;
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("a bug in the order repository"),
        "{message}"
    );
    assert_eq!(stock_of(&dbs, ids[0]).await, 5);
    assert_eq!(stock_of(&dbs, ids[1]).await, 5);
    assert_eq!(store.cart(u).await.unwrap(), before);
}

#[test]
fn a_runtime_shutdown_mid_checkout_gives_the_stock_back() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(dbs) = rt.block_on(Databases::new("shutdown")) else {
        return;
    };
    let ids = rt.block_on(async {
        let gated = Arc::new(std::sync::OnceLock::new());
        let store = store_with(&dbs, false, |o| {
            let g = GatedOrders::new(o);
            let _ = gated.set(g.entered.clone());
            g
        })
        .await;
        let ids = common::catalog(store.as_ref(), 1, 5).await;
        let u = user(store.as_ref(), "shutdown@example.com").await;
        store.add_to_cart(u, ids[0], 4).await.unwrap();
        tokio::spawn(async move { store.checkout(u, 10).await });
        entered(gated.get().unwrap()).await;
        ids
    });
    // The gate never opens: the saga is dropped with the runtime, stock taken.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stock = stock_of(&dbs, ids[0]).await;
            if stock == 5 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "stock {stock}, not 5");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_records_its_writes_for_the_request() {
    use storefront_storage::context::{scope, RequestContext};
    let Some(dbs) = Databases::new("context").await else {
        return;
    };
    let lsn = || async {
        let pool = dbs.pool("catalog").await;
        let lsn: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0')::bigint")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        u64::try_from(lsn).unwrap()
    };
    // A checkout whose order fails still wrote (stock taken and given back).
    let handles = db_handles(&dbs, true).await;
    let failing = DomainStore::new(&domain_router().unwrap(), &handles, Arc::new(FailingOrders))
        .await
        .unwrap();
    let ids = common::catalog(&failing, 1, 5).await;
    let u = user(&failing, "ryw@example.com").await;
    failing.add_to_cart(u, ids[0], 1).await.unwrap();
    let before = lsn().await;
    let ctx = RequestContext::new(None);
    assert!(scope(ctx.clone(), failing.checkout(u, 10)).await.is_err());
    let written = ctx.written().map(|p| p.get());
    assert!(
        written.is_some_and(|w| w > before),
        "{written:?} after {before}"
    );
    // A placed order: the request's position covers the cart's last write.
    let store = store_with(&dbs, true, |o| o).await;
    let before = lsn().await;
    let ctx = RequestContext::new(None);
    scope(ctx.clone(), store.checkout(u, 11)).await.unwrap();
    let written = ctx.written().map(|p| p.get());
    assert!(
        written.is_some_and(|w| w > before),
        "{written:?} after {before}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_skips_and_removes_products_gone_from_the_catalog() {
    let Some(dbs) = Databases::new("gone").await else {
        return;
    };
    let store = store_with(&dbs, false, |o| o).await;
    let ids = common::catalog(store.as_ref(), 3, 5).await;
    let u = user(store.as_ref(), "gone@example.com").await;
    store.add_to_cart(u, ids[0], 1).await.unwrap();
    store.add_to_cart(u, ids[1], 2).await.unwrap();
    let catalog = dbs.pool("catalog").await;
    let delete = |id: i64| {
        let catalog = catalog.clone();
        async move {
            sqlx::query("DELETE FROM products WHERE id = $1")
                .bind(id)
                .execute(&catalog)
                .await
                .unwrap();
        }
    };
    delete(ids[1]).await;
    let order = store.checkout(u, 10).await.unwrap();
    assert_eq!(
        order.lines.iter().map(|l| l.product_id).collect::<Vec<_>>(),
        [ids[0]]
    );
    let users = dbs.pool("users").await;
    let lines = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM cart_items WHERE user_id = $1")
            .bind(u)
            .fetch_one(&users)
            .await
            .unwrap()
    };
    assert_eq!(lines().await, 0, "the gone line left the cart too");
    // A cart of gone products only is empty, and emptied.
    store.add_to_cart(u, ids[2], 1).await.unwrap();
    delete(ids[2]).await;
    assert!(matches!(
        store.checkout(u, 11).await,
        Err(StoreError::EmptyCart)
    ));
    assert_eq!(lines().await, 0);
    assert_eq!(stock_of(&dbs, ids[0]).await, 4);
    catalog.close().await;
    users.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_up_checkout_still_invalidates_the_product_cache() {
    let Some(config) = common::cache_config("hung_up_checkout") else {
        return;
    };
    let Some(dbs) = Databases::new("hung_up").await else {
        return;
    };
    let gated = Arc::new(std::sync::OnceLock::new());
    let store = store_with(&dbs, false, |o| {
        let g = GatedOrders::new(o);
        let _ = gated.set((g.gate.clone(), g.entered.clone()));
        g
    })
    .await;
    let (gate, entered_place) = gated.get().cloned().unwrap();
    let ids = common::catalog(store.as_ref(), 1, 5).await;
    let u = user(store.as_ref(), "hangup@example.com").await;
    store.add_to_cart(u, ids[0], 2).await.unwrap();
    let cached = storefront_cache::CachedStore::connect(store.clone(), &config)
        .await
        .unwrap();
    assert_eq!(cached.product(ids[0]).await.unwrap().unwrap().stock, 5);
    // The client hangs up while the order is being placed.
    let hung_up = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        tokio::select! {
            _ = cached.checkout(u, 10) => panic!("the gate is closed"),
            () = entered(&entered_place) => {}
        }
    })
    .await;
    assert!(hung_up.is_ok());
    gate.add_permits(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let stock = cached.product(ids[0]).await.unwrap().unwrap().stock;
        if stock == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cache still shows {stock}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
