//! From the miniature machines to real ones: each stage's measured service
//! demands ([`Calibration`], written by `evolve` next to its page) turned into a
//! queueing network ([`storefront_capacity`]) for any number of machines of
//! any size, and the customers that network carries within the objective.
//!
//! A stage's machines come in *roles* (`app`, `gateway`, `db`, `replica`,
//! `users-db`, `redis` ...): the machines of a role share its demand evenly
//! (the gateway spreads requests over the instances, the replica selector reads
//! over the replicas, the shard router orders over the shards). A role's
//! demand is the CPU seconds one request costs on all its machines together,
//! measured from the cgroups' `cpuacct.usage` over a saturated window. Some
//! roles *scale* (more machines carry more): app instances behind a gateway,
//! replicas, shard databases; the others are one machine each (a gateway, a
//! primary, a Redis server), and a stage's ceiling is the busiest of those.
//!
//! ```
//! use storefront_tools::projection::{Role, StageCalibration, Topology};
//! use storefront_tools::loadgen::evolve::miniature::Kind;
//! let stage = StageCalibration {
//!     number: 4,
//!     title: "Load balancing".into(),
//!     roles: vec![
//!         Role::new("gateway", Kind::Gateway, 1, 0.25, 0.000_05, false),
//!         Role::new("app", Kind::App, 3, 0.25, 0.000_3, true),
//!     ],
//!     ..StageCalibration::default()
//! };
//! // On 16-core machines, apps added until the gateway is the limit.
//! let p = stage.project(&Topology::scaled(&stage, 16.0), &Default::default())?;
//! assert_eq!(p.limit, "gateway");
//! // 16 cores at 50 µs a request: 320,000 requests a second, and customers
//! // asking every 5 s: about 1.6 million of them.
//! assert!(p.users > 1_400_000 && p.users < 1_650_000, "{}", p.users);
//! # Ok::<(), String>(())
//! ```

pub mod cli;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storefront_capacity::{mva, Network};

use crate::loadgen::evolve::miniature::Kind;

/// A p99 is this many times the mean when response times are exponential
/// (`ln 100`): the model, which gives means, checks the objective on
/// `mean x TAIL`.
pub const TAIL: f64 = 4.605_170_185_988_091;

/// Machines a scaled role gets at most in a projection.
pub const MAX_MACHINES: u32 = 100_000;

/// What `evolve` measured on miniature machines, per stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// When (UTC).
    pub date: String,
    /// The host it ran on.
    pub host: String,
    /// Each miniature machine's share of a core.
    pub machine_cpu: f64,
    /// The stages, in order.
    pub stages: Vec<StageCalibration>,
}

/// One stage's roles and the figures that shape its model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageCalibration {
    /// Stage number.
    pub number: u32,
    /// Its title.
    pub title: String,
    /// Its machines by role.
    pub roles: Vec<Role>,
    /// Share of cache lookups a tier answered (`None` without caches).
    pub hit_ratio: Option<f64>,
    /// Share of the database's statements that were cache misses (the part
    /// that a different hit ratio changes).
    pub miss_share: Option<f64>,
    /// Seconds a request spends waiting on no CPU of these machines (the
    /// network, the load generator): measured response time at low load less
    /// the CPU demands.
    pub latency_floor: f64,
}

/// Machines of one role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// `app`, `gateway`, `db`, `replica` ...
    pub name: String,
    /// What they run.
    pub kind: Kind,
    /// How many were measured.
    pub machines: u32,
    /// Each one's share of a core when measured.
    pub cpus: f64,
    /// CPU seconds a request costs on all of them together.
    pub demand: f64,
    /// Whether adding machines of this role adds capacity.
    pub scales: bool,
    /// Cores each machine spends with no request at all (health checks,
    /// replication, the database's background workers): capacity that
    /// requests cannot use.
    #[serde(default)]
    pub background: f64,
}

impl Role {
    /// A role (see the fields).
    pub fn new(
        name: &str,
        kind: Kind,
        machines: u32,
        cpus: f64,
        demand: f64,
        scales: bool,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            machines,
            cpus,
            demand,
            scales,
            background: 0.0,
        }
    }

    /// The same role with `cores` of background work per machine.
    pub fn with_background(mut self, cores: f64) -> Self {
        self.background = cores.max(0.0);
        self
    }
}

