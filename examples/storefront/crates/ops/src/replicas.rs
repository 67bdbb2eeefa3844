//! Stage 5 on the ops page: where reads go (replicas or the primary), writes on
//! the primary, and each replica's lag and state.
//!
//! The figures come from the process's stores (see [`crate::Ops::set_replicas`]);
//! the gateway adds up its instances'.

pub use storefront_contract::ops::replicas::{
    merge_databases, DatabaseView, ReadSplit, ReplicaState, ReplicaView, SplitWindow,
};

/// One row of the ops page's replica table.
pub(crate) struct Row {
    pub(crate) database: String,
    pub(crate) name: String,
    pub(crate) state: &'static str,
    pub(crate) class: &'static str,
    pub(crate) lag: String,
    pub(crate) lsn: String,
    pub(crate) reads: u64,
}

/// The ops page's replica table: the primary, then each replica, per database.
pub(crate) fn rows(databases: &[DatabaseView]) -> Vec<Row> {
    let mut rows = Vec::new();
    for d in databases {
        rows.push(Row {
            database: d.database.clone(),
            name: "primary".into(),
            state: "writes",
            class: "",
            lag: "–".into(),
            lsn: d.primary_lsn.clone(),
            reads: d.primary_reads,
        });
        for r in &d.replicas {
            let (state, class) = match r.state {
                ReplicaState::Serving => ("serving", "good"),
                ReplicaState::Lagging => ("lagging", "warn"),
                ReplicaState::Down => ("down", "bad"),
            };
            rows.push(Row {
                database: d.database.clone(),
                name: r.name.clone(),
                state,
                class,
                lag: format!("{} ms", r.lag_ms),
                lsn: r.replayed_lsn.clone(),
                reads: r.reads,
            });
        }
    }
    rows
}

/// `/metrics` lines for the read split and the replicas (OpenMetrics text).
pub(crate) fn render_metrics(out: &mut String, split: &ReadSplit, databases: &[DatabaseView]) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP storefront_db_reads Reads of the PostgreSQL databases, by where they went.\n\
         # TYPE storefront_db_reads counter\n\
         storefront_db_reads_total{{on=\"replica\"}} {}\n\
         storefront_db_reads_total{{on=\"primary\"}} {}\n\
         # HELP storefront_db_writes Writes committed on the primary.\n\
         # TYPE storefront_db_writes counter\n\
         storefront_db_writes_total {}",
        split.replica_reads, split.primary_reads, split.primary_writes
    );
    if databases.iter().all(|d| d.replicas.is_empty()) {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP storefront_replica_lag_seconds A replica's lag at its last health check.\n\
         # TYPE storefront_replica_lag_seconds gauge"
    );
    for d in databases {
        for r in &d.replicas {
            let _ = writeln!(
                out,
                "storefront_replica_lag_seconds{{database=\"{}\",replica=\"{}\"}} {}",
                label(&d.database),
                label(&r.name),
                r.lag_ms as f64 / 1_000.0
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP storefront_replica_serving Whether a replica takes reads (1), lags (0) or is down (-1).\n\
         # TYPE storefront_replica_serving gauge"
    );
    for d in databases {
        for r in &d.replicas {
            let v = match r.state {
                ReplicaState::Serving => 1,
                ReplicaState::Lagging => 0,
                ReplicaState::Down => -1,
            };
            let _ = writeln!(
                out,
                "storefront_replica_serving{{database=\"{}\",replica=\"{}\"}} {v}",
                label(&d.database),
                label(&r.name)
            );
        }
    }
}

/// A label value escaped for the text format.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_of_instances_add_up() {
        let view = |reads| DatabaseView {
            database: "shop".into(),
            primary_lsn: "0/10".into(),
            primary_reads: reads,
            replicas: vec![ReplicaView {
                name: "r:5433".into(),
                state: ReplicaState::Serving,
                lag_ms: 0,
                replayed_lsn: "0/10".into(),
                reads: reads * 10,
            }],
        };
        let mut all = Vec::new();
        merge_databases(&mut all, &[view(1)]);
        merge_databases(&mut all, &[view(2)]);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].primary_reads, 3);
        assert_eq!(all[0].replicas[0].reads, 30);
        let rows = rows(&all);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].state, rows[1].class), ("serving", "good"));
    }
}
