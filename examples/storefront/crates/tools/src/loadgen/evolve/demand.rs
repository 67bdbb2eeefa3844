//! What a machine spends per request, the model's service demand: from one
//! saturated window, or fitted over the loads a ramp ran.
//!
//! A machine's CPU is not proportional to the requests it serves. With no
//! load it spends almost nothing, but under load part of what it spends
//! grows with time rather than with requests: runtime threads that park and
//! wake, the database's WAL writer and its group commits, the wakeups of
//! processes held to a quarter of a core. Over the loads that matter (from
//! half the saturating load to all of it) a line fits it well:
//! `cores = demand x requests/s + overhead`. One window cannot tell the two
//! apart, so a model calibrated on one window charges the overhead to the
//! requests, and predicts a machine that is busier elsewhere (its overhead
//! spread over more requests) to saturate too early. Fitted over the ramp's
//! steps, the overhead is capacity that requests cannot use and the demand
//! is the line's slope.
//!
//! ```
//! use storefront_tools::loadgen::evolve::demand::fit_line;
//! // 0.1 core of overhead and 150 µs a request, seen at four loads.
//! let points: Vec<(f64, f64)> = [400.0, 600.0, 800.0, 1_000.0]
//!     .iter()
//!     .map(|&x| (x, 0.1 + 0.000_15 * x))
//!     .collect();
//! let (slope, overhead) = fit_line(&points).unwrap();
//! assert!((slope - 0.000_15).abs() < 1e-9 && (overhead - 0.1).abs() < 1e-9);
//! ```

use super::miniature::{Kind, Usage};

/// One machine's demand.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineDemand {
    /// Its name (`app-2`, `db` ...).
    pub name: String,
    /// What it runs.
    pub kind: Kind,
    /// Its share of a core.
    pub cpus: f64,
    /// CPU seconds per request of the whole shop.
    pub per_request: f64,
    /// Cores it spends whatever the requests (at most 0.9 of the machine).
    pub overhead: f64,
    /// Whether the two come from a fit over several loads.
    pub fitted: bool,
}

/// One load: requests a second, and each machine's use in cores.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadPoint {
    /// Requests a second the shop served.
    pub rps: f64,
    /// Per machine: cores used (CPU seconds a second).
    pub cores: Usage,
}

/// The demands from one window of `seconds` in which `requests` were served
/// (`used`: CPU seconds per machine), less what each machine spent with no
/// load at all (`idle`, in cores), which is kept as its overhead.
pub fn from_window(used: &Usage, seconds: f64, idle: &Usage, requests: u64) -> Vec<MachineDemand> {
    used.machines
        .iter()
        .map(|(name, kind, cpus, cpu)| {
            let overhead = idle
                .machines
                .iter()
                .find(|m| &m.0 == name)
                .map_or(0.0, |m| m.3)
                .clamp(0.0, 0.9 * cpus);
            let cpu = (cpu - overhead * seconds).max(0.0);
            MachineDemand {
                name: name.clone(),
                kind: *kind,
                cpus: *cpus,
                per_request: if requests > 0 {
                    cpu / requests as f64
                } else {
                    0.0
                },
                overhead,
                fitted: false,
            }
        })
        .collect()
}

/// Loads under this share of the heaviest one are left out of a fit: near
/// idle a machine's CPU bends away from the line that holds under load.
const LIGHTEST: f64 = 0.3;

/// `window`'s demands, each replaced by the line fitted over `points` where
/// a line fits (at least three loads, the heaviest at least half again the
/// lightest, a positive slope, an overhead under 0.9 of the machine).
pub fn fitted(window: Vec<MachineDemand>, points: &[LoadPoint]) -> Vec<MachineDemand> {
    let heaviest = points.iter().map(|p| p.rps).fold(0.0, f64::max);
    window
        .into_iter()
        .map(|d| {
            let line: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.rps.is_finite() && p.rps >= LIGHTEST * heaviest && p.rps > 0.0)
                .filter_map(|p| {
                    let m = p.cores.machines.iter().find(|m| m.0 == d.name)?;
                    m.3.is_finite().then_some((p.rps, m.3))
                })
                .collect();
            let lightest = line.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
            if line.len() < 3 || heaviest < 1.5 * lightest {
                return d;
            }
            match fit_line(&line) {
                Some((slope, overhead)) if slope > 0.0 && overhead < 0.9 * d.cpus => {
                    MachineDemand {
                        per_request: slope,
                        overhead,
                        fitted: true,
                        ..d
                    }
                }
                _ => d,
            }
        })
        .collect()
}

