//! Forged requests, and the shop's cookie policy. [`middleware`] runs around
//! every page and API route.
//!
//! **Forms** (every `POST` to a page): the body must carry the field `csrf` with
//! the token of the browser's cookie, and the request's `Origin` (or, without
//! one, its `Referer`) must be the shop's own (`Host`), when the browser sends it.
//! The token is the hex SHA-256 of a fixed prefix and a cookie's value: the
//! session cookie's once signed in (a synchronizer token tied to the session,
//! which changes at every login), else the pre-session cookie `sf_csrf` (a random
//! value set, `HttpOnly`, with the first page that shows a form: so the login and
//! sign-up forms are covered too, which stops a page elsewhere from signing a
//! visitor in as someone else). Another site can neither read the cookie nor the
//! page, so it cannot send the token. A page on the same host (another port: the
//! same site, and cookies do not keep ports apart) can set `sf_csrf` to a value it
//! knows; the `Origin` check stops that. A refused form is a 403 page that says
//! to reload the page.
//!
//! Templates put the token in with `{{ crate::csrf::token() }}`: the
//! middleware gives each request its token in a task-local, and sets the
//! pre-session cookie only when a page used it.
//!
//! **API** (`/api/*`, any method but `GET`/`HEAD`/`OPTIONS`): a request with
//! `Authorization: Bearer` is not checked (a browser never adds that header by
//! itself). A request that carries the session cookie instead must not be a
//! request a page of another site can send without the shop's consent: it needs
//! `Content-Type: application/json` or an `X-Requested-With` header (either
//! makes a cross-origin browser request ask first, and the shop answers no such
//! question), and its `Origin`, when present, must be the shop's. Else 403 with
//! a JSON body that says what to send.
//!
//! **Cookies**: every cookie the shop's routes set gets `Secure` when the stage
//! file says so (`[auth] secure_cookies = true`) or when a trusted proxy in front
//! says the client came over HTTPS (`X-Forwarded-Proto: https`). `HttpOnly` and
//! `SameSite=Lax` are set where each cookie is made.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, HOST, ORIGIN, REFERER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::auth::{new_token, SESSION_COOKIE};
use super::error::{ApiError, AppError, PageError};
use super::{AppConfig, AppState};

/// The pre-session cookie: the token's seed before sign-in.
pub use storefront_contract::cookies::CSRF as CSRF_COOKIE;
/// The form field that carries the token.
pub const CSRF_FIELD: &str = "csrf";
/// The largest form body read for its token (the shop's forms are far smaller).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The token that goes with a cookie's `value`: hex SHA-256 of a fixed prefix and
/// the value.
///
/// ```
/// use storefront_web::csrf::token_for;
///
/// let t = token_for("0123");
/// assert_eq!(t.len(), 64);
/// assert_ne!(t, token_for("0124"));
/// ```
pub fn token_for(value: &str) -> String {
    Sha256::new()
        .chain_update(b"storefront csrf v1\0")
        .chain_update(value.as_bytes())
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One request's token, and whether a page used it.
#[derive(Debug)]
struct PageToken {
    token: String,
    used: AtomicBool,
}

tokio::task_local! {
    static PAGE: Arc<PageToken>;
}

/// The token for the forms of the page being rendered (empty outside the
/// middleware: such a form would be refused, never accepted).
pub fn token() -> String {
    PAGE.try_with(|page| {
        page.used.store(true, Ordering::Relaxed);
        page.token.clone()
    })
    .unwrap_or_default()
}

/// Every value of cookie `name` in the request.
fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, value) = pair.trim().split_once('=')?;
            (n.trim() == name && !value.is_empty()).then_some(value.trim())
        })
}

/// Whether `a` and `b` are equal, in time that does not depend on where they
/// differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// `scheme://host[:port]` of a URL (an `Origin` or a `Referer`), lower case,
/// without the scheme's default port; `None` when it is not one (`null`).
fn origin_of(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest
        .split(['/', '?', '#'])
        .next()
        .filter(|a| !a.is_empty())?;
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    Some((scheme.clone(), without_default_port(&scheme, authority)))
}

fn without_default_port(scheme: &str, authority: &str) -> String {
    let authority = authority.to_ascii_lowercase();
    let default = match scheme {
        "https" => ":443",
        _ => ":80",
    };
    authority
        .strip_suffix(default)
        .map_or(authority.clone(), str::to_owned)
}

