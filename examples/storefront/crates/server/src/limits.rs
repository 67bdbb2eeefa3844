//! The connection limits: their stage-file defaults and checks, the process's file
//! limit, and logging at most once per interval.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::ServerConfig;

/// `server.header_read_timeout_ms` when the stage file does not say: 10 s.
pub fn default_header_read_timeout_ms() -> u64 {
    10_000
}

/// `server.idle_timeout_ms` when the stage file does not say: 60 s (longer than the
/// gateway's pool keeps an idle connection to an instance, 30 s, so that the
/// gateway, not the instance, closes it).
pub fn default_idle_timeout_ms() -> u64 {
    60_000
}

/// `server.body_timeout_ms` when the stage file does not say: 30 s.
pub fn default_body_timeout_ms() -> u64 {
    30_000
}

/// `server.max_connections` when the stage file does not say: 10,000.
pub fn default_max_connections() -> u32 {
    10_000
}

/// `server.drain_timeout_ms` when the stage file does not say: 10 s.
pub fn default_drain_timeout_ms() -> u64 {
    10_000
}

/// The longest timeout a stage file may give: one hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The most connections a stage file may allow.
const MAX_CONNECTIONS: u32 = 1_000_000;

impl ServerConfig {
    /// Checks the connection settings; `Err((field, message))`.
    pub(crate) fn check_connections(&self) -> Result<(), (&'static str, String)> {
        for (field, value) in [
            ("server.header_read_timeout_ms", self.header_read_timeout_ms),
            ("server.idle_timeout_ms", self.idle_timeout_ms),
            ("server.body_timeout_ms", self.body_timeout_ms),
        ] {
            if !(1..=MAX_TIMEOUT_MS).contains(&value) {
                return Err((
                    field,
                    format!("{value}: give milliseconds from 1 to {MAX_TIMEOUT_MS} (one hour)"),
                ));
            }
        }
        if self.drain_timeout_ms > MAX_TIMEOUT_MS {
            return Err((
                "server.drain_timeout_ms",
                format!(
                    "{}: give milliseconds from 0 (drop connections at once) to {MAX_TIMEOUT_MS} (one hour)",
                    self.drain_timeout_ms
                ),
            ));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err((
                "server.max_connections",
                format!(
                    "{}: allow from 1 to {MAX_CONNECTIONS} connections at once",
                    self.max_connections
                ),
            ));
        }
        Ok(())
    }
}

/// How a [`Server`](super::Server) treats connections (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request's headers: from the connection for its first
    /// request, from the first byte for later ones.
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request, and a response
    /// may wait for the client to take more of it.
    pub idle_timeout: Duration,
    /// Time a request's whole body may take to arrive after its headers.
    pub body_timeout: Duration,
    /// Connections open at once, at most.
    pub max_connections: usize,
    /// After shutdown is asked, time the requests in flight have to finish.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    /// The stage files' defaults: 10 s for headers, 60 s idle, 30 s for a body,
    /// 10,000 connections, 10 s to drain.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_millis(default_header_read_timeout_ms()),
            idle_timeout: Duration::from_millis(default_idle_timeout_ms()),
            body_timeout: Duration::from_millis(default_body_timeout_ms()),
            max_connections: default_max_connections() as usize,
            drain_timeout: Duration::from_millis(default_drain_timeout_ms()),
        }
    }
}

impl Limits {
    /// The limits a stage file's `[server]` section gives.
    pub fn from_config(server: &ServerConfig) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(server.idle_timeout_ms),
            body_timeout: Duration::from_millis(server.body_timeout_ms),
            max_connections: server.max_connections as usize,
            drain_timeout: Duration::from_millis(server.drain_timeout_ms),
        }
    }

    /// These limits with `max_connections` lowered, if need be, to what the
    /// process's file limit allows when each connection costs
    /// `files_per_connection` descriptors (2 for a proxy: the client's and the
    /// upstream's), keeping [`RESERVED_FILES`] for everything else (database pools,
    /// Redis, logs). Raises the soft file limit to the hard one first. Logs what it
    /// changed.
    pub fn fit_to_file_limit(mut self, files_per_connection: usize) -> Self {
        let Some(files) = raise_file_limit() else {
            return self;
        };
        let fits = usize::try_from(files)
            .unwrap_or(usize::MAX)
            .saturating_sub(RESERVED_FILES)
            / files_per_connection.max(1);
        let fits = fits.max(1);
        if fits < self.max_connections {
            let message = format!(
                "server.max_connections lowered from {} to {fits}: this process may open {files} files (ulimit -n), {RESERVED_FILES} of them kept for databases and logs; raise the limit to allow more",
                self.max_connections
            );
            // A little under the configured cap is routine; far under, a surprise.
            if fits < self.max_connections / 2 {
                tracing::warn!("{message}");
            } else {
                tracing::info!("{message}");
            }
            self.max_connections = fits;
        }
        self
    }
}

