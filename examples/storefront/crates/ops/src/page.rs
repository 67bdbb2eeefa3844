//! The ops routes: `/ops`, `/ops/ops.js` (its script), `/ops/data.json`,
//! `/metrics`; each behind the recorder's [`OpsAccess`](super::OpsAccess).

use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use std::sync::Arc;

use axum::extract::FromRef;

use super::access::Authorized;
use super::replicas::Replicas;
use super::{metrics, Figures, Ops, Part, Snapshot, Window};
use storefront_contract::ops::parts::{Cell, Fact, View};

/// The ops routes, to merge into the app's router after its [`super::OpsLayer`] (so
/// they are not counted themselves). Any state that holds the recorder will do
/// (the app's state, the gateway's `Arc<Ops>`).
pub fn router<S>() -> Router<S>
where
    Arc<Ops>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/ops", get(page))
        .route("/ops/ops.js", get(script))
        .route("/ops/data.json", get(data))
        .route("/ops/parts.json", get(parts))
        .route("/metrics", get(prometheus))
        .layer(axum::middleware::map_response(
            storefront_server::headers::secure,
        ))
}

/// The ops page's script (a file of its own: the pages' CSP runs no inline script).
async fn script(_: Authorized) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../static/ops.js"),
    )
        .into_response()
}

async fn data(_: Authorized, State(ops): State<Arc<Ops>>) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(ops.snapshot())).into_response()
}

/// Each part's section as the page draws it, for the page's script.
async fn parts(_: Authorized, State(ops): State<Arc<Ops>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(part_views(&ops)),
    )
        .into_response()
}

/// Every registered part's section, figures or not (the script fills them).
fn part_views(ops: &Ops) -> Vec<PartView> {
    ops.parts()
        .iter()
        .map(|p| {
            let view = (p.read)().map_or_else(View::default, |shown| {
                shown
                    .view()
                    .unwrap_or_else(|| from_shape(p, &shown.json().unwrap_or(Value::Null)))
            });
            PartView {
                key: p.key,
                title: p.title,
                view,
            }
        })
        .collect()
}

async fn prometheus(_: Authorized, State(ops): State<Arc<Ops>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, metrics::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        ops.render_metrics(),
    )
        .into_response()
}

/// One live figure: its value now and its last minute.
struct Figure {
    /// The key in `window` (and in `history`'s points).
    key: &'static str,
    label: &'static str,
    value: String,
    /// `points` of the sparkline's polyline.
    spark: String,
}

/// A part's section (see [`storefront_contract::ops::parts`]).
#[derive(serde::Serialize)]
struct PartView {
    key: &'static str,
    title: &'static str,
    #[serde(flatten)]
    view: View,
}

