//! Sharding: one routed lookup, and the k-way merge of ORDER BY answers.
//!
//! Groups:
//! * `shard/route`: one `Router::locate` per iteration (ours only: a figure in
//!   ns). `scalekit`: a user id hashed to one of 16 databases through 16384
//!   slots placed by the ring engine, table fixed (the stage-7 hot path);
//!   `scalekit-month`: the same plus a month table, whose name is formatted
//!   per lookup (database by user, table by month of creation);
//!   `scalekit-borrowed`: `locate_with`, the names lent to a closure (no
//!   `Target` built, so no reference counts taken).
//! * `shard/merge_orderby`: `merge_order_by` over 16 shards of 1,000 sorted rows
//!   each (`(u64, u64)`, compared on both fields), every row taken (LIMIT 16,000);
//!   throughput in rows per second. `std-sort` is the baseline a naive merger
//!   would use: concatenate the answers and `sort_unstable` them.
//!
//! Run: `cargo bench -p scalekit-benches --bench shard`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use scalekit_core::mix64;
use scalekit_ring::Ring;
use scalekit_shard::{merge_order_by, Engines, Query, Router, RouterConfig};

fn router() -> Router {
    let dbs: Vec<String> = (0..16).map(|i| format!("\"orders_{i}\"")).collect();
    let dbs = dbs.join(", ");
    let text = format!(
        r#"
        databases = [{dbs}]
        [tables.orders.databases]
        key = "user_id"
        hash = [{dbs}]
        engine = "ring"
        [tables.orders_monthly.databases]
        key = "user_id"
        hash = [{dbs}]
        engine = "ring"
        [tables.orders_monthly.tables]
        key = "created_at"
        time = "month"
        "#
    );
    let engines = Engines::new().register("ring", |n| {
        Ok(Box::new(Ring::with_nodes(n.iter().cloned())?))
    });
    RouterConfig::from_toml(&text)
        .unwrap()
        .build(&engines)
        .unwrap()
}

fn route(c: &mut Criterion) {
    let router = router();
    let keys: Vec<i64> = (0..4096u64).map(|i| (mix64(i) >> 1) as i64).collect();
    let mut g = c.benchmark_group("shard/route");
    let mut i = 0usize;
    g.bench_function("scalekit", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let q = Query::key("user_id", keys[i]);
            black_box(router.locate("orders", black_box(&q)).unwrap())
        })
    });
    g.bench_function("scalekit-borrowed", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let q = Query::key("user_id", keys[i]);
            router
                .locate_with("orders", black_box(&q), |db, table| db.len() + table.len())
                .unwrap()
        })
    });
    g.bench_function("scalekit-month", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            let q = Query::key("user_id", keys[i]).and_key("created_at", 1_795_482_000);
            black_box(router.locate("orders_monthly", black_box(&q)).unwrap())
        })
    });
    g.finish();
}

fn merge_orderby(c: &mut Criterion) {
    const SHARDS: u64 = 16;
    const ROWS: u64 = 1000;
    let shards: Vec<Vec<(u64, u64)>> = (0..SHARDS)
        .map(|s| {
            let mut v: Vec<(u64, u64)> = (0..ROWS)
                .map(|r| (mix64(s * ROWS + r) % 1_000_000, s * ROWS + r))
                .collect();
            v.sort_unstable();
            v
        })
        .collect();
    let mut g = c.benchmark_group("shard/merge_orderby");
    g.throughput(Throughput::Elements(SHARDS * ROWS));
    g.bench_function("scalekit", |b| {
        b.iter_batched(
            || shards.clone(),
            |shards| {
                merge_order_by(shards, |a, b| a.cmp(b), 0, (SHARDS * ROWS) as usize)
                    .fold(0u64, |acc, r| acc.wrapping_add(r.1))
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("std-sort", |b| {
        b.iter_batched(
            || shards.clone(),
            |shards| {
                let mut all: Vec<(u64, u64)> = shards.into_iter().flatten().collect();
                all.sort_unstable();
                all.iter().fold(0u64, |acc, r| acc.wrapping_add(r.1))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, route, merge_orderby);
criterion_main!(benches);
