//! Forged requests and the cookie policy, over HTTP without a socket (see
//! `common::web`; the same attacks in a real browser are in `browser.rs`):
//!
//! - forms without the session's token, or from another origin, refused; the
//!   login form needs the pre-session cookie, and a cookie set by a page on the
//!   same host is stopped by the `Origin` check;
//! - the API takes the session cookie only on requests another site cannot send;
//! - `Secure` cookies when the stage file or a trusted proxy says so; the
//!   `[auth]` section of a stage file.
//!
//! A test here is one scenario told top to bottom against the real parts; a few
//! run past 100 lines, kept whole so that each step and its check stay together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use storefront_stage::config::StageConfig;
use storefront_web::signin::AuthConfig;
use storefront_web::AppConfig;

mod common;

use common::web::{ip, shop, shop_with};

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
        storefront_web::csrf::token_for(session.split_once('=').unwrap().1)
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
        storefront_web::csrf::token_for("0123456789abcdef")
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
    let base = include_str!("../stages/01-single-machine/stage.toml");
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
