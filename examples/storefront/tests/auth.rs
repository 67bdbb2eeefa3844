//! Signing in under attack, and forged requests, over HTTP without a socket
//! (`oneshot`): the client's address is set on each request as the server sets
//! it (`ConnectInfo`).
//!
//! - wrong logins: 429 with `Retry-After` per account and address, per account,
//!   per address; other accounts and addresses unaffected;
//! - password hashing in the pool, never more at once than its size, one hash a
//!   login whether the account exists or not;
//! - NFC and NFD spellings of an email are one account; common and personal
//!   passwords refused;
//! - forms without the session's token, or from another origin, refused; the API
//!   takes the session cookie only on requests another site cannot send;
//! - `Secure` cookies when the stage file or a trusted proxy says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use storefront::app::signin::{AuthConfig, HashPool, Limits, SignIn};
use storefront::app::{router, AppConfig, AppState, Passwords};
use storefront::config::StageConfig;
use storefront::store::{SqliteStore, Store};
use tower::ServiceExt;

mod common;

struct Shop {
    app: Router,
    state: AppState,
    product: i64,
}

async fn shop_with(config: AppConfig) -> Shop {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let ids = common::catalog(store.as_ref(), 4, 5).await;
    let mut state = AppState::new(store, config);
    state.passwords = Passwords::fast_insecure();
    Shop {
        app: router(state.clone()),
        state,
        product: ids[0],
    }
}

