use crate::sources::backoff;
use crate::{Flags, FlagsError};
use std::path::PathBuf;
use std::time::Duration;

/// Polls an Unleash-compatible client API (`GET {base}/api/client/features`).
///
/// * Sends the last `ETag` as `If-None-Match`; a `304 Not Modified` changes nothing.
/// * On failure (connection, timeout, non-2xx status, bad body) it backs off: the
///   interval doubles per consecutive failure up to `max_backoff`, and resets on the
///   next success.
/// * With a bootstrap file, the store is loaded from it before the first fetch (so
///   the service starts and keeps serving while the server is unreachable), and each
///   new state fetched is written back to it (to a temporary file, then renamed).
///
/// Plain `http://` works out of the box; for `https://`, enable a TLS feature of
/// `reqwest` in your own `Cargo.toml` (for example `reqwest = { version = "0.13",
/// features = ["rustls"] }`).
///
/// ```no_run
/// # async fn run() {
/// use scalekit_flags::{sources::HttpPoller, Flags};
/// use std::time::Duration;
/// let flags = Flags::new();
/// let task = HttpPoller::new("http://unleash.internal:4242")
///     .token("default:production.abc123")
///     .app_name("storefront")
///     .interval(Duration::from_secs(15))
///     .bootstrap("/var/lib/storefront/flags.json")
///     .spawn(flags.clone());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HttpPoller {
    url: String,
    token: Option<String>,
    app_name: String,
    instance_id: String,
    interval: Duration,
    max_backoff: Duration,
    timeout: Duration,
    bootstrap: Option<PathBuf>,
    etag: Option<String>,
    client: reqwest::Client,
}

/// What one fetch did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchOutcome {
    /// A new state is serving, with this version.
    Updated(u64),
    /// The server answered 304: nothing changed.
    NotModified,
}

impl HttpPoller {
    /// A poller for the Unleash server at `base` (for example `http://127.0.0.1:4242`).
    pub fn new(base: impl Into<String>) -> Self {
        let base = base.into();
        HttpPoller {
            url: format!("{}/api/client/features", base.trim_end_matches('/')),
            token: None,
            app_name: "scalekit".into(),
            instance_id: format!("scalekit-{}", std::process::id()),
            interval: Duration::from_secs(15),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            bootstrap: None,
            etag: None,
            client: reqwest::Client::new(),
        }
    }

    /// The API token, sent as `Authorization`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// `UNLEASH-APPNAME` (default `scalekit`).
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = name.into();
        self
    }

    /// `UNLEASH-INSTANCEID` (default `scalekit-<pid>`).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// Time between polls (default 15 s).
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
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

    /// The `ETag` of the state last applied.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// Loads the bootstrap file into the store when the store is still empty.
    /// Returns whether it did.
    pub fn load_bootstrap(&self, flags: &Flags) -> bool {
        match &self.bootstrap {
            Some(p) if flags.version() == 0 && p.exists() => flags.load_file(p).is_ok(),
            _ => false,
        }
    }

    /// One request: applies a new state, or reports why not (also as an event).
    pub async fn fetch_once(&mut self, flags: &Flags) -> Result<FetchOutcome, FlagsError> {
        let r = self.fetch_inner(flags).await;
        if let Err(e) = &r {
            if !matches!(e, FlagsError::Parse { .. } | FlagsError::Invalid { .. }) {
                flags.source_failed(
                    &self.url,
                    FlagsError::Source {
                        what: e.to_string(),
                        source: None,
                    },
                );
            }
        }
        r
    }

    async fn fetch_inner(&mut self, flags: &Flags) -> Result<FetchOutcome, FlagsError> {
        let src = |what: String, e: reqwest::Error| FlagsError::Source {
            what,
            source: Some(Box::new(e)),
        };
        let mut req = self
            .client
            .get(&self.url)
            .timeout(self.timeout)
            .header("UNLEASH-APPNAME", &self.app_name)
            .header("UNLEASH-INSTANCEID", &self.instance_id)
            .header("Unleash-Client-Spec", "5.2.0");
        if let Some(t) = &self.token {
            req = req.header("Authorization", t);
        }
        if let Some(e) = &self.etag {
            req = req.header("If-None-Match", e);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| src(format!("GET {}", self.url), e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(FetchOutcome::NotModified);
        }
        if !status.is_success() {
            return Err(FlagsError::Source {
                what: format!("GET {}: HTTP {status}", self.url),
                source: None,
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
            .map_err(|e| src(format!("GET {}: reading the body", self.url), e))?;
        let report = flags.load_json(&body, &self.url)?;
        self.etag = etag;
        if let Some(p) = &self.bootstrap {
            let tmp = p.with_extension("tmp");
            let written = std::fs::write(&tmp, &body).and_then(|()| std::fs::rename(&tmp, p));
            if let Err(source) = written {
                flags.source_failed(
                    &self.url,
                    FlagsError::Io {
                        path: p.clone(),
                        source,
                    },
                );
            }
        }
        Ok(FetchOutcome::Updated(report.version))
    }

    /// Runs the poller as a task: bootstrap, then fetch every interval, backing off
    /// on failures.
    pub fn spawn(mut self, flags: Flags) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            self.load_bootstrap(&flags);
            let mut failures = 0u32;
            loop {
                match self.fetch_once(&flags).await {
                    Ok(_) => failures = 0,
                    Err(_) => failures = failures.saturating_add(1),
                }
                let wait = if failures == 0 {
                    self.interval
                } else {
                    backoff(self.interval, self.max_backoff, failures)
                };
                tokio::time::sleep(wait).await;
            }
        })
    }
}
