//! Seeded families of synthetic cache traces, for judging an eviction policy on
//! workloads it was not tuned on.
//!
//! Six families, each with five parameter settings (one trace each, replayed
//! at two or three capacities):
//!
//! | family | what it tests |
//! |---|---|
//! | `scan` | a Zipf stream interrupted by scans (fresh one-hit keys, or a range larger than the cache) |
//! | `shift` | a hot set that gets most requests and moves, at once or gradually |
//! | `loop` | loops larger and smaller than the cache, alone or over Zipf noise |
//! | `small` | caches of 50 to 500 entries: Zipf, recency-friendly, shifting |
//! | `drift` | popularity that drifts: new keys are born popular and fade, or ranks are reshuffled |
//! | `mix` | phases and interleavings of the above |
//!
//! The split is fixed here, before any tuning: settings 0, 2 and 4 of every
//! family form the **tuning** set, generated from [`TUNING_SEED`]; settings 1
//! and 3 form the **held-out** set, generated from [`HELD_OUT_SEED`] (other
//! parameters *and* other random draws). A trace's name is
//! `{family}-{setting}`, for instance `loop-3`.
//!
//! Every trace is a pure function of its name: the random numbers come from
//! a xoshiro256** generator seeded by SplitMix64, and keys are spread over
//! `u64` by a bijection, so the same name gives the same keys on any machine.

mod state;

use state::{Rng, State};

/// The seed of the tuning set's traces.
pub const TUNING_SEED: u64 = 0x7475_6e69_6e67; // "tuning"
/// The seed of the held-out set's traces.
pub const HELD_OUT_SEED: u64 = 0x68_656c_646f_7574; // "heldout"

/// Which set a trace belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// Traces the policy may be tuned on.
    Tuning,
    /// Traces kept out of tuning, to report on.
    HeldOut,
}

impl Set {
    /// The set's name in manifests and reports: `tuning` or `held-out`.
    pub fn name(self) -> &'static str {
        match self {
            Set::Tuning => "tuning",
            Set::HeldOut => "held-out",
        }
    }
}

/// One generated trace: its name, family, set, the capacities to replay it
/// at, its length and how its keys are drawn.
#[derive(Debug, Clone)]
pub struct TraceSpec {
    /// `{family}-{setting}`.
    pub name: String,
    /// The family (`scan`, `shift`, `loop`, `small`, `drift`, `mix`).
    pub family: &'static str,
    /// Tuning or held-out.
    pub set: Set,
    /// The cache sizes (entries) to replay the trace at.
    pub capacities: Vec<u64>,
    /// Requests in the trace.
    pub requests: usize,
    /// How the keys are drawn.
    pub gen: Gen,
    /// A one-line description of the setting.
    pub about: &'static str,
}

impl TraceSpec {
    /// The trace's keys (deterministic).
    pub fn keys(&self) -> Vec<u64> {
        let seed = match self.set {
            Set::Tuning => TUNING_SEED,
            Set::HeldOut => HELD_OUT_SEED,
        };
        let mut rng = Rng::new(seed ^ fnv(&self.name));
        let mut state = State::new(&self.gen, &mut 0);
        state.set_length(self.requests as u64);
        (0..self.requests)
            .map(|t| state.next(t as u64, &mut rng))
            .collect()
    }
}

