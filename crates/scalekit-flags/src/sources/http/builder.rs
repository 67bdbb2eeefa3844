//! [`HttpPollerBuilder`]: the settings of an [`HttpPoller`], checked at `build()`.

use crate::sources::http::conn::{connection_id, identity_headers, Conn};
use crate::sources::http::fetch::{FeaturesApi, Fetcher};
use crate::sources::http::poller::HttpPoller;
use crate::sources::http::report::Reporter;
use reqwest::header::HeaderValue;
use scalekit_core::ConfigError;
use std::path::PathBuf;
use std::time::Duration;

const COMPONENT: &str = "HTTP flag source";

/// Builds an [`HttpPoller`]; [`build`](Self::build) refuses a setting that cannot
/// work with a [`ConfigError`] naming it.
///
/// ```
/// use scalekit_flags::sources::HttpPoller;
/// use std::time::Duration;
///
/// let poller = HttpPoller::builder("http://127.0.0.1:4242")
///     .token("default:development.secret")
///     .app_name("storefront")
///     .build()
///     .unwrap();
/// assert_eq!(poller.instance_id(), format!("scalekit-{}", std::process::id()));
///
/// let err = HttpPoller::builder("127.0.0.1:4242").build().unwrap_err();
/// assert_eq!(err.field(), "base");
/// let err = HttpPoller::builder("http://127.0.0.1:4242")
///     .interval(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid HTTP flag source setting `interval` = 0ns: expected a duration above zero (Unleash's SDKs poll every 15 s)"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct HttpPollerBuilder {
    base: String,
    token: Option<String>,
    app_name: String,
    instance_id: String,
    interval: Duration,
    metrics_interval: Duration,
    send_metrics: bool,
    keep_unsent: Duration,
    max_backoff: Duration,
    timeout: Duration,
    bootstrap: Option<PathBuf>,
    api: FeaturesApi,
}

impl HttpPoller {
    /// A builder for a poller of the Unleash server at `base` (for example
    /// `http://127.0.0.1:4242`; an Unleash Edge works the same).
    pub fn builder(base: impl Into<String>) -> HttpPollerBuilder {
        HttpPollerBuilder {
            base: base.into(),
            token: None,
            app_name: "scalekit".into(),
            instance_id: format!("scalekit-{}", std::process::id()),
            interval: Duration::from_secs(15),
            metrics_interval: Duration::from_secs(60),
            send_metrics: true,
            keep_unsent: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            bootstrap: None,
            api: FeaturesApi::Detect,
        }
    }
}

impl HttpPollerBuilder {
    /// The API token (a client token), sent as `Authorization`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// `UNLEASH-APPNAME` and the registered application (default `scalekit`).
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = name.into();
        self
    }

    /// `UNLEASH-INSTANCEID` (default `scalekit-<pid>`).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// Time between state requests (default 15 s).
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }

    /// Time between metrics sends (default 60 s, as Unleash's SDKs).
    pub fn metrics_interval(mut self, d: Duration) -> Self {
        self.metrics_interval = d;
        self
    }

    /// Whether to register and send metrics (default on).
    pub fn send_metrics(mut self, on: bool) -> Self {
        self.send_metrics = on;
        self
    }

    /// How long metrics the server does not accept are kept and merged into the
    /// next send before they are dropped (default 1 hour; Unleash keeps metrics by
    /// the hour).
    pub fn keep_unsent_metrics(mut self, d: Duration) -> Self {
        self.keep_unsent = d;
        self
    }

    /// Longest wait after repeated failures (default 300 s).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Time limit of one request (default 10 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// A file to start from and to keep the last good state in.
    pub fn bootstrap(mut self, path: impl Into<PathBuf>) -> Self {
        self.bootstrap = Some(path.into());
        self
    }

    /// Which client API to read (default [`FeaturesApi::Detect`]).
    pub fn api(mut self, api: FeaturesApi) -> Self {
        self.api = api;
        self
    }

    /// The poller, or the first setting that cannot work.
    pub fn build(self) -> Result<HttpPoller, ConfigError> {
        let base = self.base.trim_end_matches('/').to_owned();
        let url_ok = reqwest::Url::parse(&base).ok().is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
        });
        if !url_ok {
            return Err(ConfigError::new(
                COMPONENT,
                "base",
                format!("{:?}", self.base),
                "an http:// or https:// URL of the server, without query (for example http://127.0.0.1:4242)",
            ));
        }
        for (field, d, what) in [
            (
                "interval",
                self.interval,
                "a duration above zero (Unleash's SDKs poll every 15 s)",
            ),
            (
                "metrics_interval",
                self.metrics_interval,
                "a duration above zero (Unleash's SDKs send every 60 s)",
            ),
            (
                "timeout",
                self.timeout,
                "a duration above zero (default 10 s)",
            ),
            (
                "max_backoff",
                self.max_backoff,
                "a duration above zero (default 300 s)",
            ),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(COMPONENT, field, format!("{d:?}"), what));
            }
        }
        let header = |field: &'static str, v: &str| {
            HeaderValue::from_str(v)
                .ok()
                .filter(|_| !v.trim().is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        COMPONENT,
                        field,
                        format!("{v:?}"),
                        "a non-empty value of visible ASCII characters (it is sent as an HTTP header)",
                    )
                })
        };
        let token = match &self.token {
            Some(t) => Some(header("token", t)?),
            None => None,
        };
        let app = header("app_name", &self.app_name)?;
        let instance = header("instance_id", &self.instance_id)?;
        let connection_id = connection_id();
        let headers = identity_headers(token.as_ref(), &app, &instance, &connection_id);
        Ok(HttpPoller {
            conn: Conn {
                base,
                client: reqwest::Client::new(),
                headers,
                app_name: self.app_name,
                instance_id: self.instance_id,
                connection_id,
                timeout: self.timeout,
            },
            fetcher: Fetcher {
                api: self.api,
                delta: None,
                etag: None,
                bootstrap: self.bootstrap,
                interval: self.interval,
            },
            reporter: Reporter {
                on: self.send_metrics,
                interval: self.metrics_interval,
                keep_unsent: self.keep_unsent,
                registered: false,
                started: None,
                unsent: None,
                failures: 0,
            },
            max_backoff: self.max_backoff,
        })
    }
}
