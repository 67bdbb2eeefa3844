//! `/ops/data.json`: the figures of one process, and how several add up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::parts::merge_json;
use super::replicas::{ReadSplit, Replicas, SplitWindow};
use super::topology::Topology;
use super::Figures;

/// Everything the ops page shows, as served at `/ops/data.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The running stage.
    pub stage: StageRef,
    /// Seconds since the recorder started.
    pub uptime_secs: f64,
    /// Counters since start.
    pub totals: Totals,
    /// The last second's figures.
    pub window: Window,
    /// One point per second, oldest first, up to a minute.
    pub history: Vec<Point>,
    /// What runs, for the picture.
    pub topology: Topology,
    /// Why this process serves in a degraded way, if it does (what `/readyz` says
    /// after `degraded: `): its Redis cache tier down, for instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// The figures of the stage's parts, by [`Figures::KEY`]: top-level keys
    /// of the JSON (`gateway`, `replicas` for stage 5's
    /// [`Replicas`], `shards` for stage 7's
    /// [`ShardsView`](super::shards::ShardsView), ...). Read them typed with
    /// [`Snapshot::part`].
    #[serde(flatten)]
    pub parts: BTreeMap<String, serde_json::Value>,
}

impl Snapshot {
    /// The figures of part `F`, if this snapshot has them (and they read as `F`).
    ///
    /// ```
    /// use storefront_contract::ops::gateway::GatewayFigures;
    /// use storefront_contract::ops::Snapshot;
    ///
    /// let json = r#"{"stage": {"number": 4, "title": "Load balancing"}, "uptime_secs": 1.0,
    ///   "totals": {"requests": 0, "errors": 0, "db_queries": 0, "cache": {"l1": null}},
    ///   "window": {"rps": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "db_qps": 0.0,
    ///     "l1_hit_ratio": null, "l2_hit_ratio": null},
    ///   "history": [], "topology": {"tiers": []},
    ///   "gateway": {"instances": [], "totals": {"requests": 5, "rate_limited": 1,
    ///     "retries": 0, "upstream_errors": 0, "unavailable": 0}}}"#;
    /// let snapshot: Snapshot = serde_json::from_str(json).unwrap();
    /// let gateway = snapshot.part::<GatewayFigures>().unwrap();
    /// assert_eq!(gateway.totals.rate_limited, 1);
    /// ```
    pub fn part<F: Figures>(&self) -> Option<F> {
        serde_json::from_value(self.parts.get(F::KEY)?.clone()).ok()
    }
}

/// A stage's number and title.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRef {
    /// Its number, from 1.
    pub number: u32,
    /// Its title.
    pub title: String,
}

/// Counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Requests answered (the ops routes excepted).
    pub requests: u64,
    /// Of those, answered with a 5xx status.
    pub errors: u64,
    /// Calls that reached the database.
    pub db_queries: u64,
    /// Cache lookups per tier; a tier the stage does not have is left out.
    pub cache: CacheTotals,
    /// PostgreSQL reads by where they went, and writes.
    #[serde(default)]
    pub reads: ReadSplit,
}

/// Cache lookups per tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheTotals {
    /// The in-process cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1: Option<TierTotals>,
    /// The shared Redis cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<TierTotals>,
    /// The Redis tier's failed and skipped calls, apart from its misses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2_faults: Option<TierFaults>,
}

/// Calls to a remote cache tier that did not get an answer: not misses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierFaults {
    /// Calls (reads and writes) that failed: refused, dropped, timed out, or an
    /// error from the tier.
    pub errors: u64,
    /// Calls its open circuit breaker skipped: the tier was not asked.
    pub skipped: u64,
}

/// One cache tier's lookups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierTotals {
    /// Lookups that found the value.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
}

/// Figures over a short time (a second).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Requests per second.
    pub rps: f64,
    /// Median latency, in milliseconds (0 without requests).
    pub p50_ms: f64,
    /// 99th percentile latency, in milliseconds (0 without requests).
    pub p99_ms: f64,
    /// Database calls per second.
    pub db_qps: f64,
    /// L1 hits over L1 lookups; `null` without an L1 or without lookups.
    pub l1_hit_ratio: Option<f64>,
    /// L2 hits over L2 lookups; `null` without an L2 or without lookups.
    pub l2_hit_ratio: Option<f64>,
    /// Where PostgreSQL reads and writes went: the primary's queries a second and
    /// the share of reads on replicas.
    #[serde(default)]
    pub split: SplitWindow,
}

/// One second of history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// When it ended, in seconds since start.
    pub t: f64,
    /// Its figures.
    #[serde(flatten)]
    pub figures: Window,
}

