//! Mean value analysis of a closed [`Network`]: throughput, response time and
//! each station's queue for a number of customers.
//!
//! - [`exact`]: Reiser and Lavenberg's recursion over the population, exact for
//!   product-form networks of single-core queues and delays (O(users x
//!   stations)).
//! - [`approximate`]: Schweitzer's fixed point (the queue a customer finds is
//!   `(n - 1) / n` of the queue at `n`), for populations of millions; within a
//!   few percent of the exact answer, and exact at the two ends (one user, and
//!   saturation).
//! - A station with `c` cores is Seidmann's approximation in both: a single
//!   queue with demand `D / c` followed by a delay of `D (c - 1) / c` (exact for
//!   one core, and at both ends for more).
//!
//! [`solve`] picks the exact recursion up to [`EXACT_UP_TO`] users and the fixed
//! point beyond.

use crate::network::{Kind, Network};

/// Populations up to this are solved exactly by [`solve`].
pub const EXACT_UP_TO: u64 = 20_000;

/// One station's figures in a [`Solution`].
#[derive(Clone, Debug, PartialEq)]
pub struct StationFigures {
    /// The station's name.
    pub name: String,
    /// Busy share of each core, 0 to 1 (0 for a delay).
    pub utilization: f64,
    /// Mean customers there (waiting or served).
    pub queue: f64,
    /// Mean seconds a request spends there, over all its visits.
    pub residence: f64,
}

/// What a population of customers gets from a network.
#[derive(Clone, Debug, PartialEq)]
pub struct Solution {
    /// Customers.
    pub users: f64,
    /// Requests a second.
    pub throughput: f64,
    /// Mean seconds per request (think time excluded).
    pub response: f64,
    /// Per station, in the network's order.
    pub stations: Vec<StationFigures>,
}

/// A station as the recursions see it: queueing demand and pure delay.
struct Centre {
    queue_demand: f64,
    delay: f64,
    servers: f64,
}

fn centres(net: &Network) -> Vec<Centre> {
    net.stations()
        .iter()
        .map(|s| match s.kind {
            Kind::Queue { servers } => {
                let c = f64::from(servers);
                Centre {
                    queue_demand: s.demand / c,
                    delay: s.demand * (c - 1.0) / c,
                    servers: c,
                }
            }
            Kind::Delay => Centre {
                queue_demand: 0.0,
                delay: s.demand,
                servers: 0.0,
            },
        })
        .collect()
}

fn solution(
    net: &Network,
    centres: &[Centre],
    users: f64,
    throughput: f64,
    queues: &[f64],
) -> Solution {
    let stations: Vec<StationFigures> = net
        .stations()
        .iter()
        .zip(centres)
        .zip(queues)
        .map(|((s, c), &q)| {
            let residence = if throughput > 0.0 {
                q / throughput
            } else {
                0.0
            };
            StationFigures {
                name: s.name.clone(),
                utilization: if c.servers > 0.0 {
                    (throughput * s.demand / c.servers).min(1.0)
                } else {
                    0.0
                },
                queue: q,
                residence,
            }
        })
        .collect();
    let response = stations.iter().map(|s| s.residence).sum();
    Solution {
        users,
        throughput,
        response,
        stations,
    }
}

/// Exact MVA for `users` customers.
///
/// ```
/// use storefront_capacity::{mva, Network};
/// // Two balanced single-core stations, no think time: X(N) = N / ((N + 1) D).
/// let net = Network::new(0.0)?.queue("a", 1.0, 1)?.queue("b", 1.0, 1)?;
/// let s = mva::exact(&net, 2);
/// assert!((s.throughput - 2.0 / 3.0).abs() < 1e-12);
/// assert!((s.response - 3.0).abs() < 1e-12);
/// # Ok::<(), storefront_capacity::ModelError>(())
/// ```
pub fn exact(net: &Network, users: u64) -> Solution {
    let centres = centres(net);
    let z = net.think_time();
    // Per centre: the queueing part's customers, and the delay part's.
    let mut q = vec![0.0; centres.len()];
    let mut x = 0.0;
    for n in 1..=users {
        let residences: Vec<f64> = centres
            .iter()
            .zip(&q)
            .map(|(c, &qk)| c.queue_demand * (1.0 + qk) + c.delay)
            .collect();
        let r: f64 = residences.iter().sum();
        x = n as f64 / (z + r);
        for ((qk, c), rk) in q.iter_mut().zip(&centres).zip(&residences) {
            // Only the queueing part's customers delay the next arrival.
            *qk = x * (rk - c.delay);
        }
    }
    let totals: Vec<f64> = q
        .iter()
        .zip(&centres)
        .map(|(qk, c)| qk + x * c.delay)
        .collect();
    solution(net, &centres, users as f64, x, &totals)
}

