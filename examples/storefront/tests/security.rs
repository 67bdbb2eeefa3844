//! The shop's defences, through the router without a socket: security headers on
//! every kind of answer, the ops routes behind the token, JSON 404 and 405 under
//! `/api`, extractor rejections in each face's format, `next` after login kept on
//! this site, and database refusals of data answered as 4xx.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use storefront_ops::{Ops, OpsAccess};
use storefront_stage::config::StageConfig;
use storefront_storage::{NewUser, SqliteStore, Store, StoreError};
use storefront_web::admin::{self, Admin};
use storefront_web::{router, AppConfig, AppError, AppState, Passwords};
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `req` with a pre-session anti-forgery cookie and its token as the form's first
/// field, so that it passes the forgery check and reaches the route (see
/// `storefront_web::csrf`).
fn with_form_token(req: axum::http::request::Builder, body: &str) -> Request<Body> {
    let seed = "b".repeat(64);
    let token = storefront_web::csrf::token_for(&seed);
    let body = if body.is_empty() || !body.contains('=') {
        format!("csrf={token}")
    } else {
        format!("csrf={token}&{body}")
    };
    req.header(header::COOKIE, format!("sf_csrf={seed}"))
        .body(Body::from(body))
        .unwrap()
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn get_with(app: &Router, uri: &str, authorization: &str) -> Reply {
    let req = Request::get(uri)
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

/// A shop over an in-memory SQLite with a few products and one account
/// (ann@example.com, "longenough1"), recording into `ops`, with the admin pages
/// (off: no analytics).
async fn shop(ops: Arc<Ops>) -> Router {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    common::catalog(store.as_ref(), 5, 10).await;
    let passwords = Passwords::fast_insecure();
    store
        .create_user(
            &NewUser {
                email: "ann@example.com".into(),
                name: "Ann".into(),
                password_hash: passwords.hash("longenough1").unwrap(),
            },
            0,
        )
        .await
        .unwrap();
    let config = AppConfig::default();
    let state = AppState {
        store,
        passwords,
        signin: Arc::new(storefront_web::signin::SignIn::new(&config.auth)),
        config: Arc::new(config),
        ops,
    };
    router(state).merge(admin::router(Admin::new(None, None)))
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = shop(Arc::default()).await;
    let put = Request::put("/cart").body(Body::empty()).unwrap();
    let mut answers = vec![
        ("a page", get(&app, "/").await),
        ("an API answer", get(&app, "/api/categories").await),
        ("a 404 page", get(&app, "/nowhere").await),
        ("an API 404", get(&app, "/api/nowhere").await),
        ("a static file", get(&app, "/static/style.css").await),
        ("an image", get(&app, "/products/1/image.svg").await),
        ("an ops page", get(&app, "/ops").await),
        ("the ops script", get(&app, "/ops/ops.js").await),
        ("metrics", get(&app, "/metrics").await),
        ("an admin page", get(&app, "/admin/orders").await),
        ("a validation error", get(&app, "/search?q=%00").await),
    ];
    answers.push(("a 405", send(&app, put).await));
    for (what, r) in &answers {
        let csp = r.header(header::CONTENT_SECURITY_POLICY);
        assert!(
            csp.contains("default-src 'self'")
                && csp.contains("script-src 'self'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe-inline"),
            "{what}: CSP {csp:?}"
        );
        assert_eq!(r.header(header::X_FRAME_OPTIONS), "DENY", "{what}");
        assert_eq!(
            r.header(header::X_CONTENT_TYPE_OPTIONS),
            "nosniff",
            "{what}"
        );
        assert_eq!(
            r.header(header::REFERRER_POLICY),
            "strict-origin-when-cross-origin",
            "{what}"
        );
    }
    // The CSP runs no inline script: the ops page loads its script from a file.
    let (_, ops_page) = &answers[6];
    assert!(ops_page.body.contains("<script src=\"/ops/ops.js\""));
    assert!(!ops_page.body.contains("<script>"), "no inline script");
    let (_, script) = &answers[7];
    assert!(script
        .header(header::CONTENT_TYPE)
        .starts_with("text/javascript"));
    assert!(script.body.contains("fetch(\"/ops/data.json\""));
}

#[tokio::test]
async fn ops_routes_need_the_token_when_the_stage_says_so() {
    let ops = Arc::new(Ops::default());
    let app = shop(ops.clone()).await;
    let routes = ["/ops", "/ops/ops.js", "/ops/data.json", "/metrics"];
    // Open (stage 1): anyone.
    for route in routes {
        assert_eq!(get(&app, route).await.status, StatusCode::OK, "{route}");
    }
    ops.set_access(OpsAccess::token("t0k3n-for-ops"));
    for route in routes {
        let r = get(&app, route).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{route} without a token"
        );
        assert!(
            r.header(header::WWW_AUTHENTICATE).starts_with("Basic "),
            "a browser asks for it"
        );
        for wrong in [
            "Bearer t0k3n",
            "Bearer t0k3n-for-ops!",
            "Basic dDBrM24tZm9yLW9wcw==",
        ] {
            assert_eq!(
                get_with(&app, route, wrong).await.status,
                StatusCode::UNAUTHORIZED,
                "{route} with {wrong}"
            );
        }
        assert_eq!(
            get_with(&app, route, "Bearer t0k3n-for-ops").await.status,
            StatusCode::OK,
            "{route} with the token"
        );
        // "ops:t0k3n-for-ops": what a browser sends after its prompt.
        assert_eq!(
            get_with(&app, route, "Basic b3BzOnQwazNuLWZvci1vcHM=")
                .await
                .status,
            StatusCode::OK,
            "{route} with Basic"
        );
    }
    // The shop itself is not affected.
    assert_eq!(get(&app, "/").await.status, StatusCode::OK);
    ops.set_access(OpsAccess::Closed {
        env: "SCALEKIT_ADMIN_TOKEN".into(),
    });
    let r = get_with(&app, "/ops/data.json", "Bearer t0k3n-for-ops").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("SCALEKIT_ADMIN_TOKEN"), "{}", r.body);
}