/// `Ok` when the request's `Origin` (else `Referer`) is the shop's own `Host`, or
/// when it has neither; else the foreign origin, for the message.
fn check_origin(headers: &HeaderMap) -> Result<(), String> {
    let claimed = headers
        .get(ORIGIN)
        .or_else(|| headers.get(REFERER))
        .map(|v| v.to_str().unwrap_or("(unreadable)").to_owned());
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    match (origin_of(&claimed), host) {
        (Some((scheme, authority)), Some(host))
            if authority == without_default_port(&scheme, host) =>
        {
            Ok(())
        }
        _ => Err(claimed),
    }
}

fn forbidden_form(detail: &str) -> AppError {
    AppError::Forbidden(format!(
        "This form was refused: {detail}. Forms are accepted only from this shop's own \
         pages: go back, reload the page, and send the form again."
    ))
}

/// Reads a form's body, checks its token against the request's cookies, and
/// gives the request back whole.
async fn check_form(req: Request) -> Result<Request, AppError> {
    if let Err(origin) = check_origin(req.headers()) {
        return Err(forbidden_form(&format!(
            "it was sent from another site ({origin})"
        )));
    }
    let expected: Vec<String> = cookie_values(req.headers(), SESSION_COOKIE)
        .chain(cookie_values(req.headers(), CSRF_COOKIE))
        .map(token_for)
        .collect();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|e| {
            AppError::Malformed(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("the form could not be read (at most {MAX_FORM_BYTES} bytes): {e}"),
            )
        })?;
    let sent = bytes
        .split(|&b| b == b'&')
        .filter_map(|pair| pair.strip_prefix(b"csrf="))
        .find_map(|v| std::str::from_utf8(v).ok());
    match sent {
        None => Err(forbidden_form("it carries no anti-forgery token")),
        Some(sent) if expected.iter().any(|t| same_token(t, sent)) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        Some(_) => Err(forbidden_form(
            "its anti-forgery token does not match this browser's session (the page may be from \
             before you logged in or out)",
        )),
    }
}

/// The API's rule for requests signed in by the session cookie.
fn check_api(headers: &HeaderMap) -> Result<(), AppError> {
    if headers.contains_key(axum::http::header::AUTHORIZATION)
        || cookie_values(headers, SESSION_COOKIE).next().is_none()
    {
        return Ok(());
    }
    if let Err(origin) = check_origin(headers) {
        return Err(AppError::Forbidden(format!(
            "this request came from another site ({origin}): the API takes the session cookie \
             only from the shop's own pages; other clients send Authorization: Bearer <token>"
        )));
    }
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| {
            let essence = essence.trim().to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        })
        .unwrap_or(false);
    if json || headers.contains_key("x-requested-with") {
        return Ok(());
    }
    Err(AppError::Forbidden(
        "a request signed in with the session cookie must send Content-Type: application/json \
         or an X-Requested-With header (or sign in with Authorization: Bearer <token> instead)"
            .into(),
    ))
}

