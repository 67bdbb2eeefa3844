//! `/metrics` in the Prometheus text format (OpenMetrics 1.0).
//!
//! Why prometheus-client (the Prometheus project's own Rust client) rather than the
//! `metrics` facade with `metrics-exporter-prometheus`: its registry is a plain
//! value, not a process-wide recorder installed once, so every [`Ops`] (one per
//! process, and one per test in a test binary) renders its own figures. The request
//! path never touches it: the counters are [`Ops`]'s own atomics, which a
//! [`Collector`] reads at scrape time; prometheus-client does the exposition format
//! (names, `_total`, label escaping, cumulative `le` buckets, `# EOF`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::{CacheTotals, Ops, BUCKETS_US};

/// The `Content-Type` of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One route's figures, copied out of the atomics.
#[derive(Debug)]
struct RouteView {
    route: String,
    statuses: Vec<(u16, u64)>,
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum_secs: f64,
}

/// Everything `/metrics` shows, read at once.
#[derive(Debug)]
struct View {
    routes: Vec<RouteView>,
    db_queries: u64,
    cache: CacheTotals,
    uptime_secs: f64,
    /// Each part's key and figures.
    parts: Vec<(&'static str, Value)>,
    connections: Option<storefront_server::ConnStats>,
}

const NO_EXEMPLAR: Option<&Exemplar<NoLabelSet, u64>> = None;
const NO_EXEMPLARS: Option<&HashMap<usize, Exemplar<NoLabelSet, f64>>> = None;

/// `storefront_<part>_<key>`: lower case letters, digits and `_` only.
fn metric_name(part: &str, key: &str) -> String {
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("storefront_{part}_{}", name.trim_end_matches("_total"))
}

impl View {
    /// A part's figures (see [`storefront_contract::ops::parts`]): its totals as
    /// counters, its instances' fields as gauges per instance.
    fn encode_part(
        part: &str,
        figures: &Value,
        encoder: &mut DescriptorEncoder<'_>,
    ) -> fmt::Result {
        if let Some(totals) = figures.get("totals").and_then(Value::as_object) {
            for (key, value) in totals {
                if let Some(n) = value.as_f64() {
                    let name = metric_name(part, key);
                    let help = format!("The {part}'s {key}, since start.");
                    encoder
                        .encode_descriptor(&name, &help, None, MetricType::Counter)?
                        .encode_counter(&n, NO_EXEMPLAR)?;
                }
            }
        }
        let Some(instances) = figures.get("instances").and_then(Value::as_array) else {
            return Ok(());
        };
        // key -> [(instance, state or "", value)]
        let mut series: BTreeMap<String, Vec<(String, String, f64)>> = BTreeMap::new();
        for (i, instance) in instances.iter().enumerate() {
            let Some(fields) = instance.as_object() else {
                continue;
            };
            let name = ["name", "addr"]
                .iter()
                .find_map(|k| fields.get(*k).and_then(Value::as_str))
                .map_or_else(|| i.to_string(), str::to_owned);
            for (key, value) in fields {
                let point = match value {
                    Value::Number(n) => (String::new(), n.as_f64().unwrap_or(0.0)),
                    Value::Bool(b) => (String::new(), if *b { 1.0 } else { 0.0 }),
                    Value::String(s) if key != "name" && key != "addr" => (s.clone(), 1.0),
                    _ => continue,
                };
                series
                    .entry(key.clone())
                    .or_default()
                    .push((name.clone(), point.0, point.1));
            }
        }
        for (key, points) in series {
            let name = metric_name(part, &format!("instance_{key}"));
            let help = format!("Each {part} instance's {key} (a state is 1 on its label).");
            let mut metric = encoder.encode_descriptor(&name, &help, None, MetricType::Gauge)?;
            for (instance, state, value) in &points {
                if state.is_empty() {
                    metric
                        .encode_family(&[("instance", instance.as_str())])?
                        .encode_gauge(value)?;
                } else {
                    metric
                        .encode_family(&[
                            ("instance", instance.as_str()),
                            ("state", state.as_str()),
                        ])?
                        .encode_gauge(value)?;
                }
            }
        }
        Ok(())
    }
}

impl View {
    /// `storefront_connections_*`: gauges for what is open now, counters for the
    /// rest (see [`storefront_server::ConnStats`]).
    fn encode_connections(
        c: &storefront_server::ConnStats,
        encoder: &mut DescriptorEncoder<'_>,
    ) -> fmt::Result {
        for (name, help, value) in [
            ("open", "Client connections open now.", c.open),
            ("idle", "Of those, waiting for a request.", c.idle),
            ("max", "The cap on client connections.", c.max_connections),
        ] {
            encoder
                .encode_descriptor(
                    &format!("storefront_connections_{name}"),
                    help,
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&(value as f64))?;
        }
        for (name, help, value) in [
            ("accepted", "Client connections accepted.", c.accepted),
            (
                "refused",
                "Connections answered 503 and closed at the cap.",
                c.refused,
            ),
            (
                "evicted",
                "Idle connections closed to make room at the cap.",
                c.evicted,
            ),
            (
                "header_timeouts",
                "Connections closed for not sending a request's headers in time.",
                c.header_timeouts,
            ),
            (
                "idle_timeouts",
                "Kept-alive connections closed for sending no next request in time.",
                c.idle_timeouts,
            ),
            (
                "write_timeouts",
                "Connections closed because the client took no more of a response in time.",
                c.write_timeouts,
            ),
            (
                "body_timeouts",
                "Request bodies that did not arrive in time.",
                c.body_timeouts,
            ),
            (
                "accept_errors",
                "Errors from accept (out of file descriptors, ...).",
                c.accept_errors,
            ),
            (
                "dropped_at_drain",
                "Connections dropped at the drain deadline on shutdown.",
                c.dropped_at_drain,
            ),
        ] {
            encoder
                .encode_descriptor(
                    &format!("storefront_connections_{name}"),
                    help,
                    None,
                    MetricType::Counter,
                )?
                .encode_counter(&value, NO_EXEMPLAR)?;
        }
        Ok(())
    }
}

impl Collector for View {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut requests = encoder.encode_descriptor(
            "storefront_http_requests",
            "HTTP requests answered, by route template and status.",
            None,
            MetricType::Counter,
        )?;
        for r in &self.routes {
            for (status, n) in &r.statuses {
                let status = status.to_string();
                requests
                    .encode_family(&[("route", r.route.as_str()), ("status", status.as_str())])?
                    .encode_counter(n, NO_EXEMPLAR)?;
            }
        }
        let mut latency = encoder.encode_descriptor(
            "storefront_http_request_duration_seconds",
            "Time from request to response headers, by route template.",
            None,
            MetricType::Histogram,
        )?;
        for r in &self.routes {
            latency
                .encode_family(&[("route", r.route.as_str())])?
                .encode_histogram(r.sum_secs, r.count, &r.buckets, NO_EXEMPLARS)?;
        }
        encoder
            .encode_descriptor(
                "storefront_db_queries",
                "Calls that reached the database (cache hits excluded).",
                None,
                MetricType::Counter,
            )?
            .encode_counter(&self.db_queries, NO_EXEMPLAR)?;
        if self.cache.l1.is_some() || self.cache.l2.is_some() {
            let mut cache = encoder.encode_descriptor(
                "storefront_cache_requests",
                "Cache lookups by tier (l1 in the process, l2 in Redis) and result.",
                None,
                MetricType::Counter,
            )?;
            for (tier, totals) in [("l1", self.cache.l1), ("l2", self.cache.l2)] {
                let Some(totals) = totals else { continue };
                for (result, n) in [("hit", totals.hits), ("miss", totals.misses)] {
                    cache
                        .encode_family(&[("tier", tier), ("result", result)])?
                        .encode_counter(&n, NO_EXEMPLAR)?;
                }
            }
        }
        if let Some(faults) = self.cache.l2_faults {
            for (name, help, n) in [
                (
                    "storefront_cache_tier_errors",
                    "Calls to a remote cache tier that failed (refused, dropped, timed out, or an error from it): not counted as misses.",
                    faults.errors,
                ),
                (
                    "storefront_cache_tier_skipped",
                    "Calls to a remote cache tier that its open circuit breaker skipped (the tier was not asked).",
                    faults.skipped,
                ),
            ] {
                encoder
                    .encode_descriptor(name, help, None, MetricType::Counter)?
                    .encode_family(&[("tier", "l2")])?
                    .encode_counter(&n, NO_EXEMPLAR)?;
            }
        }
        encoder
            .encode_descriptor(
                "storefront_uptime_seconds",
                "Seconds since the process started recording.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&self.uptime_secs)?;
        for (part, figures) in &self.parts {
            Self::encode_part(part, figures, &mut encoder)?;
        }
        if let Some(connections) = &self.connections {
            Self::encode_connections(connections, &mut encoder)?;
        }
        Ok(())
    }
}

/// The text `/metrics` serves.
pub(crate) fn render(ops: &Ops) -> String {
    let routes = ops
        .routes()
        .series
        .iter()
        .map(|(route, s)| {
            let statuses: Vec<(u16, u64)> = s
                .statuses
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u16 + 100, n.load(Ordering::Relaxed)))
                .filter(|&(_, n)| n > 0)
                .collect();
            let counts: Vec<u64> = s
                .buckets
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect();
            let buckets = BUCKETS_US
                .iter()
                .map(|&us| us as f64 / 1e6)
                .chain([f64::INFINITY])
                .zip(counts.iter().copied())
                .collect();
            RouteView {
                route: route.to_string(),
                statuses,
                buckets,
                count: counts.iter().sum(),
                sum_secs: s.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            }
        })
        .collect();
    let (db_queries, cache) = ops.db_queries_and_cache();
    // Each part read once: its own lines, else its figures' shape.
    let mut own_lines = String::new();
    let mut parts = Vec::new();
    for p in ops.parts() {
        let Some(shown) = (p.read)() else { continue };
        match shown.metrics() {
            Some(lines) => own_lines.push_str(&lines),
            None => parts.extend(shown.json().map(|json| (p.key, json))),
        }
    }
    let view = View {
        routes,
        db_queries,
        cache,
        uptime_secs: ops.started.elapsed().as_secs_f64(),
        parts,
        connections: ops.connections(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(view));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        // Writing to a String does not fail; a bad metric or label name would.
        tracing::error!("cannot render /metrics: {e}");
        out = "# EOF\n".into();
    }
    if let Some(body) = out.strip_suffix("# EOF\n") {
        let mut text = body.to_owned();
        super::replicas::render_metrics(&mut text, &ops.read_split());
        text.push_str(&own_lines);
        text.push_str("# EOF\n");
        out = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use storefront_contract::ops::gateway::{GatewayFigures, GatewayTotals, InstanceFigures};

    use super::*;

    #[test]
    fn gateway_figures_become_metrics() {
        let ops = Ops::default();
        let id = ops.route_id("/products/{id}");
        ops.record(id, 200, Duration::from_millis(2));
        let instance = |name: &str, healthy, breaker: &str, in_flight| InstanceFigures {
            name: name.into(),
            healthy,
            breaker: breaker.into(),
            in_flight,
            ..InstanceFigures::default()
        };
        ops.add_part(move || {
            Some(GatewayFigures {
                instances: vec![
                    instance("app-1", true, "closed", 2),
                    instance("app-2", false, "open", 0),
                ],
                totals: GatewayTotals {
                    rate_limited: 7,
                    retries: 3,
                    upstream_errors: 2,
                    ..GatewayTotals::default()
                },
            })
        });
        let text = render(&ops);
        for line in [
            "storefront_gateway_rate_limited_total 7",
            "storefront_gateway_instance_healthy{instance=\"app-2\"} 0",
            "storefront_gateway_instance_breaker{instance=\"app-2\",state=\"open\"} 1",
            "storefront_gateway_instance_in_flight{instance=\"app-1\"} 2",
            "storefront_http_requests_total{route=\"/products/{id}\",status=\"200\"} 1",
            "storefront_http_request_duration_seconds_bucket{le=\"0.0025\",route=\"/products/{id}\"} 1",
            "storefront_http_request_duration_seconds_bucket{le=\"0.001\",route=\"/products/{id}\"} 0",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