fn stage_with_ops(ops: &str) -> Result<StageConfig, String> {
    let text = format!(
        r#"
[stage]
number = 2
name = "test"
title = "Test"
adds = "test"
needs = "test"

[server]
addr = "127.0.0.1:0"

[database]
backend = "sqlite"
file = ":memory:"

{ops}
"#
    );
    StageConfig::parse("test.toml", &text).map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_stage_file_chooses_the_ops_access() {
    // Stage 1 stays open (one process on loopback); the others ask for the token.
    for stage in StageConfig::all_builtin().unwrap() {
        let ops = stage
            .ops
            .clone()
            .expect("every stage file says who reads /ops");
        if stage.stage.number == 1 {
            assert_eq!(ops.access, storefront_ops::access::AccessMode::Open);
        } else {
            assert_eq!(
                (ops.access, ops.token_env.as_deref()),
                (
                    storefront_ops::access::AccessMode::Token,
                    Some("SCALEKIT_ADMIN_TOKEN")
                ),
                "stage {}",
                stage.stage.number
            );
        }
    }
    let err = stage_with_ops("[ops]\naccess = \"token\"\n").unwrap_err();
    assert!(err.contains("ops.token_env"), "{err}");
    let err = stage_with_ops("[ops]\naccess = \"sometimes\"\n").unwrap_err();
    assert!(err.contains("sometimes") || err.contains("access"), "{err}");

    // A variable nobody sets: closed, not open.
    let closed = stage_with_ops(
        "[ops]\naccess = \"token\"\ntoken_env = \"SF_TEST_OPS_TOKEN_NEVER_SET_7f3a\"\n",
    )
    .unwrap();
    let app = shop(Arc::new(storefront_stage::compose::ops_for(&closed))).await;
    assert_eq!(
        get(&app, "/ops/data.json").await.status,
        StatusCode::FORBIDDEN
    );
    // A variable that is set (PATH, which every process has): its value is the
    // token. (Tests cannot set a variable of their own safely: other tests run
    // in the same process.)
    let Some(path) = std::env::var("PATH")
        .ok()
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_graphic()))
    else {
        eprintln!("skipped the token-from-environment half: PATH is unusual here");
        return;
    };
    let set = stage_with_ops("[ops]\naccess = \"token\"\ntoken_env = \"PATH\"\n").unwrap();
    let app = shop(Arc::new(storefront_stage::compose::ops_for(&set))).await;
    assert_eq!(
        get(&app, "/ops/data.json").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_with(&app, "/ops/data.json", &format!("Bearer {path}"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_api_answers_404_and_405_in_json() {
    let app = shop(Arc::default()).await;
    for (method, uri) in [
        (Method::PATCH, "/api/cart"),
        (Method::GET, "/api/login"),
        (Method::DELETE, "/api/products"),
        (Method::POST, "/api/orders/1"),
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let r = send(&app, req).await;
        assert_eq!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}: {}",
            r.body
        );
        assert!(r
            .header(header::CONTENT_TYPE)
            .starts_with("application/json"));
        let body = r.json();
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(uri),
            "{body}"
        );
        assert!(!r.header(header::ALLOW).is_empty(), "{method} {uri}: Allow");
    }
    for uri in ["/api/nowhere", "/api/products/1/more", "/api/", "/api"] {
        let r = get(&app, uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(r.json()["error"]["code"], "not_found", "{uri}");
    }
    // A page answers a wrong method with a page: without an anti-forgery token the
    // forgery check refuses it first (403), with one the router says 405.
    let r = send(&app, Request::delete("/cart").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = send(&app, with_form_token(Request::delete("/cart"), "")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.body);
    assert!(r.header(header::CONTENT_TYPE).starts_with("text/html"));
    assert!(r.body.contains("does not take DELETE"), "{}", r.body);
}

#[tokio::test]
async fn rejected_input_is_a_4xx_in_the_face_s_format() {
    let app = shop(Arc::default()).await;
    let post = |uri: &str, content_type: &str, body: &str| {
        Request::post(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    for (req, status) in [
        (post("/api/login", "application/json", "{not json"), 400),
        (post("/api/login", "text/plain", "{}"), 415),
        (
            post("/api/login", "application/json", "{\"email\": 5}"),
            422,
        ),
        (
            post(
                "/api/login",
                "application/json",
                "{\"email\": \"a\\u0000@b.c\", \"password\": \"x\"}",
            ),
            422,
        ),
    ] {
        let r = send(&app, req).await;
        assert_eq!(r.status.as_u16(), status, "{}", r.body);
        assert!(r.json()["error"]["code"].is_string());
    }
    let form = |uri: &str, content_type: &str, body: &str| {
        with_form_token(
            Request::post(uri).header(header::CONTENT_TYPE, content_type),
            body,
        )
    };
    for (r, status) in [
        (
            send(&app, form("/login", "application/json", "{}")).await,
            415,
        ),
        (
            send(
                &app,
                form(
                    "/cart/add",
                    "application/x-www-form-urlencoded",
                    "product_id=x",
                ),
            )
            .await,
            422,
        ),
        (get(&app, "/search?page=-1").await, 400),
        (get(&app, "/search?q=red%00kite").await, 422),
        (get(&app, "/search?q=%0A").await, 422),
        (get(&app, "/products/99999999999999999999").await, 400),
        (get(&app, "/products/%FF").await, 400),
    ] {
        assert_eq!(r.status.as_u16(), status, "{}", r.body);
        assert!(
            r.header(header::CONTENT_TYPE).starts_with("text/html"),
            "{}",
            r.body
        );
    }
    let r = get(&app, "/api/search?q=%00").await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("q"))
    );
}

#[tokio::test]
async fn next_after_login_stays_on_this_site() {
    let app = shop(Arc::default()).await;
    for (next, expected) in [
        ("%2Forders%2F12", "/orders/12"),
        ("%2F%2Fevil.example", "/"),
        ("%2F%5Cevil.example", "/"),
        ("%2F%09%2Fevil.example", "/"),
        ("%2F%2509%2Fevil.example", "/"),
        ("%2F%252F%252Fevil.example", "/"),
        ("%2F%255Cevil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
        ("javascript%3Aalert(1)", "/"),
        ("%09%2F", "/"),
        ("%2Forders%0D%0ASet-Cookie%3A%20x%3D1", "/"),
        ("%2Forders%0A", "/"),
        ("%EF%BC%8F%EF%BC%8Fevil.example", "/"),
        ("%2F%E2%88%95evil.example", "/"),
        ("", "/"),
    ] {
        // The form carries it on...
        let r = get(&app, &format!("/login?next={next}")).await;
        assert_eq!(r.status, StatusCode::OK, "{next}");
        let shown = format!("name=\"next\" value=\"{expected}\"");
        assert!(r.body.contains(&shown), "{next}: no {shown} in the form");
        // ...and signing in goes there.
        let req = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "email=ann%40example.com&password=longenough1&next={next}"
            )))
            .unwrap();
        let r = send(&app, req).await;
        assert!(!r.status.is_server_error(), "{next}: {}", r.status);
        if r.status.is_redirection() {
            assert_eq!(r.header(header::LOCATION), expected, "{next}");
        }
    }
}

