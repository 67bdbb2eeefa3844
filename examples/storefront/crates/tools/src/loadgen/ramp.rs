//! How many customers a shop carries: the largest population of thinking
//! customers ([`Mode::Customers`]) whose requests still meet a latency
//! objective, found by a ramp.
//!
//! Each step runs one population for a while and checks its p99 and its error
//! share against the [`Objective`]. The ramp grows the population by half
//! while the objective holds, then bisects between the last population that
//! met it and the first that did not, until the two are within a tenth of each
//! other (or the steps run out). After a step that missed, the shop is given
//! time to work off the queue it built (its p99, up to 15 s) before the next. A shop's response time grows with its population (more
//! customers, longer queues), which is what makes the bisection sound; noise
//! near the knee can make one step disagree with its neighbours, so the
//! answer is "about this many", to the ramp's precision.
//!
//! ```no_run
//! # async fn demo(load: &storefront_tools::loadgen::Loadgen) {
//! use std::time::Duration;
//! use storefront_tools::loadgen::ramp::{ramp, RampOptions};
//! let options = RampOptions::default(); // 5 s think, p99 under 200 ms
//! let found = ramp(load, &options, 1_000).await;
//! println!("carries {:?} customers", found.carried().map(|s| s.customers));
//! # }
//! ```

use std::time::Duration;

use super::stats::Row;
use super::{Loadgen, Mode};

/// What a population must get to count as carried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    /// The 99th percentile of every request's latency, at most.
    pub p99: Duration,
    /// Failed requests over all requests, at most (0.001 is one in a thousand).
    pub max_error_share: f64,
}

impl Default for Objective {
    fn default() -> Self {
        Self {
            p99: Duration::from_millis(200),
            max_error_share: 0.001,
        }
    }
}

impl Objective {
    /// Whether a step's figures meet the objective (a step that completed no
    /// request does not).
    pub fn met_by(&self, row: &Row) -> bool {
        row.count > 0
            && row.p99_ms <= self.p99.as_secs_f64() * 1_000.0
            && (row.errors as f64) <= self.max_error_share * row.count as f64
    }
}

/// How to ramp.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RampOptions {
    /// Each customer's mean think time per request.
    pub think: Duration,
    /// What a population must get.
    pub objective: Objective,
    /// Load before each step's measurement (discarded).
    pub settle: Duration,
    /// Each step's measured length.
    pub step: Duration,
    /// Steps at most.
    pub max_steps: u32,
    /// Stop when the last good and the first bad population are within this
    /// share of each other.
    pub precision: f64,
}

impl Default for RampOptions {
    fn default() -> Self {
        Self {
            think: Duration::from_secs(5),
            objective: Objective::default(),
            settle: Duration::from_secs(2),
            step: Duration::from_secs(8),
            max_steps: 8,
            precision: 0.1,
        }
    }
}

/// One population's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct RampStep {
    /// Customers in the shop.
    pub customers: usize,
    /// All requests of the measured window.
    pub total: Row,
    /// Whether the objective held.
    pub met: bool,
}

/// The steps a ramp took, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ramp {
    /// Every step, in the order run.
    pub steps: Vec<RampStep>,
}

impl Ramp {
    /// The largest population that met the objective (`None` when none did).
    pub fn carried(&self) -> Option<&RampStep> {
        self.steps
            .iter()
            .filter(|s| s.met)
            .max_by_key(|s| s.customers)
    }

    /// The smallest population that missed the objective, above the carried one.
    pub fn first_missed(&self) -> Option<&RampStep> {
        let carried = self.carried().map_or(0, |s| s.customers);
        self.steps
            .iter()
            .filter(|s| !s.met && s.customers > carried)
            .min_by_key(|s| s.customers)
    }
}

/// The next population to try after the steps so far, or `None` when the
/// ramp is done: grow by half (from `guess / 2`) while nothing has missed,
/// bisect once something has; done when the bracket is within `precision`.
pub fn next_population(ramp: &Ramp, guess: usize, precision: f64) -> Option<usize> {
    let Some(last) = ramp.steps.last() else {
        return Some((guess / 2).max(1));
    };
    let good = ramp.carried().map(|s| s.customers);
    let bad = ramp.first_missed().map(|s| s.customers);
    let next = match (good, bad) {
        (Some(g), None) => g.saturating_add(g / 2).max(g + 1),
        (None, Some(b)) if b <= 1 => return None,
        (None, Some(b)) => b / 2,
        (Some(g), Some(b)) => {
            let gap = b.saturating_sub(g);
            if gap <= 1 || (gap as f64) <= precision * g as f64 {
                return None;
            }
            g + gap / 2
        }
        (None, None) => return None,
    };
    let next = next.clamp(1, 1_000_000);
    (next != last.customers && ramp.steps.iter().all(|s| s.customers != next)).then_some(next)
}

