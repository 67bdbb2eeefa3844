//! Hostile input against every route and form of the shop, through the router
//! without a socket (`tower::ServiceExt::oneshot`), on SQLite and on PostgreSQL
//! (`SCALEKIT_PG_URL`, a schema of its own): arbitrary strings, bytes and numbers
//! in paths, query strings, forms, JSON bodies and headers.
//!
//! Every answer must be a 2xx, 3xx or 4xx within [`DEADLINE`] (a 5xx, a panic or
//! a hang fails); a refusal under `/api` is JSON and on a page it is HTML; and a
//! control character in a text field is refused with a 4xx.
//!
//! `requests()` is one table of hostile requests (over 100 lines on purpose: a
//! row per route and form, read as a list).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use storefront_storage::sharded::analytics::{
    AdminOrder, DayRevenue, OrderAnalytics, ProductSales, TopBy,
};
use storefront_storage::{NewUser, SqliteStore, Store, StoreResult};
use storefront_web::admin::{self, Admin};
use storefront_web::html::url_encode;
use storefront_web::{router, AppConfig, AppState, Passwords};
use tower::ServiceExt;

/// The longest a request may take: far above what any takes here, so only a hang
/// (or a request stuck on a lock) reaches it.
const DEADLINE: Duration = Duration::from_secs(10);
/// The admin token of the test shop.
const ADMIN_TOKEN: &str = "hostile-admin-token";
/// Random cases per backend (each sends every request of [`requests`]).
const CASES: u32 = 96;

/// Admin analytics with no orders: the admin pages' input handling is what is
/// under test here, not the scatter-gather.
struct NoOrders;

#[async_trait]
impl OrderAnalytics for NoOrders {
    async fn latest_orders(&self, _: u64, _: u64) -> StoreResult<Vec<AdminOrder>> {
        Ok(Vec::new())
    }
    async fn count_orders(&self) -> StoreResult<u64> {
        Ok(0)
    }
    async fn revenue_per_day(&self, _: i64) -> StoreResult<Vec<DayRevenue>> {
        Ok(Vec::new())
    }
    async fn top_products(&self, _: TopBy, _: u64) -> StoreResult<Vec<ProductSales>> {
        Ok(Vec::new())
    }
}

struct Shop {
    app: Router,
    store: Arc<dyn Store>,
    user_id: i64,
    /// A session of `user_id` that no request ends.
    session: String,
    /// Makes emails and tokens unique.
    counter: AtomicU64,
}

