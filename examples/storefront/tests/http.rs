//! The HTTP face, driven without a socket (`tower::ServiceExt::oneshot`): every page
//! and API route, validation errors, auth, cart and checkout. Forms are sent as a
//! browser sends them: with the anti-forgery token of a page loaded with the same
//! cookies (sign-in limits and forgery have their own tests in `auth.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use storefront::app::{router, AppConfig, AppState, Passwords};
use storefront::store::{SqliteStore, Store};
use tower::ServiceExt;

struct Shop {
    app: Router,
    store: Arc<dyn Store>,
    ids: Vec<i64>,
}

async fn shop() -> Shop {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let ids = common::catalog(store.as_ref(), 30, 3).await;
    let mut state = AppState::new(
        store.clone(),
        AppConfig {
            page_size: 12,
            ..AppConfig::default()
        },
    );
    state.passwords = Passwords::fast_insecure();
    Shop {
        app: router(state),
        store,
        ids,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The session cookie this reply sets, as a `Cookie` header value.
    fn cookie(&self) -> String {
        self.set_cookie("sf_session")
    }

    /// Cookie `name` as this reply sets it (`name=value`), or "".
    fn set_cookie(&self, name: &str) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|pair| pair.split_once('=').is_some_and(|(n, _)| n == name))
            .unwrap_or("")
            .to_owned()
    }

    /// The API error code.
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl Shop {
    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str, cookie: &str) -> Reply {
        let mut req = Request::get(uri);
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// `POST uri` with a form, as a browser sends it: with the token of a page
    /// (the login page) loaded with `cookie`, and any pre-session cookie it set.
    async fn form(&self, uri: &str, body: &str, cookie: &str) -> Reply {
        let page = self.get("/login", cookie).await;
        let token = form_token(&page.body);
        let pre = page.set_cookie("sf_csrf");
        let cookie = [cookie, pre.as_str()]
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let body = match body {
            "" => format!("csrf={token}"),
            body => format!("{body}&csrf={token}"),
        };
        self.raw_form(uri, &body, &cookie).await
    }

    /// `POST uri` with the form `body` as given.
    async fn raw_form(&self, uri: &str, body: &str, cookie: &str) -> Reply {
        let mut req =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        self.send(req.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    async fn api(&self, method: Method, uri: &str, body: Option<Value>, token: &str) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if !token.is_empty() {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    /// Signs up through the API and returns the token.
    async fn api_user(&self, email: &str) -> String {
        let r = self
            .api(
                Method::POST,
                "/api/signup",
                Some(json!({"name": "Ann", "email": email, "password": "hunter2hunter2"})),
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.json()["token"].as_str().unwrap().to_owned()
    }
}

/// The value of a page's first `csrf` form field.
fn form_token(page: &str) -> String {
    let start = page
        .find("name=\"csrf\" value=\"")
        .map(|i| i + "name=\"csrf\" value=\"".len())
        .unwrap_or_else(|| panic!("no csrf field in {page}"));
    page[start..].split('"').next().unwrap_or("").to_owned()
}

fn assert_page(r: &Reply, status: StatusCode, contains: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(
        r.content_type().starts_with("text/html"),
        "{}",
        r.content_type()
    );
    assert!(
        r.body.contains(contains),
        "page lacks {contains:?}: {}",
        r.body
    );
}

fn assert_api_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(
        r.content_type().starts_with("application/json"),
        "{}",
        r.content_type()
    );
    assert_eq!(r.code(), code, "{}", r.body);
    assert!(!r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .is_empty());
}

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
