//! Stage 5's figures: where PostgreSQL reads went (replicas or the primary),
//! writes on the primary, and each replica's lag and state.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::parts::{metric_label, Cell, Figures, View};

/// Reads and writes of this process's PostgreSQL databases since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadSplit {
    /// Reads served by replicas.
    pub replica_reads: u64,
    /// Reads served by the primary (no replicas, none within the lag limit, or
    /// none that had replayed the session's last write).
    pub primary_reads: u64,
    /// Writes (committed write statements or transactions), all on the primary.
    pub primary_writes: u64,
}

impl ReadSplit {
    /// Both counts added.
    pub fn plus(&self, other: &ReadSplit) -> ReadSplit {
        ReadSplit {
            replica_reads: self.replica_reads.saturating_add(other.replica_reads),
            primary_reads: self.primary_reads.saturating_add(other.primary_reads),
            primary_writes: self.primary_writes.saturating_add(other.primary_writes),
        }
    }

    /// The counts since `before`.
    pub fn since(&self, before: &ReadSplit) -> ReadSplit {
        ReadSplit {
            replica_reads: self.replica_reads.saturating_sub(before.replica_reads),
            primary_reads: self.primary_reads.saturating_sub(before.primary_reads),
            primary_writes: self.primary_writes.saturating_sub(before.primary_writes),
        }
    }

    /// Whether nothing was counted.
    pub fn is_zero(&self) -> bool {
        *self == ReadSplit::default()
    }
}

/// Where reads and writes went over a short time (a second).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitWindow {
    /// Reads and writes a second on the primary: the load read/write splitting
    /// takes off it.
    pub primary_qps: f64,
    /// Reads a second on replicas.
    pub replica_reads_per_sec: f64,
    /// Reads a second on the primary.
    pub primary_reads_per_sec: f64,
    /// Writes a second (on the primary).
    pub writes_per_sec: f64,
    /// Replica reads over all reads; `null` without reads.
    pub replica_read_share: Option<f64>,
}

impl SplitWindow {
    /// The rates of `delta` counted over `secs` seconds.
    pub fn of(delta: &ReadSplit, secs: f64) -> SplitWindow {
        let secs = secs.max(1e-3);
        let rate = |n: u64| round3(n as f64 / secs);
        let reads = delta.replica_reads.saturating_add(delta.primary_reads);
        SplitWindow {
            primary_qps: rate(delta.primary_reads.saturating_add(delta.primary_writes)),
            replica_reads_per_sec: rate(delta.replica_reads),
            primary_reads_per_sec: rate(delta.primary_reads),
            writes_per_sec: rate(delta.primary_writes),
            replica_read_share: (reads > 0)
                .then(|| round3(delta.replica_reads as f64 / reads as f64)),
        }
    }

    /// Two processes' rates over the same second, added; the share recomputed.
    pub fn merge(&self, other: &SplitWindow) -> SplitWindow {
        let replica = self.replica_reads_per_sec + other.replica_reads_per_sec;
        let primary = self.primary_reads_per_sec + other.primary_reads_per_sec;
        SplitWindow {
            primary_qps: self.primary_qps + other.primary_qps,
            replica_reads_per_sec: replica,
            primary_reads_per_sec: primary,
            writes_per_sec: self.writes_per_sec + other.writes_per_sec,
            replica_read_share: (replica + primary > 0.0)
                .then(|| round3(replica / (replica + primary))),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

/// A replica's state as the ops page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaState {
    /// Up and within the lag limit: takes reads.
    Serving,
    /// Up but further behind than the lag limit: takes no reads.
    Lagging,
    /// Not answering its health check (or ejected after failures).
    Down,
}

/// One replica of a database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// Its server (`host:port`).
    pub name: String,
    /// Whether it takes reads.
    pub state: ReplicaState,
    /// Its lag at the last health check, in milliseconds.
    pub lag_ms: u64,
    /// The WAL position it had replayed at the last health check.
    pub replayed_lsn: String,
    /// Reads sent to it since start.
    pub reads: u64,
}

/// One database with replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseView {
    /// The database's name.
    pub database: String,
    /// The primary's latest WAL position this process knows.
    pub primary_lsn: String,
    /// Reads sent to the primary since start.
    pub primary_reads: u64,
    /// Its replicas.
    pub replicas: Vec<ReplicaView>,
}

/// Adds `other`'s views (another process's) to `into`: reads per server are
/// summed, a database or replica `into` lacks is added; state, lag and positions
/// stay `into`'s (every process sees the same servers).
pub fn merge_databases(into: &mut Vec<DatabaseView>, other: &[DatabaseView]) {
    for d in other {
        match into.iter_mut().find(|m| m.database == d.database) {
            None => into.push(d.clone()),
            Some(m) => {
                m.primary_reads = m.primary_reads.saturating_add(d.primary_reads);
                for r in &d.replicas {
                    match m.replicas.iter_mut().find(|x| x.name == r.name) {
                        None => m.replicas.push(r.clone()),
                        Some(x) => x.reads = x.reads.saturating_add(r.reads),
                    }
                }
            }
        }
    }
}

/// Stage 5's part: the databases with replicas, each replica's state and lag
/// (`replicas` in a snapshot: a list of [`DatabaseView`]). The read split
/// itself is the recorder's ([`ReadSplit`] in the totals and the history).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Replicas(pub Vec<DatabaseView>);