#[tokio::test]
async fn a_value_postgres_refuses_is_a_422_not_a_500() {
    let Ok(url) = std::env::var("SCALEKIT_PG_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "SCALEKIT_PG_URL must be set under CI"
        );
        eprintln!("skipped: SCALEKIT_PG_URL is not set (it needs a PostgreSQL server)");
        return;
    };
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    // Were a NUL to get past the checks: PostgreSQL refuses it (SQLSTATE 22021).
    let refused = sqlx::query("SELECT $1::text")
        .bind("red\0kite")
        .execute(&mut conn)
        .await
        .unwrap_err();
    let e = AppError::from(StoreError::Database(refused));
    assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let out_of_range = sqlx::query("SELECT ($1::int8 * 1000000000000)::int8")
        .bind(i64::MAX / 2)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        AppError::from(StoreError::Database(out_of_range)).status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Anything else is still the server's fault.
    let broken = sqlx::query("SELECT * FROM no_such_table_here")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        AppError::from(StoreError::Database(broken)).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

/// A gateway whose instances protect their ops routes reads their figures with
/// the token (its own recorder's), and guards its own ops routes the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reads_its_instances_figures_with_the_token() {
    use storefront_gateway::Gateway;
    use storefront_stage::config::GatewayConfig;
    use storefront_storage::MeteredStore;

    const TOKEN: &str = "gateway-and-instances-share-this";
    let (store, _dir) = common::sqlite().await;
    let ids = common::catalog(store.as_ref(), 3, 10).await;
    let instance_ops = Arc::new(Ops::default());
    instance_ops.set_access(OpsAccess::token(TOKEN));
    let state = AppState::new(
        MeteredStore::wrap(store.clone(), instance_ops.db_query_counter()),
        AppConfig::default(),
    )
    .with_ops(instance_ops.clone());
    let instance = router(state);
    for id in &ids {
        let r = get(&instance, &format!("/api/products/{id}")).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let queries = instance_ops.snapshot().totals.db_queries;
    assert!(queries >= 3, "{queries}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(async move { axum::serve(listener, instance).await });

    let gw = Gateway::new(&GatewayConfig::default(), &[addr]).unwrap();
    let ops = Arc::new(Ops::default());
    ops.set_access(OpsAccess::token(TOKEN));
    let poller = gw.attach_ops(ops.clone());
    // The poller reads every second: wait (bounded) for the instance's queries.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ops.snapshot().totals.db_queries < queries {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never read the instance's {queries} queries"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let app = gw.router();
    assert_eq!(
        get(&app, "/ops/data.json").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = get_with(&app, "/ops/data.json", &format!("Bearer {TOKEN}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::X_FRAME_OPTIONS), "DENY");
    poller.abort();
    served.abort();
}