impl Shop {
    async fn new(store: Arc<dyn Store>) -> Self {
        common::catalog(store.as_ref(), 12, 1_000_000).await;
        let passwords = Passwords::fast_insecure();
        let user = store
            .create_user(
                &NewUser {
                    email: "hostile@example.com".into(),
                    name: "Hostile".into(),
                    password_hash: passwords.hash("longenough1").unwrap(),
                },
                0,
            )
            .await
            .unwrap();
        let session = "a".repeat(64);
        store
            .create_session(&session, user.id, i64::MAX / 2)
            .await
            .unwrap();
        let config = AppConfig {
            page_size: 12,
            ..AppConfig::default()
        };
        let state = AppState {
            store: store.clone(),
            passwords,
            signin: Arc::new(storefront_web::signin::SignIn::new(&config.auth)),
            config: Arc::new(config),
            ops: Arc::default(),
        };
        let admin = Admin::new(Some(ADMIN_TOKEN), Some(Arc::new(NoOrders)));
        Self {
            app: router(state).merge(admin::router(admin)),
            store,
            user_id: user.id,
            session,
            counter: AtomicU64::new(1),
        }
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh session for a request that ends its own (logout).
    async fn throwaway_session(&self) -> String {
        let token = format!("{:064x}", self.next());
        self.store
            .create_session(&token, self.user_id, i64::MAX / 2)
            .await
            .unwrap();
        token
    }
}

/// A hostile value, and how it travels.
#[derive(Clone, Debug)]
enum Hostile {
    /// Percent-encoded in URLs and forms, escaped in JSON: arrives as it is.
    Text(String),
    /// Put into URLs and forms as it is: raw percent-escapes (`%00`, `%FF`, `%`)
    /// that arrive decoded, maybe as invalid UTF-8.
    Raw(String),
    /// Bytes, each percent-encoded: arrive as they are, UTF-8 or not.
    Bytes(Vec<u8>),
}

impl Hostile {
    fn url(&self) -> String {
        match self {
            Self::Text(s) => url_encode(s),
            Self::Raw(s) => s.clone(),
            Self::Bytes(b) => b.iter().map(|b| format!("%{b:02X}")).collect(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Self::Text(s) | Self::Raw(s) => json!(s),
            Self::Bytes(b) => json!(String::from_utf8_lossy(b)),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Text(s) | Self::Raw(s) => s.as_bytes().to_vec(),
            Self::Bytes(b) => b.clone(),
        }
    }

    /// Whether it reaches a handler holding a control character.
    fn has_control(&self) -> bool {
        match self {
            Self::Text(s) => s.chars().any(char::is_control),
            Self::Raw(_) | Self::Bytes(_) => false,
        }
    }
}

/// One random case: a text, a number and a path segment, and whether the
/// requests are signed in.
#[derive(Clone, Debug)]
struct Case {
    text: Hostile,
    number: String,
    path: Hostile,
    signed_in: bool,
}

const TEXTS: &[&str] = &[
    "\0",
    "a\0b",
    "red\0",
    "%00",
    "\u{1}",
    "\t",
    "\n",
    "kite\r\nSet-Cookie: x=1",
    "x\u{7f}",
    "\u{85}",
    "\u{9b}",
    "\u{202e}evil",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "\u{2028}",
    "🦀",
    "e\u{301}",
    "İ",
    "ß",
    "' OR 1=1 --",
    "%",
    "%%",
    "\\",
    "_",
    "red kite",
    "<script>alert(1)</script>",
    "//evil.example",
    "/\\evil.example",
    "/\t/evil.example",
    "https://evil.example",
    "javascript:alert(1)",
    "../../etc/passwd",
    "a b c d e f g h",
    "ann@example.com",
    "",
    " ",
];

const RAW: &[&str] = &[
    "%00",
    "a%00b",
    "%FF",
    "%C0%80",
    "%ED%A0%80",
    "%F4%90%80%80",
    "%",
    "%G0",
    "%0",
    "%25",
    "%2F",
    "%5C",
    "%E2%80%AE",
    "%0D%0ASet-Cookie:x=1",
    "%09",
    "/%09/evil",
    "%2F%2Fevil",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "+1",
    " 1",
    "1 ",
    "01",
    "0x10",
    "1e3",
    "1e400",
    "1.5",
    "NaN",
    "inf",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "4294967295",
    "4294967296",
    "255",
    "256",
    "\u{661}\u{662}",
    "1\u{0}",
    "",
    "99",
    "100",
    "101",
    "100000",
    "100001",
    "3660",
    "3661",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        3 => prop::sample::select(TEXTS).prop_map(str::to_owned),
        2 => "[\\x00-\\x1f\\x7f-\\x9f a-z%\\\\/]{1,8}",
        1 => (prop::sample::select(TEXTS), 1usize..3_000).prop_map(|(s, n)| s.repeat(n)),
        1 => "\\PC{95,130}",
    ]
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        6 => text().prop_map(Hostile::Text),
        2 => prop::sample::select(RAW).prop_map(|s| Hostile::Raw(s.to_owned())),
        2 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Hostile::Bytes),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => (-3i64..30).prop_map(|n| n.to_string()),
        1 => any::<i128>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| f.to_string()),
        3 => prop::sample::select(NUMBERS).prop_map(str::to_owned),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        hostile(),
        number(),
        prop_oneof![number().prop_map(Hostile::Text), hostile()],
        prop::bool::weighted(0.75),
    )
        .prop_map(|(text, number, path, signed_in)| Case {
            text,
            number,
            path,
            signed_in,
        })
}

/// The number as JSON: a number when it reads as one, else a string.
fn json_number(n: &str) -> Value {
    serde_json::from_str::<Value>(n)
        .ok()
        .filter(Value::is_number)
        .unwrap_or_else(|| json!(n))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    None,
    /// The session cookie (pages).
    Cookie,
    /// `Authorization: Bearer` with the session (API).
    Bearer,
    /// `Authorization: Bearer` with the admin token.
    Admin,
}

