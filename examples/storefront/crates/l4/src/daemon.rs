//! One balancer host's daemon (`storefront l4 balance`, run inside the
//! balancer's namespace): the control plane over the gateways, the datapath
//! it feeds (the kernel's nftables map, or the userspace balancer), and a
//! status endpoint that says what the balancer sees.
//!
//! The status (`GET /status` on `status`, JSON) holds: whether this balancer
//! holds the virtual IP now (the address is local: a socket can bind it),
//! the datapath, the table's members, and per gateway its health, its share
//! of the table and (userspace) the connections sent to it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::balancer::{Control, Options};
use crate::config::Datapath;
use crate::nft;

/// What the daemon runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonOptions {
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// The port balanced.
    pub port: u16,
    /// This balancer's own address.
    pub own: Ipv4Addr,
    /// Its interface.
    pub dev: String,
    /// The gateways.
    pub gateways: Vec<SocketAddr>,
    /// The datapath.
    pub datapath: Datapath,
    /// The checks.
    pub options: Options,
    /// Where to answer `/status` (and `POST /drain`).
    pub status: Option<SocketAddr>,
    /// The token `POST /drain` needs (`Authorization: Bearer <token>`);
    /// `None` or empty: draining from outside is refused.
    pub control_token: Option<String>,
}

/// `POST /drain?gateway=ADDR&on=true|false`: take a gateway out of the table
/// for new connections (its open ones finish where they are), or put it back.
#[derive(Debug, Deserialize)]
struct DrainQuery {
    gateway: SocketAddr,
    #[serde(default = "yes")]
    on: bool,
}

fn yes() -> bool {
    true
}

/// One gateway in the status.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GatewayStatus {
    /// Its address.
    pub addr: String,
    /// Healthy by the checks.
    pub healthy: bool,
    /// Its share of the table (0 to 1; 0 when out of it).
    pub share: f64,
    /// Connections sent to it (userspace datapath).
    pub flows: u64,
    /// Of those, open.
    pub open: u64,
}

/// The balancer's status.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// Whether the virtual IP is on this balancer now.
    pub holds_vip: bool,
    /// `nft` or `user`.
    pub datapath: String,
    /// Times the table changed.
    pub changes: u64,
    /// Per gateway.
    pub gateways: Vec<GatewayStatus>,
}

/// Whether `addr` is one of this namespace's addresses.
pub fn is_local(addr: Ipv4Addr) -> bool {
    UdpSocket::bind(SocketAddrV4::new(addr, 0)).is_ok()
}

/// The status of `control` for a balancer of `vip`.
pub fn status(control: &Control, vip: Ipv4Addr, datapath: Datapath) -> Status {
    let table = control.table();
    let counts = table.entry_counts();
    let total = f64::from(table.table_size());
    let share = |g: &SocketAddr| {
        table
            .nodes()
            .zip(&counts)
            .find(|((n, _), _)| *n == g)
            .map_or(0.0, |(_, c)| f64::from(*c) / total)
    };
    Status {
        holds_vip: is_local(vip),
        datapath: datapath.to_string(),
        changes: control.changes(),
        gateways: control
            .gateways()
            .iter()
            .map(|(g, c)| GatewayStatus {
                addr: g.to_string(),
                healthy: control.healthy(*g),
                share: share(g),
                flows: c.flows.load(Ordering::Relaxed),
                open: c.open.load(Ordering::Relaxed),
            })
            .collect(),
    }
}

