//! The generators' machinery: a seeded random source, Zipf sampling, key
//! spaces, and each generator's running state.

use super::Gen;

/// SplitMix64's finaliser: a bijection of `u64`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Key `index` of key space `space`: distinct for distinct pairs (below 2^44 keys a space).
fn key(space: u64, index: u64) -> u64 {
    mix(space << 44 | (index & ((1 << 44) - 1)))
}

/// xoshiro256**, seeded by SplitMix64.
pub(super) struct Rng([u64; 4]);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        let mut s = [0; 4];
        let mut z = seed;
        for word in &mut s {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            *word = mix(z);
        }
        Rng(s)
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Zipf ranks 0..n by inverse transform over the cumulative weights.
pub(super) struct ZipfTable(Vec<f64>);

impl ZipfTable {
    fn new(n: u64, alpha: f64) -> Self {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n.max(1))
            .map(|r| {
                total += (r as f64).powf(-alpha);
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        ZipfTable(cdf)
    }

    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        (self.0.partition_point(|&c| c <= u) as u64).min(self.0.len() as u64 - 1)
    }
}

/// A multiplier coprime with `n` near its golden section: a scramble of 0..n.
fn coprime_near(n: u64) -> u64 {
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let mut m = ((n as f64 * 0.618) as u64).max(1);
    while gcd(m, n.max(1)) != 1 {
        m += 1;
    }
    m
}

/// A generator's running state.
pub(super) enum State {
    Zipf {
        space: u64,
        table: ZipfTable,
    },
    Loop {
        space: u64,
        len: u64,
        pos: u64,
    },
    Fresh {
        space: u64,
        next: u64,
    },
    Hot {
        space: u64,
        table: ZipfTable,
        hot: u64,
        scramble: u64,
        period: u64,
        gradual: bool,
    },
    Aging {
        space: u64,
        table: ZipfTable,
        rate: f64,
    },
    Reshuffle {
        space: u64,
        table: ZipfTable,
        perm: Vec<u64>,
        period: u64,
        top: u64,
        churn: u64,
    },
    Recency {
        repeat: f64,
        depth: f64,
        history: Vec<u64>,
        pos: usize,
        len: usize,
        base: Box<State>,
    },
    Mix {
        weights: Vec<f64>,
        parts: Vec<State>,
    },
    Bursts {
        base: Box<State>,
        burst: Box<State>,
        every: u64,
        length: u64,
        pos: u64,
    },
    Phases {
        cycles: u64,
        bounds: Vec<f64>,
        parts: Vec<State>,
        requests: u64,
    },
}

/// The most recent requests a `Recency` generator repeats from.
const HISTORY: usize = 1 << 14;

/// The parts' weights as running shares of their total (the last is 1.0).
fn cumulative(parts: &[(f64, Gen)]) -> Vec<f64> {
    let total: f64 = parts.iter().map(|(w, _)| w).sum();
    let mut acc = 0.0;
    parts
        .iter()
        .map(|(w, _)| {
            acc += w / total;
            acc
        })
        .collect()
}

impl State {
    pub(super) fn new(gen: &Gen, spaces: &mut u64) -> State {
        match gen {
            Gen::Recency {
                repeat,
                depth,
                base,
            } => {
                return State::Recency {
                    repeat: *repeat,
                    depth: *depth,
                    history: vec![0; HISTORY],
                    pos: 0,
                    len: 0,
                    base: Box::new(State::new(base, spaces)),
                }
            }
            Gen::Mix(parts) => {
                return State::Mix {
                    weights: cumulative(parts),
                    parts: parts.iter().map(|(_, g)| State::new(g, spaces)).collect(),
                };
            }
            Gen::Bursts {
                base,
                burst,
                every,
                length,
            } => {
                return State::Bursts {
                    base: Box::new(State::new(base, spaces)),
                    burst: Box::new(State::new(burst, spaces)),
                    every: *every,
                    length: *length,
                    pos: 0,
                }
            }
            Gen::Phases { cycles, parts } => {
                return State::Phases {
                    cycles: (*cycles).max(1),
                    bounds: cumulative(parts),
                    parts: parts.iter().map(|(_, g)| State::new(g, spaces)).collect(),
                    requests: 0,
                };
            }
            _ => {}
        }
        let mut space = || {
            *spaces += 1;
            *spaces
        };
        match gen {
            Gen::Zipf { keys, alpha } => State::Zipf {
                space: space(),
                table: ZipfTable::new(*keys, *alpha),
            },
            Gen::Loop { len } => State::Loop {
                space: space(),
                len: (*len).max(1),
                pos: 0,
            },
            Gen::Fresh => State::Fresh {
                space: space(),
                next: 0,
            },
            Gen::Hot {
                hot,
                alpha,
                period,
                gradual,
            } => State::Hot {
                space: space(),
                table: ZipfTable::new(*hot, *alpha),
                hot: (*hot).max(1),
                scramble: coprime_near(*hot),
                period: (*period).max(1),
                gradual: *gradual,
            },
            Gen::Aging { keys, alpha, rate } => State::Aging {
                space: space(),
                table: ZipfTable::new(*keys, *alpha),
                rate: *rate,
            },
            Gen::Reshuffle {
                keys,
                alpha,
                period,
                top,
                churn,
            } => State::Reshuffle {
                space: space(),
                table: ZipfTable::new(*keys, *alpha),
                perm: (0..*keys).collect(),
                period: (*period).max(1),
                top: (*top).clamp(1, *keys),
                churn: *churn,
            },
            _ => unreachable!("composites are built above"),
        }
    }

