//! A small HTTP/1.1 client over hyper's pooled client: keep-alive connections,
//! a timeout per request, the answer's status, redirect target and cookies, and
//! the anti-forgery token of a page's forms ([`form_token`]).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use storefront_contract::cookies;

/// One answer, its body read to the end (so the connection can be reused).
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Location` header of a redirect.
    pub location: Option<String>,
    /// `sf_session=...` from `Set-Cookie`, ready to send back as a `Cookie` header.
    pub session: Option<String>,
    /// `sk_wal=...` from `Set-Cookie` (stage 5: the WAL position of a write), to
    /// send back with the session so that the next read sees the write.
    pub wal: Option<String>,
    /// Every cookie the answer sets, as `name=value`, as a browser would keep them.
    pub cookies: Vec<String>,
    /// The body.
    pub body: Bytes,
}

/// A client bound to one target (`http://host:port`).
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
    /// An `Authorization` value sent with every request (see
    /// [`with_authorization`](Self::with_authorization)).
    authorization: Option<String>,
}

impl HttpClient {
    /// A client for `target` (`http://127.0.0.1:8080`); `timeout` bounds each request.
    pub fn new(target: &str, timeout: Duration) -> Result<Self, String> {
        let uri: hyper::Uri = target.parse().map_err(|e| {
            format!("--target {target:?}: {e}; use a URL like http://127.0.0.1:8080")
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "--target {target:?}: the {other} scheme is not supported; use http://"
                ))
            }
            None => {
                return Err(format!(
                    "--target {target:?}: give the scheme, like http://127.0.0.1:8080"
                ))
            }
        }
        let authority = uri.authority().ok_or_else(|| {
            format!("--target {target:?}: give a host, like http://127.0.0.1:8080")
        })?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!(
                "--target {target:?}: give the server only (no path); use --path for one URL"
            ));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            client,
            base: format!("http://{authority}"),
            timeout,
            authorization: None,
        })
    }

    /// The same client, sending `Authorization: value` with every request (the
    /// ops routes' token: `Bearer <token>`).
    pub fn with_authorization(mut self, value: String) -> Self {
        self.authorization = Some(value);
        self
    }

    /// `GET path`, with the session cookie if given.
    pub async fn get(&self, path: &str, session: Option<&str>) -> Result<Answer, String> {
        self.send(Method::GET, path, session, None).await
    }

    /// `POST path` with a form body (`a=1&b=2`, already encoded).
    pub async fn post_form(
        &self,
        path: &str,
        session: Option<&str>,
        form: String,
    ) -> Result<Answer, String> {
        self.send(Method::POST, path, session, Some(form)).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        session: Option<&str>,
        form: Option<String>,
    ) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(cookie) = session {
            request = request.header(COOKIE, cookie);
        }
        if let Some(value) = &self.authorization {
            request = request.header(AUTHORIZATION, value.as_str());
        }
        let body = match form {
            Some(form) => {
                request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(form))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request
            .body(body)
            .map_err(|e| format!("bad request {path:?}: {e}"))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                // "client error (Connect)" and the like: short and groupable.
                let mut text = e.to_string();
                if let Some(source) = std::error::Error::source(&e) {
                    text = format!("{text}: {source}");
                }
                text
            })?;
            let status = response.status().as_u16();
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let location = header(LOCATION);
            let session = response
                .headers()
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| {
                    let pair = v.split(';').next()?.trim();
                    let (name, value) = pair.split_once('=')?;
                    (name == cookies::SESSION && !value.is_empty()).then(|| pair.to_owned())
                });
            let wal = response
                .headers()
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| {
                    let pair = v.split(';').next()?.trim();
                    let (name, _) = pair.split_once('=')?;
                    (name == cookies::WAL).then(|| pair.to_owned())
                });
            let cookies = response
                .headers()
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| v.split(';').next())
                .map(|pair| pair.trim().to_owned())
                .filter(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
                .collect();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            Ok(Answer {
                status,
                location,
                session,
                wal,
                cookies,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("timeout ({} s)", self.timeout.as_secs_f64())),
        }
    }
}

/// The anti-forgery token in a page's forms: the value of the first
/// `<input type="hidden" name="csrf" value="...">`, as a browser would send it
/// back with the form. `None` when the page has no such field.
///
/// ```
/// use storefront_tools::loadgen::http::form_token;
///
/// let page = br#"<form><input type="hidden" name="csrf" value="ab12"></form>"#;
/// assert_eq!(form_token(page).as_deref(), Some("ab12"));
/// assert_eq!(form_token(b"<p>no form</p>"), None);
/// ```
pub fn form_token(body: &[u8]) -> Option<String> {
    const FIELD: &[u8] = b"name=\"csrf\" value=\"";
    let start = body.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let rest = body.get(start..)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let token = std::str::from_utf8(rest.get(..end)?).ok()?;
    (!token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_the_first_field() {
        let page = b"<input type=\"hidden\" name=\"csrf\" value=\"one\"><input name=\"csrf\" value=\"two\">";
        assert_eq!(form_token(page).as_deref(), Some("one"));
        assert_eq!(form_token(b"name=\"csrf\" value=\"unterminated"), None);
        assert_eq!(form_token(b"name=\"csrf\" value=\"\""), None);
    }
}
