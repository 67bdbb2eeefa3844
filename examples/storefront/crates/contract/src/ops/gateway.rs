//! The gateway's figures (stage 4 on): per instance and in total.

use serde::{Deserialize, Serialize};

use super::parts::Figures;

/// What the gateway knows, for the ops page, `/metrics` and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayFigures {
    /// One entry per instance, in configuration order.
    pub instances: Vec<InstanceFigures>,
    /// Counters since start.
    pub totals: GatewayTotals,
}

impl Figures for GatewayFigures {
    const KEY: &'static str = "gateway";
    const TITLE: &'static str = "Gateway";
    const LABELS: &'static [(&'static str, &'static str)] =
        &[("rate_limited", "Rate-limit rejections")];
    const HIGHLIGHT: &'static [&'static str] = &["rate_limited"];
}

/// The gateway's counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayTotals {
    /// Requests received (rate-limited ones included; `/livez` and `/readyz` not).
    pub requests: u64,
    /// Requests refused with 429.
    pub rate_limited: u64,
    /// Attempts made again on another instance.
    pub retries: u64,
    /// Attempts that failed to get a response from an instance.
    pub upstream_errors: u64,
    /// Requests refused with 503 because no instance could take them.
    pub unavailable: u64,
}

/// One instance behind the gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFigures {
    /// Its name (`app-1`, ...).
    pub name: String,
    /// Where it listens.
    pub addr: String,
    /// Its last `/readyz` check passed (true until the first check says otherwise).
    pub healthy: bool,
    /// Taken out of rotation for failing calls in a row.
    pub ejected: bool,
    /// Its circuit breaker: `closed`, `open`, `half-open`, ...
    pub breaker: String,
    /// Requests on it now (until their response body has been sent).
    pub in_flight: u64,
    /// Attempts sent to it.
    pub requests: u64,
    /// Attempts that counted against the instance: no connection, no response,
    /// or a `502`, `503` or `504` status.
    pub failures: u64,
    /// Answers with another `5xx` status (a `500` for one request), passed on and
    /// not counted against the instance.
    pub app_errors: u64,
    /// Attempts that failed after the request was sent (in flight when it broke).
    pub failed_after_send: u64,
}