impl CacheTotals {
    /// Both counts added, tier by tier (a tier either side has is kept).
    pub fn plus(&self, other: &CacheTotals) -> CacheTotals {
        CacheTotals {
            l1: add_tier(self.l1, other.l1),
            l2: add_tier(self.l2, other.l2),
            l2_faults: match (self.l2_faults, other.l2_faults) {
                (Some(a), Some(b)) => Some(TierFaults {
                    errors: a.errors.saturating_add(b.errors),
                    skipped: a.skipped.saturating_add(b.skipped),
                }),
                (a, b) => a.or(b),
            },
        }
    }
}

fn add_tier(a: Option<TierTotals>, b: Option<TierTotals>) -> Option<TierTotals> {
    match (a, b) {
        (Some(a), Some(b)) => Some(TierTotals {
            hits: a.hits.saturating_add(b.hits),
            misses: a.misses.saturating_add(b.misses),
        }),
        (a, b) => a.or(b),
    }
}

/// A mean of `a` and `b` weighted by `wa` and `wb` (plain mean without weights),
/// skipping what is missing.
fn weighted(a: Option<f64>, wa: f64, b: Option<f64>, wb: f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if wa + wb > 0.0 => Some((a * wa + b * wb) / (wa + wb)),
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (a, b) => a.or(b),
    }
}

impl Window {
    /// Two processes' figures over the same second: rates add up; percentiles do
    /// not, so p99 is the larger of the two (an upper bound of the combined p99) and
    /// p50 and hit ratios are means weighted by requests per second (estimates).
    pub fn merge(&self, other: &Window) -> Window {
        let p50 = weighted(Some(self.p50_ms), self.rps, Some(other.p50_ms), other.rps);
        Window {
            rps: self.rps + other.rps,
            p50_ms: p50.unwrap_or(0.0),
            p99_ms: self.p99_ms.max(other.p99_ms),
            db_qps: self.db_qps + other.db_qps,
            l1_hit_ratio: weighted(self.l1_hit_ratio, self.rps, other.l1_hit_ratio, other.rps),
            l2_hit_ratio: weighted(self.l2_hit_ratio, self.rps, other.l2_hit_ratio, other.rps),
            split: self.split.merge(&other.split),
        }
    }
}

/// Merges one part's figures (as JSON) into another's.
type MergeFn = fn(&mut serde_json::Value, &serde_json::Value);