/// Whether this request's cookies get `Secure` (see the module docs).
fn cookies_secure(config: &AppConfig, headers: &HeaderMap) -> bool {
    config.auth.secure_cookies
        || (config.trust_forwarded
            && headers
                .get_all("x-forwarded-proto")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// Adds `Secure` to every cookie `response` sets that lacks it.
fn mark_secure(response: &mut Response) {
    let headers = response.headers_mut();
    let cookies: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(SET_COOKIE);
    for cookie in cookies {
        let secure = cookie.to_str().ok().and_then(|text| {
            let already = text
                .split(';')
                .skip(1)
                .any(|attr| attr.trim().eq_ignore_ascii_case("secure"));
            (!already).then(|| HeaderValue::from_str(&format!("{text}; Secure")).ok())?
        });
        headers.append(SET_COOKIE, secure.unwrap_or(cookie));
    }
}

fn pre_session_cookie(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{CSRF_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax"
    ))
    .ok()
}

/// The middleware (`axum::middleware::from_fn_with_state(state, csrf::middleware)`):
/// checks unsafe requests (see the module docs), runs the rest with the page's
/// token, and applies the cookie policy to the response.
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let secure = cookies_secure(&state.config, req.headers());
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let path = req.uri().path();
    let api = path == "/api" || path.starts_with("/api/");
    let req = if safe {
        req
    } else if api {
        if let Err(e) = check_api(req.headers()) {
            return ApiError(e).into_response();
        }
        req
    } else {
        match check_form(req).await {
            Ok(req) => req,
            Err(e) => return PageError(e).into_response(),
        }
    };
    let existing = cookie_values(req.headers(), SESSION_COOKIE)
        .next()
        .or_else(|| cookie_values(req.headers(), CSRF_COOKIE).next())
        .map(str::to_owned);
    let (seed, fresh) = match existing {
        Some(seed) => (seed, false),
        None => (new_token(), true),
    };
    let page = Arc::new(PageToken {
        token: token_for(&seed),
        used: AtomicBool::new(false),
    });
    let mut response = PAGE.scope(page.clone(), next.run(req)).await;
    if fresh && page.used.load(Ordering::Relaxed) {
        if let Some(cookie) = pre_session_cookie(&seed) {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
    }
    if secure {
        mark_secure(&mut response);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.append(*name, v);
            }
        }
        h
    }

    #[test]
    fn origins_must_be_the_shops_own() {
        let ok = [
            vec![
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ],
            vec![("host", "Shop.example"), ("origin", "https://shop.example")],
            vec![
                ("host", "shop.example:443"),
                ("origin", "https://shop.example"),
            ],
            vec![
                ("host", "shop.example"),
                ("referer", "http://shop.example/cart?x=1"),
            ],
            vec![("host", "shop.example")],
        ];
        for h in ok {
            assert!(check_origin(&headers(&h)).is_ok(), "{h:?}");
        }
        let bad = [
            vec![
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8081"),
            ],
            vec![
                ("host", "127.0.0.1:8080"),
                ("origin", "http://localhost:8080"),
            ],
            vec![("host", "shop.example"), ("origin", "null")],
            vec![
                ("host", "shop.example"),
                ("origin", "http://shop.example.evil.test"),
            ],
            vec![
                ("host", "shop.example"),
                ("referer", "http://evil.test/?shop.example"),
            ],
            vec![
                ("host", "shop.example"),
                ("referer", "http://shop.example@evil.test/"),
            ],
            vec![("origin", "http://shop.example")],
        ];
        for h in bad {
            assert!(check_origin(&headers(&h)).is_err(), "{h:?}");
        }
    }

    #[test]
    fn the_api_wants_json_or_a_custom_header_with_the_cookie() {
        let cookie = ("cookie", "sf_session=abc");
        assert!(
            check_api(&headers(&[])).is_ok(),
            "no cookie: nothing to forge"
        );
        assert!(check_api(&headers(&[cookie, ("authorization", "Bearer x")])).is_ok());
        assert!(check_api(&headers(&[cookie])).is_err());
        assert!(check_api(&headers(&[cookie, ("content-type", "text/plain")])).is_err());
        assert!(check_api(&headers(&[
            cookie,
            ("content-type", "application/json; charset=utf-8")
        ]))
        .is_ok());
        assert!(check_api(&headers(&[cookie, ("x-requested-with", "fetch")])).is_ok());
        let foreign = [
            cookie,
            ("content-type", "application/json"),
            ("host", "a.test"),
            ("origin", "http://b.test"),
        ];
        assert!(check_api(&headers(&foreign)).is_err());
    }

    #[test]
    fn secure_is_added_once() {
        let mut response = Response::new(Body::empty());
        let h = response.headers_mut();
        h.append(
            SET_COOKIE,
            HeaderValue::from_static("a=1; Path=/; HttpOnly"),
        );
        h.append(SET_COOKIE, HeaderValue::from_static("b=2; Path=/; secure"));
        mark_secure(&mut response);
        let set: Vec<&str> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(
            set,
            ["a=1; Path=/; HttpOnly; Secure", "b=2; Path=/; secure"]
        );
    }

    #[test]
    fn tokens_outside_a_request_are_empty() {
        assert_eq!(token(), "");
        assert!(same_token(&token_for("x"), &token_for("x")));
        assert!(!same_token(&token_for("x"), &token_for("y")));
        assert!(!same_token("ab", "abc"));
    }
}