/// One request to send.
#[derive(Debug)]
struct Req {
    method: Method,
    uri: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    auth: Auth,
    /// A session token to use instead of the shared one (logout ends it).
    session: Option<String>,
    headers: Vec<(HeaderName, Vec<u8>)>,
    /// The case's text went into a text field: a control character in it must
    /// be refused (4xx).
    takes_text: bool,
}

impl Req {
    fn new(method: Method, uri: String, auth: Auth) -> Self {
        Self {
            method,
            uri,
            content_type: None,
            body: Vec::new(),
            auth,
            session: None,
            headers: Vec::new(),
            takes_text: false,
        }
    }

    fn get(uri: String, auth: Auth) -> Self {
        Self::new(Method::GET, uri, auth)
    }

    fn form(uri: &str, body: String, auth: Auth) -> Self {
        let mut r = Self::new(Method::POST, uri.to_owned(), auth);
        r.content_type = Some("application/x-www-form-urlencoded");
        r.body = body.into_bytes();
        r
    }

    fn json(method: Method, uri: String, body: &Value, auth: Auth) -> Self {
        let mut r = Self::new(method, uri, auth);
        r.content_type = Some("application/json");
        r.body = body.to_string().into_bytes();
        r
    }

    fn text(mut self) -> Self {
        self.takes_text = true;
        self
    }

    fn header(mut self, name: HeaderName, value: Vec<u8>) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The request, or `None` when it cannot be sent over HTTP at all (a URI or
    /// header value no client can put on the wire).
    fn build(&self, shop: &Shop) -> Option<Request<Body>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.as_str());
        let session = self.session.as_deref().unwrap_or(&shop.session);
        match self.auth {
            Auth::None => {}
            Auth::Cookie => b = b.header(header::COOKIE, format!("sf_session={session}")),
            Auth::Bearer => b = b.header(header::AUTHORIZATION, format!("Bearer {session}")),
            Auth::Admin => b = b.header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}")),
        }
        if let Some(ct) = self.content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        for (name, value) in &self.headers {
            b = b.header(name, HeaderValue::from_bytes(value).ok()?);
        }
        b.body(Body::from(self.body.clone())).ok()
    }
}