/// How many machines of each role, and how big.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// Role name to (machines, cores each).
    pub roles: BTreeMap<String, (u32, f64)>,
}

/// The assumptions of a projection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assumptions {
    /// Mean think time per request, seconds.
    pub think: f64,
    /// p99 objective, seconds.
    pub objective: f64,
    /// Cache hit ratio at scale (`None`: as measured).
    pub hit_ratio: Option<f64>,
}

impl Default for Assumptions {
    fn default() -> Self {
        Self {
            think: 5.0,
            objective: 0.2,
            hit_ratio: None,
        }
    }
}

/// What a topology carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// The machines.
    pub topology: Topology,
    /// Customers within the objective.
    pub users: u64,
    /// Requests a second at that population.
    pub throughput: f64,
    /// The most requests a second the machines can serve.
    pub max_throughput: f64,
    /// The role whose machines saturate first.
    pub limit: String,
    /// Each role's utilisation at `users`, 0 to 1.
    pub utilization: Vec<(String, f64)>,
}

impl Topology {
    /// The machines as measured (each a miniature machine).
    pub fn measured(stage: &StageCalibration) -> Self {
        Self {
            roles: stage
                .roles
                .iter()
                .map(|r| (r.name.clone(), (r.machines, r.cpus)))
                .collect(),
        }
    }

    /// Machines of `cores` each: one of each role that does not scale, and
    /// of each role that does, enough that none of them is busier than the
    /// busiest fixed machine (as many as measured when nothing is fixed).
    pub fn scaled(stage: &StageCalibration, cores: f64) -> Self {
        let fixed = stage
            .roles
            .iter()
            .filter(|r| !r.scales)
            .map(|r| r.demand / f64::from(r.machines.max(1)))
            .fold(0.0, f64::max);
        Self {
            roles: stage
                .roles
                .iter()
                .map(|r| {
                    let n = if !r.scales || fixed <= 0.0 {
                        r.machines.max(1)
                    } else {
                        // A hair under, so a ratio of exactly 6 is not 6.000001.
                        let need = (r.demand / fixed - 1e-9).ceil();
                        if need.is_finite() {
                            (need as u32).clamp(1, MAX_MACHINES)
                        } else {
                            r.machines.max(1)
                        }
                    };
                    (r.name.clone(), (n, cores))
                })
                .collect(),
        }
    }

