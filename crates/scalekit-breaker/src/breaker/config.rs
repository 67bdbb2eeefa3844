//! The breaker's settings and the rules a setting must follow.

use std::time::Duration;

use scalekit_core::ConfigError;

use super::state::MAX_HALF_OPEN_PROBES;
use crate::window::MAX_COUNT_WINDOW;

/// How the breaker decides to open.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Window {
    /// The failure and slow-call rates of the last `n` calls.
    Count(u32),
    /// The failure and slow-call rates of the calls of the last so many seconds
    /// (whole seconds, one bucket a second).
    Time(Duration),
    /// Open after `n` failures in a row (rates and minimum calls do not apply).
    ConsecutiveFailures(u32),
}

const COMPONENT: &str = "circuit breaker";
/// The longest wait the breaker accepts (open, backoff cap, half-open).
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) window: Window,
    pub(crate) failure_rate: f64,
    pub(crate) slow_rate: f64,
    pub(crate) slow_duration: Option<Duration>,
    pub(crate) minimum_calls: u64,
    pub(crate) wait: Duration,
    pub(crate) multiplier: f64,
    pub(crate) max_wait: Duration,
    pub(crate) jitter: f64,
    pub(crate) probes: u32,
    pub(crate) max_half_open: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window: Window::Count(100),
            failure_rate: 50.0,
            slow_rate: 100.0,
            slow_duration: None,
            minimum_calls: 100,
            wait: Duration::from_secs(60),
            multiplier: 1.0,
            max_wait: Duration::from_secs(60),
            jitter: 0.0,
            probes: 10,
            max_half_open: Duration::from_secs(60),
        }
    }
}

fn err(field: &'static str, value: impl std::fmt::Display, expected: &'static str) -> ConfigError {
    ConfigError::new(COMPONENT, field, value, expected)
}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("failure_rate_threshold", self.failure_rate),
            ("slow_call_rate_threshold", self.slow_rate),
        ] {
            if !(value > 0.0 && value <= 100.0) {
                return Err(err(
                    field,
                    value,
                    "a percentage above 0 and at most 100 (50 is the usual choice)",
                ));
            }
        }
        self.validate_window()?;
        if self.minimum_calls == 0 {
            return Err(err("minimum_calls", 0, "at least 1 (100 by default)"));
        }
        if self.probes == 0 || self.probes > MAX_HALF_OPEN_PROBES {
            return Err(err(
                "half_open_probes",
                self.probes,
                "1 to 4095 (MAX_HALF_OPEN_PROBES); 3 to 10 is usual",
            ));
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(err(
                "backoff (multiplier)",
                self.multiplier,
                "a finite number of at least 1 (1 for no backoff, 2 to double)",
            ));
        }
        if self.max_wait < self.wait {
            return Err(ConfigError::new(
                COMPONENT,
                "backoff (max_wait)",
                format!("{:?}", self.max_wait),
                format!("at least wait_in_open ({:?})", self.wait),
            ));
        }
        if self.max_wait > YEAR {
            return Err(err(
                "wait_in_open / backoff (max_wait)",
                format_args!("{:?}", self.max_wait),
                "at most a year",
            ));
        }
        if self.max_half_open.is_zero() || self.max_half_open > YEAR {
            return Err(err(
                "max_wait_in_half_open",
                format_args!("{:?}", self.max_half_open),
                "more than zero and at most a year (60 s by default)",
            ));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(err(
                "jitter",
                self.jitter,
                "a fraction in [0, 1) (0.1 to 0.3 is usual)",
            ));
        }
        Ok(())
    }

    fn validate_window(&self) -> Result<(), ConfigError> {
        match self.window {
            Window::Count(n) if n == 0 || n > MAX_COUNT_WINDOW => Err(err(
                "window (Window::Count)",
                n,
                "1 to 16777216 calls (100 by default)",
            )),
            Window::Time(d) if d.as_secs() == 0 || d.as_secs() > 3600 || d.subsec_nanos() != 0 => {
                Err(err(
                    "window (Window::Time)",
                    format_args!("{d:?}"),
                    "whole seconds from 1 s to 1 h",
                ))
            }
            Window::ConsecutiveFailures(0) => Err(err(
                "window (Window::ConsecutiveFailures)",
                0,
                "at least 1 failure in a row",
            )),
            _ => Ok(()),
        }
    }
}