/// Every route and form of the shop, with the case's values in them. (Over 100
/// lines: it is the list of the routes, one request or two each, kept in one place.)
async fn requests(shop: &Shop, c: &Case) -> Vec<Req> {
    let (v, n, p) = (c.text.url(), url_encode(&c.number), c.path.url());
    let vj = c.text.json();
    let nj = json_number(&c.number);
    let (page, api, admin) = if c.signed_in {
        (Auth::Cookie, Auth::Bearer, Auth::Admin)
    } else {
        (Auth::None, Auth::None, Auth::None)
    };
    let k = shop.next();
    let mut logout = Req::new(Method::POST, "/logout".into(), page);
    logout.session = Some(shop.throwaway_session().await);
    let mut api_logout = Req::new(Method::POST, "/api/logout".into(), api);
    api_logout.session = Some(shop.throwaway_session().await);
    let mut raw_json = Req::new(Method::POST, "/api/cart/items".into(), api);
    raw_json.content_type = Some("application/json");
    raw_json.body = c.text.bytes();
    let mut raw_form = Req::new(Method::POST, "/cart/add".into(), page);
    raw_form.content_type = Some("application/x-www-form-urlencoded");
    raw_form.body = c.text.bytes();
    let methods = [Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS];
    let odd = methods[usize::try_from(k).unwrap_or(0) % methods.len()].clone();
    vec![
        // Pages.
        Req::get(format!("/?category={v}&page={n}"), page).text(),
        Req::get(format!("/search?q={v}&page={n}"), page).text(),
        Req::get(format!("/products/{p}"), page),
        Req::get(format!("/products/{p}/image.svg"), page),
        Req::get(format!("/login?next={v}"), page),
        Req::get(format!("/orders/{p}?placed={n}"), page),
        Req::get(format!("/{v}"), page),
        Req::get("/cart".into(), Auth::None).header(
            header::COOKIE,
            [
                b"sf_session=".as_slice(),
                &c.text.bytes(),
                b"; sk_wal=",
                &c.text.bytes(),
            ]
            .concat(),
        ),
        Req::form(
            "/signup",
            format!("name={v}&email=h{k}%40example.com&password=longenough1"),
            Auth::None,
        )
        .text(),
        Req::form(
            "/signup",
            format!("name=Ann&email={v}&password={v}"),
            Auth::None,
        )
        .text(),
        Req::form(
            "/login",
            format!("email={v}&password={v}&next={v}"),
            Auth::None,
        )
        .text(),
        Req::form(
            "/login",
            format!("email=hostile%40example.com&password=longenough1&next={v}"),
            Auth::None,
        ),
        Req::form("/cart/add", format!("product_id={p}&quantity={n}"), page),
        Req::form("/cart/update", format!("product_id={p}&quantity={n}"), page),
        Req::form("/cart/add", format!("product_id={n}&quantity=1"), page),
        Req::new(Method::POST, "/checkout".into(), page),
        logout,
        raw_form,
        Req::json(
            Method::POST,
            "/login".into(),
            &json!({"email": vj}),
            Auth::None,
        ),
        Req::new(odd.clone(), format!("/products/{p}"), page),
        Req::new(Method::DELETE, "/cart".into(), page),
        // The API.
        Req::get(
            format!("/api/products?category={v}&page={n}&per_page={n}"),
            api,
        )
        .text(),
        Req::get(format!("/api/search?q={v}&page={n}&per_page={n}"), api).text(),
        Req::get(format!("/api/products/{p}"), api),
        Req::get(format!("/api/orders/{p}"), api),
        Req::get(format!("/api/{v}"), api),
        Req::json(
            Method::POST,
            "/api/signup".into(),
            &json!({"name": vj, "email": format!("a{k}@example.com"), "password": "longenough1"}),
            Auth::None,
        )
        .text(),
        Req::json(
            Method::POST,
            "/api/signup".into(),
            &json!({"name": "Ann", "email": vj, "password": vj}),
            Auth::None,
        )
        .text(),
        Req::json(
            Method::POST,
            "/api/login".into(),
            &json!({"email": vj, "password": vj}),
            Auth::None,
        )
        .text(),
        Req::json(
            Method::POST,
            "/api/cart/items".into(),
            &json!({"product_id": nj, "quantity": nj}),
            api,
        ),
        Req::json(
            Method::POST,
            "/api/cart/items".into(),
            &json!({"product_id": 1, "quantity": nj}),
            api,
        ),
        Req::json(
            Method::PUT,
            format!("/api/cart/items/{p}"),
            &json!({"quantity": nj}),
            api,
        ),
        Req::new(Method::DELETE, format!("/api/cart/items/{p}"), api),
        Req::new(Method::POST, "/api/checkout".into(), api),
        api_logout,
        raw_json,
        Req::form("/api/signup", format!("name={v}"), Auth::None),
        Req::get("/api/me".into(), Auth::None).header(
            header::AUTHORIZATION,
            [b"Bearer ".as_slice(), &c.text.bytes()].concat(),
        ),
        Req::new(odd, "/api/cart".into(), api),
        Req::new(Method::GET, "/api/login".into(), api),
        Req::new(Method::PATCH, format!("/api/cart/items/{p}"), api),
        // Admin.
        Req::get(format!("/admin/orders?page={n}"), admin),
        Req::get(format!("/admin/revenue?days={n}"), admin),
        Req::get(format!("/admin/top-products?by={v}"), admin),
        Req::form("/admin/login", format!("token={v}"), Auth::None),
        Req::get("/admin/orders".into(), Auth::None).header(
            header::COOKIE,
            [b"sk_admin=".as_slice(), &c.text.bytes()].concat(),
        ),
        // Ops, probes, static files.
        Req::get(format!("/ops?{v}"), Auth::None),
        Req::get(format!("/ops/data.json?{v}"), Auth::None),
        Req::get(format!("/metrics?{v}"), Auth::None),
        Req::get(format!("/static/style.css?{v}"), Auth::None),
        Req::get("/livez".into(), Auth::None),
        Req::get("/readyz".into(), Auth::None),
    ]
}

