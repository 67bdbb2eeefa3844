//! The gateway on the ops page: its own figures, and its instances' database and
//! cache figures, polled from their `/ops/data.json`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;

use super::{Gateway, Inner};
use storefront_ops::replicas::{DatabaseView, ReadSplit, Replicas};
use storefront_ops::shards::ShardsView;
use storefront_ops::{CacheTotals, Figures, Ops, Snapshot};

/// One instance's cumulative database and cache counts, kept across its restarts
/// (a restarted instance counts from zero again).
#[derive(Clone, Debug, Default)]
struct Counts {
    /// What the instance's earlier lives counted.
    base: (u64, CacheTotals),
    /// What its current life reported last.
    last: (u64, CacheTotals),
    /// Its uptime at that report: a smaller one means it was restarted.
    uptime_secs: f64,
    /// Its reads and writes (stage 5): earlier lives', and the last report.
    split: (ReadSplit, ReadSplit),
    /// Its databases with replicas, as last reported.
    databases: Vec<DatabaseView>,
}

fn lookups(c: &CacheTotals) -> u64 {
    [c.l1, c.l2].iter().flatten().fold(0u64, |sum, t| {
        sum.saturating_add(t.hits).saturating_add(t.misses)
    })
}

impl Counts {
    fn update(&mut self, queries: u64, cache: CacheTotals, uptime_secs: f64) {
        // A restart shows as a younger process, even when the new life has already
        // counted past the old one between two polls; counts going down also say so.
        let restarted = uptime_secs < self.uptime_secs
            || queries < self.last.0
            || lookups(&cache) < lookups(&self.last.1);
        self.uptime_secs = uptime_secs;
        if restarted {
            self.base = (
                self.base.0.saturating_add(self.last.0),
                self.base.1.plus(&self.last.1),
            );
            self.split.0 = self.split.0.plus(&self.split.1);
            self.split.1 = ReadSplit::default();
        }
        self.last = (queries, cache);
    }

    fn update_split(&mut self, split: ReadSplit, databases: Vec<DatabaseView>) {
        self.split.1 = split;
        self.databases = databases;
    }

    fn total(&self) -> (u64, CacheTotals) {
        (
            self.base.0.saturating_add(self.last.0),
            self.base.1.plus(&self.last.1),
        )
    }
}

impl Gateway {
    /// Shows this gateway on `ops`: its requests and latency (counted by
    /// [`router`](Self::router), so call this first), its instances, breakers and
    /// rate-limit rejections ([`Ops::add_part`], as
    /// [`GatewayFigures`](super::GatewayFigures)), and the database queries and
    /// cache lookups of its instances, read from their `/ops/data.json` every
    /// second ([`Ops::set_backends`]). Returns the polling task; the first call
    /// wins.
    pub fn attach_ops(&self, ops: Arc<Ops>) -> tokio::task::JoinHandle<()> {
        let _ = self.inner.ops.set(Arc::clone(&ops));
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        ops.add_part(move || weak.upgrade().map(|inner| Gateway { inner }.snapshot()));
        let counts = Arc::new(Mutex::new(vec![
            Counts::default();
            self.inner.upstreams.len()
        ]));
        let read = Arc::clone(&counts);
        ops.set_backend_reads(Arc::new(move || {
            read.lock().iter().fold(ReadSplit::default(), |sum, c| {
                sum.plus(&c.split.0).plus(&c.split.1)
            })
        }));
        // Stage 5: every instance sees the same replicas; reads per server add up.
        let read = Arc::clone(&counts);
        ops.add_part(move || {
            let mut all = Replicas::default();
            for c in read.lock().iter() {
                all.merge(&Replicas(c.databases.clone()));
            }
            (!all.0.is_empty()).then_some(all)
        });
        // Stage 7: every instance reads the same shard databases; show the
        // latest reading any instance gave.
        let shards: Arc<Mutex<Option<ShardsView>>> = Arc::default();
        let shown = Arc::clone(&shards);
        ops.add_part(move || shown.lock().clone());
        let read = Arc::clone(&counts);
        ops.set_backends(Arc::new(move || {
            read.lock()
                .iter()
                .map(Counts::total)
                .fold((0, CacheTotals::default()), |(q, c), (q2, c2)| {
                    (q.saturating_add(q2), c.plus(&c2))
                })
        }));
        let weak = Arc::downgrade(&self.inner);
        // The instances run the same stage: their ops routes take the same token.
        let authorization = ops.access().authorization();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                // All instances at once, each within the health-check timeout.
                let polls: Vec<_> = inner
                    .upstreams
                    .iter()
                    .map(|up| {
                        let poll = totals_of(inner.client.clone(), up.addr, authorization.clone());
                        tokio::spawn(tokio::time::timeout(inner.health_timeout, poll))
                    })
                    .collect();
                drop(inner);
                let mut results = Vec::with_capacity(polls.len());
                for poll in polls {
                    results.push(match poll.await {
                        Ok(Ok(totals)) => totals,
                        _ => None, // no answer in time: keep the last one
                    });
                }
                let mut counts = counts.lock();
                for (slot, result) in counts.iter_mut().zip(results) {
                    if let Some((queries, cache, uptime, split, databases, view)) = result {
                        slot.update(queries, cache, uptime);
                        slot.update_split(split, databases);
                        if view.is_some() {
                            *shards.lock() = view;
                        }
                    }
                }
            }
        })
    }
}