#[derive(Template)]
#[template(path = "ops.html")]
struct OpsPage {
    title: String,
    snapshot: Snapshot,
    uptime: String,
    topology: String,
    figures: Vec<Figure>,
    cache_rows: Vec<(&'static str, u64, u64)>,
    /// The Redis tier's failed calls and calls skipped, apart from misses.
    faults: Option<super::TierFaults>,
    /// Each registered part's section, figures or not (the script fills them).
    parts: Vec<PartView>,
}

/// The width and height of a sparkline, and the points it holds.
const SPARK_W: f64 = 120.0;
const SPARK_H: f64 = 32.0;
const SPARK_POINTS: f64 = 60.0;

/// The `points` of a sparkline of `values` (newest at the right, a minute wide,
/// scaled to the largest value).
fn spark(values: &[f64]) -> String {
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let step = SPARK_W / (SPARK_POINTS - 1.0);
    let n = values.len();
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = SPARK_W - (n - 1 - i) as f64 * step;
            let y = if max > 0.0 {
                SPARK_H - 1.0 - v / max * (SPARK_H - 2.0)
            } else {
                SPARK_H - 1.0
            };
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn figure_value(key: &str, w: &Window) -> String {
    let ratio =
        |r: Option<f64>| r.map_or_else(|| "–".to_owned(), |r| format!("{:.1} %", r * 100.0));
    match key {
        "rps" => format!("{:.1}", w.rps),
        "p50_ms" => format!("{:.2} ms", w.p50_ms),
        "p99_ms" => format!("{:.2} ms", w.p99_ms),
        "db_qps" => format!("{:.1}", w.db_qps),
        "l1_hit_ratio" => ratio(w.l1_hit_ratio),
        "primary_qps" => format!("{:.1}", w.split.primary_qps),
        "replica_read_share" => ratio(w.split.replica_read_share),
        _ => ratio(w.l2_hit_ratio),
    }
}

fn figure_of(w: &Window, key: &str) -> f64 {
    match key {
        "rps" => w.rps,
        "p50_ms" => w.p50_ms,
        "p99_ms" => w.p99_ms,
        "db_qps" => w.db_qps,
        "l1_hit_ratio" => w.l1_hit_ratio.unwrap_or(0.0),
        "primary_qps" => w.split.primary_qps,
        "replica_read_share" => w.split.replica_read_share.unwrap_or(0.0),
        _ => w.l2_hit_ratio.unwrap_or(0.0),
    }
}

fn uptime(secs: f64) -> String {
    let s = secs as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// Words for a JSON key: `rate_limited` → `Rate limited`.
fn words(key: &str) -> String {
    let text = key.replace(['_', '-'], " ");
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A part's value for people, and how to colour it.
fn cell(key: &str, value: &Value) -> Cell {
    let (text, class) = match value {
        Value::Bool(b) if key == "healthy" => (
            if *b { "healthy" } else { "down" }.to_owned(),
            if *b { "good" } else { "bad" },
        ),
        Value::Bool(b) => (if *b { "yes" } else { "no" }.to_owned(), ""),
        Value::String(s) => {
            let class = match s.as_str() {
                "closed" | "up" | "healthy" => "good",
                "open" | "down" | "unhealthy" => "bad",
                "half-open" | "half_open" | "halfopen" => "warn",
                _ => "",
            };
            (s.clone(), class)
        }
        Value::Null => ("–".to_owned(), ""),
        Value::Number(n) => (n.to_string(), ""),
        other => (other.to_string(), ""),
    };
    Cell::classed(text, class)
}

/// The usual instance fields, in the order the table shows them.
const COLUMNS: [&str; 7] = [
    "name",
    "addr",
    "healthy",
    "breaker",
    "in_flight",
    "requests",
    "failures",
];

/// A part's section drawn from the shape of its figures: `totals` as
/// figures, `instances` as a table (see [`storefront_contract::ops::parts`]).
fn from_shape(part: &Part, data: &Value) -> View {
    let instances: Vec<&serde_json::Map<String, Value>> = data
        .get("instances")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let mut columns: Vec<String> = Vec::new();
    for instance in &instances {
        for key in instance.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    // The usual columns first, in this order; others after them, by name.
    columns.sort_by_key(|c| {
        (
            COLUMNS.iter().position(|k| k == c).unwrap_or(COLUMNS.len()),
            c.clone(),
        )
    });
    let rows = instances
        .iter()
        .map(|instance| {
            columns
                .iter()
                .map(|key| cell(key, instance.get(key).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let totals = data.get("totals").and_then(Value::as_object);
    let figures = totals
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let name: &str = key;
            let label = part
                .labels
                .iter()
                .find(|(k, _)| *k == name)
                .map_or_else(|| words(key), |(_, l)| (*l).to_owned());
            Fact {
                label,
                value: cell(key, value).text,
                class: if part.highlight.contains(&name) {
                    "highlight".into()
                } else {
                    String::new()
                },
            }
        })
        .collect();
    View {
        figures,
        columns: columns.iter().map(|c| words(c)).collect(),
        rows,
    }
}

async fn page(_: Authorized, State(ops): State<Arc<Ops>>) -> Response {
    let snapshot = ops.snapshot();
    let mut keys: Vec<(&'static str, &'static str)> = vec![
        ("rps", "Requests per second"),
        ("p50_ms", "Latency p50"),
        ("p99_ms", "Latency p99"),
        ("db_qps", "Database queries per second"),
    ];
    // The caches' rows once they report (stage 3 on).
    if snapshot.totals.cache.l1.is_some() {
        keys.push(("l1_hit_ratio", "L1 hit ratio (in process)"));
    }
    if snapshot.totals.cache.l2.is_some() {
        keys.push(("l2_hit_ratio", "L2 hit ratio (Redis)"));
    }
    // Stage 5's rows once its replicas show.
    if snapshot.parts.contains_key(Replicas::KEY) {
        keys.push(("primary_qps", "Primary queries per second"));
        keys.push(("replica_read_share", "Reads on replicas"));
    }
    let figures = keys
        .into_iter()
        .map(|(key, label)| {
            let values: Vec<f64> = snapshot
                .history
                .iter()
                .map(|p| figure_of(&p.figures, key))
                .collect();
            Figure {
                key,
                label,
                value: figure_value(key, &snapshot.window),
                spark: spark(&values),
            }
        })
        .collect();
    let cache = snapshot.totals.cache;
    let cache_rows = [("L1", cache.l1), ("L2", cache.l2)]
        .into_iter()
        .filter_map(|(tier, t)| t.map(|t| (tier, t.hits, t.misses)))
        .collect();
    let view = OpsPage {
        title: "Ops".into(),
        uptime: uptime(snapshot.uptime_secs),
        topology: super::topology::svg(&snapshot.topology),
        figures,
        cache_rows,
        faults: cache.l2_faults,
        parts: part_views(&ops),
        snapshot,
    };
    match view.render() {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => {
            tracing::error!("cannot render the ops page: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the ops page\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_end_at_the_right() {
        assert_eq!(spark(&[]), "");
        assert_eq!(spark(&[0.0, 0.0]), "118.0,31.0 120.0,31.0");
        let s = spark(&[1.0, 2.0]);
        assert_eq!(s, "118.0,16.0 120.0,1.0");
    }

    #[test]
    fn a_part_of_another_shape_draws_itself() {
        use storefront_contract::ops::shards::{ShardRows, ShardsView};
        let ops = Ops::default();
        ops.add_part(|| {
            Some(ShardsView {
                phase: "copy".into(),
                rows: vec![ShardRows {
                    database: "orders_0".into(),
                    in_use: true,
                    orders: 12,
                    order_items: 30,
                }],
                ..ShardsView::default()
            })
        });
        let views = part_views(&ops);
        assert_eq!((views[0].key, views[0].title), ("shards", "Shards"));
        assert_eq!(views[0].view.columns[0], "Database");
        assert_eq!(views[0].view.rows[0][2].text, "12");
        let json = serde_json::to_value(&views).unwrap_or_default();
        assert_eq!(json[0]["rows"][0][1]["text"], "in use", "{json}");
        let text = ops.render_metrics();
        assert!(
            text.contains("storefront_shard_orders{database=\"orders_0\"} 12\n"),
            "{text}"
        );
        assert!(
            text.contains("storefront_reshard_phase{phase=\"copy\"} 1\n"),
            "{text}"
        );
        assert!(
            !text.contains("storefront_shards_"),
            "no lines from the generic shape: {text}"
        );
        assert!(text.ends_with("# EOF\n"));
        // The snapshot keeps the figures' own JSON under the part's key.
        let snapshot = ops.snapshot();
        assert_eq!(
            snapshot.part::<ShardsView>().map(|s| s.phase),
            Some("copy".into())
        );
    }

    #[test]
    fn a_part_is_drawn_from_its_figures_alone() {
        let v = serde_json::json!({
            "instances": [{"name": "a", "healthy": false, "breaker": "open", "in_flight": 3}],
            "totals": {"rate_limited": 4}
        });
        let ops = Ops::default();
        ops.add_part(|| Some(storefront_contract::ops::gateway::GatewayFigures::default()));
        let g = from_shape(&ops.parts()[0], &v);
        assert_eq!(g.figures[0].class, "highlight");
        assert_eq!(g.columns, ["Name", "Healthy", "Breaker", "In flight"]);
        assert_eq!(g.rows[0][1].text, "down");
        assert_eq!(g.rows[0][2].class, "bad");
        assert_eq!(g.figures[0].label, "Rate-limit rejections");
        assert_eq!(g.figures[0].value, "4");
        assert_eq!(uptime(3725.0), "1 h 2 min");
        assert_eq!(uptime(65.0), "1 min 5 s");
    }
}