/// The least-squares line `y = slope x + intercept` through `points`, its
/// intercept held at zero or more (a machine cannot give back CPU): when the
/// free fit's intercept is negative, the line through the origin. `None` for
/// fewer than two points or no spread in `x`.
pub fn fit_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if !(sxx.is_finite() && sxx > 0.0) {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    if intercept >= 0.0 {
        return Some((slope, intercept));
    }
    let xx: f64 = points.iter().map(|p| p.0 * p.0).sum();
    let xy: f64 = points.iter().map(|p| p.0 * p.1).sum();
    (xx > 0.0).then(|| (xy / xx, 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usage(cores: &[(&str, f64)]) -> Usage {
        Usage {
            machines: cores
                .iter()
                .map(|(n, c)| ((*n).to_owned(), Kind::Postgres, 0.25, *c))
                .collect(),
        }
    }

    #[test]
    fn a_window_charges_what_is_not_idle_to_the_requests() {
        // 20 s, 10,000 requests, 4 CPU seconds, 0.05 core idle.
        let d = from_window(
            &usage(&[("db", 4.0)]),
            20.0,
            &usage(&[("db", 0.05)]),
            10_000,
        );
        assert!((d[0].per_request - 0.000_3).abs() < 1e-12);
        assert_eq!(d[0].overhead, 0.05);
        assert!(!d[0].fitted);
    }

    #[test]
    fn the_fit_separates_overhead_from_demand_and_needs_spread() {
        let window = from_window(&usage(&[("db", 4.0)]), 20.0, &usage(&[]), 10_000);
        let points: Vec<LoadPoint> = [250.0, 400.0, 500.0, 20.0]
            .iter()
            .map(|&rps| LoadPoint {
                rps,
                // Near idle (20 requests/s) the machine is off the line: left out.
                cores: usage(&[("db", if rps < 50.0 { 0.0 } else { 0.1 + 0.000_2 * rps })]),
            })
            .collect();
        let d = fitted(window.clone(), &points);
        assert!(d[0].fitted);
        assert!((d[0].per_request - 0.000_2).abs() < 1e-9, "{d:?}");
        assert!((d[0].overhead - 0.1).abs() < 1e-9, "{d:?}");
        // Three loads within a few percent of each other: the window stands.
        let close: Vec<LoadPoint> = points
            .iter()
            .map(|p| LoadPoint {
                rps: 480.0 + p.rps / 100.0,
                ..p.clone()
            })
            .collect();
        assert_eq!(fitted(window.clone(), &close), window);
        // A machine whose use falls as load rises fits no demand.
        let falling: Vec<LoadPoint> = points
            .iter()
            .map(|p| LoadPoint {
                rps: p.rps,
                cores: usage(&[("db", 0.2 - 0.000_1 * p.rps)]),
            })
            .collect();
        assert_eq!(fitted(window.clone(), &falling), window);
    }

    #[test]
    fn a_negative_intercept_gives_the_line_through_the_origin() {
        let (slope, intercept) = fit_line(&[(100.0, 0.0), (200.0, 0.2)]).unwrap();
        assert_eq!(intercept, 0.0);
        // Through the origin: Σxy / Σx² = 40 / 50,000.
        assert!((slope - 0.000_8).abs() < 1e-12);
        assert_eq!(fit_line(&[(1.0, 1.0)]), None);
        assert_eq!(fit_line(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    proptest! {
        /// Points on a line with a non-negative intercept give that line back.
        #[test]
        fn a_line_is_found_again(
            slope in 1e-6f64..1e-2,
            intercept in 0.0f64..1.0,
            xs in prop::collection::vec(1.0f64..10_000.0, 2..12),
        ) {
            let points: Vec<(f64, f64)> = xs.iter().map(|&x| (x, intercept + slope * x)).collect();
            let spread = xs.iter().cloned().fold(f64::MIN, f64::max) - xs.iter().cloned().fold(f64::MAX, f64::min);
            prop_assume!(spread > 1.0);
            let (s, i) = fit_line(&points).unwrap();
            prop_assert!((s - slope).abs() <= 1e-6 * slope.max(1e-9) + 1e-12, "{} vs {}", s, slope);
            prop_assert!((i - intercept).abs() <= 1e-6, "{} vs {}", i, intercept);
        }

        /// The fitted line never has a negative intercept, whatever the points.
        #[test]
        fn the_overhead_is_never_negative(
            points in prop::collection::vec((1.0f64..10_000.0, 0.0f64..1.0), 2..12),
        ) {
            if let Some((_, i)) = fit_line(&points) {
                prop_assert!(i >= 0.0);
            }
        }
    }
}
