//! The stage file's `[gateway]` section (stage 4 on): the instances, the limits
//! per client, the breaker and the ejection of failing instances.

use std::net::SocketAddr;

use serde::Deserialize;
use storefront_contract::ops::topology::{Node, Piece, Tier};
use storefront_contract::section::{Invalid, Section};

/// The gateway of stage 4: how many app processes, where they listen, and how the
/// gateway limits clients and protects itself from failing instances (see the [crate docs](crate)).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// App processes the gateway starts (1 to 64).
    #[serde(default = "default_instances")]
    pub instances: u32,
    /// Instance K (from 1) listens on 127.0.0.1:`base_port`+K-1.
    #[serde(default = "default_base_port")]
    pub base_port: u16,
    /// Instances started elsewhere: when given, the gateway starts none and
    /// proxies to these.
    #[serde(default)]
    pub addresses: Vec<SocketAddr>,
    /// Requests a second per client IP, sustained.
    #[serde(default = "default_rate")]
    pub rate_per_sec: u32,
    /// Requests a client IP may send at once after a quiet spell (at least 1).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Time for an instance to answer with its response headers.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_ms: u64,
    /// Time to open a connection to an instance.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// How often every instance's `/readyz` is checked.
    #[serde(default = "default_health_interval")]
    pub health_interval_ms: u64,
    /// How long one health check may take (longer: down).
    #[serde(default = "default_health_timeout")]
    pub health_timeout_ms: u64,
    /// The largest request body accepted (larger: 413).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// One circuit breaker per instance.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Taking failing instances out of rotation.
    #[serde(default)]
    pub ejection: EjectionConfig,
}

/// The circuit breaker in front of each instance (scalekit-breaker).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Outcomes of this many last calls count (1 to 100,000).
    pub window: u32,
    /// The breaker opens only once this many calls are in the window (at least 1).
    pub minimum_calls: u64,
    /// Open at this percentage of failures in the window (1 to 100).
    pub failure_rate: u32,
    /// Seconds in open before probes go through (1 to 60).
    pub open_secs: u64,
    /// Probe calls let through in half-open (1 to 4095).
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: 20,
            minimum_calls: 10,
            failure_rate: 50,
            open_secs: 5,
            half_open_probes: 2,
        }
    }
}

/// Outlier ejection of failing instances (scalekit-replica).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EjectionConfig {
    /// Failures in a row that eject an instance (0: never).
    pub consecutive_failures: u32,
    /// The n-th ejection lasts n times this (seconds, at least 1).
    pub base_secs: u64,
    /// At most this percentage of instances is out at once (at least one may be).
    pub max_percent: u32,
    /// A failed call counts in the instance's latency estimate as at least this
    /// many times the estimate (1: as measured), so that an instance refusing
    /// connections in microseconds does not look like the fastest one.
    #[serde(default = "default_failure_penalty_factor")]
    pub failure_penalty_factor: u32,
}

fn default_failure_penalty_factor() -> u32 {
    5
}

impl Default for EjectionConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_secs: 10,
            max_percent: 50,
            failure_penalty_factor: default_failure_penalty_factor(),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            instances: default_instances(),
            base_port: default_base_port(),
            addresses: Vec::new(),
            rate_per_sec: default_rate(),
            burst: default_burst(),
            upstream_timeout_ms: default_upstream_timeout(),
            connect_timeout_ms: default_connect_timeout(),
            health_interval_ms: default_health_interval(),
            health_timeout_ms: default_health_timeout(),
            max_body_bytes: default_max_body(),
            breaker: BreakerConfig::default(),
            ejection: EjectionConfig::default(),
        }
    }
}

fn default_instances() -> u32 {
    3
}
fn default_base_port() -> u16 {
    8081
}
fn default_rate() -> u32 {
    200
}
fn default_burst() -> u32 {
    400
}
fn default_upstream_timeout() -> u64 {
    15_000
}
fn default_connect_timeout() -> u64 {
    500
}
fn default_health_interval() -> u64 {
    1_000
}
fn default_health_timeout() -> u64 {
    500
}
fn default_max_body() -> usize {
    1 << 20
}