    /// Parses `app=40,db=1` onto `base` (roles not named keep their count),
    /// every machine of `cores`. Unknown roles and bad counts are errors that
    /// list the stage's roles.
    pub fn parse(text: &str, stage: &StageCalibration, cores: f64) -> Result<Self, String> {
        let mut roles: BTreeMap<String, (u32, f64)> = stage
            .roles
            .iter()
            .map(|r| (r.name.clone(), (r.machines, cores)))
            .collect();
        let names = || {
            stage
                .roles
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, count) = part.split_once('=').ok_or_else(|| {
                format!("--machines {text:?}: give role=count pairs, like app=40,db=1")
            })?;
            let (name, count) = (name.trim(), count.trim());
            let Some(slot) = roles.get_mut(name) else {
                return Err(format!(
                    "--machines: stage {} has no role {name:?}; its roles are {}",
                    stage.number,
                    names()
                ));
            };
            let n: u32 = count
                .parse()
                .ok()
                .filter(|n| (1..=MAX_MACHINES).contains(n))
                .ok_or_else(|| {
                    format!("--machines {name}={count}: give 1 to {MAX_MACHINES} machines")
                })?;
            let role = stage.roles.iter().find(|r| r.name == name);
            if n > 1 && role.is_some_and(|r| !r.scales) {
                return Err(format!(
                    "--machines {name}={n}: stage {}'s {name} is one machine (more of them add nothing at this stage)",
                    stage.number
                ));
            }
            slot.0 = n;
        }
        Ok(Self { roles })
    }

    /// `app 40 x 16 cores, db 1 x 16 cores`.
    pub fn describe(&self) -> String {
        self.roles
            .iter()
            .map(|(name, (n, cores))| format!("{name} {n} × {}", cores_text(*cores)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn cores_text(cores: f64) -> String {
    if cores < 1.0 {
        format!("{cores} core")
    } else if cores == 1.0 {
        "1 core".into()
    } else {
        format!("{cores} cores")
    }
}

impl StageCalibration {
    /// The queueing network of `topology` for customers who think
    /// `assumptions.think` seconds: one station per machine, each with its
    /// role's demand shared evenly; a machine of less than a core is one server
    /// that fraction as fast, of `c` cores `c` servers; either slowed by the
    /// share its background work takes.
    pub fn network(
        &self,
        topology: &Topology,
        assumptions: &Assumptions,
    ) -> Result<Network, String> {
        let mut net = Network::new(assumptions.think).map_err(|e| e.to_string())?;
        for role in &self.roles {
            let (n, cores) = topology
                .roles
                .get(&role.name)
                .copied()
                .unwrap_or((role.machines, role.cpus));
            if n == 0 || !(cores.is_finite() && cores > 0.0) {
                return Err(format!("{}: {n} machines of {cores} cores", role.name));
            }
            let demand =
                role.demand * self.hit_factor(role.kind, assumptions.hit_ratio) / f64::from(n);
            // What the background leaves of each machine (at least a tenth).
            let left = ((cores - role.background) / cores).max(0.1);
            for i in 0..n {
                let name = if n == 1 {
                    role.name.clone()
                } else {
                    format!("{} {}", role.name, i + 1)
                };
                net = if cores < 1.0 {
                    net.queue(name, demand / (cores * left), 1)
                } else {
                    net.queue(name, demand / left, cores.round() as u32)
                }
                .map_err(|e| e.to_string())?;
            }
        }
        if self.latency_floor > 0.0 {
            net = net
                .delay("network and client", self.latency_floor)
                .map_err(|e| e.to_string())?;
        }
        Ok(net)
    }

    /// How a database machine's demand changes with the hit ratio: the misses'
    /// share of its statements grows with `1 - hit ratio`.
    fn hit_factor(&self, kind: Kind, hit: Option<f64>) -> f64 {
        let (Some(h), Some(measured), Some(share)) = (hit, self.hit_ratio, self.miss_share) else {
            return 1.0;
        };
        if !matches!(kind, Kind::Postgres | Kind::Replica) || measured >= 1.0 {
            return 1.0;
        }
        let share = share.clamp(0.0, 1.0);
        (1.0 - share) + share * (1.0 - h.clamp(0.0, 1.0)) / (1.0 - measured)
    }

    /// What `topology` carries under `assumptions`.
    pub fn project(
        &self,
        topology: &Topology,
        assumptions: &Assumptions,
    ) -> Result<Projection, String> {
        let net = self.network(topology, assumptions)?;
        let users = mva::max_users(&net, assumptions.objective / TAIL);
        let solution = mva::solve(&net, users.min(1_000_000_000));
        let limit = net
            .bottleneck()
            .map(|s| role_of(&s.name))
            .unwrap_or_default();
        let mut utilization: Vec<(String, f64)> = Vec::new();
        for s in &solution.stations {
            let role = role_of(&s.name);
            match utilization.iter_mut().find(|(r, _)| *r == role) {
                Some((_, u)) => *u = u.max(s.utilization),
                None => utilization.push((role, s.utilization)),
            }
        }
        utilization.retain(|(r, _)| r != "network and client");
        Ok(Projection {
            topology: topology.clone(),
            users,
            throughput: solution.throughput,
            max_throughput: net.max_throughput(),
            limit,
            utilization,
        })
    }

    /// The predicted requests a second with `concurrency` customers who do
    /// not think (the saturating load `evolve` measures throughput with).
    pub fn saturated(&self, topology: &Topology, concurrency: u64) -> Result<f64, String> {
        let assumptions = Assumptions {
            think: 0.0,
            ..Assumptions::default()
        };
        let net = self.network(topology, &assumptions)?;
        Ok(mva::solve(&net, concurrency).throughput)
    }
}

/// `app 3` → `app`.
fn role_of(station: &str) -> String {
    match station.rsplit_once(' ') {
        Some((role, n)) if n.parse::<u32>().is_ok() => role.to_owned(),
        _ => station.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage4() -> StageCalibration {
        StageCalibration {
            number: 4,
            title: "Load balancing".into(),
            roles: vec![
                Role::new("gateway", Kind::Gateway, 1, 0.25, 0.000_1, false),
                Role::new("app", Kind::App, 3, 0.25, 0.000_6, true),
                Role::new("db", Kind::Postgres, 1, 0.25, 0.000_08, false),
                Role::new("redis", Kind::Redis, 1, 0.25, 0.000_02, false),
            ],
            hit_ratio: Some(0.9),
            miss_share: Some(0.5),
            latency_floor: 0.0,
        }
    }

    #[test]
    fn miniature_machines_are_slower_servers() {
        let s = stage4();
        let net = s
            .network(&Topology::measured(&s), &Assumptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        // Each app takes a third of the requests, 0.6 ms each, on a quarter
        // core: 0.8 ms per request on average; the gateway 0.4 ms.
        let app = &net.stations()[1];
        assert_eq!(app.name, "app 1");
        assert!((app.demand - 0.000_8).abs() < 1e-12);
        assert_eq!(
            net.bottleneck().map(|b| role_of(&b.name)),
            Some("app".into())
        );
        // Saturated: each app busy 0.8 ms per request, so 1250 a second at most.
        let x = s.saturated(&Topology::measured(&s), 64).unwrap_or_default();
        assert!(x < 1_250.0 + 1e-6 && x > 1_150.0, "{x}");
    }

    #[test]
    fn background_work_takes_capacity() {
        let mut s = stage4();
        s.roles[2] = s.roles[2].clone().with_background(0.05);
        let net = s
            .network(&Topology::measured(&s), &Assumptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        // 0.08 ms on the 0.2 core left of a quarter core.
        let db = net.stations().iter().find(|st| st.name == "db");
        assert!(db.is_some_and(|db| (db.demand - 0.000_4).abs() < 1e-12));
    }

    #[test]
    fn scaling_adds_apps_until_a_fixed_machine_limits() {
        let s = stage4();
        let t = Topology::scaled(&s, 16.0);
        // 0.6 ms of app work over machines no busier than the gateway's 0.1 ms.
        assert_eq!(t.roles.get("app"), Some(&(6, 16.0)));
        let p = s
            .project(&t, &Assumptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            ["gateway", "app"].contains(&p.limit.as_str()),
            "{}",
            p.limit
        );
        // 16 cores / 0.1 ms = 160,000 requests a second at most; 5 s think.
        assert!(p.max_throughput <= 160_000.0 + 1e-6);
        // At most 160,000 x (5 s + the 43 ms mean the objective allows).
        assert!(p.users > 700_000 && p.users <= 807_000, "{}", p.users);
    }

    #[test]
    fn a_higher_hit_ratio_lightens_only_the_databases() {
        let s = stage4();
        assert_eq!(s.hit_factor(Kind::App, Some(0.99)), 1.0);
        // Half the statements are misses; misses fall from 10% to 1%.
        assert!((s.hit_factor(Kind::Postgres, Some(0.99)) - 0.55).abs() < 1e-12);
        assert_eq!(s.hit_factor(Kind::Postgres, None), 1.0);
    }

    #[test]
    fn machine_lists_parse_with_errors_that_name_the_roles() {
        let s = stage4();
        let t = Topology::parse("app=40, db=1", &s, 16.0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.roles.get("app"), Some(&(40, 16.0)));
        assert_eq!(t.roles.get("gateway"), Some(&(1, 16.0)));
        let err = |text: &str| Topology::parse(text, &s, 16.0).err().unwrap_or_default();
        assert!(err("cache=2").contains("its roles are gateway, app, db, redis"));
        assert!(err("app=0").contains("give 1 to"));
        assert!(err("app").contains("role=count"));
        assert!(err("db=2").contains("is one machine"));
        assert_eq!(
            Topology::parse("app=2", &s, 16.0).map(|t| t.describe()),
            Ok(
                "app 2 × 16 cores, db 1 × 16 cores, gateway 1 × 16 cores, redis 1 × 16 cores"
                    .into()
            )
        );
    }

    #[test]
    fn stations_map_back_to_roles() {
        assert_eq!(role_of("app 12"), "app");
        assert_eq!(role_of("users-db"), "users-db");
        assert_eq!(role_of("network and client"), "network and client");
    }
}