/// The most of an instance's `/ops/data.json` the gateway reads (it is a few KiB).
const MAX_SNAPSHOT: usize = 1 << 20;

/// An instance's database queries and cache lookups since it started, its
/// uptime, its reads and writes, its databases' replicas and its shard figures.
async fn totals_of(
    client: super::HttpClient,
    addr: std::net::SocketAddr,
    authorization: Option<axum::http::HeaderValue>,
) -> Option<InstanceTotals> {
    let uri = Uri::try_from(format!("http://{addr}/ops/data.json")).ok()?;
    let mut req = Request::get(uri);
    if let Some(value) = authorization {
        req = req.header(axum::http::header::AUTHORIZATION, value);
    }
    let req = req.body(Full::new(Bytes::new())).ok()?;
    let resp = client.request(req).await.ok()?;
    if resp.status() != StatusCode::OK {
        return None;
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_SNAPSHOT)
        .collect()
        .await
        .ok()?
        .to_bytes();
    let snapshot: Snapshot = serde_json::from_slice(&body).ok()?;
    Some((
        snapshot.totals.db_queries,
        snapshot.totals.cache,
        snapshot.uptime_secs,
        snapshot.totals.reads,
        snapshot.part::<Replicas>().map(|r| r.0).unwrap_or_default(),
        snapshot.part::<ShardsView>(),
    ))
}

/// What [`totals_of`] reads from an instance.
type InstanceTotals = (
    u64,
    CacheTotals,
    f64,
    ReadSplit,
    Vec<DatabaseView>,
    Option<ShardsView>,
);

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_ops::TierTotals;

    fn cache(hits: u64, misses: u64) -> CacheTotals {
        CacheTotals {
            l1: Some(TierTotals { hits, misses }),
            ..CacheTotals::default()
        }
    }

    #[test]
    fn counts_survive_an_instance_restart() {
        let mut c = Counts::default();
        c.update(10, cache(5, 5), 1.0);
        c.update(25, cache(20, 5), 2.0);
        assert_eq!(c.total().0, 25);
        // Restarted: its counters begin again.
        c.update(3, cache(1, 1), 0.5);
        let (queries, cache_totals) = c.total();
        assert_eq!(queries, 28);
        let l1 = cache_totals.l1.unwrap_or_default();
        assert_eq!((l1.hits, l1.misses), (21, 6));
        c.update(4, cache(2, 1), 1.5);
        assert_eq!(c.total().0, 29);
        // Restarted and already past the old count when polled: the uptime says so.
        c.update(40, cache(30, 3), 0.8);
        assert_eq!(c.total().0, 29 + 40);
        // Absurd figures from an instance saturate instead of overflowing.
        c.update(u64::MAX, cache(u64::MAX, u64::MAX), 0.1);
        assert_eq!(c.total().0, u64::MAX);
    }
}
