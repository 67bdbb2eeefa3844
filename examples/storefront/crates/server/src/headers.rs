//! Security headers on every response: pages, the API, errors, static files, the
//! ops and admin routes.
//!
//! | header | value | why |
//! | --- | --- | --- |
//! | `Content-Security-Policy` | [`POLICY`] | scripts, styles, images and requests from this origin only and no inline script: if text ever slipped past the template escaping, it could not run. The pages need no script; the ops page loads `/ops/ops.js`. `frame-ancestors 'none'`: no other site frames the shop (clickjacking); `form-action 'self'`: a form posts to the shop only; `base-uri 'none'`, `object-src 'none'`: no `<base>` or plug-in tricks |
//! | `X-Frame-Options` | `DENY` | `frame-ancestors` for browsers that predate CSP 2 |
//! | `X-Content-Type-Options` | `nosniff` | a response is read as its `Content-Type` says (a search result is never run as a script) |
//! | `Referrer-Policy` | `strict-origin-when-cross-origin` | another site sees at most our origin, never a path or query (search words, order ids) |
//!
//! A header a handler set already is kept. `Strict-Transport-Security` is left
//! to whoever terminates TLS (see `docs/security.md`).

use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::Response;

/// The `Content-Security-Policy`: everything from this origin, no inline script
/// or style, no framing.
pub const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Adds the headers to `response` (where it has none of its own): use as
/// `router.layer(axum::middleware::map_response(headers::secure))`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use axum::response::IntoResponse;
/// let response = storefront_server::headers::secure("hello".into_response()).await;
/// assert_eq!(response.headers()["x-frame-options"], "DENY");
/// # });
/// ```
pub async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (CONTENT_SECURITY_POLICY, POLICY),
        (X_FRAME_OPTIONS, "DENY"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "strict-origin-when-cross-origin"),
    ] {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    response
}
