//! Stage 8's ops routes, served by `serve --stage 8` on the stage's own
//! address (`127.0.0.1:8080`): what every balancer says (`/status` on each,
//! gathered at each request), drawn and counted.
//!
//! - `/ops`: the picture (the virtual IP, the balancer that holds it, the
//!   gateways with their health and their share of new connections) and the
//!   figures;
//! - `/ops/l4.json`: the balancers' statuses;
//! - `/metrics`: the same in the Prometheus text format;
//! - `/`: where the shop is (the virtual IP).
//!
//! They answer under the stage's `[ops]` access, as every stage's ops routes.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use storefront_ops::OpsAccess;

use crate::daemon::Status;

/// One balancer as the ops routes show it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BalancerView {
    /// `lb1` ...
    pub name: String,
    /// Its status endpoint.
    pub status_addr: String,
    /// What it said, or why it did not answer (a dead host).
    pub status: Result<Status, String>,
}

/// What the routes need.
#[derive(Clone)]
pub struct OpsState {
    /// The shop's address (the virtual IP and port).
    pub vip: SocketAddr,
    /// The balancers: name and status endpoint.
    pub balancers: Vec<(String, SocketAddr)>,
    /// Who may read.
    pub access: Arc<OpsAccess>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for OpsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsState")
            .field("vip", &self.vip)
            .field("balancers", &self.balancers)
            .finish_non_exhaustive()
    }
}

