//! The HTTP face's pages, driven without a socket (`tower::ServiceExt::oneshot`):
//! every page, validation errors, auth, cart and checkout. Forms are sent as a
//! browser sends them: with the anti-forgery token of a page loaded with the same
//! cookies (sign-in limits and forgery have their own tests in `auth.rs`).
//!
//! A test here is one scenario told top to bottom against the real parts; a few
//! run past 100 lines, kept whole so that each step and its check stay together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{header, StatusCode};

use common::shop::*;

#[tokio::test]
async fn catalog_pages_search_and_probes() {
    let s = shop().await;
    let r = s.get("/", "").await;
    assert_page(&r, StatusCode::OK, "All products");
    assert!(
        r.body.contains("Item 1 Blue Novel")
            && r.body.contains("30 products")
            && r.body.contains("page 1 of 3")
    );
    assert!(r.body.contains("href=\"/?page=2\"") && !r.body.contains("rel=\"prev\""));
    assert!(r.body.contains("href=\"/signup\""), "signed-out nav");
    let r = s.get("/?page=3", "").await;
    assert_page(&r, StatusCode::OK, "Item 30");
    assert!(r.body.contains("href=\"/?page=2\"") && !r.body.contains("rel=\"next\""));
    let r = s.get("/?category=toys", "").await;
    assert_page(&r, StatusCode::OK, "Red Kite");
    assert!(!r.body.contains("Blue Novel") && r.body.contains("15 products"));
    assert_page(
        &s.get("/?category=toys&page=2", "").await,
        StatusCode::OK,
        "category=toys&#38;page=1",
    );
    assert_page(
        &s.get("/?category=garden", "").await,
        StatusCode::NOT_FOUND,
        "no category",
    );
    assert_page(
        &s.get("/?category=Bad!", "").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "lower-case",
    );
    assert_page(
        &s.get("/?page=0", "").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "page number",
    );
    assert_page(
        &s.get("/?page=abc", "").await,
        StatusCode::BAD_REQUEST,
        "Back to the shop",
    );

    let id = s.ids[4];
    let r = s.get(&format!("/products/{id}"), "").await;
    assert_page(&r, StatusCode::OK, "Item 5 Blue Novel");
    assert!(
        r.body.contains("$5.00") && r.body.contains("3 in stock") && r.body.contains("Add to cart")
    );
    assert_page(
        &s.get("/products/999999", "").await,
        StatusCode::NOT_FOUND,
        "no product #999999",
    );
    assert_page(
        &s.get("/products/abc", "").await,
        StatusCode::BAD_REQUEST,
        "Back to the shop",
    );
    s.store.update_product(id, 500, 0).await.unwrap();
    assert_page(
        &s.get(&format!("/products/{id}"), "").await,
        StatusCode::OK,
        "Out of stock",
    );

    let r = s.get(&format!("/products/{id}/image.svg"), "").await;
    assert_eq!(
        (r.status, r.content_type()),
        (StatusCode::OK, "image/svg+xml")
    );
    assert!(
        r.body.starts_with("<svg") && r.body.contains("IB"),
        "{}",
        r.body
    );
    assert_eq!(
        s.get("/products/999999/image.svg", "").await.status,
        StatusCode::NOT_FOUND
    );

    let r = s.get("/search?q=red+kite", "").await;
    assert_page(&r, StatusCode::OK, "15 products");
    assert!(r.body.contains("Results for") && r.body.contains("value=\"red kite\""));
    assert_page(
        &s.get("/search?q=zebra", "").await,
        StatusCode::OK,
        "Nothing matches",
    );
    let r = s.get("/search?q=%3Cscript%3E", "").await;
    assert_page(&r, StatusCode::OK, "&#60;script&#62;");
    assert!(!r.body.contains("<script>"), "input is escaped");
    assert_page(&s.get("/search", "").await, StatusCode::OK, "Search");
    let long = "x".repeat(101);
    assert_page(
        &s.get(&format!("/search?q={long}"), "").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "100 characters",
    );

    let r = s.get("/static/style.css", "").await;
    assert_eq!(
        (r.status, r.content_type()),
        (StatusCode::OK, "text/css; charset=utf-8")
    );
    assert_page(
        &s.get("/nowhere", "").await,
        StatusCode::NOT_FOUND,
        "no page at /nowhere",
    );
    assert_eq!(s.get("/livez", "").await.status, StatusCode::OK);
    let r = s.get("/readyz", "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ready\n"));
}

