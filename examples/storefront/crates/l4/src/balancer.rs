//! A balancer's control plane: which gateways get new connections.
//!
//! Every `interval` (200 ms) the balancer asks each gateway's `/readyz`
//! (`storefront_gateway::check_readyz`), through a `scalekit_replica`
//! replica set that turns checks into health with Envoy's thresholds (two
//! failed checks in a row take a gateway out, two passed bring it back). The
//! gateways that are healthy and not drained make the Maglev table
//! ([`Control::table`]); when that set changes the table is rebuilt once and
//! handed to the datapath: swapped in for the userspace balancer
//! ([`user`](crate::user)), written to the kernel's map as one transaction of
//! the slots that differ for nftables ([`nft`](crate::nft)). A gateway that
//! fails its checks leaves the table within `2 x interval` plus a check's
//! timeout; established connections stay where they are (conntrack, or the
//! userspace balancer's open sockets), so draining a gateway
//! ([`Control::drain`]) lets its connections finish while new ones go
//! elsewhere.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), String> {
//! use std::time::Duration;
//! use storefront_l4::balancer::{Control, Options};
//! let gateways = vec!["127.0.0.1:9".parse().unwrap()];
//! let control = Control::new(&gateways, Options::default())?;
//! assert_eq!(control.members().len(), 1);
//! // Nothing answers on port 9: two failed rounds and it leaves.
//! control.round().await;
//! let change = control.round().await;
//! assert_eq!(change.map(|m| m.len()), Some(0));
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use scalekit_replica::{Health, HealthCheck, Member, ReplicaSet};
use scalekit_ring::Maglev;

/// How the balancer checks its gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Between rounds of checks.
    pub interval: Duration,
    /// One check's limit (longer: failed).
    pub timeout: Duration,
    /// Failed checks in a row that take a gateway out.
    pub fall: u32,
    /// Passed checks in a row that bring it back.
    pub rise: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(150),
            fall: 2,
            rise: 2,
        }
    }
}

/// One gateway's figures.
#[derive(Debug, Default)]
pub struct GatewayCounters {
    /// Connections sent to it (by the userspace datapath; the kernel's
    /// datapath counts none here).
    pub flows: AtomicU64,
    /// Of those, still open.
    pub open: AtomicU64,
    /// Connections to it that failed to open.
    pub failed: AtomicU64,
}

/// The control plane of one balancer.
#[derive(Debug)]
pub struct Control {
    gateways: Vec<(SocketAddr, Arc<GatewayCounters>)>,
    set: ReplicaSet<SocketAddr>,
    options: Options,
    drained: Mutex<BTreeSet<SocketAddr>>,
    members: Mutex<Vec<SocketAddr>>,
    table: RwLock<Arc<Maglev<SocketAddr>>>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<axum::body::Bytes>,
    >,
    changes: AtomicU64,
}

struct Readyz<'a>(&'a Control);

#[async_trait::async_trait]
impl HealthCheck<SocketAddr> for Readyz<'_> {
    async fn check(&self, addr: &SocketAddr) -> Health {
        storefront_gateway::check_readyz(&self.0.client, *addr).await
    }
}

impl Control {
    /// A control plane over `gateways` (each at most once), all of them in
    /// the table until their checks say otherwise.
    pub fn new(gateways: &[SocketAddr], options: Options) -> Result<Self, String> {
        if gateways.is_empty() {
            return Err("a balancer needs at least one gateway".into());
        }
        let mut builder = ReplicaSet::builder()
            .unhealthy_threshold(options.fall.max(1))
            .healthy_threshold(options.rise.max(1));
        for g in gateways {
            builder = builder.member(Member::replica(g.to_string(), *g));
        }
        let set = builder.build().map_err(|e| format!("gateways: {e}"))?;
        let table =
            Maglev::with_nodes(gateways.iter().copied()).map_err(|e| format!("gateways: {e}"))?;
        Ok(Self {
            gateways: gateways
                .iter()
                .map(|g| (*g, Arc::new(GatewayCounters::default())))
                .collect(),
            set,
            options,
            drained: Mutex::new(BTreeSet::new()),
            members: Mutex::new(gateways.to_vec()),
            table: RwLock::new(Arc::new(table)),
            client: storefront_gateway::health_client(options.timeout),
            changes: AtomicU64::new(0),
        })
    }

    /// The options.
    pub fn options(&self) -> Options {
        self.options
    }

    /// The table new connections are placed by.
    pub fn table(&self) -> Arc<Maglev<SocketAddr>> {
        Arc::clone(&self.table.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The gateways in the table, in the order given.
    pub fn members(&self) -> Vec<SocketAddr> {
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every gateway and its counters, in the order given.
    pub fn gateways(&self) -> &[(SocketAddr, Arc<GatewayCounters>)] {
        &self.gateways
    }

    /// The counters of `gateway`.
    pub fn counters(&self, gateway: SocketAddr) -> Option<&Arc<GatewayCounters>> {
        self.gateways
            .iter()
            .find(|(g, _)| *g == gateway)
            .map(|(_, c)| c)
    }

    /// Whether `gateway` is healthy by its checks.
    pub fn healthy(&self, gateway: SocketAddr) -> bool {
        let name = gateway.to_string();
        self.set
            .stats()
            .endpoints
            .iter()
            .any(|e| *e.name == *name && e.healthy)
    }

    /// Times the table changed.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Takes `gateway` out of the table for new connections (`true`) or puts
    /// it back (`false`); open connections are left alone. The new members
    /// when the table changed.
    pub fn drain(&self, gateway: SocketAddr, drained: bool) -> Option<Vec<SocketAddr>> {
        {
            let mut set = self.drained.lock().unwrap_or_else(PoisonError::into_inner);
            if drained {
                set.insert(gateway);
            } else {
                set.remove(&gateway);
            }
        }
        self.rebuild()
    }

    /// One round of checks; the new members when the table changed.
    pub async fn round(&self) -> Option<Vec<SocketAddr>> {
        self.set
            .check_health(&Readyz(self), self.options.timeout)
            .await;
        self.rebuild()
    }

    fn rebuild(&self) -> Option<Vec<SocketAddr>> {
        let stats = self.set.stats();
        let drained = self
            .drained
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let wanted: Vec<SocketAddr> = self
            .gateways
            .iter()
            .map(|(g, _)| *g)
            .filter(|g| {
                let name = g.to_string();
                !drained.contains(g)
                    && stats
                        .endpoints
                        .iter()
                        .any(|e| *e.name == *name && e.healthy)
            })
            .collect();
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        if *members == wanted {
            return None;
        }
        // Maglev over no gateways is an empty table: connections are refused
        // until one is back.
        let table = Maglev::with_nodes(wanted.iter().copied()).unwrap_or_default();
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        members.clone_from(&wanted);
        self.changes.fetch_add(1, Ordering::Relaxed);
        Some(wanted)
    }

    /// Runs rounds every `interval` until `stop` resolves, calling
    /// `changed` with the members after every change of the table.
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
        mut changed: impl FnMut(&[SocketAddr]),
    ) {
        let mut tick = tokio::time::interval(self.options.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {
                    if let Some(members) = self.round().await {
                        changed(&members);
                    }
                }
            }
        }
    }
}
