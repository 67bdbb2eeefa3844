//! A stage on miniature machines ([`miniature`](super::miniature)): the CPU
//! each machine spends per request under a saturating load (the model's
//! calibration), the customers the stage carries (a [`ramp`] of thinking
//! customers), and the model checked against a second configuration that it
//! did not see (one app instance fewer, or a bigger app machine).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::demand::{from_window, MachineDemand};
use super::miniature::{backing_servers, Kind, Placement, Usage};
use super::{fetch_snapshot, launch_stage_edited, shard_rows, OpsDelta, StageResult, StageServer};
use crate::loadgen::ramp::{ramp, Ramp, RampOptions};
use crate::loadgen::stats::Report;
use crate::loadgen::{LoadOptions, Loadgen, Mode};
use crate::projection::{Assumptions, Role, StageCalibration, Topology};
use crate::stages::StageCatalog;

/// How to run stages on miniature machines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MachineOptions {
    /// Each machine's share of a core.
    pub cpu: f64,
    /// The ramp (its think time and objective are the model's too).
    pub ramp: RampOptions,
    /// Also measure a second configuration to check the model on.
    pub check: bool,
    /// The single-customer probe's length (the response time with no queue).
    pub probe: Duration,
}

impl Default for MachineOptions {
    fn default() -> Self {
        Self {
            cpu: 0.25,
            ramp: RampOptions::default(),
            check: true,
            probe: Duration::from_secs(2),
        }
    }
}

/// One machine's figures over the saturated window.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineFigures {
    /// Its name (`gateway`, `app-2`, `db`, `replica` ...).
    pub name: String,
    /// What it runs.
    pub kind: Kind,
    /// Its share of a core.
    pub cpus: f64,
    /// CPU seconds per request of the whole shop.
    pub cpu_per_request: f64,
    /// CPU used over its quota, 0 to about 1.
    pub utilization: f64,
}

/// The model against one measured configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// The configuration, in words.
    pub label: String,
    /// Measured requests a second under the saturating load.
    pub measured: f64,
    /// What the model predicts for it.
    pub predicted: f64,
    /// Whether the model was calibrated on this very run (a consistency check,
    /// not a prediction).
    pub calibrated: bool,
    /// The busiest machine measured, and its utilisation.
    pub busiest: Option<(String, f64)>,
    /// Database statements a request measured (the visits the model assumes
    /// unchanged from the calibration).
    pub statements: Option<f64>,
}

impl Check {
    /// Predicted over measured, less one (+0.05 is 5% over).
    pub fn error(&self) -> f64 {
        if self.measured > 0.0 {
            self.predicted / self.measured - 1.0
        } else {
            f64::INFINITY
        }
    }
}

/// What a stage did on miniature machines.
#[derive(Clone, Debug, PartialEq)]
pub struct OnMachines {
    /// Per machine, over the saturated window.
    pub machines: Vec<MachineFigures>,
    /// Per machine, what the model is calibrated with.
    pub demands: Vec<MachineDemand>,
    /// The stage's model.
    pub calibration: StageCalibration,
    /// The ramp of thinking customers.
    pub ramp: Ramp,
    /// The customers the model says the measured machines carry.
    pub predicted_users: u64,
    /// The model against the measurements.
    pub checks: Vec<Check>,
}

impl OnMachines {
    /// The busiest machine and its utilisation.
    pub fn bottleneck(&self) -> Option<&MachineFigures> {
        self.machines
            .iter()
            .max_by(|a, b| a.utilization.total_cmp(&b.utilization))
    }
}

/// `app-2` → `app`, `replica-5433` → `replica`: a machine's role.
pub fn role_name(machine: &str) -> &str {
    match machine.rsplit_once('-') {
        Some((role, n)) if !role.is_empty() && n.parse::<u32>().is_ok() => role,
        _ => machine,
    }
}

/// The stage's model from each machine's demand in the saturated window
/// ([`demand`](super::demand)): each role's
/// CPU seconds per request and its machines' overhead, and what remains of the
/// single-customer response time once the machines' service is taken out.
pub fn calibration(
    number: u32,
    title: &str,
    demands: &[MachineDemand],
    ops: &OpsDelta,
    alone_mean: Option<f64>,
) -> StageCalibration {
    let gateway = demands.iter().any(|m| m.kind == Kind::Gateway);
    let mut roles: Vec<Role> = Vec::new();
    for d in demands {
        let role = role_name(&d.name);
        match roles.iter_mut().find(|r| r.name == role) {
            Some(r) => {
                r.machines += 1;
                r.demand += d.per_request;
                r.background = r.background.max(d.overhead);
            }
            None => roles.push(
                Role::new(role, d.kind, 1, d.cpus, d.per_request, false)
                    .with_background(d.overhead),
            ),
        }
    }
    for r in &mut roles {
        r.scales = match r.kind {
            Kind::App => gateway,
            Kind::Replica => true,
            Kind::Redis => r.machines > 1,
            Kind::Postgres => r.name.starts_with("shards"),
            Kind::Gateway => false,
        };
    }
    let service: f64 = roles
        .iter()
        .map(|r| r.demand / (r.cpus - r.background).max(0.1 * r.cpus))
        .sum();
    let miss_share = match (ops.misses_per_request, ops.db_per_request) {
        (Some(m), Some(q)) if q > 0.0 => Some((m / q).clamp(0.0, 1.0)),
        _ => None,
    };
    StageCalibration {
        number,
        title: title.to_owned(),
        roles,
        hit_ratio: ops.hit_ratio,
        miss_share,
        latency_floor: alone_mean.map_or(0.0, |m| (m - service).max(0.0)),
    }
}

