//! Stage 5 on the ops page: where reads go (replicas or the primary), writes on
//! the primary (the recorder's own figures: [`crate::Ops::set_read_split`]), and
//! each replica's lag and state (the [`Replicas`] part, registered by the app
//! over its stores; the gateway adds up its instances').

pub use storefront_contract::ops::replicas::{
    merge_databases, DatabaseView, ReadSplit, ReplicaState, ReplicaView, Replicas, SplitWindow,
};

/// `/metrics` lines for the read split (OpenMetrics text).
pub(crate) fn render_metrics(out: &mut String, split: &ReadSplit) {
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
}