/// Descriptors kept for what is not a client connection (see
/// [`Limits::fit_to_file_limit`]).
pub const RESERVED_FILES: usize = 128;

/// Raises this process's soft limit on open files to its hard limit (as Go's
/// runtime does) and returns the soft limit in effect, or `None` when unlimited or
/// unknown.
pub fn raise_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(maximum)) = (limit.current, limit.maximum) {
            if current < maximum {
                match setrlimit(
                    Resource::Nofile,
                    Rlimit {
                        current: Some(maximum),
                        maximum: Some(maximum),
                    },
                ) {
                    Ok(()) => return Some(maximum),
                    Err(e) => tracing::debug!("cannot raise the open files limit: {e}"),
                }
            }
        }
        limit.current
    }
    #[cfg(not(unix))]
    None
}

/// Says something at most once per interval, with how many times it happened.
#[derive(Debug)]
pub(crate) struct Every {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Every {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence; `Some(n)` when it is time to log, with the
    /// occurrences since the last log (this one included).
    pub(crate) fn hit(&self) -> Option<u64> {
        self.hit_at(Instant::now())
    }

    fn hit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock();
        state.1 += 1;
        match state.0 {
            Some(last) if now.saturating_duration_since(last) < self.interval => None,
            _ => {
                state.0 = Some(now);
                Some(std::mem::take(&mut state.1))
            }
        }
    }
}

/// Parses a duration for the command line: `10` or `10s` (seconds, decimals
/// allowed), `500ms`.
///
/// ```
/// use std::time::Duration;
/// use storefront_server::parse_duration;
/// assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, millis) = match text.strip_suffix("ms") {
        Some(n) => (n, true),
        None => (text.strip_suffix('s').unwrap_or(text), false),
    };
    let value: f64 = number.trim().parse().map_err(|_| {
        format!("{text:?}: give seconds (\"10\", \"2.5s\") or milliseconds (\"500ms\")")
    })?;
    let secs = if millis { value / 1_000.0 } else { value };
    if !(0.0..=3_600.0).contains(&secs) {
        return Err(format!("{text:?}: give from 0 to 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;

    /// The `[server]` section with `line` added, parsed and checked; errors as the
    /// stage file reports them (`file: field: message`).
    fn with(line: &str) -> Result<ServerConfig, String> {
        let config: ServerConfig = toml::from_str(&format!("addr = \"127.0.0.1:1\"\n{line}\n"))
            .map_err(|e| e.to_string())?;
        config
            .check()
            .map_err(|(field, message)| format!("f.toml: {field}: {message}"))?;
        Ok(config)
    }

    #[test]
    fn connection_settings_default_and_are_checked() {
        let config = with("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Limits::from_config(&config), Limits::default());
        let config = with("idle_timeout_ms = 5000\nmax_connections = 7\ndrain_timeout_ms = 0")
            .unwrap_or_else(|e| panic!("{e}"));
        let limits = Limits::from_config(&config);
        assert_eq!(limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(limits.max_connections, 7);
        assert_eq!(limits.drain_timeout, Duration::ZERO);
        for (line, error) in [
            (
                "header_read_timeout_ms = 0",
                "f.toml: server.header_read_timeout_ms: 0: give milliseconds from 1 to 3600000 (one hour)",
            ),
            (
                "body_timeout_ms = 3600001",
                "f.toml: server.body_timeout_ms: 3600001: give milliseconds from 1 to 3600000 (one hour)",
            ),
            (
                "max_connections = 0",
                "f.toml: server.max_connections: 0: allow from 1 to 1000000 connections at once",
            ),
            (
                "drain_timeout_ms = 4000000",
                "f.toml: server.drain_timeout_ms: 4000000: give milliseconds from 0 (drop connections at once) to 3600000 (one hour)",
            ),
        ] {
            assert_eq!(with(line).err().as_deref(), Some(error), "{line}");
        }
        let typo = with("idle_timeout = 5").err().unwrap_or_default();
        assert!(typo.contains("unknown field `idle_timeout`"), "{typo}");
    }

    #[test]
    fn logs_at_most_once_per_interval_with_the_count() {
        let every = Every::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(every.hit_at(t0), Some(1));
        assert_eq!(every.hit_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(every.hit_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(every.hit_at(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(every.hit_at(t0 + Duration::from_secs(30)), Some(1));
    }

    #[test]
    fn durations_on_the_command_line() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 10s "), Ok(Duration::from_secs(10)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("3601").is_err());
        assert!(parse_duration("NaN").is_err());
        assert!(parse_duration("").is_err());
    }
}