/// Per machine: CPU per request and utilisation over `seconds`.
pub fn machine_figures(used: &Usage, requests: u64, seconds: f64) -> Vec<MachineFigures> {
    used.machines
        .iter()
        .map(|(name, kind, cpus, cpu)| MachineFigures {
            name: name.clone(),
            kind: *kind,
            cpus: *cpus,
            cpu_per_request: if requests > 0 {
                cpu / requests as f64
            } else {
                0.0
            },
            utilization: if seconds > 0.0 {
                cpu / (cpus * seconds)
            } else {
                0.0
            },
        })
        .collect()
}

/// The gateway's instance count in a stage file (`None` without a gateway).
fn instances(text: &str) -> Option<u32> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let n = doc.get("gateway")?.get("instances")?.as_integer()?;
    u32::try_from(n).ok()
}

/// Waits (at most 15 s) until a gateway has started its `expected` instances.
async fn wait_instances(server: &StageServer, expected: Option<u32>) -> Result<(), String> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = storefront_machines::children(server.pid()).len();
        if n >= expected as usize {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the gateway started {n} of its {expected} instances in 15 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A launched stage on its machines, connected and warmed up.
struct Placed {
    server: StageServer,
    placement: Placement,
    load: Loadgen,
    /// Cores each machine used with no load.
    idle: Usage,
}

/// How long the machines are watched with no load, per try.
const IDLE: Duration = Duration::from_millis(1_500);

/// Tries at most to find the machines quiet.
const IDLE_TRIES: u32 = 10;

/// A machine is quiet when it uses less than this share of its quota.
const QUIET: f64 = 0.1;

async fn launch_placed(
    catalog: &Arc<dyn StageCatalog>,
    number: u32,
    options: &LoadOptions,
    warmup: Duration,
    cpu: f64,
    app_cpu: Option<f64>,
    instances_override: Option<u32>,
) -> Result<Placed, String> {
    let edit = move |text: &str| -> Result<String, String> {
        let Some(n) = instances_override else {
            return Ok(text.to_owned());
        };
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(g) = doc.get_mut("gateway").and_then(toml::Value::as_table_mut) {
            g.insert("instances".into(), toml::Value::Integer(i64::from(n)));
        }
        toml::to_string(&doc).map_err(|e| e.to_string())
    };
    let server = launch_stage_edited(catalog, number, &edit).await?;
    let placed = async {
        wait_instances(&server, instances(server.stage_text())).await?;
        let servers = backing_servers(server.stage_text())?;
        let run = format!("evolve-{number}");
        let placement = Placement::place(&run, server.pid(), &servers, cpu, app_cpu)?;
        // The background: what the machines do before any customer arrives,
        // once what the last run left (a checkpoint, autovacuum after its
        // writes) has died down, or after ten tries.
        let mut idle = Usage {
            machines: Vec::new(),
        };
        for _ in 0..IDLE_TRIES {
            let before = placement.usage();
            tokio::time::sleep(IDLE).await;
            idle = before.until(&placement.usage()).per_second(IDLE);
            if idle.machines.iter().all(|m| m.3 < QUIET * m.2) {
                break;
            }
        }
        let mut opts = options.clone();
        opts.target = server.url.clone();
        let load = Loadgen::connect(opts).await?;
        if !warmup.is_zero() {
            load.run(warmup, Some(&format!("{number} warm-up"))).await;
        }
        Ok::<_, String>((placement, load, idle))
    }
    .await;
    match placed {
        Ok((placement, load, idle)) => Ok(Placed {
            server,
            placement,
            load,
            idle,
        }),
        Err(e) => {
            let tail = server.log_tail();
            server.stop().await;
            Err(format!("stage {number}: {e}; its log ends with:\n{tail}"))
        }
    }
}

/// The saturated window: the load's report, what each machine used, and the
/// ops counters' change.
async fn saturated(
    p: &Placed,
    duration: Duration,
    label: &str,
) -> Result<(Report, Usage, OpsDelta, f64, Vec<(String, u64)>), String> {
    let ops_http = p.server.ops_client(Duration::from_secs(5))?;
    let before = fetch_snapshot(&ops_http).await;
    let used_before = p.placement.usage();
    let started = Instant::now();
    let report = p.load.run(duration, Some(label)).await;
    let seconds = started.elapsed().as_secs_f64();
    let used = used_before.until(&p.placement.usage());
    let after = fetch_snapshot(&ops_http).await;
    let ops = OpsDelta::between(
        before.as_ref().map(|s| &s.totals),
        after.as_ref().map(|s| &s.totals),
    );
    let rows = after.as_ref().map(shard_rows).unwrap_or_default();
    Ok((report, used, ops, seconds, rows))
}

/// Stage `number` on miniature machines: calibrated under the saturating load
/// of `options`, ramped, and (with `machines.check`) checked on a second
/// configuration.
pub async fn measure_on_machines(
    catalog: &Arc<dyn StageCatalog>,
    number: u32,
    options: &LoadOptions,
    warmup: Duration,
    duration: Duration,
    machines: &MachineOptions,
) -> Result<(StageResult, OnMachines, String), String> {
    let about = catalog.about(number).unwrap_or_default();
    let concurrency = match options.mode {
        Mode::Closed { concurrency } => concurrency as u64,
        _ => return Err("evolve on machines measures with a closed loop (--concurrency)".into()),
    };
    let p = launch_placed(catalog, number, options, warmup, machines.cpu, None, None).await?;
    let run = async {
        // One customer alone: the response time without queues.
        let alone = p
            .load
            .run_as(Mode::Closed { concurrency: 1 }, machines.probe, None)
            .await;
        let (report, used, ops, seconds, rows) =
            saturated(&p, duration, &format!("stage {number}")).await?;
        let requests = report.total.count;
        let alone_mean = (alone.total.count > 0).then(|| alone.total.mean_ms / 1_000.0);
        let figures = machine_figures(&used, requests, seconds);
        let guess = (report.total.rps * machines.ramp.think.as_secs_f64()).max(1.0) as usize;
        let found = ramp(&p.load, &machines.ramp, guess).await;
        let demands = from_window(&used, seconds, &p.idle, requests);
        let calibration = calibration(number, &p.server.title, &demands, &ops, alone_mean);
        let assumptions = Assumptions {
            think: machines.ramp.think.as_secs_f64(),
            objective: machines.ramp.objective.p99.as_secs_f64(),
            hit_ratio: None,
        };
        let measured = Topology::measured(&calibration);
        let predicted_users = calibration.project(&measured, &assumptions)?.users;
        let check = Check {
            label: describe_config(&calibration, None, None),
            measured: report.total.rps,
            predicted: calibration.saturated(&measured, concurrency)?,
            calibrated: true,
            busiest: used.busiest(Duration::from_secs_f64(seconds)),
            statements: ops.db_per_request,
        };
        let result = StageResult {
            number,
            title: p.server.title.clone(),
            primary_qps: ops
                .primary_ops
                .filter(|_| seconds > 0.0)
                .map(|n| n as f64 / seconds),
            report,
            ops,
            shard_rows: rows,
            about: about.clone(),
        };
        Ok::<_, String>((
            result,
            OnMachines {
                machines: figures,
                demands,
                calibration,
                ramp: found,
                predicted_users,
                checks: vec![check],
            },
            p.load.describe(),
        ))
    }
    .await;
    let Placed {
        server, placement, ..
    } = p;
    drop(placement);
    let tail = server.log_tail();
    server.stop().await;
    let (result, mut on, described) =
        run.map_err(|e| format!("stage {number}: {e}; its log ends with:\n{tail}"))?;
    if machines.check {
        on.checks.push(
            check_other(
                catalog,
                number,
                options,
                warmup,
                duration,
                machines,
                &on.calibration,
                concurrency,
            )
            .await?,
        );
    }
    Ok((result, on, described))
}

/// `3 app machines of 0.25 core`, for the checks' table.
fn describe_config(c: &StageCalibration, apps: Option<u32>, app_cpu: Option<f64>) -> String {
    let app = c.roles.iter().find(|r| r.kind == Kind::App);
    let n = apps.or(app.map(|r| r.machines)).unwrap_or(1);
    let cpu = app_cpu.or(app.map(|r| r.cpus)).unwrap_or(0.0);
    let others: u32 = c
        .roles
        .iter()
        .filter(|r| r.kind != Kind::App)
        .map(|r| r.machines)
        .sum();
    format!(
        "{n} app machine{} of {cpu} core, {others} other{}",
        if n == 1 { "" } else { "s" },
        if others == 1 { "" } else { "s" }
    )
}

/// The second configuration: one instance fewer behind a gateway (at least
/// one), or the app machine twice as big without one; measured, and predicted
/// from `calibration` alone.
#[allow(clippy::too_many_arguments)]
async fn check_other(
    catalog: &Arc<dyn StageCatalog>,
    number: u32,
    options: &LoadOptions,
    warmup: Duration,
    duration: Duration,
    machines: &MachineOptions,
    calibration: &StageCalibration,
    concurrency: u64,
) -> Result<Check, String> {
    let app = calibration
        .roles
        .iter()
        .find(|r| r.kind == Kind::App)
        .ok_or_else(|| format!("stage {number}: no app machine measured"))?;
    let gateway = calibration.roles.iter().any(|r| r.kind == Kind::Gateway);
    let (instances, app_cpu) = if gateway {
        (Some(app.machines.saturating_sub(1).max(1)), None)
    } else {
        (None, Some(machines.cpu * 2.0))
    };
    let mut topology = Topology::measured(calibration);
    if let Some(slot) = topology.roles.get_mut(&app.name) {
        *slot = (instances.unwrap_or(slot.0), app_cpu.unwrap_or(slot.1));
    }
    let predicted = calibration.saturated(&topology, concurrency)?;
    let label = describe_config(calibration, instances, app_cpu);
    let p = launch_placed(
        catalog,
        number,
        options,
        warmup,
        machines.cpu,
        app_cpu,
        instances,
    )
    .await?;
    let report = saturated(&p, duration, &format!("stage {number}, {label}")).await;
    let Placed {
        server, placement, ..
    } = p;
    drop(placement);
    server.stop().await;
    let (report, used, ops, seconds, _) = report?;
    Ok(Check {
        label,
        measured: report.total.rps,
        predicted,
        calibrated: false,
        busiest: used.busiest(Duration::from_secs_f64(seconds)),
        statements: ops.db_per_request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_group_into_roles() {
        assert_eq!(role_name("app-2"), "app");
        assert_eq!(role_name("replica-5433"), "replica");
        assert_eq!(role_name("users-db"), "users-db");
        assert_eq!(role_name("-1"), "-1");
        let used = Usage {
            machines: vec![
                ("gateway".into(), Kind::Gateway, 0.25, 2.0),
                ("app-1".into(), Kind::App, 0.25, 3.0),
                ("app-2".into(), Kind::App, 0.25, 3.0),
                ("db".into(), Kind::Postgres, 0.25, 1.0),
                ("replica".into(), Kind::Replica, 0.25, 0.5),
            ],
        };
        let ops = OpsDelta {
            db_per_request: Some(0.5),
            misses_per_request: Some(0.1),
            hit_ratio: Some(0.9),
            ..OpsDelta::default()
        };
        // The database spends 0.025 core on its own (0.5 s of the 20 s).
        let idle = Usage {
            machines: vec![("db".into(), Kind::Postgres, 0.25, 0.025)],
        };
        // 10,000 requests in 20 s; alone, one took 5 ms.
        let demands = from_window(&used, 20.0, &idle, 10_000);
        let c = calibration(5, "Read/write splitting", &demands, &ops, Some(0.005));
        let roles: Vec<(&str, u32, bool)> = c
            .roles
            .iter()
            .map(|r| (r.name.as_str(), r.machines, r.scales))
            .collect();
        assert_eq!(
            roles,
            [
                ("gateway", 1, false),
                ("app", 2, true),
                ("db", 1, false),
                ("replica", 1, true)
            ]
        );
        let app = &c.roles[1];
        assert!((app.demand - 0.000_6).abs() < 1e-12);
        // The database's 1 s less its background's 0.5 s, over the requests.
        assert!((c.roles[2].demand - 0.000_05).abs() < 1e-12);
        assert_eq!(c.roles[2].background, 0.025);
        assert_eq!(c.miss_share, Some(0.2));
        // Service alone: (0.2 + 0.6 + 0.05) ms / 0.25 + 0.05 ms / 0.225 (the
        // database's quarter core less its background) = 3.62 ms of the 5.
        assert!(
            (c.latency_floor - 0.001_377_8).abs() < 1e-6,
            "{}",
            c.latency_floor
        );
        let f = machine_figures(&used, 10_000, 20.0);
        // 3 s of a quarter core over 20 s: 60%.
        assert!((f[1].utilization - 0.6).abs() < 1e-12);
    }

    #[test]
    fn the_instance_count_is_read_from_the_stage_file() {
        assert_eq!(instances("[gateway]\ninstances = 3\n"), Some(3));
        assert_eq!(instances("[server]\naddr = \"x\"\n"), None);
        assert_eq!(instances("not toml ["), None);
    }
}
