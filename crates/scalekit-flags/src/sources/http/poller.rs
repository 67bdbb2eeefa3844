//! [`HttpPoller`]: one client of an Unleash server, fetching the state and
//! reporting registration and metrics, as a task or one request at a time.

use crate::error::FlagsError;
use crate::flags::Flags;
use crate::metrics::MetricsBucket;
use crate::sources::backoff::backoff;
use crate::sources::http::conn::Conn;
use crate::sources::http::fetch::{FetchOutcome, Fetcher};
use crate::sources::http::report::{MetricsOutcome, Reporter};
use scalekit_core::Clock;
use std::time::Duration;
use tokio::time::Instant;

/// A client of Unleash's client API, as Unleash's server-side SDKs are:
///
/// * **State**: polls `GET {base}/api/client/delta` or `GET {base}/api/client/features`
///   (see [`FeaturesApi`](crate::sources::FeaturesApi); by default the delta API when
///   the server offers it), sending the last `ETag` as `If-None-Match` (a `304`
///   changes nothing).
/// * **Registration**: `POST {base}/api/client/register` once at start (retried
///   with the metrics until it succeeds): app name, instance id, connection id,
///   SDK version, strategies, start time, metrics interval.
/// * **Metrics**: every metrics interval, drains the store's counts
///   ([`Flags::take_metrics`]) and sends them to `POST {base}/api/client/metrics`.
///   A bucket the server does not accept is kept and merged into the next one, for
///   up to [`keep_unsent_metrics`](crate::sources::HttpPollerBuilder::keep_unsent_metrics)
///   (and 10,000 toggles); after a 401 or 403 metrics stop, as in Unleash's SDKs.
/// * Every request carries `Authorization`, `UNLEASH-APPNAME`, `UNLEASH-INSTANCEID`,
///   `unleash-connection-id` (a random UUID per poller), `unleash-sdk`
///   (`scalekit-flags:<version>`) and `unleash-interval`; state requests add
///   `Unleash-Client-Spec` ([`CLIENT_SPEC_VERSION`](crate::conformance::CLIENT_SPEC_VERSION)).
/// * On failure (connection, timeout, non-2xx status, bad body) each loop backs
///   off: its interval doubles per consecutive failure up to `max_backoff`, and
///   resets on the next success.
/// * With a bootstrap file, the store is loaded from it before the first fetch (so
///   the service starts and keeps serving while the server is unreachable), and each
///   new state fetched is written back to it (to a temporary file, then renamed).
///
/// Plain `http://` works out of the box; for `https://`, enable a TLS feature of
/// `reqwest` in your own `Cargo.toml` (for example `reqwest = { version = "0.13",
/// features = ["rustls"] }`).
///
/// ```no_run
/// # async fn run() -> Result<(), scalekit_flags::ConfigError> {
/// use scalekit_flags::{sources::HttpPoller, Flags};
/// use std::time::Duration;
/// let flags = Flags::new();
/// let task = HttpPoller::builder("http://unleash.internal:4242")
///     .token("default:production.abc123")
///     .app_name("storefront")
///     .interval(Duration::from_secs(15))
///     .metrics_interval(Duration::from_secs(60))
///     .bootstrap("/var/lib/storefront/flags.json")
///     .build()?
///     .spawn(flags.clone());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HttpPoller {
    pub(super) conn: Conn,
    pub(super) fetcher: Fetcher,
    pub(super) reporter: Reporter,
    pub(super) max_backoff: Duration,
}

impl HttpPoller {
    /// The `ETag` of the state last applied.
    pub fn etag(&self) -> Option<&str> {
        self.fetcher.etag.as_deref()
    }

    /// Whether the server offers the delta API: `None` until detection has had an
    /// answer (or when the API was chosen in the builder).
    pub fn delta_detected(&self) -> Option<bool> {
        self.fetcher.delta
    }