/// Ramps `load` (its logged-in sessions reused step after step) from about
/// half of `guess` customers, as [`next_population`] says, for at most
/// `options.max_steps` steps.
pub async fn ramp(load: &Loadgen, options: &RampOptions, guess: usize) -> Ramp {
    let mut found = Ramp::default();
    for _ in 0..options.max_steps {
        let Some(customers) = next_population(&found, guess, options.precision) else {
            break;
        };
        let mode = Mode::Customers {
            customers,
            think: options.think,
        };
        if !options.settle.is_zero() {
            load.run_as(mode, options.settle, None).await;
        }
        let label = format!("{customers} customers");
        let report = load.run_as(mode, options.step, Some(&label)).await;
        let met = options.objective.met_by(&report.total);
        if !met {
            // Queues built by an overload drain before the next step counts.
            let backlog = Duration::from_secs_f64((report.total.p99_ms / 1_000.0).min(15.0));
            tokio::time::sleep(backlog + Duration::from_secs(1)).await;
        }
        found.steps.push(RampStep {
            customers,
            total: report.total,
            met,
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(count: u64, errors: u64, p99_ms: f64) -> Row {
        Row {
            name: "all".into(),
            count,
            errors,
            sold_out: 0,
            p50_ms: p99_ms / 4.0,
            p90_ms: p99_ms / 2.0,
            p99_ms,
            max_ms: p99_ms * 2.0,
            mean_ms: p99_ms / 3.0,
            rps: count as f64,
        }
    }

    #[test]
    fn the_objective_counts_latency_errors_and_silence() {
        let o = Objective::default();
        assert!(o.met_by(&row(10_000, 10, 199.0)));
        assert!(!o.met_by(&row(10_000, 11, 10.0)), "errors over 0.1%");
        assert!(!o.met_by(&row(10_000, 0, 201.0)), "p99 over 200 ms");
        assert!(!o.met_by(&row(0, 0, 0.0)), "nothing answered");
    }

    /// Ramps a shop that meets the objective up to `capacity` customers.
    fn simulate(capacity: usize, guess: usize, precision: f64, max_steps: u32) -> Ramp {
        let mut ramp = Ramp::default();
        for _ in 0..max_steps {
            let Some(n) = next_population(&ramp, guess, precision) else {
                break;
            };
            let met = n <= capacity;
            ramp.steps.push(RampStep {
                customers: n,
                total: row(1_000, 0, if met { 50.0 } else { 500.0 }),
                met,
            });
        }
        ramp
    }

    #[test]
    fn a_ramp_grows_by_half_then_bisects() {
        let r = simulate(1_000, 400, 0.1, 20);
        let tried: Vec<usize> = r.steps.iter().map(|s| s.customers).collect();
        assert_eq!(tried[..5], [200, 300, 450, 675, 1_012]);
        let carried = r.carried().map(|s| s.customers).unwrap_or(0);
        let missed = r.first_missed().map(|s| s.customers).unwrap_or(0);
        assert!(carried <= 1_000 && missed > 1_000, "{tried:?}");
        assert!(
            (missed - carried) as f64 <= 0.1 * carried as f64,
            "{tried:?}"
        );
    }

    #[test]
    fn a_shop_that_carries_no_one_ends_the_ramp() {
        let r = simulate(0, 64, 0.1, 20);
        assert!(r.carried().is_none());
        assert_eq!(r.steps.last().map(|s| s.customers), Some(1));
    }

    proptest! {
        /// Whatever the capacity and the first guess, a ramp with enough steps
        /// brackets the capacity within its precision, and never tries a
        /// population twice.
        #[test]
        fn the_ramp_brackets_the_capacity(capacity in 1usize..200_000, guess in 1usize..400_000) {
            let r = simulate(capacity, guess, 0.1, 64);
            let mut tried: Vec<usize> = r.steps.iter().map(|s| s.customers).collect();
            let n = tried.len();
            tried.sort_unstable();
            tried.dedup();
            prop_assert_eq!(tried.len(), n);
            let carried = r.carried().map(|s| s.customers).unwrap_or(0);
            prop_assert!(carried <= capacity);
            let missed = r.first_missed().map(|s| s.customers);
            let missed = missed.unwrap_or(usize::MAX);
            prop_assert!(missed > capacity);
            prop_assert!(missed - carried <= 1 || (missed - carried) as f64 <= 0.1 * carried as f64,
                "{} .. {} from {:?}", carried, missed, r.steps.iter().map(|s| s.customers).collect::<Vec<_>>());
        }
    }
}
