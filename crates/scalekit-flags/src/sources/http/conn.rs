//! The connection to an Unleash server: its address, who we are (app name,
//! instance id, connection id, SDK), the headers current Unleash SDKs send, and
//! the one request helper the other parts use.

use crate::conformance::CLIENT_SPEC_VERSION;
use crate::error::FlagsError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// What we announce as `unleash-sdk` and as `sdkVersion` when registering.
pub(super) const SDK: &str = concat!("scalekit-flags:", env!("CARGO_PKG_VERSION"));

/// A request that did not succeed: the HTTP status when the server answered.
#[derive(Debug)]
pub(super) enum Failure {
    /// The server answered with a status outside 2xx and 304.
    Status {
        status: reqwest::StatusCode,
        what: String,
    },
    /// Connection, timeout, reading the body.
    Transport(FlagsError),
    /// The body was refused by the store (already reported as
    /// [`Event::Rejected`](crate::Event::Rejected)).
    Refused(FlagsError),
}

impl Failure {
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } => Some(status.as_u16()),
            Failure::Transport(_) | Failure::Refused(_) => None,
        }
    }

    pub(super) fn into_error(self) -> FlagsError {
        match self {
            Failure::Status { what, .. } => FlagsError::Source { what, source: None },
            Failure::Transport(e) | Failure::Refused(e) => e,
        }
    }
}

/// A successful answer.
pub(super) struct Answer {
    pub(super) status: reqwest::StatusCode,
    pub(super) etag: Option<String>,
    pub(super) body: String,
}

/// Everything a request needs to say who is asking.
#[derive(Debug, Clone)]
pub(super) struct Conn {
    /// The server's base URL, without a trailing slash.
    pub(super) base: String,
    pub(super) client: reqwest::Client,
    /// Authorization, UNLEASH-APPNAME, UNLEASH-INSTANCEID, unleash-connection-id,
    /// unleash-sdk: on every request.
    pub(super) headers: HeaderMap,
    pub(super) app_name: String,
    pub(super) instance_id: String,
    pub(super) connection_id: String,
    pub(super) timeout: Duration,
}

impl Conn {
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request. `interval` is the caller's period (`unleash-interval`, in ms);
    /// `etag` is sent as `If-None-Match`; `json` makes it a POST of that body.
    pub(super) async fn send(
        &self,
        path: &str,
        interval: Duration,
        etag: Option<&str>,
        json: Option<Vec<u8>>,
    ) -> Result<Answer, Failure> {
        let url = self.url(path);
        let method = if json.is_some() { "POST" } else { "GET" };
        let mut req = match &json {
            Some(_) => self.client.post(&url),
            None => self.client.get(&url),
        }
        .timeout(self.timeout)
        .headers(self.headers.clone())
        .header("unleash-interval", interval.as_millis().to_string());
        if json.is_none() {
            req = req.header("Unleash-Client-Spec", CLIENT_SPEC_VERSION);
        }
        if let Some(e) = etag {
            req = req.header("If-None-Match", e);
        }
        if let Some(body) = json {
            req = req.header("Content-Type", "application/json").body(body);
        }
        let transport = |what: String, e: reqwest::Error| {
            Failure::Transport(FlagsError::Source {
                what,
                source: Some(Box::new(e)),
            })
        };
        let resp = req
            .send()
            .await
            .map_err(|e| transport(format!("{method} {url}"), e))?;
        let status = resp.status();
        if !status.is_success() && status != reqwest::StatusCode::NOT_MODIFIED {
            return Err(Failure::Status {
                status,
                what: format!("{method} {url}: HTTP {status}{}", advice(status)),
            });
        }
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .text()
            .await
            .map_err(|e| transport(format!("{method} {url}: reading the body"), e))?;
        Ok(Answer { status, etag, body })
    }
}

/// What to do about a status, for the person reading the log.
fn advice(status: reqwest::StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => {
            " (the token is missing or not allowed here: use a client token of this environment)"
        }
        404 => " (no such endpoint: is this the base URL of an Unleash server or Edge?)",
        429 => " (rate limited: backing off)",
        _ => "",
    }
}

/// The headers sent on every request.
pub(super) fn identity_headers(
    token: Option<&HeaderValue>,
    app_name: &HeaderValue,
    instance_id: &HeaderValue,
    connection_id: &str,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(t) = token {
        h.insert(reqwest::header::AUTHORIZATION, t.clone());
    }
    h.insert(HeaderName::from_static("unleash-appname"), app_name.clone());
    h.insert(
        HeaderName::from_static("unleash-instanceid"),
        instance_id.clone(),
    );
    if let Ok(v) = HeaderValue::from_str(connection_id) {
        h.insert(HeaderName::from_static("unleash-connection-id"), v);
    }
    h.insert(
        HeaderName::from_static("unleash-sdk"),
        HeaderValue::from_static(SDK),
    );
    h
}

/// A random UUID (version 4 layout), which Unleash expects as the connection id:
/// one per poller, so that the server counts connections rather than processes.
pub(super) fn connection_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        // RandomState is keyed from the operating system's randomness.
        let mut h = RandomState::new().build_hasher();
        h.write_u64(seq);
        h.write_usize(i);
        h.write_u32(std::process::id());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_are_version_4_uuids_and_differ() {
        let a = connection_id();
        let b = connection_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{a}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }
}