fn drain(
    control: &Control,
    access: &storefront_ops::OpsAccess,
    headers: &axum::http::HeaderMap,
    query: Result<axum::extract::Query<DrainQuery>, axum::extract::rejection::QueryRejection>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    if let Some(no) = access.refusal(headers) {
        return no;
    }
    let q = match query {
        Ok(axum::extract::Query(q)) => q,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("{e}: give ?gateway=host:port (and &on=false to put it back)\n"),
            )
                .into_response()
        }
    };
    if control.counters(q.gateway).is_none() {
        return (
            StatusCode::NOT_FOUND,
            format!("{} is not one of this balancer's gateways\n", q.gateway),
        )
            .into_response();
    }
    let members = control
        .drain(q.gateway, q.on)
        .unwrap_or_else(|| control.members());
    let list: Vec<String> = members.iter().map(ToString::to_string).collect();
    Json(serde_json::json!({ "gateway": q.gateway.to_string(), "drained": q.on, "members": list }))
        .into_response()
}

/// Writes the kernel's map from `old` to `new` (one transaction) off the
/// runtime's threads; on failure the whole table next time.
async fn write_map(old: &[SocketAddrV4], new: &[SocketAddrV4]) -> Result<(), String> {
    let script = nft::change(old, new);
    tokio::task::spawn_blocking(move || nft::apply(Command::new("nft"), &script))
        .await
        .map_err(|e| format!("nft: {e}"))?
}

/// Runs the balancer until `stop` resolves.
pub async fn run(
    options: DaemonOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let control = Arc::new(Control::new(&options.gateways, options.options)?);
    let datapath = options.datapath;
    let mut serving = None;
    let mut current: Vec<SocketAddrV4> = Vec::new();
    match datapath {
        Datapath::Nft => {
            let balancer = nft::Balancer {
                vip: options.vip,
                port: options.port,
                own: options.own,
                dev: options.dev.clone(),
            };
            nft::apply(Command::new("nft"), &balancer.ruleset())?;
            let table = nft::slots(&control.table());
            write_map(&[], &table).await?;
            current = table;
        }
        Datapath::User => {
            let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, options.port));
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            serving = Some(tokio::spawn(crate::user::serve(
                listener,
                Arc::clone(&control),
                std::future::pending(),
            )));
        }
    }
    let status_task = match options.status {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("status on {addr}: {e}"))?;
            let vip = options.vip;
            let access = Arc::new(storefront_ops::OpsAccess::token(
                options.control_token.as_deref().unwrap_or_default(),
            ));
            let for_status = Arc::clone(&control);
            let for_drain = Arc::clone(&control);
            let app = Router::new()
                .route(
                    "/status",
                    get(move || {
                        let control = Arc::clone(&for_status);
                        async move { Json(status(&control, vip, datapath)) }
                    }),
                )
                .route(
                    "/drain",
                    axum::routing::post(
                        move |headers: axum::http::HeaderMap,
                              query: Result<
                            axum::extract::Query<DrainQuery>,
                            axum::extract::rejection::QueryRejection,
                        >| {
                            let control = Arc::clone(&for_drain);
                            let access = Arc::clone(&access);
                            async move { drain(&control, &access, &headers, query) }
                        },
                    ),
                );
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }))
        }
        None => None,
    };
    let mut tick = tokio::time::interval(options.options.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    // A map write that failed: the whole table on the next round.
    let mut stale = false;
    // The table's version last written to the kernel.
    let mut written = control.changes();
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {}
        }
        // A change from this round, or from a drain since the last write.
        control.round().await;
        let changed = control.changes() != written;
        if datapath == Datapath::Nft && (changed || stale) {
            let new = nft::slots(&control.table());
            let old = if stale { Vec::new() } else { current.clone() };
            let version = control.changes();
            match write_map(&old, &new).await {
                Ok(()) => {
                    current = new;
                    stale = false;
                    written = version;
                }
                Err(e) => {
                    eprintln!("the kernel's map was not written: {e}; again next round");
                    stale = true;
                }
            }
        }
    }
    if let Some(t) = serving {
        t.abort();
    }
    if let Some(t) = status_task {
        t.abort();
    }
    if datapath == Datapath::Nft {
        // No balancing left behind on a host that is still up.
        let _ = nft::apply(
            Command::new("nft"),
            &format!("delete table ip {}\n", nft::TABLE),
        );
    }
    Ok(())
}
