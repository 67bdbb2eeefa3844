//! Stage 3 against a real Redis (`SCALEKIT_REDIS_URL`): two instances over one
//! database, each with its own L1 and the shared Redis L2. Skipped without the
//! variable; under `CI` a missing server fails. Each test uses its own namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use storefront::cache::CachedStore;
use storefront::store::{NewUser, Page, Store};

const P1: Page = Page {
    number: 1,
    size: 10,
};

/// Polls `condition` every 10 ms for up to 5 s.
async fn eventually<F: Future<Output = bool>>(mut condition: impl FnMut() -> F) -> bool {
    for _ in 0..500 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Two instances (A and B) over one SQLite database and one Redis namespace.
async fn instances(
    test: &str,
) -> Option<(
    Arc<CachedStore>,
    Arc<CachedStore>,
    Arc<dyn Store>,
    Vec<i64>,
    tempfile::TempDir,
)> {
    let config = common::cache_config(test)?;
    let (db, dir) = common::sqlite().await;
    let ids = common::catalog(db.as_ref(), 4, 3).await;
    let a = Arc::new(
        CachedStore::connect(db.clone(), &config)
            .await
            .expect("instance A"),
    );
    let b = Arc::new(
        CachedStore::connect(db.clone(), &config)
            .await
            .expect("instance B"),
    );
    assert!(
        a.subscribed() && b.subscribed(),
        "invalidation subscriptions"
    );
    Some((a, b, db, ids, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_updates_invalidate_across_instances() {
    let Some((a, b, _db, ids, _dir)) = instances("update").await else {
        return;
    };
    let id = ids[0];
    assert_eq!(a.product(id).await.unwrap().unwrap().price_cents, 100);
    assert_eq!(b.product(id).await.unwrap().unwrap().price_cents, 100);
    let before = b.stats().products;
    assert_eq!(b.product(id).await.unwrap().unwrap().price_cents, 100);
    assert_eq!(
        b.stats().products.l1.hits,
        before.l1.hits + 1,
        "B serves the product from its L1"
    );

    a.update_product(id, 999, 7).await.unwrap();
    let p = a.product(id).await.unwrap().unwrap();
    assert_eq!(
        (p.price_cents, p.stock),
        (999, 7),
        "A sees its own change at once"
    );
    assert!(
        eventually(|| async { b.product(id).await.unwrap().unwrap().price_cents == 999 }).await,
        "B's L1 was invalidated through Redis"
    );
    assert!(b.stats().products.invalidations_received >= 1);
    // A missing product is not cached.
    assert!(a.product(999_999).await.unwrap().is_none());
    assert!(a.product(999_999).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_and_search_are_served_from_the_caches() {
    let Some((a, b, db, ids, _dir)) = instances("listings").await else {
        return;
    };
    let first = a.list_products(None, P1).await.unwrap();
    assert_eq!(first.total, 4);
    let hits = a.stats().listings.l1.hits;
    assert_eq!(a.list_products(None, P1).await.unwrap(), first);
    assert_eq!(a.stats().listings.l1.hits, hits + 1);
    // B finds A's listing in Redis (L2), not in the database.
    let l2 = b.stats().listings.l2_hits;
    assert_eq!(b.list_products(None, P1).await.unwrap(), first);
    assert_eq!(b.stats().listings.l2_hits, l2 + 1);

    let kites = a.search("  Red   KITE ", P1).await.unwrap();
    assert_eq!(kites.total, 2);
    let hits = a.stats().listings.l1.hits;
    assert_eq!(
        a.search("red kite", P1).await.unwrap(),
        kites,
        "one entry for the same words"
    );
    assert_eq!(a.stats().listings.l1.hits, hits + 1);
    assert_eq!(a.categories().await.unwrap().len(), 2);
    assert_eq!(a.categories().await.unwrap().len(), 2);

    // Listings expire rather than follow each product: a change made behind the
    // caches' back shows on the product page after invalidation, on listings after
    // their TTL.
    db.update_product(ids[0], 5, 3).await.unwrap();
    assert_eq!(
        a.list_products(None, P1).await.unwrap().items[0].price_cents,
        100
    );
    assert_eq!(
        db.list_products(None, P1).await.unwrap().items[0].price_cents,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_in_one_instance_refreshes_stock_in_the_other() {
    let Some((a, b, _db, ids, _dir)) = instances("checkout").await else {
        return;
    };
    let id = ids[1];
    assert_eq!(a.product(id).await.unwrap().unwrap().stock, 3);
    let user = b
        .create_user(
            &NewUser {
                email: "c@example.com".into(),
                name: "C".into(),
                password_hash: "x".into(),
            },
            1,
        )
        .await
        .unwrap();
    b.add_to_cart(user.id, id, 2).await.unwrap();
    b.checkout(user.id, 2).await.unwrap();
    assert!(
        eventually(|| async { a.product(id).await.unwrap().unwrap().stock == 1 }).await,
        "A's cached stock was invalidated"
    );
}