impl Snapshot {
    /// Adds another process's figures to these, for a whole cluster's view: totals
    /// are summed (cache tiers too), windows merged by [`Window::merge`], and
    /// histories aligned on their newest point (the points of one second) and merged
    /// the same way. Stage and topology stay this snapshot's; a part this one
    /// lacks is taken from the other, one both have is merged by its
    /// [`Figures::merge`] (reads per database server add up, for instance); uptime
    /// is the longer one.
    pub fn merge(&mut self, other: &Snapshot) {
        self.uptime_secs = self.uptime_secs.max(other.uptime_secs);
        // Saturating: the other's figures may come from another process's JSON.
        self.totals.requests = self.totals.requests.saturating_add(other.totals.requests);
        self.totals.errors = self.totals.errors.saturating_add(other.totals.errors);
        self.totals.db_queries = self
            .totals
            .db_queries
            .saturating_add(other.totals.db_queries);
        self.totals.cache = self.totals.cache.plus(&other.totals.cache);
        self.totals.reads = self.totals.reads.plus(&other.totals.reads);
        self.window = self.window.merge(&other.window);
        let newest = self.history.last().map(|p| p.t);
        let shift = match (newest, other.history.last()) {
            (Some(mine), Some(theirs)) => mine - theirs.t,
            _ => 0.0,
        };
        let len = self.history.len().max(other.history.len());
        let mut merged = Vec::with_capacity(len);
        for back in (0..len).rev() {
            let mine = self
                .history
                .len()
                .checked_sub(back + 1)
                .map(|i| &self.history[i]);
            let theirs = other
                .history
                .len()
                .checked_sub(back + 1)
                .map(|i| &other.history[i]);
            merged.push(match (mine, theirs) {
                (Some(a), Some(b)) => Point {
                    t: a.t,
                    figures: a.figures.merge(&b.figures),
                },
                (Some(a), None) => a.clone(),
                (None, Some(b)) => Point {
                    t: b.t + shift,
                    figures: b.figures.clone(),
                },
                (None, None) => continue,
            });
        }
        self.history = merged;
        // The parts whose figures add up; the others are the same in every
        // process (one reading of the shards, say), so one is kept.
        let merges: [(&str, MergeFn); 1] = [(Replicas::KEY, merge_json::<Replicas>)];
        for (key, figures) in &other.parts {
            match self.parts.get_mut(key) {
                None => {
                    self.parts.insert(key.clone(), figures.clone());
                }
                Some(mine) => {
                    if let Some((_, merge)) = merges.iter().find(|(k, _)| k == key) {
                        merge(mine, figures);
                    }
                }
            }
        }
        self.degraded = match (self.degraded.take(), &other.degraded) {
            (Some(a), Some(b)) if a != *b => Some(format!("{a}; {b}")),
            (a, b) => a.or_else(|| b.clone()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(requests: u64, rps: f64, p50: f64, p99: f64, l1: bool, points: usize) -> Snapshot {
        let window = Window {
            rps,
            p50_ms: p50,
            p99_ms: p99,
            db_qps: rps / 2.0,
            l1_hit_ratio: l1.then_some(0.5),
            l2_hit_ratio: None,
            split: SplitWindow::default(),
        };
        Snapshot {
            stage: StageRef {
                number: 3,
                title: "Caches".into(),
            },
            uptime_secs: points as f64,
            totals: Totals {
                requests,
                errors: 1,
                db_queries: requests / 2,
                cache: CacheTotals {
                    l1: l1.then_some(TierTotals { hits: 3, misses: 1 }),
                    l2: None,
                    l2_faults: l1.then_some(TierFaults {
                        errors: 2,
                        skipped: 5,
                    }),
                },
                reads: ReadSplit::default(),
            },
            window: window.clone(),
            history: (0..points)
                .map(|i| Point {
                    t: (i + 1) as f64,
                    figures: window.clone(),
                })
                .collect(),
            topology: Topology::default(),
            parts: BTreeMap::new(),
            degraded: None,
        }
    }

    #[test]
    fn merge_sums_totals_and_rates() {
        let mut a = snapshot(100, 10.0, 1.0, 5.0, true, 3);
        let b = snapshot(300, 30.0, 3.0, 9.0, true, 5);
        let c = snapshot(7, 0.0, 0.0, 0.0, false, 0);
        a.merge(&b);
        a.merge(&c);
        assert_eq!(a.totals.requests, 407);
        assert_eq!(a.totals.errors, 3);
        assert_eq!(a.totals.db_queries, 50 + 150 + 3);
        assert_eq!(a.totals.cache.l1, Some(TierTotals { hits: 6, misses: 2 }));
        assert_eq!(a.totals.cache.l2, None);
        assert_eq!(
            a.totals.cache.l2_faults,
            Some(TierFaults {
                errors: 4,
                skipped: 10
            })
        );
        assert_eq!(a.window.rps, 40.0);
        assert_eq!(a.window.db_qps, 20.0);
        assert_eq!(a.window.p99_ms, 9.0);
        // Weighted by rps: (1*10 + 3*30) / 40.
        assert_eq!(a.window.p50_ms, 2.5);
        assert_eq!(a.window.l1_hit_ratio, Some(0.5));
        assert_eq!(a.uptime_secs, 5.0);
        // Aligned on the newest point: the longer history's older points are kept.
        assert_eq!(a.history.len(), 5);
        assert_eq!(a.history[4].figures.rps, 40.0);
        assert_eq!(a.history[2].figures.rps, 40.0);
        assert_eq!(a.history[1].figures.rps, 30.0);
        assert_eq!(a.history.last().map(|p| p.t), Some(3.0));
        assert!(a.history.windows(2).all(|w| w[0].t < w[1].t));
    }

    #[test]
    fn merge_adds_up_the_parts_that_add_up() {
        use crate::ops::replicas::DatabaseView;
        use crate::ops::shards::ShardsView;
        let with = |reads: u64, epoch: i64| {
            let mut s = snapshot(1, 1.0, 1.0, 1.0, false, 1);
            let db = DatabaseView {
                database: "shop".into(),
                primary_lsn: "0/1".into(),
                primary_reads: reads,
                replicas: Vec::new(),
            };
            let shards = ShardsView {
                epoch,
                ..ShardsView::default()
            };
            for (key, value) in [
                ("replicas", serde_json::to_value(Replicas(vec![db]))),
                ("shards", serde_json::to_value(shards)),
            ] {
                s.parts.insert(key.into(), value.unwrap_or_default());
            }
            s
        };
        let mut a = with(2, 1);
        a.merge(&with(3, 2));
        let replicas = a.part::<Replicas>().unwrap_or_default();
        assert_eq!(replicas.0[0].primary_reads, 5, "reads per server add up");
        let shards = a.part::<ShardsView>().unwrap_or_default();
        assert_eq!(shards.epoch, 1, "one reading of the shards is kept");
        let mut b = snapshot(1, 1.0, 1.0, 1.0, false, 1);
        b.merge(&with(4, 3));
        assert_eq!(
            b.part::<ShardsView>().map(|s| s.epoch),
            Some(3),
            "taken where missing"
        );
    }

    #[test]
    fn json_leaves_out_missing_tiers_and_reads_back() {
        let s = snapshot(5, 1.0, 1.0, 1.0, false, 1);
        let json = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(json["totals"]["cache"], serde_json::json!({}));
        assert!(json["window"]["l1_hit_ratio"].is_null());
        assert_eq!(json["history"][0]["rps"], 1.0);
        let back: Snapshot = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, s);
    }
}
