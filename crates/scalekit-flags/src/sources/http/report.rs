//! Telling the server about us: registration (`POST /api/client/register`) and
//! usage metrics (`POST /api/client/metrics`), with the bucket kept when a send
//! fails, up to a bound.

use crate::conformance::CLIENT_SPEC_VERSION;
use crate::error::FlagsError;
use crate::flags::Flags;
use crate::metrics::MetricsBucket;
use crate::sources::http::conn::{Conn, SDK};
use crate::sources::http::fetch::report;
use scalekit_core::Clock;
use serde::Serialize;
use std::time::Duration;

pub(super) const REGISTER: &str = "/api/client/register";
pub(super) const METRICS: &str = "/api/client/metrics";

/// An unsent bucket holding more toggles than this is dropped rather than kept.
pub(super) const MAX_UNSENT_TOGGLES: usize = 10_000;

/// The built-in strategies, announced at registration with the custom ones.
const BUILT_IN: [&str; 8] = [
    "default",
    "userWithId",
    "gradualRolloutUserId",
    "gradualRolloutSessionId",
    "gradualRolloutRandom",
    "flexibleRollout",
    "remoteAddress",
    "applicationHostname",
];

/// What one metrics send did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsOutcome {
    /// The server accepted a bucket with counts for this many toggles.
    Sent {
        /// Toggles in the bucket.
        toggles: usize,
    },
    /// Nothing was evaluated since the last send: nothing was sent.
    Empty,
    /// Metrics are off: turned off in the builder, or the server refused the token
    /// (401 or 403), after which the poller stops sending, as Unleash's SDKs do.
    Off,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Registration<'a> {
    app_name: &'a str,
    instance_id: &'a str,
    connection_id: &'a str,
    sdk_version: &'static str,
    strategies: Vec<String>,
    started: &'a str,
    /// The metrics interval, in milliseconds.
    interval: u64,
    platform_name: &'static str,
    yggdrasil_version: Option<&'static str>,
    spec_version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricsBody<'a> {
    app_name: &'a str,
    instance_id: &'a str,
    connection_id: &'a str,
    bucket: &'a MetricsBucket,
    platform_name: &'static str,
    yggdrasil_version: Option<&'static str>,
    spec_version: &'static str,
}

/// The reporting half of a poller.
#[derive(Debug, Clone)]
pub(super) struct Reporter {
    /// Sending metrics at all (off in the builder, or after a 401/403).
    pub(super) on: bool,
    pub(super) interval: Duration,
    /// How long an unsent bucket is kept (and merged with the next ones) before it
    /// is dropped.
    pub(super) keep_unsent: Duration,
    /// Whether the server has accepted our registration.
    pub(super) registered: bool,
    /// When this poller started (RFC 3339), announced at registration.
    pub(super) started: Option<String>,
    /// The bucket the server has not accepted yet, and the clock's reading when
    /// it was first refused.
    pub(super) unsent: Option<(u64, MetricsBucket)>,
    /// Consecutive failed sends.
    pub(super) failures: u32,
}

impl Reporter {
    /// `POST /api/client/register`.
    pub(super) async fn register<C: Clock>(
        &mut self,
        conn: &Conn,
        flags: &Flags<C>,
    ) -> Result<(), FlagsError> {
        let started = self
            .started
            .get_or_insert_with(|| flags.wall_time(flags.clock().now_nanos()))
            .clone();
        let mut strategies: Vec<String> = BUILT_IN.iter().map(|s| (*s).to_owned()).collect();
        strategies.extend(flags.custom_strategy_names());
        let body = Registration {
            app_name: &conn.app_name,
            instance_id: &conn.instance_id,
            connection_id: &conn.connection_id,
            sdk_version: SDK,
            strategies,
            started: &started,
            interval: millis(self.interval),
            platform_name: "rust",
            yggdrasil_version: None,
            spec_version: CLIENT_SPEC_VERSION,
        };
        let json = serde_json::to_vec(&body).map_err(|e| FlagsError::invalid(e.to_string()))?;
        match conn.send(REGISTER, self.interval, None, Some(json)).await {
            Ok(_) => {
                self.registered = true;
                Ok(())
            }
            Err(f) => Err(report(flags, &conn.url(REGISTER), f)),
        }
    }

    /// Drains the store's counts and sends them with whatever is unsent.
    pub(super) async fn send<C: Clock>(
        &mut self,
        conn: &Conn,
        flags: &Flags<C>,
    ) -> Result<MetricsOutcome, FlagsError> {
        if !self.on {
            return Ok(MetricsOutcome::Off);
        }
        let url = conn.url(METRICS);
        let fresh = flags.take_metrics();
        let now = flags.clock().now_nanos();
        let (since, bucket) = match self.unsent.take() {
            Some((since, mut old)) => {
                let age = Duration::from_nanos(now.saturating_sub(since));
                if age > self.keep_unsent || old.toggles.len() > MAX_UNSENT_TOGGLES {
                    flags.source_failed(
                        &url,
                        FlagsError::Source {
                            what: format!(
                                "POST {url}: dropped the unsent metrics of {} toggles from {} to {}: \
                                 the server has not accepted them for {age:?} (kept up to {:?} and {MAX_UNSENT_TOGGLES} toggles)",
                                old.toggles.len(),
                                old.start,
                                old.stop,
                                self.keep_unsent
                            ),
                            source: None,
                        },
                    );
                    (now, fresh)
                } else {
                    old.merge(fresh);
                    (since, old)
                }
            }
            None => (now, fresh),
        };
        if bucket.is_empty() {
            return Ok(MetricsOutcome::Empty);
        }
        let body = MetricsBody {
            app_name: &conn.app_name,
            instance_id: &conn.instance_id,
            connection_id: &conn.connection_id,
            bucket: &bucket,
            platform_name: "rust",
            yggdrasil_version: None,
            spec_version: CLIENT_SPEC_VERSION,
        };
        let json = serde_json::to_vec(&body).map_err(|e| FlagsError::invalid(e.to_string()))?;
        match conn.send(METRICS, self.interval, None, Some(json)).await {
            Ok(_) => {
                self.failures = 0;
                Ok(MetricsOutcome::Sent {
                    toggles: bucket.toggles.len(),
                })
            }
            Err(f) => {
                self.failures = self.failures.saturating_add(1);
                if matches!(f.status(), Some(401 | 403)) {
                    // The token will not become valid: stop, as Unleash's SDKs do.
                    self.on = false;
                } else {
                    self.unsent = Some((since, bucket));
                }
                Err(report(flags, &url, f))
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