    /// The connection id sent as `unleash-connection-id`.
    pub fn connection_id(&self) -> &str {
        &self.conn.connection_id
    }

    /// The instance id sent as `UNLEASH-INSTANCEID`.
    pub fn instance_id(&self) -> &str {
        &self.conn.instance_id
    }

    /// The metrics the server has not accepted yet (kept for the next send).
    pub fn unsent_metrics(&self) -> Option<&MetricsBucket> {
        self.reporter.unsent.as_ref().map(|(_, b)| b)
    }

    /// Whether the server has accepted our registration.
    pub fn registered(&self) -> bool {
        self.reporter.registered
    }

    /// Loads the bootstrap file into the store when the store is still empty.
    /// Returns whether it did.
    pub fn load_bootstrap<C: Clock>(&self, flags: &Flags<C>) -> bool {
        match &self.fetcher.bootstrap {
            Some(p) if flags.version() == 0 && p.exists() => flags.load_file(p).is_ok(),
            _ => false,
        }
    }

    /// One state request: applies a new state, or reports why not (also as an
    /// event: [`Event::SourceFailed`](crate::Event::SourceFailed) for a failed
    /// request, [`Event::Rejected`](crate::Event::Rejected) for a body refused).
    pub async fn fetch_once<C: Clock>(
        &mut self,
        flags: &Flags<C>,
    ) -> Result<FetchOutcome, FlagsError> {
        self.fetcher.fetch(&self.conn, flags).await
    }

    /// Registers with the server (`POST /api/client/register`).
    pub async fn register<C: Clock>(&mut self, flags: &Flags<C>) -> Result<(), FlagsError> {
        self.reporter.register(&self.conn, flags).await
    }

    /// Sends the metrics gathered since the last send, with any unsent ones
    /// (`POST /api/client/metrics`). On failure the bucket is kept for the next
    /// send (see [`HttpPoller`]).
    pub async fn send_metrics<C: Clock>(
        &mut self,
        flags: &Flags<C>,
    ) -> Result<MetricsOutcome, FlagsError> {
        self.reporter.send(&self.conn, flags).await
    }

    /// Runs the poller as a task: bootstrap, then fetch every interval and send
    /// metrics every metrics interval (registering first), each backing off on
    /// failures. Abort the handle to stop it (metrics not yet sent are lost; call
    /// [`send_metrics`](Self::send_metrics) on a poller of your own before
    /// shutting down to keep them).
    pub fn spawn<C: Clock + 'static>(mut self, flags: Flags<C>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            self.load_bootstrap(&flags);
            if self.reporter.on {
                self.reporter.started = Some(flags.wall_time(flags.clock().now_nanos()));
            }
            let mut next_fetch = Instant::now();
            let mut next_metrics = next_fetch + self.reporter.interval;
            let mut fetch_failures = 0u32;
            loop {
                if Instant::now() >= next_fetch {
                    match self.fetch_once(&flags).await {
                        Ok(_) => fetch_failures = 0,
                        Err(_) => fetch_failures = fetch_failures.saturating_add(1),
                    }
                    let wait = backoff(self.fetcher.interval, self.max_backoff, fetch_failures);
                    next_fetch = Instant::now() + wait;
                    if self.reporter.on && !self.reporter.registered {
                        // Errors are reported through the store's events; retried
                        // with the next metrics send.
                        let _ = self.register(&flags).await;
                    }
                }
                if self.reporter.on && Instant::now() >= next_metrics {
                    if !self.reporter.registered {
                        let _ = self.register(&flags).await;
                    }
                    let _ = self.send_metrics(&flags).await;
                    let wait = backoff(
                        self.reporter.interval,
                        self.max_backoff,
                        self.reporter.failures,
                    );
                    next_metrics = Instant::now() + wait;
                }
                let until = if self.reporter.on {
                    next_fetch.min(next_metrics)
                } else {
                    next_fetch
                };
                tokio::time::sleep_until(until).await;
            }
        })
    }
}