impl GatewayConfig {
    /// The instances' addresses: `addresses` if given, else 127.0.0.1 from
    /// `base_port` up.
    pub fn instance_addrs(&self) -> Vec<SocketAddr> {
        if !self.addresses.is_empty() {
            return self.addresses.clone();
        }
        (0..self.instances)
            .map(|k| {
                let port = u32::from(self.base_port) + k;
                SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap_or(u16::MAX)))
            })
            .collect()
    }

    /// Whether the gateway starts the instances itself (no `addresses`).
    pub fn spawns_instances(&self) -> bool {
        self.addresses.is_empty()
    }

    /// Whether the instances it starts stay off `server`, the gateway's own
    /// address (the stage file's `[server] addr`); the problem as (field, what
    /// to write instead).
    pub fn check_beside(&self, server: SocketAddr) -> Result<(), Invalid> {
        if !self.spawns_instances() || !server.ip().is_loopback() {
            return Ok(());
        }
        let last = u32::from(self.base_port) + self.instances.saturating_sub(1);
        if (u32::from(self.base_port)..=last).contains(&u32::from(server.port())) {
            return Err((
                "gateway.base_port",
                format!(
                    "{}: the instances' ports {}..={last} include the gateway's own ({server}); move base_port past it",
                    self.base_port, self.base_port
                ),
            ));
        }
        Ok(())
    }

    /// How many instances, and where they listen.
    fn check_instances(&self) -> Result<(), Invalid> {
        if !(1..=64).contains(&self.instances) {
            return Err((
                "gateway.instances",
                format!("{}: start from 1 to 64 app processes", self.instances),
            ));
        }
        if self.spawns_instances() {
            let last = u32::from(self.base_port) + self.instances - 1;
            if self.base_port == 0 || last > u32::from(u16::MAX) {
                return Err((
                    "gateway.base_port",
                    format!(
                        "{}: instances need ports {}..={last}; use a port from 1 to {}",
                        self.base_port,
                        self.base_port,
                        u32::from(u16::MAX) + 1 - self.instances
                    ),
                ));
            }
        } else if self.addresses.len() != self.instances as usize {
            return Err((
                "gateway.addresses",
                format!(
                    "{} addresses but instances = {}: set instances to the number of addresses",
                    self.addresses.len(),
                    self.instances
                ),
            ));
        }
        Ok(())
    }

    /// The rate per client, the timeouts and the body limit.
    fn check_limits(&self) -> Result<(), (&'static str, String)> {
        if self.rate_per_sec == 0 || self.burst == 0 {
            return Err((
                "gateway.rate_per_sec / gateway.burst",
                "0: give at least 1 request a second and a burst of at least 1".into(),
            ));
        }
        for (field, value) in [
            ("gateway.upstream_timeout_ms", self.upstream_timeout_ms),
            ("gateway.connect_timeout_ms", self.connect_timeout_ms),
            ("gateway.health_interval_ms", self.health_interval_ms),
            ("gateway.health_timeout_ms", self.health_timeout_ms),
        ] {
            if !(1..=3_600_000).contains(&value) {
                return Err((
                    field,
                    format!("{value}: give a time from 1 ms to one hour (3600000)"),
                ));
            }
        }
        if self.connect_timeout_ms >= self.upstream_timeout_ms {
            // The upstream timeout covers the connection too: a connect that ran
            // into it would look like a request that was sent, and a POST would get
            // "may have taken effect" although it never left.
            return Err((
                "gateway.connect_timeout_ms",
                format!(
                    "{}: give less than upstream_timeout_ms ({})",
                    self.connect_timeout_ms, self.upstream_timeout_ms
                ),
            ));
        }
        if self.max_body_bytes == 0 {
            return Err((
                "gateway.max_body_bytes",
                "0: allow at least one byte (1048576 is 1 MiB)".into(),
            ));
        }
        Ok(())
    }
}

impl BreakerConfig {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=100_000).contains(&self.window) {
            return Err((
                "gateway.breaker.window",
                format!("{}: count the last 1 to 100000 calls", self.window),
            ));
        }
        if self.minimum_calls == 0 {
            return Err((
                "gateway.breaker.minimum_calls",
                "0: give at least 1 call".into(),
            ));
        }
        if !(1..=100).contains(&self.failure_rate) {
            return Err((
                "gateway.breaker.failure_rate",
                format!("{}: give a percentage from 1 to 100", self.failure_rate),
            ));
        }
        if !(1..=60).contains(&self.open_secs) {
            return Err((
                "gateway.breaker.open_secs",
                format!("{}: stay open from 1 to 60 seconds", self.open_secs),
            ));
        }
        if !(1..=4095).contains(&self.half_open_probes) {
            return Err((
                "gateway.breaker.half_open_probes",
                format!("{}: let 1 to 4095 probes through", self.half_open_probes),
            ));
        }
        Ok(())
    }
}

impl EjectionConfig {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=3600).contains(&self.base_secs) {
            return Err((
                "gateway.ejection.base_secs",
                format!("{}: eject for 1 to 3600 seconds", self.base_secs),
            ));
        }
        if self.max_percent > 100 {
            return Err((
                "gateway.ejection.max_percent",
                format!("{}: give a percentage from 0 to 100", self.max_percent),
            ));
        }
        if !(1..=100).contains(&self.failure_penalty_factor) {
            return Err((
                "gateway.ejection.failure_penalty_factor",
                format!(
                    "{}: give a factor from 1 (no penalty) to 100",
                    self.failure_penalty_factor
                ),
            ));
        }
        Ok(())
    }
}

impl Section for GatewayConfig {
    /// Checks the section; the first problem as (field, what to write instead).
    /// Its ports against the gateway's own address: [`GatewayConfig::check_beside`].
    fn check(&self) -> Result<(), Invalid> {
        self.check_instances()?;
        self.check_limits()?;
        self.breaker.check()?;
        self.ejection.check()
    }

    /// The pieces of the picture: the gateway in front, the app running as
    /// many times as it has instances.
    fn pieces(&self) -> Vec<Piece> {
        let sub = format!("{} instances", self.instances);
        vec![
            Piece::Node(
                Tier::Front,
                Node::new("gateway", "Gateway", &sub).linked("HTTP"),
            ),
            Piece::Replicas {
                class: "app".into(),
                count: self.instances,
            },
        ]
    }
}