/// How a trace's keys are drawn. Leaves draw from their own key space, so
/// two leaves never share keys.
#[derive(Debug, Clone)]
pub enum Gen {
    /// Independent draws with Zipf exponent `alpha` over `keys` keys.
    Zipf {
        /// Distinct keys.
        keys: u64,
        /// Zipf exponent: rank r has weight r^-alpha.
        alpha: f64,
    },
    /// `0, 1, ..., len - 1, 0, 1, ...`: a loop (or a repeated scan) over `len` keys.
    Loop {
        /// Keys in the loop.
        len: u64,
    },
    /// Keys never requested before (one-hit wonders).
    Fresh,
    /// A hot set of `hot` keys (Zipf `alpha` within it) that moves every
    /// `period` requests: at once (`gradual` false) or a key at a time.
    Hot {
        /// Keys in the hot set.
        hot: u64,
        /// Zipf exponent within the hot set.
        alpha: f64,
        /// Requests for the whole set to be replaced.
        period: u64,
        /// Slide a key at a time rather than jump.
        gradual: bool,
    },
    /// Popularity that fades: Zipf `alpha` over a window of `keys` keys whose
    /// most popular rank is a newly born key every `1 / rate` requests.
    Aging {
        /// Keys in the popularity window.
        keys: u64,
        /// Zipf exponent over the window.
        alpha: f64,
        /// New keys born per request.
        rate: f64,
    },
    /// Zipf `alpha` over `keys` ranks whose keys are reshuffled: every
    /// `period` requests, `churn` random ranks among the top `top` swap
    /// their key with a random rank's.
    Reshuffle {
        /// Distinct keys.
        keys: u64,
        /// Zipf exponent.
        alpha: f64,
        /// Requests between reshuffles.
        period: u64,
        /// Ranks considered popular.
        top: u64,
        /// Popular ranks swapped at each reshuffle.
        churn: u64,
    },
    /// Temporal locality: with probability `repeat`, one of the recent
    /// requests again (at a geometric distance of mean `depth`), else a draw
    /// from `base`.
    Recency {
        /// Probability of a repeat.
        repeat: f64,
        /// Mean distance (in requests) of a repeat.
        depth: f64,
        /// The draws that are not repeats.
        base: Box<Gen>,
    },
    /// Each request from one part, picked with probability proportional to its weight.
    Mix(Vec<(f64, Gen)>),
    /// `base`, interrupted every `every` requests by `length` requests of `burst`.
    Bursts {
        /// The main stream.
        base: Box<Gen>,
        /// The interruption (a scan).
        burst: Box<Gen>,
        /// Requests of `base` between bursts.
        every: u64,
        /// Requests in a burst.
        length: u64,
    },
    /// One part after another, each for its share of the trace (shares
    /// normalised), the whole sequence repeated `cycles` times.
    Phases {
        /// Times the sequence of phases is repeated.
        cycles: u64,
        /// (share, part).
        parts: Vec<(f64, Gen)>,
    },
}

fn zipf(keys: u64, alpha: f64) -> Gen {
    Gen::Zipf { keys, alpha }
}

fn recency(repeat: f64, depth: f64, base: Gen) -> Gen {
    Gen::Recency {
        repeat,
        depth,
        base: Box::new(base),
    }
}

fn bursts(base: Gen, burst: Gen, every: u64, length: u64) -> Gen {
    Gen::Bursts {
        base: Box::new(base),
        burst: Box::new(burst),
        every,
        length,
    }
}

fn hot(hot: u64, alpha: f64, period: u64, gradual: bool) -> Gen {
    Gen::Hot {
        hot,
        alpha,
        period,
        gradual,
    }
}

fn reshuffle(keys: u64, alpha: f64, period: u64, top: u64, churn: u64) -> Gen {
    Gen::Reshuffle {
        keys,
        alpha,
        period,
        top,
        churn,
    }
}

