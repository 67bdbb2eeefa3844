//! Stage 7 on real PostgreSQL: orders sharded over databases of their own (made
//! and dropped here, on `SCALEKIT_PG_PRIMARY_URL` or `SCALEKIT_PG_URL`): placing
//! and reading, monthly archives, the admin's scatter-gather queries against one
//! database holding the same rows, and resharding 2 -> 4 under concurrent writers,
//! with a rollback at each step.
//!
//! A test here is one scenario told top to bottom against the real parts; a few
//! run past 100 lines, kept whole so that each step and its check stay together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use proptest::prelude::*;
use scalekit_shard::Phase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};
use storefront_storage::sharded::analytics::{OrderAnalytics, PlainAnalytics, TopBy};
use storefront_storage::sharded::archive::month_start;
use storefront_storage::sharded::reshard::Resharder;
use storefront_storage::sharded::{
    slot_of_order, slot_of_user, Checksum, ShardedOrders, ShardingConfig,
};
use storefront_storage::{Db, Order, OrderLine, OrderRepo};

/// Fresh databases on the server, dropped on drop.
struct Cluster {
    url: String,
    names: Vec<String>,
}

impl Cluster {
    async fn new(test: &str, n: usize) -> Option<Self> {
        let url = ["SCALEKIT_PG_PRIMARY_URL", "SCALEKIT_PG_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
        let Some(url) = url else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: SCALEKIT_PG_PRIMARY_URL or SCALEKIT_PG_URL must be set under CI"
            );
            eprintln!(
                "skipped {test}: no PostgreSQL URL (SCALEKIT_PG_PRIMARY_URL, SCALEKIT_PG_URL)"
            );
            return None;
        };
        let tag = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ std::process::id())
            .unwrap_or(0);
        let names: Vec<String> = (0..n)
            .map(|i| format!("sf_shard_{test}_{tag:08x}_{i}"))
            .collect();
        let mut conn = PgConnection::connect(&url).await.expect("reach PostgreSQL");
        for name in &names {
            conn.execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("create database");
        }
        conn.close().await.ok();
        Some(Self { url, names })
    }

    fn config(&self, in_use: usize, ttl_ms: u64) -> ShardingConfig {
        ShardingConfig {
            url_env: None,
            url: Some(self.url.clone()),
            servers: Default::default(),
            databases: self.names[..in_use].to_vec(),
            reshard_to: self.reshard_to(),
            routing_ttl_ms: ttl_ms,
            max_connections: 6,
        }
    }

    /// 2 -> 4 in the order that moves half the slots, only to the new ones.
    fn reshard_to(&self) -> Vec<String> {
        match self.names.len() {
            4 => vec![
                self.names[0].clone(),
                self.names[2].clone(),
                self.names[1].clone(),
                self.names[3].clone(),
            ],
            _ => self.names.clone(),
        }
    }

    async fn pool(&self, i: usize) -> sqlx::PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(
                PgConnectOptions::from_str(&self.url)
                    .unwrap()
                    .database(&self.names[i]),
            )
            .await
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let url = self.url.clone();
        let names = self.names.clone();
        // Best effort, on a thread of its own (Drop may run inside a runtime).
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    for name in names {
                        let _ = conn
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

fn lines(seed: i64, n: i64) -> Vec<OrderLine> {
    (0..n)
        .map(|k| OrderLine {
            product_id: (seed * 7 + k * 3).rem_euclid(20) + 1 + k * 20,
            name: format!("Product {}", (seed + k).rem_euclid(5)),
            unit_price_cents: 100 * ((seed + k).rem_euclid(9) + 1),
            quantity: (seed + k).rem_euclid(3) + 1,
        })
        .collect()
}

const NOW: i64 = 1_790_812_800 + 12 * 86_400; // 2026-10-13

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_are_placed_read_and_archived() {
    let Some(cluster) = Cluster::new("basic", 2).await else {
        return;
    };
    let orders = ShardedOrders::connect(&cluster.config(2, 1000))
        .await
        .unwrap();
    let mut placed: BTreeMap<i64, Vec<Order>> = BTreeMap::new();
    let mut sum = Checksum::default();
    for k in 0..60i64 {
        let user = k % 23 + 1;
        // Some this month, some in each of the three months before.
        let at = NOW - (k % 4) * 31 * 86_400 - k;
        let o = orders.place(user, &lines(k, k % 3 + 1), at).await.unwrap();
        assert_eq!(
            slot_of_order(o.id),
            slot_of_user(user),
            "the id carries the slot"
        );
        sum.add_order(user, &o);
        placed.entry(user).or_default().push(o);
    }
    let ids: BTreeSet<i64> = placed.values().flatten().map(|o| o.id).collect();
    assert_eq!(ids.len(), 60, "ids are unique");
    let rows = orders.rows_per_database().await.unwrap();
    assert!(
        rows.iter().all(|(_, n)| *n > 0),
        "both databases hold orders: {rows:?}"
    );
    assert_eq!(rows.iter().map(|(_, n)| n).sum::<i64>(), 60);

    let check = |orders: ShardedOrders, placed: BTreeMap<i64, Vec<Order>>| async move {
        for (user, mine) in &placed {
            let mut want: Vec<_> = mine.iter().map(|o| (o.created_at, o.id)).collect();
            want.sort_by(|a, b| b.cmp(a));
            let got: Vec<_> = orders
                .orders(*user)
                .await
                .unwrap()
                .iter()
                .map(|o| (o.created_at, o.id))
                .collect();
            assert_eq!(got, want, "user {user}'s orders, newest first");
            for o in mine {
                let mut want = o.clone();
                want.lines.sort_by_key(|l| l.product_id);
                assert_eq!(orders.order(*user, o.id).await.unwrap(), Some(want));
                assert_eq!(orders.order(*user + 1000, o.id).await.unwrap(), None);
            }
        }
    };
    check(orders.clone(), placed.clone()).await;
    assert_eq!(orders.orders(99_999).await.unwrap(), vec![]);

    let report = orders.archive(NOW).await.unwrap();
    assert_eq!(report.orders, 45, "three months in four are past");
    assert!(
        report.tables.iter().any(|t| t.ends_with(".orders_202609")),
        "{:?}",
        report.tables
    );
    // Each database now has current and monthly tables; reads see both.
    let pool = cluster.pool(0).await;
    let current: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    let in_sept: i64 = sqlx::query_scalar("SELECT count(*) FROM orders_202609")
        .fetch_one(&pool)
        .await
        .unwrap();
    let old_items: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_items WHERE created_at < $1")
            .bind(month_start((2026 - 1970) * 12 + 9))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(current > 0 && in_sept > 0, "{current} {in_sept}");
    assert_eq!(old_items, 0, "lines moved with their orders");
    pool.close().await;
    check(orders.clone(), placed).await;
    assert_eq!(orders.checksum().await.unwrap(), sum);
    assert_eq!(orders.archive(NOW).await.unwrap().orders, 0, "idempotent");
}

/// Inserts the same orders into a plain single database.
async fn insert_plain(pool: &sqlx::PgPool, all: &[(i64, Order)]) {
    let mut tx = pool.begin().await.unwrap();
    for (user, o) in all {
        sqlx::query(
            "INSERT INTO orders (id, user_id, total_cents, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(o.id)
        .bind(user)
        .bind(o.total_cents)
        .bind(o.created_at)
        .execute(&mut *tx)
        .await
        .unwrap();
        for l in &o.lines {
            sqlx::query(
                "INSERT INTO order_items (order_id, product_id, name, unit_price_cents, quantity, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(o.id)
            .bind(l.product_id)
            .bind(&l.name)
            .bind(l.unit_price_cents)
            .bind(l.quantity)
            .bind(o.created_at)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
}

async fn wipe(pool: &sqlx::PgPool) {
    pool.execute("TRUNCATE orders, order_items, orders_archive, order_items_archive")
        .await
        .unwrap();
}

/// One data set: (user, day offset, seconds, lines) per order.
fn dataset() -> impl Strategy<Value = Vec<(i64, i64, i64, i64)>> {
    let users = prop_oneof![Just(1i64..3), Just(1i64..40)];
    users.prop_flat_map(|users| {
        proptest::collection::vec((users, 0i64..70, 0i64..3, 1i64..4), 0..60)
    })
}

#[test]
fn analytics_equal_a_single_database() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some((cluster, orders, single)) = rt.block_on(async {
        let cluster = Cluster::new("analytics", 3).await?;
        let mut config = cluster.config(2, 1000);
        config.reshard_to = Vec::new();
        let orders = ShardedOrders::connect(&config).await.unwrap();
        let single = cluster.pool(2).await;
        storefront_storage::sharded::SHARD_MIGRATIONS
            .run(&single)
            .await
            .unwrap();
        Some((cluster, orders, single))
    }) else {
        return;
    };
    let shard_pools: Vec<sqlx::PgPool> =
        rt.block_on(async { vec![cluster.pool(0).await, cluster.pool(1).await] });
    let plain = PlainAnalytics::new(Db::single(single.clone()));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    });
    runner
        .run(&dataset(), |rows| {
            rt.block_on(async {
                for p in shard_pools.iter().chain([&single]) {
                    wipe(p).await;
                }
                let mut all = Vec::new();
                for (k, (user, day, sec, n)) in rows.iter().enumerate() {
                    // Few distinct times: created_at ties, broken by id.
                    let at = NOW - day * 86_400 + sec;
                    let o = orders.place(*user, &lines(k as i64, *n), at).await.unwrap();
                    all.push((*user, o));
                }
                insert_plain(&single, &all).await;
                // Half the months go to the archive on the shards (not on the single).
                orders.archive(NOW).await.unwrap();
                let total = all.len() as u64;
                assert_eq!(
                    orders.count_orders().await.unwrap(),
                    plain.count_orders().await.unwrap()
                );
                for (offset, limit) in [
                    (0, 10),
                    (3, 7),
                    (0, 1000),
                    (total, 5),
                    (total + 10, 5),
                    (total.saturating_sub(2), 10),
                ] {
                    assert_eq!(
                        orders.latest_orders(offset, limit).await.unwrap(),
                        plain.latest_orders(offset, limit).await.unwrap(),
                        "latest orders, offset {offset}, limit {limit}"
                    );
                }
                for since in [0, NOW - 20 * 86_400] {
                    assert_eq!(
                        orders.revenue_per_day(since).await.unwrap(),
                        plain.revenue_per_day(since).await.unwrap()
                    );
                }
                for by in [TopBy::Units, TopBy::Revenue] {
                    for limit in [3, 100] {
                        assert_eq!(
                            orders.top_products(by, limit).await.unwrap(),
                            plain.top_products(by, limit).await.unwrap(),
                            "top products by {by:?}"
                        );
                    }
                }
            });
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        single.close().await;
        for p in shard_pools {
            p.close().await;
        }
    });
    drop(orders);
    drop(cluster);
}

/// Writers placing orders through their own `ShardedOrders` (like separate app
/// processes, with routing they re-read only when refused), each reading every
/// order back at once.
struct Writers {
    stop: Arc<AtomicBool>,
    placed: Arc<Mutex<Vec<(i64, Order)>>>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

impl Writers {
    async fn start(config: &ShardingConfig, n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let placed = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for w in 0..n {
            let orders = ShardedOrders::connect(config).await.unwrap();
            let (stop, placed) = (stop.clone(), placed.clone());
            tasks.push(tokio::spawn(async move {
                let mut k = 0i64;
                while !stop.load(Ordering::Relaxed) && k < 100_000 {
                    let user = (w as i64) * 1000 + k % 50;
                    let o = orders
                        .place(user, &lines(k, k % 3 + 1), NOW + k)
                        .await
                        .expect("place during the resharding");
                    let back = orders.order(user, o.id).await.expect("read back");
                    assert_eq!(
                        back.map(|b| b.id),
                        Some(o.id),
                        "an order placed is readable"
                    );
                    placed.lock().push((user, o));
                    k += 1;
                }
                k as u64
            }));
        }
        Self {
            stop,
            placed,
            tasks,
        }
    }

    async fn stop(self) -> Vec<(i64, Order)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("writer");
        }
        let v = self.placed.lock().clone();
        v
    }
}

fn checksum_of(all: &[(i64, Order)]) -> Checksum {
    let mut c = Checksum::default();
    for (user, o) in all {
        c.add_order(*user, o);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_under_load_rolls_back_at_each_step_then_completes() {
    let Some(cluster) = Cluster::new("reshard", 4).await else {
        return;
    };
    // The mover's view refreshes fast; the writers' hardly ever (they must be
    // refused to notice a move).
    let orders = ShardedOrders::connect(&cluster.config(2, 50))
        .await
        .unwrap();
    let mut expected: Vec<(i64, Order)> = Vec::new();
    for k in 0..150i64 {
        let user = 5000 + k % 40;
        let at = NOW - (k % 3) * 31 * 86_400;
        expected.push((user, orders.place(user, &lines(k, 2), at).await.unwrap()));
    }
    orders.archive(NOW).await.unwrap();
    let to = cluster.reshard_to();
    let new_dbs = [cluster.names[2].clone(), cluster.names[3].clone()];
    let writers_config = cluster.config(2, 3_600_000);

    let rows_in = |orders: ShardedOrders, dbs: [String; 2]| async move {
        let rows = orders.rows_per_database().await.unwrap();
        rows.iter()
            .filter(|(d, _)| dbs.contains(d))
            .map(|(_, n)| *n)
            .sum::<i64>()
    };

    for steps in 0..5 {
        let writers = Writers::start(&writers_config, 3).await;
        let mover = Resharder::start(&orders, &to).await.unwrap();
        assert_eq!(mover.moves().len(), 8, "half the slots move");
        for _ in 0..steps {
            mover.step().await.unwrap();
        }
        let at = mover.phase();
        assert!(at.can_roll_back(), "{at}");
        mover.rollback().await.unwrap();
        assert_eq!(mover.phase(), Phase::RolledBack);
        // The shop works: orders placed and read after the rollback.
        let o = orders.place(42, &lines(1, 1), NOW).await.unwrap();
        assert_eq!(
            orders.order(42, o.id).await.unwrap().map(|x| x.id),
            Some(o.id)
        );
        expected.push((42, o));
        let during = writers.stop().await;
        eprintln!(
            "rollback from {at}: {} orders placed meanwhile",
            during.len()
        );
        assert!(!during.is_empty());
        expected.extend(during);
        assert_eq!(
            orders.checksum().await.unwrap(),
            checksum_of(&expected),
            "after a rollback from {at}: none lost, none duplicated"
        );
        assert_eq!(
            rows_in(orders.clone(), new_dbs.clone()).await,
            0,
            "rolled back from {at}: the new databases hold nothing"
        );
        assert_eq!(orders.status().await.unwrap().phase, "rolled back");
    }

    // And all the way.
    let writers = Writers::start(&writers_config, 3).await;
    let mover = Resharder::start(&orders, &to).await.unwrap();
    let mut seen = vec![mover.phase()];
    while mover.phase() != Phase::Done {
        seen.push(mover.step().await.unwrap());
        let status = orders.status().await.unwrap();
        assert_eq!(status.phase, mover.phase().to_string());
    }
    assert_eq!(
        seen,
        [
            Phase::Copy,
            Phase::DualWrite,
            Phase::Verify,
            Phase::SwitchReads,
            Phase::SwitchWrites,
            Phase::CleanUp,
            Phase::Done
        ]
    );
    assert_eq!(mover.mismatches(), Some(0));
    assert!(mover.rows_copied() > 0);
    let placed_during = writers.stop().await;
    eprintln!(
        "2 -> 4: {} orders placed meanwhile, {} copied, rows per database {:?}",
        placed_during.len(),
        mover.rows_copied(),
        orders.rows_per_database().await.unwrap()
    );
    assert!(!placed_during.is_empty());
    expected.extend(placed_during);
    assert_eq!(
        orders.checksum().await.unwrap(),
        checksum_of(&expected),
        "none lost, none duplicated"
    );
    let status = orders.status().await.unwrap();
    assert_eq!((status.epoch, status.phase.as_str()), (1, "done"));
    assert_eq!(status.databases, to);
    assert!(
        status.rows_per_database.iter().all(|(_, n)| *n > 0),
        "every database holds orders: {:?}",
        status.rows_per_database
    );
    // Every order reads back from its new place, through a process that knew
    // nothing of the move.
    let late = ShardedOrders::connect(&writers_config).await.unwrap();
    for (user, o) in expected.iter().step_by(7) {
        assert_eq!(
            late.order(*user, o.id).await.unwrap().map(|x| x.id),
            Some(o.id)
        );
    }
    let o = late.place(7, &lines(3, 2), NOW).await.unwrap();
    assert_eq!(late.order(7, o.id).await.unwrap().map(|x| x.id), Some(o.id));
}
