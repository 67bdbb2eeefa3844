//! Signing in under attack, over HTTP without a socket (see `common::web`):
//!
//! - wrong logins: 429 with `Retry-After` per account and address, per account,
//!   per address; other accounts and addresses unaffected; a trusted proxy's
//!   forwarded address counted, an untrusted one ignored;
//! - password hashing in the pool, never more at once than its size, one hash a
//!   login whether the account exists or not;
//! - NFC and NFD spellings of an email are one account; common and personal
//!   passwords refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::json;
use storefront_web::signin::{AuthConfig, HashPool, Limits, SignIn};
use storefront_web::{router, AppConfig};

mod common;

use common::web::{ip, shop, shop_with};

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