    /// The key of request `t` (0-based); `Phases` needs the trace length,
    /// set by `set_length` beforehand.
    pub(super) fn next(&mut self, t: u64, rng: &mut Rng) -> u64 {
        match self {
            State::Zipf { space, table } => key(*space, table.sample(rng)),
            State::Loop { space, len, pos } => {
                let k = key(*space, *pos);
                *pos = (*pos + 1) % *len;
                k
            }
            State::Fresh { space, next } => {
                *next += 1;
                key(*space, *next)
            }
            State::Hot {
                space,
                table,
                hot,
                scramble,
                period,
                gradual,
            } => {
                // Rank r holds position p of the set (a fixed scramble, so
                // that popularity does not follow age). The set is the keys
                // base..base + hot, key j at position j mod hot: it jumps by
                // `hot` every period, or slides a key at a time, the new key
                // taking the retired one's position (and so its popularity).
                let p = table.sample(rng) * *scramble % *hot;
                let base = if *gradual {
                    t * *hot / *period
                } else {
                    t / *period * *hot
                };
                key(*space, base + (p + *hot - base % *hot) % *hot)
            }
            State::Aging { space, table, rate } => {
                let newest = (t as f64 * *rate) as u64 + table.0.len() as u64;
                key(*space, newest - table.sample(rng))
            }
            State::Reshuffle {
                space,
                table,
                perm,
                period,
                top,
                churn,
            } => {
                if t > 0 && t % *period == 0 {
                    let n = perm.len() as u64;
                    for _ in 0..*churn {
                        let a = rng.below(*top) as usize;
                        let b = rng.below(n) as usize;
                        perm.swap(a, b);
                    }
                }
                key(*space, perm[table.sample(rng) as usize])
            }
            State::Recency {
                repeat,
                depth,
                history,
                pos,
                len,
                base,
            } => {
                let k = if *len > 0 && rng.unit() < *repeat {
                    // Geometric distance with mean `depth`, within the history.
                    let u = rng.unit().max(f64::MIN_POSITIVE);
                    let back =
                        ((u.ln() / (1.0 - 1.0 / depth.max(1.0)).ln()) as usize).min(*len - 1);
                    history[(*pos + HISTORY - 1 - back) % HISTORY]
                } else {
                    base.next(t, rng)
                };
                history[*pos] = k;
                *pos = (*pos + 1) % HISTORY;
                *len = (*len + 1).min(HISTORY);
                k
            }
            State::Mix { weights, parts } => {
                let u = rng.unit();
                let i = weights.partition_point(|&w| w <= u).min(parts.len() - 1);
                parts[i].next(t, rng)
            }
            State::Bursts {
                base,
                burst,
                every,
                length,
                pos,
            } => {
                let cycle = *every + *length;
                let at = *pos % cycle;
                *pos += 1;
                if at < *every {
                    base.next(t, rng)
                } else {
                    burst.next(t, rng)
                }
            }
            State::Phases {
                cycles,
                bounds,
                parts,
                requests,
            } => {
                let cycle_len = (*requests / *cycles).max(1);
                let at = (t % cycle_len) as f64 / cycle_len as f64;
                let i = bounds.partition_point(|&b| b <= at).min(parts.len() - 1);
                parts[i].next(t, rng)
            }
        }
    }

    pub(super) fn set_length(&mut self, n: u64) {
        match self {
            State::Phases {
                requests, parts, ..
            } => {
                *requests = n;
                parts.iter_mut().for_each(|p| p.set_length(n));
            }
            State::Mix { parts, .. } => parts.iter_mut().for_each(|p| p.set_length(n)),
            State::Recency { base, .. } => base.set_length(n),
            State::Bursts { base, burst, .. } => {
                base.set_length(n);
                burst.set_length(n);
            }
            _ => {}
        }
    }
}