#[tokio::test]
async fn pages_sign_up_log_in_cart_checkout_orders() {
    let s = shop().await;
    let (a, b) = (s.ids[0], s.ids[1]);
    assert_page(
        &s.get("/signup", "").await,
        StatusCode::OK,
        "Create your account",
    );
    assert_page(
        &s.get("/login?next=/cart", "").await,
        StatusCode::OK,
        "value=\"/cart\"",
    );

    // Signed out: the cart, orders and checkout send people to log in first.
    assert_eq!(s.get("/cart", "").await.location(), "/login?next=%2Fcart");
    assert_eq!(
        s.get("/orders", "").await.location(),
        "/login?next=%2Forders"
    );
    assert_eq!(
        s.form("/cart/add", &format!("product_id={a}&quantity=1"), "")
            .await
            .location(),
        format!("/login?next=%2Fproducts%2F{a}")
    );
    assert_eq!(
        s.form("/checkout", "", "").await.status,
        StatusCode::SEE_OTHER
    );

    // Sign-up: bad input shows the form again with the reason and what was typed.
    let r = s
        .form(
            "/signup",
            "name=Ann&email=not-an-email&password=longenough",
            "",
        )
        .await;
    assert_page(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "enter an email address",
    );
    assert!(r.body.contains("value=\"not-an-email\"") && r.body.contains("value=\"Ann\""));
    assert_page(
        &s.form(
            "/signup",
            "name=Ann&email=ann@example.com&password=short",
            "",
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "8 to 128",
    );
    assert_page(
        &s.form(
            "/signup",
            "name=&email=ann@example.com&password=longenough",
            "",
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "1 to 80",
    );
    assert_page(
        &s.form("/signup", "name=Ann", "").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "Back to the shop",
    );
    let r = s
        .form(
            "/signup",
            "name=Ann&email=Ann%40Example.com&password=longenough",
            "",
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/"),
        "{}",
        r.body
    );
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let cookie = r.cookie();
    assert_page(&s.get("/", &cookie).await, StatusCode::OK, "Hi, Ann");
    assert_page(
        &s.form(
            "/signup",
            "name=Bo&email=ann@example.com&password=longenough",
            "",
        )
        .await,
        StatusCode::CONFLICT,
        "exists already",
    );

    // Cart.
    assert_page(
        &s.get("/cart", &cookie).await,
        StatusCode::OK,
        "Your cart is empty",
    );
    assert_page(
        &s.form("/checkout", "", &cookie).await,
        StatusCode::CONFLICT,
        "the cart is empty",
    );
    let r = s
        .form("/cart/add", &format!("product_id={a}&quantity=2"), &cookie)
        .await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/cart"));
    s.form("/cart/add", &format!("product_id={b}&quantity=1"), &cookie)
        .await;
    let r = s.get("/cart", &cookie).await;
    assert_page(&r, StatusCode::OK, "Item 1 Blue Novel");
    assert!(
        r.body.contains("Item 2 Red Kite") && r.body.contains("$4.00"),
        "total 2*1 + 1*2"
    );
    assert_page(
        &s.form("/cart/add", &format!("product_id={a}&quantity=0"), &cookie)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "between 1 and 99",
    );
    assert_page(
        &s.form("/cart/add", "product_id=999999&quantity=1", &cookie)
            .await,
        StatusCode::NOT_FOUND,
        "no product",
    );
    assert_page(
        &s.form("/cart/add", "product_id=-3&quantity=1", &cookie)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "positive",
    );
    assert_page(
        &s.form("/cart/add", "product_id=x&quantity=1", &cookie)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "Back to the shop",
    );
    assert_page(
        &s.form(
            "/cart/update",
            &format!("product_id={a}&quantity=100"),
            &cookie,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "between 0 and 99",
    );
    s.form(
        "/cart/update",
        &format!("product_id={b}&quantity=0"),
        &cookie,
    )
    .await;
    s.form(
        "/cart/update",
        &format!("product_id={a}&quantity=5"),
        &cookie,
    )
    .await;
    let r = s.get("/cart", &cookie).await;
    assert!(
        !r.body.contains("Item 2 Red Kite") && r.body.contains("only 3 left"),
        "{}",
        r.body
    );
    assert_page(
        &s.form("/checkout", "", &cookie).await,
        StatusCode::CONFLICT,
        "not enough of",
    );
    s.form(
        "/cart/update",
        &format!("product_id={a}&quantity=3"),
        &cookie,
    )
    .await;

    // Checkout and orders.
    let r = s.form("/checkout", "", &cookie).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let order_url = r.location().to_owned();
    assert!(
        order_url.starts_with("/orders/") && order_url.ends_with("?placed=1"),
        "{order_url}"
    );
    let r = s.get(&order_url, &cookie).await;
    assert_page(&r, StatusCode::OK, "Thank you");
    assert!(r.body.contains("$3.00") && r.body.contains("Item 1 Blue Novel"));
    let order_path = order_url.trim_end_matches("?placed=1");
    assert_page(
        &s.get("/orders", &cookie).await,
        StatusCode::OK,
        &format!("href=\"{order_path}\""),
    );
    assert_page(
        &s.get("/cart", &cookie).await,
        StatusCode::OK,
        "Your cart is empty",
    );
    assert_page(
        &s.get(&format!("/products/{a}"), &cookie).await,
        StatusCode::OK,
        "Out of stock",
    );
    assert_page(
        &s.get("/orders/999999", &cookie).await,
        StatusCode::NOT_FOUND,
        "no order",
    );

    // Log out, log in again (wrong password first), another user cannot see the order.
    let r = s.form("/logout", "", &cookie).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        s.get("/cart", &cookie).await.status,
        StatusCode::SEE_OTHER,
        "the session is gone"
    );
    let r = s
        .form(
            "/login",
            "email=ann@example.com&password=wrongwrong&next=/orders",
            "",
        )
        .await;
    assert_page(&r, StatusCode::UNAUTHORIZED, "wrong email or password");
    assert_page(
        &s.form("/login", "email=nobody&password=x", "").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "email address",
    );
    let r = s
        .form(
            "/login",
            "email=ANN@example.com&password=longenough&next=/orders",
            "",
        )
        .await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/orders"));
    let r = s
        .form(
            "/login",
            "email=ann@example.com&password=longenough&next=https://evil.example",
            "",
        )
        .await;
    assert_eq!(r.location(), "/", "no open redirect");
    let other = s
        .form(
            "/signup",
            "name=Bo&email=bo@example.com&password=longenough",
            "",
        )
        .await
        .cookie();
    assert_page(
        &s.get(order_path, &other).await,
        StatusCode::NOT_FOUND,
        "no order",
    );
    assert_page(
        &s.get("/orders", &other).await,
        StatusCode::OK,
        "No orders yet",
    );
}