impl Figures for Replicas {
    const KEY: &'static str = "replicas";
    const TITLE: &'static str = "Read/write splitting";

    /// The primary, then each replica, per database.
    fn view(&self) -> Option<View> {
        let columns = [
            "Database",
            "Server",
            "State",
            "Lag",
            "WAL position",
            "Reads",
        ];
        let mut rows = Vec::new();
        for d in &self.0 {
            rows.push(vec![
                Cell::new(&d.database),
                Cell::new("primary"),
                Cell::new("writes"),
                Cell::new("–"),
                Cell::new(&d.primary_lsn),
                Cell::new(d.primary_reads),
            ]);
            for r in &d.replicas {
                let (state, class) = match r.state {
                    ReplicaState::Serving => ("serving", "good"),
                    ReplicaState::Lagging => ("lagging", "warn"),
                    ReplicaState::Down => ("down", "bad"),
                };
                rows.push(vec![
                    Cell::new(&d.database),
                    Cell::new(&r.name),
                    Cell::classed(state, class),
                    Cell::new(format!("{} ms", r.lag_ms)),
                    Cell::new(&r.replayed_lsn),
                    Cell::new(r.reads),
                ]);
            }
        }
        Some(View {
            figures: Vec::new(),
            columns: columns.map(String::from).to_vec(),
            rows,
        })
    }

    /// Each replica's lag and whether it serves.
    fn metrics(&self) -> Option<String> {
        let mut out = String::new();
        let replicas = || {
            self.0.iter().flat_map(|d| {
                d.replicas
                    .iter()
                    .map(move |r| (metric_label(&d.database), r))
            })
        };
        if replicas().next().is_none() {
            return Some(out);
        }
        out.push_str(
            "# HELP storefront_replica_lag_seconds A replica's lag at its last health check.\n\
             # TYPE storefront_replica_lag_seconds gauge\n",
        );
        for (database, r) in replicas() {
            let _ = writeln!(
                out,
                "storefront_replica_lag_seconds{{database=\"{database}\",replica=\"{}\"}} {}",
                metric_label(&r.name),
                r.lag_ms as f64 / 1_000.0
            );
        }
        out.push_str(
            "# HELP storefront_replica_serving Whether a replica takes reads (1), lags (0) or is down (-1).\n\
             # TYPE storefront_replica_serving gauge\n",
        );
        for (database, r) in replicas() {
            let v = match r.state {
                ReplicaState::Serving => 1,
                ReplicaState::Lagging => 0,
                ReplicaState::Down => -1,
            };
            let _ = writeln!(
                out,
                "storefront_replica_serving{{database=\"{database}\",replica=\"{}\"}} {v}",
                metric_label(&r.name)
            );
        }
        Some(out)
    }

    /// Reads per server add up ([`merge_databases`]).
    fn merge(&mut self, other: &Self) {
        merge_databases(&mut self.0, &other.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_share() {
        let before = ReadSplit {
            replica_reads: 10,
            primary_reads: 5,
            primary_writes: 1,
        };
        let now = ReadSplit {
            replica_reads: 40,
            primary_reads: 15,
            primary_writes: 6,
        };
        let w = SplitWindow::of(&now.since(&before), 2.0);
        assert_eq!(w.replica_reads_per_sec, 15.0);
        assert_eq!(w.primary_reads_per_sec, 5.0);
        assert_eq!(w.writes_per_sec, 2.5);
        assert_eq!(w.primary_qps, 7.5);
        assert_eq!(w.replica_read_share, Some(0.75));
        let m = w.merge(&SplitWindow::of(&ReadSplit::default(), 1.0));
        assert_eq!(m, w);
        assert_eq!(SplitWindow::default().replica_read_share, None);
        assert_eq!(now.plus(&before).replica_reads, 50);
    }

    #[test]
    fn instances_add_up_and_show_as_a_table() {
        let view = |reads| DatabaseView {
            database: "shop".into(),
            primary_lsn: "0/10".into(),
            primary_reads: reads,
            replicas: vec![ReplicaView {
                name: "r:5433".into(),
                state: ReplicaState::Lagging,
                lag_ms: 1500,
                replayed_lsn: "0/10".into(),
                reads: reads * 10,
            }],
        };
        let mut all = Replicas(vec![view(1)]);
        all.merge(&Replicas(vec![view(2)]));
        assert_eq!(all.0.len(), 1);
        assert_eq!(
            (all.0[0].primary_reads, all.0[0].replicas[0].reads),
            (3, 30)
        );
        let table = all.view().unwrap_or_default();
        assert_eq!(table.rows.len(), 2);
        assert_eq!(table.rows[1][2], Cell::classed("lagging", "warn"));
        let text = all.metrics().unwrap_or_default();
        assert!(
            text.contains(
                "storefront_replica_lag_seconds{database=\"shop\",replica=\"r:5433\"} 1.5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("storefront_replica_serving{database=\"shop\",replica=\"r:5433\"} 0\n"),
            "{text}"
        );
        assert_eq!(Replicas::default().metrics().as_deref(), Some(""));
        // The JSON is the list itself, as `replicas` always was.
        let json = serde_json::to_value(&all).unwrap_or_default();
        assert_eq!(json[0]["database"], "shop");
    }
}
