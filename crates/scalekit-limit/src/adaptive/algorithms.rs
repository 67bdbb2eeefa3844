//! The algorithms that move an adaptive concurrency limit: AIMD, Vegas and
//! Gradient2, after Netflix's concurrency-limits.

use std::fmt;
use std::time::Duration;

use scalekit_core::ConfigError;

/// What one finished call tells a [`LimitAlgorithm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sample {
    /// How long the call took.
    pub rtt: Duration,
    /// Calls in flight when it started (itself included).
    pub in_flight: u32,
    /// Whether it failed in a way that signals overload (a timeout, a 503).
    pub dropped: bool,
}

impl Sample {
    /// A sample.
    pub fn new(rtt: Duration, in_flight: u32, dropped: bool) -> Self {
        Self {
            rtt,
            in_flight,
            dropped,
        }
    }
}

/// An algorithm that moves a concurrency limit from call samples.
pub trait LimitAlgorithm: Send + fmt::Debug {
    /// The limit to start with.
    fn initial_limit(&self) -> u32;
    /// Learns from one finished call; returns the new limit.
    fn update(&mut self, sample: Sample) -> u32;
}

/// Keeps the limit in `[min, max]`, as a fraction: small steps (Gradient2's
/// smoothing) accumulate instead of being truncated away.
fn clamp(v: f64, min: u32, max: u32) -> f64 {
    if v.is_nan() {
        return f64::from(min);
    }
    v.clamp(f64::from(min), f64::from(max))
}

/// Additive increase, multiplicative decrease: +1 after a success while the
/// limit is in use, `* backoff` after a drop. The loss-based classic.
#[derive(Clone, Debug)]
pub struct Aimd {
    limit: f64,
    min: u32,
    max: u32,
    backoff: f64,
}

impl Aimd {
    /// Starts at `initial`, stays in `[min, max]`, backs off by 0.9.
    pub fn new(initial: u32, min: u32, max: u32) -> Self {
        Self {
            limit: f64::from(initial.clamp(min.max(1), max.max(1))),
            min: min.max(1),
            max: max.max(1),
            backoff: 0.9,
        }
    }

    /// The factor a drop multiplies the limit by, in `[0.5, 1)`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a ratio outside `[0.5, 1)`.
    pub fn backoff(mut self, ratio: f64) -> Result<Self, ConfigError> {
        if !(0.5..1.0).contains(&ratio) {
            return Err(ConfigError::new(
                "AIMD limit",
                "backoff",
                ratio,
                "a ratio in [0.5, 1) (0.9 by default)",
            ));
        }
        self.backoff = ratio;
        Ok(self)
    }
}

impl LimitAlgorithm for Aimd {
    fn initial_limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, s: Sample) -> u32 {
        if s.dropped {
            self.limit *= self.backoff;
        } else if f64::from(s.in_flight) * 2.0 >= self.limit {
            // Only grow while the limit is actually being used.
            self.limit += 1.0;
        }
        self.limit = clamp(self.limit, self.min, self.max);
        self.limit as u32
    }
}

/// TCP Vegas applied to concurrency: estimates the queue from the ratio of the
/// fastest RTT seen (no load) to the current one, grows while the queue is
/// short (below `alpha = 3 log10 L`), shrinks when it is long (above
/// `beta = 6 log10 L`).
#[derive(Clone, Debug)]
pub struct Vegas {
    limit: f64,
    min: u32,
    max: u32,
    rtt_noload: Option<Duration>,
}

impl Vegas {
    /// Starts at `initial`, stays in `[min, max]`.
    pub fn new(initial: u32, min: u32, max: u32) -> Self {
        Self {
            limit: f64::from(initial.clamp(min.max(1), max.max(1))),
            min: min.max(1),
            max: max.max(1),
            rtt_noload: None,
        }
    }
}

impl LimitAlgorithm for Vegas {
    fn initial_limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, s: Sample) -> u32 {
        let rtt = s.rtt.max(Duration::from_nanos(1));
        let noload = match self.rtt_noload {
            Some(r) if r <= rtt => r,
            _ => {
                self.rtt_noload = Some(rtt);
                rtt
            }
        };
        let log = self.limit.log10().max(1.0);
        if s.dropped {
            self.limit -= log;
        } else if f64::from(s.in_flight) * 2.0 >= self.limit {
            let queue = (self.limit * (1.0 - noload.as_secs_f64() / rtt.as_secs_f64())).ceil();
            let (alpha, beta) = (3.0 * log, 6.0 * log);
            if queue <= log {
                self.limit += beta;
            } else if queue < alpha {
                self.limit += log;
            } else if queue > beta {
                self.limit -= log;
            }
        }
        self.limit = clamp(self.limit, self.min, self.max);
        self.limit as u32
    }
}

/// Netflix's Gradient2: compares a short-term RTT (this sample) with a long-term
/// exponential average; the ratio (`tolerance * long / short`, kept in
/// `[0.5, 1]`) scales the limit, plus a small queue allowance, smoothed.
#[derive(Clone, Debug)]
pub struct Gradient2 {
    limit: f64,
    min: u32,
    max: u32,
    long_rtt: Option<f64>,
    long_window: f64,
    tolerance: f64,
    smoothing: f64,
    queue: f64,
}

impl Gradient2 {
    /// Starts at `initial`, stays in `[min, max]`; long window 600 samples,
    /// tolerance 1.5, smoothing 0.2, queue allowance 4.
    pub fn new(initial: u32, min: u32, max: u32) -> Self {
        Self {
            limit: f64::from(initial.clamp(min.max(1), max.max(1))),
            min: min.max(1),
            max: max.max(1),
            long_rtt: None,
            long_window: 600.0,
            tolerance: 1.5,
            smoothing: 0.2,
            queue: 4.0,
        }
    }
}

impl LimitAlgorithm for Gradient2 {
    fn initial_limit(&self) -> u32 {
        self.limit as u32
    }

    fn update(&mut self, s: Sample) -> u32 {
        let short = s.rtt.as_secs_f64().max(1e-9);
        let long = match self.long_rtt {
            None => short,
            Some(l) => {
                let mut l = l + (short - l) / self.long_window;
                // Let the long average recover quickly after a load drop.
                if l / short > 2.0 {
                    l *= 0.95;
                }
                l
            }
        };
        self.long_rtt = Some(long);
        // App-limited: not enough in flight to judge.
        if f64::from(s.in_flight) < self.limit / 2.0 && !s.dropped {
            return self.limit as u32;
        }
        let gradient = (self.tolerance * long / short).clamp(0.5, 1.0);
        let gradient = if s.dropped { 0.5 } else { gradient };
        let target = self.limit * gradient + self.queue;
        self.limit = self.limit * (1.0 - self.smoothing) + target * self.smoothing;
        self.limit = clamp(self.limit, self.min, self.max);
        self.limit as u32
    }
}