/// Sends `req`; `Err` says what went wrong with it.
async fn check(shop: &Shop, c: &Case, req: &Req) -> Result<(), String> {
    let Some(request) = req.build(shop) else {
        return Ok(());
    };
    let answer = tokio::time::timeout(DEADLINE, shop.app.clone().oneshot(request)).await;
    let Ok(Ok(res)) = answer else {
        return Err(format!("no answer within {DEADLINE:?} to {req:?}"));
    };
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = tokio::time::timeout(DEADLINE, res.into_body().collect())
        .await
        .map_err(|_| format!("the body of {req:?} did not end within {DEADLINE:?}"))?
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let shown = || {
        let text = String::from_utf8_lossy(&body);
        text.chars().take(300).collect::<String>()
    };
    if status.is_server_error() {
        return Err(format!("{status} for {req:?}: {}", shown()));
    }
    if status.is_client_error() && req.method != Method::HEAD {
        let path = req.uri.split('?').next().unwrap_or("");
        let page = !["/ops", "/metrics", "/static/", "/livez", "/readyz"]
            .iter()
            .any(|p| path.starts_with(p));
        if path.starts_with("/api") && !content_type.starts_with("application/json") {
            return Err(format!(
                "{status} under /api without a JSON body ({content_type:?}) for {req:?}: {}",
                shown()
            ));
        }
        if page && !path.starts_with("/api") && !content_type.starts_with("text/html") {
            return Err(format!(
                "{status} on a page without an HTML body ({content_type:?}) for {req:?}: {}",
                shown()
            ));
        }
    }
    if req.takes_text && c.text.has_control() && !status.is_client_error() {
        return Err(format!(
            "{status}: a control character was not refused in {req:?}: {}",
            shown()
        ));
    }
    Ok(())
}

async fn run_case(shop: &Shop, c: &Case) -> Result<(), String> {
    for req in requests(shop, c).await {
        check(shop, c, &req).await?;
    }
    Ok(())
}

/// The values the issue reported, and their neighbours, on every route.
async fn known_cases(shop: &Shop) {
    let mut failures = Vec::new();
    let texts = TEXTS.iter().map(|t| Hostile::Text((*t).to_owned()));
    let raws = RAW.iter().map(|r| Hostile::Raw((*r).to_owned()));
    for (i, text) in texts.chain(raws).enumerate() {
        let c = Case {
            path: text.clone(),
            text,
            number: NUMBERS[i % NUMBERS.len()].to_owned(),
            signed_in: true,
        };
        if let Err(e) = run_case(shop, &c).await {
            failures.push(e);
        }
    }
    // Server errors first: they are the worst.
    failures.sort_by_key(|f| !f.starts_with('5'));
    assert!(
        failures.is_empty(),
        "{} hostile values failed; the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Random cases, shrunk to the smallest failing one.
fn random_cases(shop: &Shop, rt: &tokio::runtime::Runtime, name: &str) {
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&case(), |c| {
        rt.block_on(run_case(shop, &c)).map_err(TestCaseError::fail)
    });
    if let Err(e) = outcome {
        panic!("{name}: {e}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sqlite_answers_hostile_input_with_4xx_never_5xx() {
    let rt = runtime();
    let (shop, _dir) = rt.block_on(async {
        let (store, dir) = common::sqlite().await;
        (Shop::new(store).await, dir)
    });
    rt.block_on(known_cases(&shop));
    random_cases(&shop, &rt, "SQLite");
}

#[test]
fn postgres_answers_hostile_input_with_4xx_never_5xx() {
    let rt = runtime();
    let Some((shop, _schema)) = rt.block_on(async {
        let (store, schema) = common::postgres("hostile").await?;
        Some((Shop::new(store).await, schema))
    }) else {
        return;
    };
    rt.block_on(known_cases(&shop));
    random_cases(&shop, &rt, "PostgreSQL");
}

#[tokio::test]
async fn an_in_memory_store_takes_a_nul_search_too() {
    // The smallest reproduction of the issue, kept as its own test.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let shop = Shop::new(store).await;
    for uri in ["/search?q=%00", "/api/search?q=%00", "/search?q=red%00"] {
        let res = shop
            .app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
    }
}
