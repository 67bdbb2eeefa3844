//! The merge property: for random rows spread over random shards (by the
//! router, written through it, read back through the scatter-gather executor),
//! ORDER BY with LIMIT/OFFSET, COUNT/SUM/MIN/MAX/AVG and GROUP BY give exactly
//! what one database holding every row gives. The aggregated column is
//! nullable, prices repeat (ties on the ORDER BY key, broken by `id` on both
//! sides) and many shards are empty.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use async_trait::async_trait;
use proptest::prelude::*;
use scalekit_ring::Ring;
use scalekit_shard::{
    merge_groups, merge_order_by, per_shard_limit, Aggregate, Engines, Op, Query, RouterConfig,
    ScatterGather, ShardExecutor, Target,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Row {
    id: i64,
    user: i64,
    category: u8,
    /// Nullable: NULL is `None`.
    price: Option<i64>,
}

/// ORDER BY price DESC NULLS LAST, id: prices tie often; the tie-break on the
/// unique `id` is the deterministic rule both the shards and the single
/// database apply, so the order is total.
fn order(a: &Row, b: &Row) -> std::cmp::Ordering {
    // `Option`'s order puts `None` first, so DESC puts NULLs last.
    b.price.cmp(&a.price).then(a.id.cmp(&b.id))
}

/// SQL's aggregates over the nullable column: NULLs skipped.
fn agg<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Aggregate {
    Aggregate::of_nullable(rows.into_iter().map(|r| r.price))
}

enum Request {
    /// SELECT * ORDER BY price DESC, id LIMIT n (each shard: offset + limit).
    TopN(usize),
    /// SELECT COUNT(*), COUNT(price), SUM(price), MIN(price), MAX(price)
    /// [WHERE category = c].
    Aggregate(Option<u8>),
    /// SELECT category, COUNT(*), SUM(price), MIN(price), MAX(price) GROUP BY category.
    GroupBy,
}

enum Response {
    Rows(Vec<Row>),
    /// COUNT(*) and the aggregates of `price` (COUNT(price) in `count`).
    Aggregate(u64, Aggregate),
    Groups(Vec<(u8, Aggregate)>),
}

/// In-memory shards: each physical table a vector of rows.
struct Shards(HashMap<Target, Vec<Row>>);

#[async_trait]
impl ShardExecutor for Shards {
    type Request = Request;
    type Response = Response;
    type Error = Infallible;

    async fn execute(&self, target: &Target, request: &Request) -> Result<Response, Infallible> {
        let rows = self.0.get(target).cloned().unwrap_or_default();
        Ok(match request {
            Request::TopN(n) => {
                let mut rows = rows;
                rows.sort_by(order);
                rows.truncate(*n);
                Response::Rows(rows)
            }
            Request::Aggregate(c) => {
                let rows: Vec<&Row> = rows
                    .iter()
                    .filter(|r| c.is_none_or(|c| r.category == c))
                    .collect();
                Response::Aggregate(rows.len() as u64, agg(rows))
            }
            Request::GroupBy => {
                let mut g: BTreeMap<u8, Aggregate> = BTreeMap::new();
                for r in &rows {
                    let a = g.entry(r.category).or_default();
                    if let Some(p) = r.price {
                        a.push(p).unwrap();
                    }
                }
                Response::Groups(g.into_iter().collect())
            }
        })
    }
}

fn config(dbs: usize, tables: usize, engine: &str) -> String {
    let names: Vec<String> = (0..dbs).map(|i| format!("\"db{i}\"")).collect();
    let list = names.join(", ");
    format!(
        r#"
        databases = [{list}]
        [tables.items.databases]
        key = "user"
        hash = [{list}]
        engine = "{engine}"
        slots = 64
        [tables.items.tables]
        key = "user"
        modulo = {tables}
        "#
    )
}

/// Few distinct prices (ties), about one NULL in four, and as often as not
/// fewer rows than shards (empty shards).
fn rows() -> impl Strategy<Value = Vec<Row>> {
    let row = (
        0i64..50,
        0u8..5,
        proptest::option::weighted(0.75, prop_oneof![-3i64..3, -1000i64..1000]),
    );
    prop_oneof![
        proptest::collection::vec(row.clone(), 0..6),
        proptest::collection::vec(row, 0..120),
    ]
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (user, category, price))| Row {
                id: i as i64,
                user,
                category,
                price,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn merged_results_equal_one_database(
        rows in rows(),
        dbs in 1usize..6,
        tables in 1usize..4,
        ring in any::<bool>(),
        offset in 0usize..40,
        limit in 0usize..40,
        category in proptest::option::of(0u8..5),
    ) {
        let engines = Engines::new()
            .register("ring", |n| Ok(Box::new(Ring::with_nodes(n.iter().cloned())?)));
        let router = RouterConfig::from_toml(&config(dbs, tables, if ring { "ring" } else { "contiguous" }))
            .unwrap()
            .build(&engines)
            .unwrap();
        // Write every row where the router says.
        let mut shards: HashMap<Target, Vec<Row>> = HashMap::new();
        for r in &rows {
            let t = router.locate("items", &Query::key("user", r.user)).unwrap();
            shards.entry(t).or_default().push(*r);
        }
        let shards = Shards(shards);
        let targets = router.route("items", &Query::all(), Op::Read).unwrap().targets;
        prop_assert_eq!(targets.len(), dbs * tables);
        let sg = ScatterGather::new().concurrency(3);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();

        // ORDER BY .. LIMIT .. OFFSET ..
        let got = rt.block_on(sg.run(&shards, &targets, &Request::TopN(per_shard_limit(offset, limit)))).unwrap();
        let streams = got.responses.into_iter().map(|(_, r)| match r {
            Response::Rows(rows) => rows,
            _ => unreachable!(),
        });
        let merged: Vec<Row> = merge_order_by(streams, order, offset, limit).collect();
        let mut single = rows.clone();
        single.sort_by(order);
        let single: Vec<Row> = single.into_iter().skip(offset).take(limit).collect();
        prop_assert_eq!(merged, single);

        // COUNT / SUM / MIN / MAX / AVG
        let got = rt.block_on(sg.run(&shards, &targets, &Request::Aggregate(category))).unwrap();
        let (mut total, mut count_star) = (Aggregate::default(), 0u64);
        for (_, r) in got.responses {
            let Response::Aggregate(n, a) = r else { unreachable!() };
            total.merge(&a).unwrap();
            count_star += n;
        }
        let filtered: Vec<&Row> =
            rows.iter().filter(|r| category.is_none_or(|c| r.category == c)).collect();
        let single = agg(filtered.iter().copied());
        prop_assert_eq!(total, single);
        prop_assert_eq!(count_star, filtered.len() as u64);
        // SUM over no non-NULL values is NULL, not 0.
        let values: Vec<i64> = filtered.iter().filter_map(|r| r.price).collect();
        let want_sum = (!values.is_empty()).then(|| values.iter().map(|&v| i128::from(v)).sum::<i128>());
        prop_assert_eq!(total.sum(), want_sum);
        // AVG divides by COUNT(price), never COUNT(*).
        prop_assert_eq!(total.avg_exact(), want_sum.map(|s| (s, values.len() as u64)));
        prop_assert_eq!(total.avg_exact(), single.avg_exact());

        // GROUP BY category, then ORDER BY SUM DESC, category LIMIT 3
        let got = rt.block_on(sg.run(&shards, &targets, &Request::GroupBy)).unwrap();
        let groups = merge_groups(got.responses.into_iter().map(|(_, r)| match r {
            Response::Groups(g) => g,
            _ => unreachable!(),
        })).unwrap();
        let mut single: BTreeMap<u8, Aggregate> = BTreeMap::new();
        for r in &rows {
            let a = single.entry(r.category).or_default();
            if let Some(p) = r.price {
                a.push(p).unwrap();
            }
        }
        prop_assert_eq!(&groups, &single);
        let top = |g: &BTreeMap<u8, Aggregate>| {
            // ORDER BY SUM(price) DESC NULLS LAST, category: ties broken by the key.
            let mut v: Vec<(u8, Option<i128>)> = g.iter().map(|(k, a)| (*k, a.sum())).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v.truncate(3);
            v
        };
        prop_assert_eq!(top(&groups), top(&single));
    }
}