impl OpsState {
    /// The routes' state, readable as the stage's `[ops]` section says.
    pub fn new(
        vip: SocketAddr,
        balancers: Vec<(String, SocketAddr)>,
        ops: Option<&storefront_ops::OpsConfig>,
    ) -> Self {
        Self {
            vip,
            balancers,
            access: Arc::new(OpsAccess::from_config(ops)),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Every balancer's status, asked at once (each within 300 ms).
    pub async fn gather(&self) -> Vec<BalancerView> {
        let asks = self.balancers.iter().map(|(name, addr)| async move {
            BalancerView {
                name: name.clone(),
                status_addr: addr.to_string(),
                status: self.status_of(*addr).await,
            }
        });
        futures_util::future::join_all(asks).await
    }

    async fn status_of(&self, addr: SocketAddr) -> Result<Status, String> {
        let req = Request::get(format!("http://{addr}/status"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            serde_json::from_slice::<Status>(&body).map_err(|e| e.to_string())
        };
        tokio::time::timeout(Duration::from_millis(300), fut)
            .await
            .unwrap_or_else(|_| Err("no answer within 300 ms".into()))
    }
}

/// Serves the routes on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    state: OpsState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("the ops routes cannot listen on {addr}: {e}"))?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("the ops routes on {addr}: {e}"))
}

/// The routes.
pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ops", get(page))
        .route("/ops/l4.json", get(data))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn index(State(s): State<OpsState>) -> Html<String> {
    Html(format!(
        "<!doctype html><title>storefront, stage 8</title><p>The shop is at <a href=\"http://{vip}/\">http://{vip}/</a>, the virtual IP (reachable from this host). What the balancers see: <a href=\"/ops\">/ops</a>.</p>\n",
        vip = s.vip
    ))
}

async fn data(State(s): State<OpsState>, headers: HeaderMap) -> Response {
    if let Some(no) = s.access.refusal(&headers) {
        return no;
    }
    Json(s.gather().await).into_response()
}

async fn metrics(State(s): State<OpsState>, headers: HeaderMap) -> Response {
    if let Some(no) = s.access.refusal(&headers) {
        return no;
    }
    match render_metrics(&s.gather().await) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn page(State(s): State<OpsState>, headers: HeaderMap) -> Response {
    if let Some(no) = s.access.refusal(&headers) {
        return no;
    }
    Html(render_page(s.vip, &s.gather().await)).into_response()
}

type Labels = Vec<(String, String)>;

/// The balancers' figures in the Prometheus text format.
pub fn render_metrics(views: &[BalancerView]) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("storefront_l4");
    let up = Family::<Labels, Gauge>::default();
    let holds = Family::<Labels, Gauge>::default();
    let changes = Family::<Labels, Counter>::default();
    let healthy = Family::<Labels, Gauge>::default();
    let share = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let flows = Family::<Labels, Counter>::default();
    let open = Family::<Labels, Gauge>::default();
    registry.register(
        "balancer_up",
        "1 when the balancer answered its status",
        up.clone(),
    );
    registry.register(
        "vip_held",
        "1 on the balancer that holds the virtual IP",
        holds.clone(),
    );
    registry.register(
        "table_changes",
        "Times the balancer's Maglev table changed",
        changes.clone(),
    );
    registry.register(
        "gateway_healthy",
        "1 when the balancer's checks find the gateway healthy",
        healthy.clone(),
    );
    registry.register(
        "gateway_share",
        "The gateway's share of the balancer's table (0 to 1)",
        share.clone(),
    );
    registry.register(
        "gateway_flows",
        "Connections the balancer sent to the gateway (userspace datapath)",
        flows.clone(),
    );
    registry.register("gateway_open", "Of those, open", open.clone());
    for v in views {
        let b = vec![("balancer".to_owned(), v.name.clone())];
        up.get_or_create(&b).set(i64::from(v.status.is_ok()));
        let Ok(status) = &v.status else { continue };
        holds.get_or_create(&b).set(i64::from(status.holds_vip));
        changes.get_or_create(&b).inc_by(status.changes);
        for g in &status.gateways {
            let l = vec![
                ("balancer".to_owned(), v.name.clone()),
                ("gateway".to_owned(), g.addr.clone()),
            ];
            healthy.get_or_create(&l).set(i64::from(g.healthy));
            share.get_or_create(&l).set(g.share);
            flows.get_or_create(&l).inc_by(g.flows);
            open.get_or_create(&l)
                .set(i64::try_from(g.open).unwrap_or(i64::MAX));
        }
    }
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page: the picture, then a table per balancer.
pub fn render_page(vip: SocketAddr, views: &[BalancerView]) -> String {
    let holder = views
        .iter()
        .find(|v| v.status.as_ref().is_ok_and(|s| s.holds_vip))
        .map(|v| v.name.clone());
    // The gateways as the holder (or any balancer that answered) sees them.
    let seen = views
        .iter()
        .filter_map(|v| v.status.as_ref().ok().map(|s| (v, s)))
        .find(|(v, _)| Some(&v.name) == holder.as_ref())
        .or_else(|| {
            views
                .iter()
                .find_map(|v| v.status.as_ref().ok().map(|s| (v, s)))
        });
    let gateways = seen.map(|(_, s)| s.gateways.clone()).unwrap_or_default();
    let width = 640.0_f64;
    let lanes = |n: usize, i: usize| width * (i as f64 + 0.5) / n.max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} 300\" width=\"{width}\" height=\"300\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect x=\"{x}\" y=\"10\" width=\"180\" height=\"40\" rx=\"6\" fill=\"#eef\" stroke=\"#447\"/>\
         <text x=\"{tx}\" y=\"35\" text-anchor=\"middle\">virtual IP {vip}</text>\n",
        x = width / 2.0 - 90.0,
        tx = width / 2.0,
        vip = escape(&vip.to_string()),
    );
    for (i, v) in views.iter().enumerate() {
        let x = lanes(views.len(), i);
        let (fill, note) = match &v.status {
            Ok(s) if s.holds_vip => ("#cfc", "holds the VIP"),
            Ok(_) => ("#fff", "standby"),
            Err(_) => ("#fcc", "not answering"),
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{cx}\" y1=\"50\" x2=\"{x}\" y2=\"110\" stroke=\"{stroke}\" stroke-width=\"{w}\"/>\
             <rect x=\"{rx}\" y=\"110\" width=\"140\" height=\"44\" rx=\"6\" fill=\"{fill}\" stroke=\"#444\"/>\
             <text x=\"{x}\" y=\"128\" text-anchor=\"middle\">{name}</text>\
             <text x=\"{x}\" y=\"146\" text-anchor=\"middle\" font-size=\"11\">{note}</text>",
            cx = width / 2.0,
            stroke = if Some(&v.name) == holder.as_ref() { "#2a2" } else { "#bbb" },
            w = if Some(&v.name) == holder.as_ref() { 3 } else { 1 },
            rx = x - 70.0,
            name = escape(&v.name),
        );
    }
    let from = holder
        .as_ref()
        .and_then(|h| views.iter().position(|v| &v.name == h))
        .map_or(width / 2.0, |i| lanes(views.len(), i));
    for (i, g) in gateways.iter().enumerate() {
        let x = lanes(gateways.len(), i);
        let fill = if !g.healthy {
            "#fcc"
        } else if g.share > 0.0 {
            "#fff"
        } else {
            "#eee"
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{from}\" y1=\"154\" x2=\"{x}\" y2=\"220\" stroke=\"#888\" stroke-width=\"{w:.1}\"/>\
             <rect x=\"{rx}\" y=\"220\" width=\"160\" height=\"50\" rx=\"6\" fill=\"{fill}\" stroke=\"#444\"/>\
             <text x=\"{x}\" y=\"240\" text-anchor=\"middle\">gateway {addr}</text>\
             <text x=\"{x}\" y=\"258\" text-anchor=\"middle\" font-size=\"11\">{state}, {pct:.0}% of new connections</text>",
            w = 1.0 + 6.0 * g.share,
            rx = x - 80.0,
            addr = escape(&g.addr),
            state = if g.healthy { "healthy" } else { "failing its checks" },
            pct = g.share * 100.0,
        );
    }
    svg.push_str("</svg>\n");
    let mut rows = String::new();
    for v in views {
        match &v.status {
            Ok(s) => {
                for g in &s.gateways {
                    let _ = writeln!(
                        rows,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td></tr>",
                        escape(&v.name),
                        if s.holds_vip { "yes" } else { "no" },
                        escape(&s.datapath),
                        escape(&g.addr),
                        g.share * 100.0,
                        if g.healthy { "healthy" } else { "failing" },
                        g.flows
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(
                    rows,
                    "<tr><td>{}</td><td colspan=\"6\">not answering: {}</td></tr>",
                    escape(&v.name),
                    escape(e)
                );
            }
        }
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\"><title>stage 8: balancers</title></head><body>\n\
         <h1>Stage 8: layer-4 balancing with a virtual IP</h1>\n{svg}\
         <table border=\"1\" cellpadding=\"4\"><tr><th>balancer</th><th>holds the VIP</th><th>datapath</th><th>gateway</th><th>share of the table</th><th>checks</th><th>connections (userspace)</th></tr>\n{rows}</table>\n\
         <p>Figures: <a href=\"/ops/l4.json\">/ops/l4.json</a>, <a href=\"/metrics\">/metrics</a>.</p></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::GatewayStatus;

    fn views() -> Vec<BalancerView> {
        let gateways = vec![
            GatewayStatus {
                addr: "10.88.1.12:8080".into(),
                healthy: true,
                share: 1.0,
                flows: 7,
                open: 2,
            },
            GatewayStatus {
                addr: "10.88.1.13:8080".into(),
                healthy: false,
                share: 0.0,
                flows: 3,
                open: 0,
            },
        ];
        vec![
            BalancerView {
                name: "lb1".into(),
                status_addr: "10.88.1.10:9100".into(),
                status: Err("connection refused".into()),
            },
            BalancerView {
                name: "lb2".into(),
                status_addr: "10.88.1.11:9100".into(),
                status: Ok(Status {
                    holds_vip: true,
                    datapath: "nft".into(),
                    changes: 1,
                    gateways,
                }),
            },
        ]
    }

    #[test]
    fn metrics_say_who_holds_the_vip_and_each_gateways_share() {
        let text = render_metrics(&views()).unwrap();
        for line in [
            "storefront_l4_balancer_up{balancer=\"lb1\"} 0",
            "storefront_l4_vip_held{balancer=\"lb2\"} 1",
            "storefront_l4_gateway_share{balancer=\"lb2\",gateway=\"10.88.1.12:8080\"} 1.0",
            "storefront_l4_gateway_healthy{balancer=\"lb2\",gateway=\"10.88.1.13:8080\"} 0",
            "storefront_l4_table_changes_total{balancer=\"lb2\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_page_draws_the_holder_and_the_failing_gateway() {
        let page = render_page("10.88.1.100:8080".parse().unwrap(), &views());
        assert!(page.contains("virtual IP 10.88.1.100:8080"));
        assert!(page.contains("holds the VIP"));
        assert!(page.contains("not answering"));
        assert!(page.contains("failing its checks, 0% of new connections"));
        assert!(page.contains("healthy, 100% of new connections"));
    }
}