async fn shop() -> Shop {
    shop_with(AppConfig::default()).await
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

    fn retry_after(&self) -> Option<u64> {
        self.headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// `name=value` of the cookie this reply sets, or "".
    fn set_cookie(&self, name: &str) -> String {
        self.set_cookie_line(name)
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned()
    }

    /// The whole `Set-Cookie` line for cookie `name`, or "".
    fn set_cookie_line(&self, name: &str) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.split_once('=').is_some_and(|(n, _)| n == name))
            .unwrap_or("")
            .to_owned()
    }

    fn token(&self) -> String {
        let key = "name=\"csrf\" value=\"";
        let start = self
            .body
            .find(key)
            .unwrap_or_else(|| panic!("no csrf field in {}", self.body))
            + key.len();
        self.body[start..].split('"').next().unwrap().to_owned()
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

impl Shop {
    async fn send(&self, from: IpAddr, mut req: Request<Body>) -> Reply {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(from, 40_000)));
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

    async fn get(&self, from: IpAddr, uri: &str, cookie: &str) -> Reply {
        let mut req = Request::get(uri);
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        self.send(from, req.body(Body::empty()).unwrap()).await
    }

    async fn post_form(
        &self,
        from: IpAddr,
        uri: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(from, req.body(Body::from(body.to_owned())).unwrap())
            .await
    }

    /// A form as a browser sends it after loading the login page with `cookie`.
    async fn form(&self, from: IpAddr, uri: &str, body: &str, cookie: &str) -> Reply {
        let page = self.get(from, "/login", cookie).await;
        let pre = page.set_cookie("sf_csrf");
        let cookie = [cookie, pre.as_str()]
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let body = format!("{body}&csrf={}", page.token());
        self.post_form(from, uri, &body, &[("cookie", &cookie)])
            .await
    }

    async fn api(&self, from: IpAddr, uri: &str, body: Value) -> Reply {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(from, req).await
    }

    async fn sign_up(&self, email: &str) {
        let r = self
            .api(
                ip(200),
                "/api/signup",
                json!({"name": "Ann", "email": email, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    async fn log_in(&self, from: IpAddr, email: &str, password: &str) -> Reply {
        self.form(
            from,
            "/login",
            &format!(
                "email={}&password={}",
                email.replace('@', "%40"),
                password.replace(' ', "+")
            ),
            "",
        )
        .await
    }
}

#[tokio::test]
async fn wrong_logins_are_limited_per_account_and_address_with_retry_after() {
    let s = shop().await;
    s.sign_up("ann@example.com").await;
    let (guesser, owner) = (ip(1), ip(2));
    for i in 0..5 {
        let r = s
            .log_in(guesser, "ann@example.com", &format!("guess number {i}"))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "guess {i}: {}", r.body);
    }
    // The sixth: refused before the password is looked at, page and API alike.
    let r = s.log_in(guesser, "ann@example.com", "guess number 6").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.retry_after(), Some(60));
    assert!(
        r.body.contains("too many failed sign-ins for this account"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("name=\"email\""),
        "the form again: {}",
        r.body
    );
    let r = s
        .api(
            guesser,
            "/api/login",
            json!({"email": "ann@example.com", "password": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.retry_after(), Some(60));
    assert_eq!(r.json()["error"]["code"], "too_many_attempts");
    // Even the right password, from the guesser's address.
    let r = s
        .log_in(guesser, "ann@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    // The owner, from an address of their own, signs in; the guesser can still
    // sign in to another account.
    let r = s
        .log_in(owner, "ann@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(!r.set_cookie("sf_session").is_empty());
    s.sign_up("bob@example.com").await;
    let r = s
        .log_in(guesser, "bob@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

#[tokio::test]
async fn many_addresses_guessing_one_account_lock_it_and_unknown_emails_alike() {
    let s = shop().await;
    s.sign_up("ann@example.com").await;
    for email in ["ann@example.com", "nobody@example.com"] {
        for i in 0..20 {
            let r = s
                .api(
                    ip(10 + i),
                    "/api/login",
                    json!({"email": email, "password": "a wrong guess"}),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{email} from .{}: {}",
                10 + i,
                r.body
            );
        }
        let r = s
            .api(
                ip(99),
                "/api/login",
                json!({"email": email, "password": "a wrong guess"}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{email}: {}",
            r.body
        );
        assert_eq!(r.retry_after(), Some(60));
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this account"));
    }
}

#[tokio::test]
async fn one_address_is_limited_over_all_accounts_and_other_addresses_are_not() {
    let s = shop().await;
    s.sign_up("ann@example.com").await;
    let sprayer = ip(7);
    for i in 0..30 {
        let r = s
            .api(
                sprayer,
                "/api/login",
                json!({"email": format!("user{i}@example.com"), "password": "spring2024!"}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "attempt {i}: {}",
            r.body
        );
    }
    let r = s
        .api(
            sprayer,
            "/api/login",
            json!({"email": "ann@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.retry_after(), Some(4));
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("from your address"));
    // Signing up counts too.
    let r = s
        .api(
            sprayer,
            "/api/signup",
            json!({"name": "Eve", "email": "eve@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = s
        .log_in(sprayer, "ann@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "the page too");
    assert_eq!(r.retry_after(), Some(4));
    let r = s
        .api(
            ip(8),
            "/api/login",
            json!({"email": "ann@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_counted() {
    let trusted = shop_with(AppConfig {
        trust_forwarded: true,
        ..AppConfig::default()
    })
    .await;
    let direct = shop().await;
    let proxy = ip(250);
    // 31 clients behind one proxy, one attempt each (each on an account of its
    // own). What the client wrote first in X-Forwarded-For is not trusted: the
    // last hop, which the proxy appended, is.
    let login = |i: u8| {
        Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-forwarded-for", format!("203.0.113.77, 198.51.100.{i}"))
            .body(Body::from(
                json!({"email": format!("u{i}@example.com"), "password": "wrong guess"})
                    .to_string(),
            ))
            .unwrap()
    };
    for i in 0..31u8 {
        let r = trusted.send(proxy, login(i)).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "trusted, client {i}: {}",
            r.body
        );
    }
    // Without a trusted proxy the header is ignored: one peer, 30 attempts.
    for i in 0..31u8 {
        let r = direct.send(proxy, login(i)).await;
        let expected = if i < 30 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(r.status, expected, "direct, attempt {i}: {}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_run_in_the_pool_never_more_at_once_than_its_size() {
    let mut s = shop().await;
    let config = AuthConfig::default();
    s.state.signin = Arc::new(SignIn {
        limits: Limits::new(&config),
        pool: HashPool::new(NonZeroU32::new(2).unwrap(), 64),
    });
    s.app = router(s.state.clone());
    s.sign_up("ann@example.com").await;
    let before = s.state.signin.pool.stats();
    assert_eq!(before.completed, 1, "the sign-up's hash");

    // 40 logins at once, from 40 addresses, half of them for unknown emails,
    // while customers load a product page.
    let s = Arc::new(s);
    let mut logins = Vec::new();
    for i in 0..40u8 {
        let s = s.clone();
        logins.push(tokio::spawn(async move {
            let email = if i % 2 == 0 {
                "ann@example.com".to_owned()
            } else {
                format!("ghost{i}@example.com")
            };
            s.api(
                IpAddr::from([10, 0, 0, i]),
                "/api/login",
                json!({"email": email, "password": format!("wrong guess {i}")}),
            )
            .await
            .status
        }));
    }
    for _ in 0..20 {
        let r = s
            .get(ip(100), &format!("/products/{}", s.product), "")
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let mut statuses = Vec::new();
    for l in logins {
        statuses.push(l.await.unwrap());
    }
    // The account locks after 20 failures; every login is answered, none by a 5xx.
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let after = s.state.signin.pool.stats();
    assert!(
        after.peak <= 2,
        "at most the pool's size at once: {after:?}"
    );
    assert!(after.peak >= 1 && after.running == 0, "{after:?}");
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count() as u64;
    assert_eq!(
        after.completed - before.completed,
        unauthorized,
        "one hash per checked login: {after:?}"
    );
    assert_eq!(after.rejected, 0);
}

#[tokio::test]
async fn an_unknown_email_costs_one_hash_like_a_known_one() {
    let s = shop().await;
    s.sign_up("ann@example.com").await;
    let hashes = || s.state.signin.pool.stats().completed;
    let start = hashes();
    let known = s.log_in(ip(1), "ann@example.com", "not her password").await;
    assert_eq!(known.status, StatusCode::UNAUTHORIZED);
    assert_eq!(hashes(), start + 1);
    let unknown = s
        .log_in(ip(1), "nobody@example.com", "not her password")
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        hashes(),
        start + 2,
        "the unknown email was checked against the dummy hash"
    );
    for r in [&known, &unknown] {
        assert!(r.body.contains("wrong email or password"), "{}", r.body);
    }
}

#[tokio::test]
async fn nfc_and_nfd_spellings_of_an_email_are_one_account() {
    let s = shop().await;
    let nfc = "Ren\u{e9}@example.com";
    let nfd = "rene\u{301}@EXAMPLE.com";
    let r = s
        .api(
            ip(1),
            "/api/signup",
            json!({"name": "René", "email": nfc, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.json()["user"]["id"].as_i64();
    let r = s
        .api(
            ip(1),
            "/api/login",
            json!({"email": nfd, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["user"]["id"].as_i64(), id);
    let r = s.log_in(ip(1), nfd, "correct horse battery").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the page too: {}", r.body);
    let r = s
        .api(
            ip(1),
            "/api/signup",
            json!({"name": "Other", "email": nfd, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "one account: {}", r.body);
}

#[tokio::test]
async fn common_and_personal_passwords_are_refused() {
    let s = shop().await;
    for password in ["password1", "Iloveyou", "12345678", "qwertyuiop"] {
        let r = s
            .api(
                ip(1),
                "/api/signup",
                json!({"name": "Ann", "email": "ann@example.com", "password": password}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{password}: {}",
            r.body
        );
        assert_eq!(r.json()["error"]["field"], "password");
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("most common"));
    }
    for password in ["Annabelle@Example.com", "annabelle", "Annabelle Lee"] {
        let r = s
            .api(ip(1), "/api/signup", json!({"name": "Annabelle Lee", "email": "annabelle@example.com", "password": password}))
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{password}: {}",
            r.body
        );
    }
    let r = s
        .form(
            ip(1),
            "/signup",
            "name=Ann&email=ann%40example.com&password=Sunshine",
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("most common"), "{}", r.body);
    assert!(
        r.body.contains("value=\"ann@example.com\""),
        "the form again: {}",
        r.body
    );
}

#[tokio::test]
async fn forms_need_the_sessions_token_and_the_shops_origin() {
    let s = shop().await;
    s.sign_up("ann@example.com").await;
    let r = s
        .log_in(ip(1), "ann@example.com", "correct horse battery")
        .await;
    let session = r.set_cookie("sf_session");
    let page = s
        .get(ip(1), &format!("/products/{}", s.product), &session)
        .await;
    let token = page.token();
    assert_eq!(
        token,
        storefront::app::csrf::token_for(session.split_once('=').unwrap().1)
    );
    assert!(
        page.set_cookie("sf_csrf").is_empty(),
        "signed in: no pre-session cookie"
    );
    let add = format!("product_id={}&quantity=1", s.product);
    let other = format!(
        "{}{}",
        if token.starts_with('0') { '1' } else { '0' },
        &token[1..]
    );
    let cart_lines = || async {
        let cart = s.get(ip(1), "/cart", &session).await;
        cart.body.matches("name=\"product_id\"").count() / 2
    };

    for (body, headers, why) in [
        (add.clone(), vec![("cookie", session.as_str())], "no token"),
        (
            format!("{add}&csrf={other}"),
            vec![("cookie", session.as_str())],
            "another token",
        ),
        (
            format!("{add}&csrf={token}"),
            vec![
                ("cookie", session.as_str()),
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:9999"),
            ],
            "another port",
        ),
        (
            format!("{add}&csrf={token}"),
            vec![
                ("cookie", session.as_str()),
                ("host", "127.0.0.1:8080"),
                ("referer", "http://localhost:8080/x"),
            ],
            "another site",
        ),
    ] {
        let r = s.post_form(ip(1), "/cart/add", &body, &headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{why}: {}", r.body);
        assert!(
            r.body.contains("This form was refused") && r.body.contains("reload the page"),
            "{why}: {}",
            r.body
        );
    }
    assert_eq!(cart_lines().await, 0);
    let r = s
        .post_form(
            ip(1),
            "/cart/add",
            &format!("{add}&csrf={token}"),
            &[
                ("cookie", &session),
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(cart_lines().await, 1);
    // The old session's token dies with it at logout.
    let r = s
        .post_form(
            ip(1),
            "/logout",
            &format!("csrf={token}"),
            &[("cookie", &session)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let again = s
        .log_in(ip(1), "ann@example.com", "correct horse battery")
        .await;
    let new_session = again.set_cookie("sf_session");
    let r = s
        .post_form(
            ip(1),
            "/checkout",
            &format!("csrf={token}"),
            &[("cookie", &new_session)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

#[tokio::test]
async fn login_forms_use_a_pre_session_cookie_and_the_origin_stops_a_tossed_one() {
    let s = shop().await;
    s.sign_up("ann@example.com").await;
    let page = s.get(ip(1), "/login", "").await;
    let pre = page.set_cookie_line("sf_csrf");
    assert!(
        pre.contains("HttpOnly") && pre.contains("SameSite=Lax") && !pre.contains("Secure"),
        "{pre}"
    );
    assert!(
        s.get(ip(1), "/", "").await.set_cookie("sf_csrf").is_empty(),
        "no form, no cookie"
    );
    let body = "email=ann%40example.com&password=correct+horse+battery";
    let r = s.post_form(ip(1), "/login", body, &[]).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "login CSRF needs the pre-session cookie: {}",
        r.body
    );
    assert!(r.set_cookie("sf_session").is_empty());

    // A page on the same host sets the cookie to a value it knows and sends the
    // matching token: its Origin gives it away.
    let tossed = "sf_csrf=0123456789abcdef";
    let forged = format!(
        "{body}&csrf={}",
        storefront::app::csrf::token_for("0123456789abcdef")
    );
    let r = s
        .post_form(
            ip(1),
            "/login",
            &forged,
            &[
                ("cookie", tossed),
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8081"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body.contains("sent from another site") && r.body.contains("127.0.0.1:8081"),
        "{}",
        r.body
    );
    let r = s
        .post_form(ip(1), "/login", &forged, &[("cookie", tossed)])
        .await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "the token is the cookie's: {}",
        r.body
    );
}

#[tokio::test]
async fn the_api_takes_the_cookie_only_on_requests_other_sites_cannot_send() {
    let s = shop().await;
    s.sign_up("ann@example.com").await;
    let r = s
        .log_in(ip(1), "ann@example.com", "correct horse battery")
        .await;
    let session = r.set_cookie("sf_session");
    let bearer = s
        .api(
            ip(1),
            "/api/login",
            json!({"email": "ann@example.com", "password": "correct horse battery"}),
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let checkout = |headers: Vec<(&'static str, String)>| {
        let mut req = Request::post("/api/checkout");
        for (name, value) in headers {
            req = req.header(name, value);
        }
        s.send(ip(1), req.body(Body::empty()).unwrap())
    };
    for (headers, why) in [
        (vec![("cookie", session.clone())], "a simple request"),
        (
            vec![
                ("cookie", session.clone()),
                ("content-type", "text/plain".into()),
            ],
            "text/plain",
        ),
        (
            vec![
                ("cookie", session.clone()),
                ("content-type", "application/json".into()),
                ("host", "shop.test".into()),
                ("origin", "http://evil.test".into()),
            ],
            "another origin",
        ),
    ] {
        let r = checkout(headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{why}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "forbidden", "{why}");
    }
    // Allowed: the empty cart answers 409.
    for headers in [
        vec![
            ("cookie", session.clone()),
            ("x-requested-with", "fetch".into()),
        ],
        vec![
            ("cookie", session.clone()),
            ("content-type", "application/json".into()),
        ],
        vec![
            ("authorization", format!("Bearer {bearer}")),
            ("content-type", "text/plain".into()),
        ],
    ] {
        let r = checkout(headers.clone()).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{headers:?}: {}", r.body);
    }
}

#[tokio::test]
async fn cookies_are_secure_when_the_stage_or_a_trusted_proxy_says_so() {
    let secure_config = |secure_cookies, trust_forwarded| AppConfig {
        auth: AuthConfig {
            secure_cookies,
            ..AuthConfig::default()
        },
        trust_forwarded,
        ..AppConfig::default()
    };
    for (config, proto, secure) in [
        (secure_config(false, false), None, false),
        (secure_config(true, false), None, true),
        (secure_config(false, true), Some("https"), true),
        (secure_config(false, true), Some("http"), false),
        (secure_config(false, false), Some("https"), false),
    ] {
        let s = shop_with(config).await;
        s.sign_up("ann@example.com").await;
        let mut req = Request::get("/login");
        if let Some(p) = proto {
            req = req.header("x-forwarded-proto", p);
        }
        let page = s.send(ip(1), req.body(Body::empty()).unwrap()).await;
        let pre = page.set_cookie_line("sf_csrf");
        let body = format!(
            "email=ann%40example.com&password=correct+horse+battery&csrf={}",
            page.token()
        );
        let mut headers = vec![("cookie", page.set_cookie("sf_csrf"))];
        if let Some(p) = proto {
            headers.push(("x-forwarded-proto", p.to_owned()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let login = s.post_form(ip(1), "/login", &body, &headers).await;
        let session = login.set_cookie_line("sf_session");
        assert!(
            session.contains("HttpOnly") && session.contains("SameSite=Lax"),
            "{session}"
        );
        for line in [&pre, &session] {
            assert_eq!(line.ends_with("; Secure"), secure, "{proto:?}: {line}");
        }
    }
}

#[test]
fn the_auth_section_of_a_stage_file() {
    let base = include_str!("../stages/01-single-machine.toml");
    let config = StageConfig::parse("stage.toml", base).unwrap();
    assert_eq!(config.auth, AuthConfig::default());
    assert!(!config.auth.secure_cookies);
    let text = format!("{base}\n[auth]\nsecure_cookies = true\nfailures_per_account = 50\n");
    let config = StageConfig::parse("stage.toml", &text).unwrap();
    assert!(config.auth.secure_cookies);
    assert_eq!(config.auth.failures_per_account.get(), 50);
    assert_eq!(
        config.auth.attempts_per_address.get(),
        30,
        "the rest keep their defaults"
    );
    for (bad, says) in [
        ("attempts_per_address = 0", "nonzero"),
        ("secure_cookie = true", "secure_cookie"),
    ] {
        let err =
            StageConfig::parse("stage.toml", &format!("{base}\n[auth]\n{bad}\n")).unwrap_err();
        assert!(err.to_string().contains(says), "{bad}: {err}");
    }
}
