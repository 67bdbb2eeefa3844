//! The open model: requests arrive at a fixed rate (Poisson), each station an
//! M/M/c queue. Used to check the closed model against textbook queues, and to
//! answer "at this arrival rate, how long does a request take".

use crate::network::{Kind, Network};

/// Erlang's C formula: the chance that an arrival waits at an M/M/c queue with
/// `c` servers and offered load `a` (arrival rate times service time, in
/// servers), for `a < c`.
///
/// ```
/// use storefront_capacity::open::erlang_c;
/// assert!((erlang_c(1, 0.5) - 0.5).abs() < 1e-12); // M/M/1: the utilization
/// assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
/// ```
pub fn erlang_c(c: u32, a: f64) -> f64 {
    let c_f = f64::from(c);
    if a >= c_f {
        return 1.0;
    }
    // Sum of a^k / k! for k < c, and a^c / c!, built term by term (stable for
    // hundreds of servers).
    let mut term = 1.0;
    let mut sum = 0.0;
    for k in 0..c {
        sum += term;
        term *= a / f64::from(k + 1);
    }
    let top = term * c_f / (c_f - a);
    top / (sum + top)
}

/// Mean seconds a request spends at each station, and in all, at `rate`
/// requests a second; `None` when a station is saturated (its utilization would
/// be 1 or more).
///
/// ```
/// use storefront_capacity::{open, Network};
/// // M/M/1 with service 0.1 s at 5 requests a second: utilization 0.5,
/// // response 0.1 / (1 - 0.5) = 0.2 s.
/// let net = Network::new(0.0)?.queue("cpu", 0.1, 1)?;
/// let (total, _) = open::response(&net, 5.0).unwrap();
/// assert!((total - 0.2).abs() < 1e-12);
/// assert!(open::response(&net, 10.0).is_none());
/// # Ok::<(), storefront_capacity::ModelError>(())
/// ```
pub fn response(net: &Network, rate: f64) -> Option<(f64, Vec<f64>)> {
    let mut per_station = Vec::with_capacity(net.stations().len());
    for s in net.stations() {
        let r = match s.kind {
            Kind::Delay => s.demand,
            Kind::Queue { servers } => {
                let a = rate * s.demand;
                if a >= f64::from(servers) {
                    return None;
                }
                let wait = erlang_c(servers, a) * s.demand / (f64::from(servers) - a);
                s.demand + wait
            }
        };
        per_station.push(r);
    }
    Some((per_station.iter().sum(), per_station))
}
