//! Read-your-writes through the session (stage 5): the `sk_wal` cookie carries the
//! primary's WAL position after the session's last write.
//!
//! [`middleware`] runs every request inside a [`RequestContext`] holding the
//! cookie's position (a missing or unreadable cookie is no position), so that the
//! store's reads of the user's own data go to a replica that has replayed it, or
//! to the primary. When the request wrote, the response sets the cookie to the
//! new position.
//!
//! The cookie is client input. A forged one can only steer its own client's
//! reads: a position no replica has reached sends them to the primary, and a
//! position far beyond the primary's ([`FORGED_MARGIN`](storefront_storage::db::FORGED_MARGIN))
//! is taken as the primary's, so that it cannot pin them there; other clients'
//! reads are untouched. It holds no secret and grants nothing.

use axum::extract::Request;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use scalekit_replica::{pg, Position};

use storefront_storage::context::{self, RequestContext};

/// The cookie's name.
pub use storefront_contract::cookies::WAL as WAL_COOKIE;

/// How long the cookie lives, in seconds: far longer than any replica may lag
/// and still take reads, so a read after it expired finds the write anyway.
pub const WAL_COOKIE_MAX_AGE: u32 = 600;

/// The position in a request's `sk_wal` cookie: the highest readable one if there
/// are several; `None` without one, or if none reads as a WAL position.
pub fn position_from_cookies(headers: &HeaderMap) -> Option<Position> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name.trim() == WAL_COOKIE).then_some(value.trim())
        })
        .filter_map(|value| pg::parse_lsn(value).ok())
        .filter(|p| p.get() != 0)
        .max()
}

/// The `Set-Cookie` value that carries `position`.
pub fn wal_cookie(position: Position) -> HeaderValue {
    let text = format!(
        "{WAL_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={WAL_COOKIE_MAX_AGE}",
        pg::format_lsn(position)
    );
    // A formatted LSN is hexadecimal digits and `/`: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The middleware (`axum::middleware::from_fn(wal::middleware)`): the request runs
/// in a context with its cookie's position; a response to a request that wrote
/// gets the new position.
pub async fn middleware(request: Request, next: Next) -> Response {
    let came_with = position_from_cookies(request.headers());
    let ctx = RequestContext::new(came_with);
    let mut response = context::scope(ctx.clone(), next.run(request)).await;
    if let Some(written) = ctx.written() {
        // Never backwards: a write whose position could not be read records an
        // older one, and the session must still see its earlier writes.
        let cookie = wal_cookie(came_with.map_or(written, |c| c.max(written)));
        if !cookie.is_empty() {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.append(COOKIE, v);
            }
        }
        h
    }

    #[tokio::test]
    async fn the_cookie_never_goes_backwards() {
        use tower::ServiceExt;
        // A write whose position could not be read records an older one.
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::post(|| async {
                    context::record_write(Position::new(0x50));
                    "ok"
                }),
            )
            .layer(axum::middleware::from_fn(middleware));
        let set_cookie = |cookie: Option<&str>| {
            let app = app.clone();
            let cookie = cookie.map(str::to_owned);
            async move {
                let mut req = axum::http::Request::post("/");
                if let Some(c) = cookie {
                    req = req.header(COOKIE, c);
                }
                let res = app
                    .oneshot(req.body(axum::body::Body::empty()).unwrap_or_default())
                    .await
                    .unwrap_or_else(|e| match e {});
                res.headers()
                    .get(SET_COOKIE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        assert!(set_cookie(None).await.starts_with("sk_wal=0/50;"));
        assert!(set_cookie(Some("sk_wal=0/100"))
            .await
            .starts_with("sk_wal=0/100;"));
        assert!(set_cookie(Some("sk_wal=0/20"))
            .await
            .starts_with("sk_wal=0/50;"));
    }

    #[test]
    fn reads_the_cookie_among_others() {
        let p = |c: &[&str]| position_from_cookies(&headers(c));
        assert_eq!(
            p(&["sf_session=abc; sk_wal=16/B374D848"]),
            Some(Position::new(0x16_B374_D848))
        );
        assert_eq!(
            p(&["sk_wal=0/10", "x=1; sk_wal=0/20"]),
            Some(Position::new(0x20))
        );
        assert_eq!(p(&[]), None);
        assert_eq!(p(&["sk_wal="]), None);
        assert_eq!(p(&["sk_wal=16-B374D848"]), None);
        assert_eq!(p(&["sk_wal=0/0"]), None);
        assert_eq!(p(&["sk_wal=123456789/0"]), None, "more than 8 digits");
        assert_eq!(p(&["xsk_wal=0/10"]), None);
        assert_eq!(p(&["sk_wal=bad; sk_wal=0/5"]), Some(Position::new(5)));
    }

    proptest! {
        #[test]
        fn a_written_cookie_reads_back(v in 1u64..) {
            let cookie = wal_cookie(Position::new(v));
            let text = cookie.to_str().unwrap_or_default().to_owned();
            let pair = text.split(';').next().unwrap_or_default().to_owned();
            prop_assert_eq!(position_from_cookies(&headers(&[&pair])), Some(Position::new(v)));
        }

        #[test]
        fn any_cookie_text_is_harmless(text in "[^;]{0,200}") {
            // Never panics; a position is only ever read from a well-formed value.
            let h = headers(&[&format!("sk_wal={text}")]);
            if let Some(p) = position_from_cookies(&h) {
                prop_assert!(pg::parse_lsn(text.trim()).is_ok());
                prop_assert!(p.get() != 0);
            }
        }
    }
}
