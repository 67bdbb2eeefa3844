//! The HTTP face's JSON API (`/api`), driven without a socket: every route,
//! validation errors, accounts, cart, checkout and orders (the pages are in
//! `http_pages.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};

use common::shop::*;

#[tokio::test]
async fn api_catalog_and_validation() {
    let s = shop().await;
    let r = s.api(Method::GET, "/api/categories", None, "").await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(2));
    let r = s
        .api(Method::GET, "/api/products?per_page=5&page=2", None, "")
        .await;
    let v = r.json();
    assert_eq!(
        (
            v["total"].as_i64(),
            v["page"].as_i64(),
            v["items"].as_array().map(Vec::len)
        ),
        (Some(30), Some(2), Some(5))
    );
    assert_eq!(v["items"][0]["id"].as_i64(), Some(s.ids[5]));
    let v = s
        .api(Method::GET, "/api/products?category=books", None, "")
        .await
        .json();
    assert_eq!(v["total"].as_i64(), Some(15));
    assert_api_error(
        &s.api(Method::GET, "/api/products?category=garden", None, "")
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_api_error(
        &s.api(Method::GET, "/api/products?per_page=0", None, "")
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_api_error(
        &s.api(Method::GET, "/api/products?per_page=101", None, "")
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let r = s.api(Method::GET, "/api/products?page=0", None, "").await;
    assert_api_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert_eq!(r.json()["error"]["field"], "page");
    assert_api_error(
        &s.api(Method::GET, "/api/products?page=-1", None, "").await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );
    let v = s
        .api(
            Method::GET,
            &format!("/api/products/{}", s.ids[2]),
            None,
            "",
        )
        .await
        .json();
    assert_eq!(
        (v["name"].as_str(), v["price_cents"].as_i64()),
        (Some("Item 3 Blue Novel"), Some(300))
    );
    assert_api_error(
        &s.api(Method::GET, "/api/products/999999", None, "").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_api_error(
        &s.api(Method::GET, "/api/products/x", None, "").await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );
    let v = s
        .api(Method::GET, "/api/search?q=kite&per_page=100", None, "")
        .await
        .json();
    assert_eq!(v["total"].as_i64(), Some(15));
    assert_api_error(
        &s.api(Method::GET, "/api/search", None, "").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_api_error(
        &s.api(Method::GET, "/api/nothing", None, "").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn api_accounts_cart_checkout_orders() {
    let s = shop().await;
    let (a, b) = (s.ids[0], s.ids[1]);
    // Sign-up validation.
    let signup = |body: Value| s.api(Method::POST, "/api/signup", Some(body), "");
    let r = signup(json!({"name": "Ann", "email": "nope", "password": "longenough"})).await;
    assert_api_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert_eq!(r.json()["error"]["field"], "email");
    let r = signup(json!({"name": "Ann", "email": "a@example.com", "password": "short"})).await;
    assert_eq!(r.json()["error"]["field"], "password");
    assert_api_error(
        &signup(json!({"name": "Ann"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "malformed_request",
    );
    let raw = Request::post("/api/signup")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{oops"))
        .unwrap();
    assert_api_error(
        &s.send(raw).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );
    let raw = Request::post("/api/signup")
        .body(Body::from("name=Ann"))
        .unwrap();
    assert_api_error(
        &s.send(raw).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "malformed_request",
    );
    let token = s.api_user("ann@example.com").await;
    assert_api_error(
        &signup(json!({"name": "A", "email": "ANN@example.com", "password": "longenough"})).await,
        StatusCode::CONFLICT,
        "email_taken",
    );

    // Auth.
    assert_api_error(
        &s.api(Method::GET, "/api/me", None, "").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_api_error(
        &s.api(Method::GET, "/api/me", None, "forged").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_api_error(
        &s.api(Method::GET, "/api/cart", None, &"0".repeat(64)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(
        s.api(Method::GET, "/api/me", None, &token).await.json()["email"],
        "ann@example.com"
    );
    let login = |body: Value| s.api(Method::POST, "/api/login", Some(body), "");
    assert_api_error(
        &login(json!({"email": "ann@example.com", "password": "wrongwrong"})).await,
        StatusCode::UNAUTHORIZED,
        "bad_credentials",
    );
    assert_api_error(
        &login(json!({"email": "bob@example.com", "password": "hunter2hunter2"})).await,
        StatusCode::UNAUTHORIZED,
        "bad_credentials",
    );
    let r = login(json!({"email": "ann@example.com", "password": "hunter2hunter2"})).await;
    assert_eq!(r.status, StatusCode::OK);
    let token2 = r.json()["token"].as_str().unwrap().to_owned();
    assert_ne!(token, token2);

    // Cart.
    let cart = |method, uri: String, body| {
        let token = token.clone();
        let s = &s;
        async move { s.api(method, &uri, body, &token).await }
    };
    assert_api_error(
        &cart(Method::POST, "/api/checkout".into(), None).await,
        StatusCode::CONFLICT,
        "empty_cart",
    );
    let v = cart(
        Method::POST,
        "/api/cart/items".into(),
        Some(json!({"product_id": a, "quantity": 2})),
    )
    .await
    .json();
    assert_eq!(v["total_cents"].as_i64(), Some(200));
    let v = cart(
        Method::POST,
        "/api/cart/items".into(),
        Some(json!({"product_id": b})),
    )
    .await
    .json();
    assert_eq!(
        (
            v["lines"].as_array().map(Vec::len),
            v["total_cents"].as_i64()
        ),
        (Some(2), Some(400))
    );
    assert_api_error(
        &cart(
            Method::POST,
            "/api/cart/items".into(),
            Some(json!({"product_id": a, "quantity": 0})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_api_error(
        &cart(
            Method::POST,
            "/api/cart/items".into(),
            Some(json!({"product_id": 999_999})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_api_error(
        &cart(
            Method::POST,
            "/api/cart/items".into(),
            Some(json!({"product_id": "one"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "malformed_request",
    );
    assert_api_error(
        &s.api(
            Method::POST,
            "/api/cart/items",
            Some(json!({"product_id": a})),
            "",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let v = cart(
        Method::PUT,
        format!("/api/cart/items/{a}"),
        Some(json!({"quantity": 3})),
    )
    .await
    .json();
    assert_eq!(v["lines"][0]["quantity"].as_i64(), Some(3));
    assert_api_error(
        &cart(
            Method::PUT,
            format!("/api/cart/items/{a}"),
            Some(json!({"quantity": 100})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_api_error(
        &cart(
            Method::PUT,
            "/api/cart/items/0".into(),
            Some(json!({"quantity": 1})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let v = cart(Method::DELETE, format!("/api/cart/items/{b}"), None)
        .await
        .json();
    assert_eq!(v["lines"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        s.api(Method::GET, "/api/cart", None, &token2).await.json()["total_cents"].as_i64(),
        Some(300),
        "one cart per user, any session"
    );

    // Checkout: too many, then right.
    cart(
        Method::PUT,
        format!("/api/cart/items/{a}"),
        Some(json!({"quantity": 4})),
    )
    .await;
    assert_api_error(
        &cart(Method::POST, "/api/checkout".into(), None).await,
        StatusCode::CONFLICT,
        "out_of_stock",
    );
    cart(
        Method::PUT,
        format!("/api/cart/items/{a}"),
        Some(json!({"quantity": 3})),
    )
    .await;
    let r = cart(Method::POST, "/api/checkout".into(), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let order = r.json();
    assert_eq!(
        (
            order["total_cents"].as_i64(),
            order["lines"][0]["quantity"].as_i64()
        ),
        (Some(300), Some(3))
    );
    let id = order["id"].as_i64().unwrap();
    assert_eq!(s.store.product(a).await.unwrap().unwrap().stock, 0);
    let list = cart(Method::GET, "/api/orders".into(), None).await.json();
    assert_eq!(list[0]["id"].as_i64(), Some(id));
    assert_eq!(
        cart(Method::GET, format!("/api/orders/{id}"), None)
            .await
            .json(),
        order
    );
    let other = s.api_user("bo@example.com").await;
    assert_api_error(
        &s.api(Method::GET, &format!("/api/orders/{id}"), None, &other)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_api_error(
        &s.api(Method::GET, "/api/orders", None, "").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // Logout ends that session only.
    assert_eq!(
        s.api(Method::POST, "/api/logout", None, &token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_api_error(
        &s.api(Method::GET, "/api/me", None, &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(
        s.api(Method::GET, "/api/me", None, &token2).await.status,
        StatusCode::OK
    );
    assert_api_error(
        &s.api(Method::POST, "/api/logout", None, &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}