/// Schweitzer's approximate MVA for `users` customers (any size).
pub fn approximate(net: &Network, users: f64) -> Solution {
    let centres = centres(net);
    let z = net.think_time();
    if users <= 0.0 {
        return solution(net, &centres, 0.0, 0.0, &vec![0.0; centres.len()]);
    }
    let k = centres
        .iter()
        .filter(|c| c.queue_demand > 0.0)
        .count()
        .max(1) as f64;
    // Start from the users spread evenly over the queues.
    let mut q: Vec<f64> = centres
        .iter()
        .map(|c| if c.queue_demand > 0.0 { users / k } else { 0.0 })
        .collect();
    let shrink = (users - 1.0).max(0.0) / users;
    let mut x = 0.0;
    for _ in 0..100_000 {
        let residences: Vec<f64> = centres
            .iter()
            .zip(&q)
            .map(|(c, &qk)| c.queue_demand * (1.0 + shrink * qk) + c.delay)
            .collect();
        let r: f64 = residences.iter().sum();
        let next_x = users / (z + r);
        let mut change = 0.0f64;
        for ((qk, c), rk) in q.iter_mut().zip(&centres).zip(&residences) {
            let next = next_x * (rk - c.delay);
            change = change.max((next - *qk).abs() / qk.abs().max(1e-12));
            // Damped: the plain iteration can oscillate near saturation.
            *qk = 0.5 * *qk + 0.5 * next;
        }
        x = next_x;
        if change < 1e-10 {
            break;
        }
    }
    let totals: Vec<f64> = q
        .iter()
        .zip(&centres)
        .map(|(qk, c)| qk + x * c.delay)
        .collect();
    solution(net, &centres, users, x, &totals)
}

/// [`exact`] up to [`EXACT_UP_TO`] users, [`approximate`] beyond.
pub fn solve(net: &Network, users: u64) -> Solution {
    if users <= EXACT_UP_TO {
        exact(net, users)
    } else {
        approximate(net, users as f64)
    }
}

/// The most customers the network carries with a mean response time at most
/// `objective` seconds (0 when even one customer waits longer). Response time
/// grows with the population, so this is a binary search between 1 and the
/// population at which the bottleneck alone would exceed the objective.
///
/// ```
/// use storefront_capacity::{mva, Network};
/// let net = Network::new(5.0)?.queue("app", 0.01, 1)?;
/// let n = mva::max_users(&net, 0.2);
/// assert!(mva::solve(&net, n).response <= 0.2);
/// assert!(mva::solve(&net, n + 1).response > 0.2);
/// # Ok::<(), storefront_capacity::ModelError>(())
/// ```
pub fn max_users(net: &Network, objective: f64) -> u64 {
    // NaN compares false: no objective, no users.
    if objective.is_nan() || objective < net.total_demand() {
        return 0;
    }
    // R(N) >= N * Dmax - Z: past this population the objective cannot hold.
    let ceiling = (objective + net.think_time()) * net.max_throughput();
    if !ceiling.is_finite() {
        return u64::MAX;
    }
    let (mut lo, mut hi) = (1u64, (ceiling.ceil() as u64).saturating_add(1).max(1));
    if solve(net, hi).response <= objective {
        return hi;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if solve(net, mid).response <= objective {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}