/// Every generated trace, tuning and held-out.
pub fn all() -> Vec<TraceSpec> {
    use Gen::{Aging, Fresh, Loop, Mix, Phases};
    let loop_ = |len| Loop { len };
    // (family, setting, capacities, requests, generator, about)
    let table: Vec<(&'static str, Vec<u64>, usize, Gen, &'static str)> = vec![
        // zipf + scans
        ("scan", vec![500, 2000], 300_000,
            bursts(zipf(50_000, 0.9), Fresh, 20_000, 5_000),
            "Zipf 0.9 over 50k keys; every 20k requests a scan of 5k fresh keys"),
        ("scan", vec![1000, 5000], 300_000,
            bursts(zipf(100_000, 0.7), loop_(20_000), 10_000, 2_000),
            "Zipf 0.7 over 100k keys; every 10k requests 2k steps of a 20k-key repeated scan"),
        ("scan", vec![200, 1000], 200_000,
            bursts(zipf(20_000, 1.1), Fresh, 5_000, 1_000),
            "Zipf 1.1 over 20k keys; every 5k requests a scan of 1k fresh keys"),
        ("scan", vec![500, 2000, 5000], 300_000,
            bursts(zipf(50_000, 0.9), Fresh, 50_000, 20_000),
            "Zipf 0.9 over 50k keys; every 50k requests a scan of 20k fresh keys"),
        ("scan", vec![300, 3000], 300_000,
            bursts(zipf(30_000, 0.8), loop_(8_000), 15_000, 4_000),
            "Zipf 0.8 over 30k keys; every 15k requests 4k steps of an 8k-key repeated scan"),
        // shifting hot sets
        ("shift", vec![500, 2000], 300_000,
            Mix(vec![(0.9, hot(1_000, 0.8, 50_000, false)), (0.1, zipf(100_000, 0.6))]),
            "90%: a 1k-key hot set (Zipf 0.8) replaced at once every 50k; 10%: Zipf 0.6 over 100k"),
        ("shift", vec![1000, 5000], 300_000,
            Mix(vec![(0.8, hot(3_000, 0.6, 100_000, true)), (0.2, zipf(100_000, 0.8))]),
            "80%: a 3k-key hot set (Zipf 0.6) sliding, replaced over 100k; 20%: Zipf 0.8 over 100k"),
        ("shift", vec![100, 500], 200_000,
            Mix(vec![(0.95, hot(300, 0.9, 20_000, false)), (0.05, Fresh)]),
            "95%: a 300-key hot set (Zipf 0.9) replaced at once every 20k; 5% fresh keys"),
        ("shift", vec![1000, 3000], 300_000,
            Mix(vec![(0.7, hot(2_000, 0.5, 100_000, false)), (0.3, zipf(50_000, 0.9))]),
            "70%: a 2k-key hot set (Zipf 0.5) replaced at once every 100k; 30%: Zipf 0.9 over 50k"),
        ("shift", vec![250, 1000], 300_000,
            Mix(vec![(0.85, hot(500, 0.7, 30_000, true)), (0.15, zipf(200_000, 0.7))]),
            "85%: a 500-key hot set (Zipf 0.7) sliding, replaced over 30k; 15%: Zipf 0.7 over 200k"),
        // loops larger and smaller than the cache
        ("loop", vec![1000, 2000], 300_000,
            Mix(vec![(0.8, loop_(1_500)), (0.2, zipf(10_000, 1.0))]),
            "80%: a 1.5k-key loop; 20%: Zipf 1.0 over 10k"),
        ("loop", vec![500, 1000], 200_000,
            Mix(vec![(0.9, loop_(800)), (0.1, Fresh)]),
            "90%: an 800-key loop; 10% fresh keys"),
        ("loop", vec![2000, 8000], 400_000,
            Mix(vec![(0.5, loop_(5_000)), (0.5, zipf(50_000, 0.8))]),
            "50%: a 5k-key loop; 50%: Zipf 0.8 over 50k"),
        ("loop", vec![500, 1500, 4000], 300_000,
            Mix(vec![(0.5, loop_(600)), (0.5, loop_(3_000))]),
            "two loops, of 600 and 3k keys, interleaved at random"),
        ("loop", vec![1000, 3000], 300_000,
            Mix(vec![(0.7, loop_(2_500)), (0.3, zipf(20_000, 1.0))]),
            "70%: a 2.5k-key loop; 30%: Zipf 1.0 over 20k"),
        // small caches, 50 to 500 entries
        ("small", vec![50, 200], 150_000,
            zipf(10_000, 0.9),
            "Zipf 0.9 over 10k keys"),
        ("small", vec![50, 100, 500], 150_000,
            recency(0.6, 40.0, zipf(50_000, 0.7)),
            "60% repeats of a recent request (mean distance 40), else Zipf 0.7 over 50k"),
        ("small", vec![100, 500], 150_000,
            zipf(100_000, 1.2),
            "Zipf 1.2 over 100k keys"),
        ("small", vec![100, 200], 150_000,
            recency(0.5, 150.0, zipf(20_000, 0.9)),
            "50% repeats of a recent request (mean distance 150), else Zipf 0.9 over 20k"),
        ("small", vec![50, 200, 500], 150_000,
            recency(0.3, 60.0, Mix(vec![(0.8, hot(200, 0.8, 10_000, false)), (0.2, Fresh)])),
            "30% repeats (mean distance 60), else 80% a 200-key hot set moving every 10k, 20% fresh"),
        // frequency drift
        ("drift", vec![500, 2000], 300_000,
            Aging { keys: 20_000, alpha: 0.9, rate: 0.05 },
            "Zipf 0.9 over the 20k newest keys, a key born every 20 requests"),
        ("drift", vec![1000, 5000], 300_000,
            reshuffle(100_000, 0.8, 10_000, 1_000, 100),
            "Zipf 0.8 over 100k; every 10k requests 100 of the top 1k ranks swap keys"),
        ("drift", vec![200, 1000], 200_000,
            Aging { keys: 5_000, alpha: 1.1, rate: 0.2 },
            "Zipf 1.1 over the 5k newest keys, a key born every 5 requests"),
        ("drift", vec![500, 2000], 300_000,
            reshuffle(50_000, 1.0, 5_000, 500, 150),
            "Zipf 1.0 over 50k; every 5k requests 150 of the top 500 ranks swap keys"),
        ("drift", vec![1000, 5000], 300_000,
            Aging { keys: 50_000, alpha: 0.7, rate: 0.01 },
            "Zipf 0.7 over the 50k newest keys, a key born every 100 requests"),
        // mixes
        ("mix", vec![500, 2000], 400_000,
            Phases { cycles: 2, parts: vec![
                (1.0, zipf(100_000, 0.9)),
                (1.0, Mix(vec![(0.6, loop_(3_000)), (0.4, zipf(20_000, 1.0))])),
                (1.0, hot(1_500, 0.7, 25_000, false)),
                (1.0, recency(0.5, 100.0, zipf(50_000, 0.8))),
            ]},
            "phases, twice: Zipf 0.9; a 3k loop over Zipf; a moving 1.5k hot set; recency over Zipf"),
        ("mix", vec![1000, 3000], 300_000,
            Mix(vec![
                (0.6, zipf(50_000, 0.8)),
                (0.25, recency(0.7, 50.0, Fresh)),
                (0.15, loop_(2_000)),
            ]),
            "60% Zipf 0.8 over 50k; 25% recent repeats of fresh keys; 15% a 2k loop"),
        ("mix", vec![100, 500], 200_000,
            Phases { cycles: 2, parts: vec![
                (1.0, recency(0.6, 30.0, zipf(20_000, 0.8))),
                (1.0, bursts(zipf(10_000, 1.0), Fresh, 5_000, 1_000)),
                (1.0, Aging { keys: 3_000, alpha: 1.0, rate: 0.1 }),
            ]},
            "phases, twice: recency over Zipf; Zipf with fresh scans; aging popularity"),
        ("mix", vec![500, 2000], 300_000,
            Mix(vec![
                (0.5, hot(1_000, 0.8, 40_000, true)),
                (0.3, zipf(30_000, 0.9)),
                (0.2, Fresh),
            ]),
            "50% a sliding 1k hot set; 30% Zipf 0.9 over 30k; 20% fresh keys"),
        ("mix", vec![1000], 300_000,
            Phases { cycles: 3, parts: vec![
                (1.0, loop_(1_200)),
                (1.0, zipf(20_000, 0.9)),
            ]},
            "phases, three times: a 1.2k loop, then Zipf 0.9 over 20k"),
    ];
    let mut specs = Vec::new();
    let mut setting = std::collections::BTreeMap::<&str, usize>::new();
    for (family, capacities, requests, gen, about) in table {
        let n = setting.entry(family).or_default();
        specs.push(TraceSpec {
            name: format!("{family}-{n}"),
            family,
            set: if *n % 2 == 0 {
                Set::Tuning
            } else {
                Set::HeldOut
            },
            capacities,
            requests,
            gen,
            about,
        });
        *n += 1;
    }
    specs
}

/// The generated trace of that name, if any.
pub fn by_name(name: &str) -> Option<TraceSpec> {
    all().into_iter().find(|spec| spec.name == name)
}

/// FNV-1a of a name, to give each trace its own stream.
fn fnv(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_is_a_function_of_its_name() {
        let mut spec = by_name("mix-2").expect("a generated trace");
        spec.requests = 20_000;
        let keys = spec.keys();
        assert_eq!(keys, spec.keys());
        let mut other = by_name("mix-0").expect("a generated trace");
        other.requests = 20_000;
        assert_ne!(keys, other.keys());
    }

    #[test]
    fn every_family_is_in_both_sets() {
        let specs = all();
        for family in ["scan", "shift", "loop", "small", "drift", "mix"] {
            for set in [Set::Tuning, Set::HeldOut] {
                assert!(
                    specs.iter().any(|s| s.family == family && s.set == set),
                    "{family} {}",
                    set.name()
                );
            }
        }
    }
}
