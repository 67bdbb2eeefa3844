//! The storage contract as checks over any store: tests/store.rs runs them against
//! SQLite and PostgreSQL, tests/domains.rs against the business split of stage 6.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use storefront_storage::{NewUser, Page, Store, StoreError, MAX_QUANTITY};

const P1: Page = Page {
    number: 1,
    size: 10,
};

pub async fn user(store: &dyn Store, email: &str) -> i64 {
    store
        .create_user(
            &NewUser {
                email: email.into(),
                name: "Ann".into(),
                password_hash: "x".into(),
            },
            1,
        )
        .await
        .expect("create user")
        .id
}

pub async fn catalog_lists_pages_and_categories(store: Arc<dyn Store>) {
    let ids = crate::common::catalog(store.as_ref(), 25, 3).await;
    assert_eq!(ids.len(), 25);
    let cats = store.categories().await.unwrap();
    assert_eq!(
        cats.iter().map(|c| c.slug.as_str()).collect::<Vec<_>>(),
        ["books", "toys"]
    );
    let page3 = store
        .list_products(
            None,
            Page {
                number: 3,
                size: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!((page3.total, page3.items.len(), page3.pages()), (25, 5, 3));
    assert_eq!(page3.items[0].id, ids[20]);
    let toys = store.list_products(Some("toys"), P1).await.unwrap();
    assert_eq!(toys.total, 12);
    assert!(toys
        .items
        .iter()
        .all(|p| p.category_slug == "toys" && p.category_name == "Toys"));
    let none = store.list_products(Some("nothing"), P1).await.unwrap();
    assert_eq!((none.total, none.items.len()), (0, 0));
    let p = store.product(ids[4]).await.unwrap().unwrap();
    assert_eq!(
        (p.name.as_str(), p.price_cents, p.stock),
        ("Item 5 Blue Novel", 500, 3)
    );
    assert!(store.product(999_999).await.unwrap().is_none());
    assert_eq!(store.count_products().await.unwrap(), 25);
    store.update_product(ids[4], 123, 7).await.unwrap();
    let p = store.product(ids[4]).await.unwrap().unwrap();
    assert_eq!((p.price_cents, p.stock), (123, 7));
    assert!(matches!(
        store.update_product(999_999, 1, 1).await,
        Err(StoreError::NoSuchProduct(999_999))
    ));
    store.ping().await.unwrap();
}

pub async fn search_matches_every_word_and_binds_input(store: Arc<dyn Store>) {
    crate::common::catalog(store.as_ref(), 20, 1).await;
    let kites = store.search("red KITE", P1).await.unwrap();
    assert_eq!(kites.total, 10);
    assert!(kites.items.iter().all(|p| p.name.contains("Red Kite")));
    // The category's name matches too.
    assert_eq!(store.search("books", P1).await.unwrap().total, 10);
    assert_eq!(
        store
            .search(
                "item",
                Page {
                    number: 1,
                    size: 50
                }
            )
            .await
            .unwrap()
            .total,
        20
    );
    assert_eq!(
        store.search("item 1", P1).await.unwrap().total,
        11,
        "1 and 10 to 19"
    );
    assert_eq!(store.search("item 15", P1).await.unwrap().total, 1);
    // Wildcards and quotes are matched literally, not interpreted.
    for hostile in [
        "%",
        "_",
        "' OR 1=1 --",
        "\\",
        "kite'; DROP TABLE products; --",
    ] {
        assert_eq!(
            store.search(hostile, P1).await.unwrap().total,
            0,
            "{hostile}"
        );
    }
    assert_eq!(store.search("   ", P1).await.unwrap().total, 0);
    assert_eq!(store.count_products().await.unwrap(), 20);
}

pub async fn accounts_and_sessions(store: Arc<dyn Store>) {
    let id = user(store.as_ref(), "ann@example.com").await;
    let dup = store
        .create_user(
            &NewUser {
                email: "ann@example.com".into(),
                name: "B".into(),
                password_hash: "y".into(),
            },
            1,
        )
        .await;
    assert!(matches!(dup, Err(StoreError::EmailTaken)), "{dup:?}");
    let (u, hash) = store
        .user_credentials("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u.id, hash.as_str()), (id, "x"));
    assert!(store
        .user_credentials("bob@example.com")
        .await
        .unwrap()
        .is_none());
    store.create_session("tok", id, 100).await.unwrap();
    assert_eq!(
        store.session_user("tok", 99).await.unwrap().map(|u| u.id),
        Some(id)
    );
    assert!(
        store.session_user("tok", 100).await.unwrap().is_none(),
        "expired"
    );
    assert!(store.session_user("other", 1).await.unwrap().is_none());
    store.delete_session("tok").await.unwrap();
    assert!(store.session_user("tok", 1).await.unwrap().is_none());
    store.delete_session("tok").await.unwrap();
}

pub async fn cart_adds_caps_and_removes(store: Arc<dyn Store>) {
    let ids = crate::common::catalog(store.as_ref(), 3, 5).await;
    let u = user(store.as_ref(), "c@example.com").await;
    assert!(store.cart(u).await.unwrap().lines.is_empty());
    store.add_to_cart(u, ids[1], 2).await.unwrap();
    store.add_to_cart(u, ids[0], 1).await.unwrap();
    store.add_to_cart(u, ids[1], 3).await.unwrap();
    let cart = store.cart(u).await.unwrap();
    assert_eq!(
        cart.lines
            .iter()
            .map(|l| (l.product_id, l.quantity))
            .collect::<Vec<_>>(),
        [(ids[0], 1), (ids[1], 5)]
    );
    assert_eq!(cart.total_cents, 100 + 5 * 200);
    store.add_to_cart(u, ids[1], 98).await.unwrap();
    assert_eq!(store.cart(u).await.unwrap().lines[1].quantity, MAX_QUANTITY);
    store.set_cart_quantity(u, ids[1], 4).await.unwrap();
    assert_eq!(store.cart(u).await.unwrap().lines[1].quantity, 4);
    store.set_cart_quantity(u, ids[0], 0).await.unwrap();
    assert_eq!(store.cart(u).await.unwrap().lines.len(), 1);
    assert!(matches!(
        store.add_to_cart(u, 999_999, 1).await,
        Err(StoreError::NoSuchProduct(_))
    ));
    assert!(matches!(
        store.set_cart_quantity(u, 999_999, 1).await,
        Err(StoreError::NoSuchProduct(_))
    ));
    // Carts are per user.
    let other = user(store.as_ref(), "d@example.com").await;
    assert!(store.cart(other).await.unwrap().lines.is_empty());
}

pub async fn checkout_writes_the_order_and_empties_the_cart(store: Arc<dyn Store>) {
    let ids = crate::common::catalog(store.as_ref(), 3, 5).await;
    let u = user(store.as_ref(), "o@example.com").await;
    assert!(matches!(
        store.checkout(u, 10).await,
        Err(StoreError::EmptyCart)
    ));
    store.add_to_cart(u, ids[2], 2).await.unwrap();
    store.add_to_cart(u, ids[0], 1).await.unwrap();
    let order = store.checkout(u, 10).await.unwrap();
    assert_eq!(order.total_cents, 2 * 300 + 100);
    assert_eq!(
        order
            .lines
            .iter()
            .map(|l| (l.product_id, l.quantity))
            .collect::<Vec<_>>(),
        [(ids[0], 1), (ids[2], 2)]
    );
    assert!(store.cart(u).await.unwrap().lines.is_empty());
    assert_eq!(store.product(ids[2]).await.unwrap().unwrap().stock, 3);
    assert_eq!(store.product(ids[0]).await.unwrap().unwrap().stock, 4);
    // Later price changes do not touch the order.
    store.update_product(ids[2], 1, 3).await.unwrap();
    assert_eq!(store.order(u, order.id).await.unwrap().unwrap(), order);
    let list = store.orders(u).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|o| (o.id, o.total_cents, o.created_at))
            .collect::<Vec<_>>(),
        [(order.id, 700, 10)]
    );
    // Orders are private.
    let other = user(store.as_ref(), "p@example.com").await;
    assert!(store.order(other, order.id).await.unwrap().is_none());
    assert!(store.orders(other).await.unwrap().is_empty());
}

pub async fn checkout_refuses_what_is_not_in_stock(store: Arc<dyn Store>) {
    let ids = crate::common::catalog(store.as_ref(), 2, 2).await;
    let u = user(store.as_ref(), "s@example.com").await;
    store.add_to_cart(u, ids[0], 1).await.unwrap();
    store.add_to_cart(u, ids[1], 3).await.unwrap();
    match store.checkout(u, 1).await {
        Err(StoreError::OutOfStock { product_id, name }) => {
            assert_eq!((product_id, name.as_str()), (ids[1], "Item 2 Red Kite"));
        }
        other => panic!("expected out of stock, got {other:?}"),
    }
    // Nothing changed: stock, cart and orders are as before.
    assert_eq!(store.product(ids[0]).await.unwrap().unwrap().stock, 2);
    assert_eq!(store.cart(u).await.unwrap().lines.len(), 2);
    assert!(store.orders(u).await.unwrap().is_empty());
}

pub async fn concurrent_checkouts_never_oversell(store: Arc<dyn Store>) {
    const BUYERS: usize = 24;
    const UNITS: i64 = 5;
    let ids = crate::common::catalog(store.as_ref(), 2, UNITS).await;
    store.update_product(ids[1], 200, 1_000).await.unwrap();
    let mut users = Vec::new();
    for i in 0..BUYERS {
        let u = user(store.as_ref(), &format!("buyer{i}@example.com")).await;
        // Everyone wants one of the last units; half also want a plentiful product,
        // added in the other order (the checkout locks rows in product order).
        if i % 2 == 0 {
            store.add_to_cart(u, ids[1], 1).await.unwrap();
        }
        store.add_to_cart(u, ids[0], 1).await.unwrap();
        users.push(u);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(BUYERS));
    let tasks: Vec<_> = users
        .iter()
        .map(|&u| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.checkout(u, 5).await
            })
        })
        .collect();
    let mut sold = 0;
    let mut refused = 0;
    let mut plentiful = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(order) => {
                sold += order
                    .lines
                    .iter()
                    .filter(|l| l.product_id == ids[0])
                    .count() as i64;
                plentiful += order
                    .lines
                    .iter()
                    .filter(|l| l.product_id == ids[1])
                    .count() as i64;
            }
            Err(StoreError::OutOfStock { .. }) => refused += 1,
            Err(e) => panic!("checkout failed: {e}"),
        }
    }
    assert_eq!(sold, UNITS, "exactly the units in stock are sold");
    assert_eq!(refused, BUYERS - UNITS as usize);
    assert_eq!(store.product(ids[0]).await.unwrap().unwrap().stock, 0);
    let mut ordered = 0;
    for &u in &users {
        for o in store.orders(u).await.unwrap() {
            ordered += store
                .order(u, o.id)
                .await
                .unwrap()
                .unwrap()
                .lines
                .iter()
                .filter(|l| l.product_id == ids[0])
                .count();
        }
    }
    assert_eq!(
        ordered as i64, UNITS,
        "every sold unit is in exactly one order"
    );
    assert_eq!(
        store.product(ids[1]).await.unwrap().unwrap().stock,
        1_000 - plentiful
    );
}
