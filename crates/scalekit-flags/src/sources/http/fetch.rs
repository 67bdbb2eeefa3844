//! Fetching the state: the full client API or its delta API (found by detection),
//! ETags, and the bootstrap file.

use crate::error::FlagsError;
use crate::flags::parse::{parse_json, Update};
use crate::flags::Flags;
use crate::sources::http::conn::{Conn, Failure};
use scalekit_core::Clock;
use std::path::PathBuf;
use std::time::Duration;

/// Which of Unleash's client APIs the poller reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FeaturesApi {
    /// Try the delta API (`GET /api/client/delta`) first; when the server answers
    /// 404 (it does not offer it: Unleash's open-source server 7.x does not, Edge
    /// and Enterprise do), use `GET /api/client/features` from then on.
    #[default]
    Detect,
    /// Only the delta API: a hydration event first, then the changes since the
    /// revision in the last `ETag`.
    Delta,
    /// Only the full state, `GET /api/client/features`.
    Full,
}

/// What one fetch did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchOutcome {
    /// A new state is serving, with this version.
    Updated(u64),
    /// The server answered 304 (or a delta with no events): nothing changed.
    NotModified,
}

pub(super) const FEATURES: &str = "/api/client/features";
pub(super) const DELTA: &str = "/api/client/delta";

/// The fetching half of a poller.
#[derive(Debug, Clone)]
pub(super) struct Fetcher {
    pub(super) api: FeaturesApi,
    /// Under [`FeaturesApi::Detect`]: whether the server offers the delta API, once
    /// known.
    pub(super) delta: Option<bool>,
    pub(super) etag: Option<String>,
    pub(super) bootstrap: Option<PathBuf>,
    pub(super) interval: Duration,
}

impl Fetcher {
    /// Whether the next fetch goes to the delta API.
    pub(super) fn uses_delta(&self) -> bool {
        match self.api {
            FeaturesApi::Full => false,
            FeaturesApi::Delta => true,
            FeaturesApi::Detect => self.delta.unwrap_or(true),
        }
    }

    /// One fetch, falling back from the delta API to the full one when detection
    /// finds the server does not offer it.
    pub(super) async fn fetch<C: Clock>(
        &mut self,
        conn: &Conn,
        flags: &Flags<C>,
    ) -> Result<FetchOutcome, FlagsError> {
        let mut path = if self.uses_delta() { DELTA } else { FEATURES };
        let mut r = self.fetch_from(conn, flags, path).await;
        if self.api == FeaturesApi::Detect && self.delta.is_none() {
            match &r {
                Err(f) if f.status() == Some(404) => {
                    self.delta = Some(false);
                    self.etag = None;
                    path = FEATURES;
                    r = self.fetch_from(conn, flags, path).await;
                }
                Ok(_) => self.delta = Some(true),
                Err(_) => {}
            }
        }
        r.map_err(|f| match f {
            Failure::Refused(e) => e,
            other => report(flags, &conn.url(path), other),
        })
    }

    async fn fetch_from<C: Clock>(
        &mut self,
        conn: &Conn,
        flags: &Flags<C>,
        path: &str,
    ) -> Result<FetchOutcome, Failure> {
        let url = conn.url(path);
        let answer = conn
            .send(path, self.interval, self.etag.as_deref(), None)
            .await?;
        if answer.status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(FetchOutcome::NotModified);
        }
        let loaded = match parse_json(&answer.body, Some(&url)) {
            Ok(Update::Full(state)) => flags.load(state, &url).map(|r| (r, true)),
            Ok(Update::Delta(d)) if d.events.is_empty() => {
                self.etag = answer.etag;
                return Ok(FetchOutcome::NotModified);
            }
            Ok(Update::Delta(d)) => flags.apply_delta(&d, &url).map(|r| (r, false)),
            Err(e) => Err(flags.reject(&url, e)),
        };
        let (report, full) = loaded.map_err(Failure::Refused)?;
        self.etag = answer.etag;
        if let Some(p) = &self.bootstrap {
            // A delta is not a state: keep the state it produced.
            let text = if full {
                answer.body
            } else {
                serde_json::to_string(&*flags.state()).unwrap_or_default()
            };
            let tmp = p.with_extension("tmp");
            let written = std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, p));
            if let Err(source) = written {
                flags.source_failed(
                    &url,
                    FlagsError::Io {
                        path: p.clone(),
                        source,
                    },
                );
            }
        }
        Ok(FetchOutcome::Updated(report.version))
    }
}

/// Turns a failed request into the error returned, after telling the hooks.
pub(super) fn report<C: Clock>(flags: &Flags<C>, url: &str, f: Failure) -> FlagsError {
    let e = f.into_error();
    flags.source_failed(url, e.duplicate());
    e
}
