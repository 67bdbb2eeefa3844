//! The evolution page's sections for stages run on miniature machines: what
//! each stage carried, the model against the measurements, and the projection
//! to real machines (a table and a log-scale chart).

use std::fmt::Write as _;

use super::calibrate::OnMachines;
use super::miniature::Kind;
use super::StageResult;
use crate::loadgen::svg::{chart, Panel};
use crate::projection::cli::group;
use crate::projection::{Assumptions, Projection, StageCalibration, Topology, TAIL};

/// How the machines and the projection were set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MachineSettings {
    /// Each miniature machine's share of a core.
    pub cpu: f64,
    /// The projection's assumptions (think time, objective, hit ratio).
    pub assumptions: Assumptions,
    /// Cores of each real machine.
    pub cores: f64,
}

/// Each stage's projection onto real machines (scaled roles as needed).
pub fn projections(
    on: &[OnMachines],
    settings: &MachineSettings,
) -> Vec<(StageCalibration, Result<Projection, String>)> {
    on.iter()
        .map(|m| {
            let c = m.calibration.clone();
            let p = c.project(&Topology::scaled(&c, settings.cores), &settings.assumptions);
            (c, p)
        })
        .collect()
}

/// Which later stage lifts a limit set by a machine of `role` (of `kind`)
/// at stage `stage`.
pub fn lifted_by(stage: u32, role: &str, kind: Kind) -> &'static str {
    match kind {
        Kind::App if stage < 4 => "stage 4 (load balancing) puts several app machines behind a gateway",
        Kind::App => "more app machines (this stage scales them)",
        Kind::Gateway => "stage 8 (layer-4 balancing with a virtual IP) puts several gateways behind one address",
        Kind::Replica => "more replicas (this stage scales them)",
        Kind::Redis => "a Redis Cluster (the stage files' `redis_cluster`) spreads the cache over several machines",
        Kind::Postgres if stage < 5 => "stage 5 (read/write splitting) moves reads to replicas",
        Kind::Postgres if stage < 6 => "stage 6 (business split) gives each domain a database of its own",
        Kind::Postgres if role.starts_with("shards") => "more shards (stage 7 reshards online)",
        Kind::Postgres if role.starts_with("orders") || stage < 6 => {
            "stage 7 (sharding) spreads orders over several databases"
        }
        Kind::Postgres if role.starts_with("catalog") => {
            "stage 10 (a search engine) takes search off the catalog's database, and more replicas take its reads"
        }
        Kind::Postgres if role.starts_with("users") => {
            "stage 10 (NoSQL) moves sessions and carts to Redis"
        }
        Kind::Postgres => "stages 10 to 12 (search and NoSQL, domain services) take load off the relational databases",
    }
}

/// The sections, in Markdown; `chart_name` is the projection chart's file.
pub fn sections(
    results: &[StageResult],
    on: &[OnMachines],
    settings: &MachineSettings,
    chart_name: &str,
) -> String {
    let mut out = String::new();
    carried(&mut out, results, on, settings);
    checks(&mut out, on);
    projected(&mut out, on, settings, chart_name);
    out
}

fn carried(out: &mut String, results: &[StageResult], on: &[OnMachines], s: &MachineSettings) {
    let a = &s.assumptions;
    let _ = writeln!(out, "## On miniature machines\n");
    let _ = writeln!(
        out,
        "Each machine of a stage (the app or each app instance, the gateway, each PostgreSQL cluster with all its backends, Redis) ran in a cgroup of its own holding it to {} of a core (`cpu.cfs_quota_us`); the load generator ran outside them, on what was left of the host. Requests/s is the saturating load above; each machine's utilisation is its CPU time (`cpuacct.usage`) over its quota in that window. Customers carried: the largest population of customers who think {} s per request on average (exponential pauses between journeys) whose p99 stayed under {} ms with under 0.1% errors, found by a ramp (the first population that missed is shown too). The model's figure is the same question asked of the queueing model calibrated on this stage (below).\n",
        s.cpu,
        a.think,
        a.objective * 1_000.0
    );
    let _ = writeln!(
        out,
        "| stage | machines | requests/s | per machine | busiest machine | customers carried | first missed | model |\n| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
    );
    let mut previous: Option<u64> = None;
    let mut limits = Vec::new();
    for (r, m) in results.iter().zip(on) {
        let n = m.machines.len().max(1);
        let busiest = m
            .bottleneck()
            .map(|b| format!("{} {:.0}%", b.name, b.utilization * 100.0))
            .unwrap_or_default();
        let carried = m.ramp.carried().map(|s| s.customers as u64);
        let missed = m
            .ramp
            .first_missed()
            .map(|s| {
                format!(
                    "{} (p99 {:.0} ms)",
                    group(s.customers as u64),
                    s.total.p99_ms
                )
            })
            .unwrap_or_else(|| "none".into());
        let _ = writeln!(
            out,
            "| {}. {} | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
            r.number,
            r.title,
            n,
            r.report.total.rps,
            r.report.total.rps / n as f64,
            busiest,
            carried.map_or_else(|| "none".into(), group),
            missed,
            group(m.predicted_users),
        );
        if let (Some(now), Some(before), Some(b)) = (carried, previous, m.bottleneck()) {
            if now <= before {
                limits.push(format!(
                    "stage {} carries no more than stage {} ({} against {}): its busiest machine is {} ({:.0}%); {}.",
                    r.number,
                    r.number.saturating_sub(1),
                    group(now),
                    group(before),
                    b.name,
                    b.utilization * 100.0,
                    lifted_by(r.number, super::calibrate::role_name(&b.name), b.kind)
                ));
            }
        }
        previous = carried.or(previous);
    }
    out.push('\n');
    if !limits.is_empty() {
        let _ = writeln!(
            out,
            "Where a stage does not carry more than the one before:\n"
        );
        for l in limits {
            let _ = writeln!(out, "- {l}");
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "CPU seconds per request on each machine in the saturated window (and its utilisation), then what the model is calibrated with: the same less the machine's idle use, which is kept as capacity requests cannot use (see `evolve::demand`):\n"
    );
    for (r, m) in results.iter().zip(on) {
        let cells: Vec<String> = m
            .machines
            .iter()
            .map(|f| {
                let model =
                    m.demands
                        .iter()
                        .find(|d| d.name == f.name)
                        .map_or_else(String::new, |d| {
                            format!(
                                " → {:.0} µs + {:.3} core idle",
                                d.per_request * 1e6,
                                d.overhead
                            )
                        });
                format!(
                    "{} {:.0} µs ({:.0}%){model}",
                    f.name,
                    f.cpu_per_request * 1e6,
                    f.utilization * 100.0
                )
            })
            .collect();
        let _ = writeln!(out, "- Stage {}: {}", r.number, cells.join(", "));
    }
    out.push('\n');
}

fn checks(out: &mut String, on: &[OnMachines]) {
    let _ = writeln!(out, "## The model against the measurements\n");
    let _ = writeln!(
        out,
        "The model is a closed queueing network solved by mean value analysis (`storefront-capacity`): one station per machine, each with its role's CPU seconds per request shared evenly over the role's machines and slowed to the machine's share of a core, plus a delay for what a lone request spends outside these machines (its response time with one customer, less their service). It is calibrated on the saturating window of each stage's first configuration (the rows marked calibration: they show the model is consistent with what it was fitted on), then asked about a configuration it did not see: one app instance fewer behind a gateway, or, without a gateway, an app machine twice as big. Predicted against measured requests a second under the same saturating load, with the database statements a request made in each (the model keeps the calibration's):\n"
    );
    let _ = writeln!(
        out,
        "| stage | configuration | measured requests/s | predicted | error | busiest machine measured | statements/request | |\n| --- | --- | ---: | ---: | ---: | --- | ---: | --- |"
    );
    for m in on {
        for c in &m.checks {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {:+.1}% | {} | {} | {} |",
                m.calibration.number,
                c.label,
                c.measured,
                c.predicted,
                c.error() * 100.0,
                c.busiest
                    .as_ref()
                    .map(|(n, u)| format!("{n} {:.0}%", u * 100.0))
                    .unwrap_or_default(),
                c.statements.map_or(String::new(), |q| format!("{q:.2}")),
                if c.calibrated {
                    "calibration"
                } else {
                    "prediction"
                }
            );
        }
    }
    out.push('\n');
}

fn projected(out: &mut String, on: &[OnMachines], s: &MachineSettings, chart_name: &str) {
    let a = &s.assumptions;
    let _ = writeln!(out, "## Projected to real machines\n");
    let _ = writeln!(
        out,
        "The same models with machines of {} cores, each core as fast as one of this host's (the demands per request as measured here). Roles that scale (app instances behind a gateway, replicas, shard databases) get as many machines as it takes for a machine that cannot be multiplied at that stage to be the limit; the others are one machine each. Customers think {} s per request; the objective is a p99 under {} ms, which the model (it gives means) checks as a mean under {:.1} ms (a p99 is about {:.1} times the mean of an exponential response time); cache hit ratio {}. What the model leaves out: memory and disk (every stage's data is assumed to fit), connection limits, SQLite's single writer, and the network between machines beyond what loopback showed. `storefront project --stage N --machines app=40,...` asks the same of any topology.\n",
        s.cores,
        a.think,
        a.objective * 1_000.0,
        a.objective * 1_000.0 / TAIL,
        TAIL,
        a.hit_ratio
            .map_or_else(|| "as measured".into(), |h| format!("{:.1}%", h * 100.0)),
    );
    let _ = writeln!(
        out,
        "| stage | machines | customers carried | requests/s | limited by | lifted by |\n| --- | --- | ---: | ---: | --- | --- |"
    );
    for (c, p) in projections(on, s) {
        match p {
            Ok(p) => {
                let kind = c
                    .roles
                    .iter()
                    .find(|r| r.name == p.limit)
                    .map_or(Kind::App, |r| r.kind);
                let _ = writeln!(
                    out,
                    "| {}. {} | {} | {} | {:.0} | {} | {} |",
                    c.number,
                    c.title,
                    p.topology.describe(),
                    group(p.users),
                    p.throughput,
                    p.limit,
                    lifted_by(c.number, &p.limit, kind)
                );
            }
            Err(e) => {
                let _ = writeln!(out, "| {}. {} | {e} | | | | |", c.number, c.title);
            }
        }
    }
    let _ = writeln!(
        out,
        "\n![Customers carried, projected (log scale)]({chart_name})\n"
    );
}

/// The projection chart: customers carried per stage, on a log scale.
pub fn projection_chart(on: &[OnMachines], s: &MachineSettings) -> String {
    let groups = projections(on, s)
        .into_iter()
        .map(|(c, p)| {
            let measured = on
                .iter()
                .find(|m| m.calibration.number == c.number)
                .and_then(|m| m.ramp.carried())
                .map_or(0.0, |r| r.customers as f64);
            (
                format!("{}. {}", c.number, c.title),
                vec![p.map_or(0.0, |p| p.users as f64), measured],
            )
        })
        .collect();
    chart(
        "Customers each stage carries",
        &[Panel::LogBars {
            title: format!(
                "Projected on {}-core machines, and measured on miniature ones",
                s.cores
            ),
            series: vec![
                format!("{}-core machines (model)", s.cores),
                format!("{}-core machines (measured)", s.cpu),
            ],
            groups,
            unit: "customers".into(),
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::evolve::calibrate::{Check, MachineFigures};
    use crate::loadgen::evolve::demand::MachineDemand;
    use crate::loadgen::evolve::OpsDelta;
    use crate::loadgen::ramp::{Ramp, RampStep};
    use crate::loadgen::stats::{Report, Row};
    use crate::projection::Role;

    fn row(rps: f64, p99_ms: f64) -> Row {
        Row {
            name: "all".into(),
            count: (rps * 10.0) as u64,
            errors: 0,
            sold_out: 0,
            p50_ms: p99_ms / 4.0,
            p90_ms: p99_ms / 2.0,
            p99_ms,
            max_ms: p99_ms * 2.0,
            mean_ms: p99_ms / 3.0,
            rps,
        }
    }

    /// A stage that carried `carried` customers, its busiest machine `db`.
    fn stage(number: u32, rps: f64, carried: usize) -> (StageResult, OnMachines) {
        let result = StageResult {
            number,
            title: format!("Stage {number}"),
            report: Report {
                steps: Vec::new(),
                total: row(rps, 150.0),
                seconds: 10.0,
                timeline: Vec::new(),
                error_kinds: Vec::new(),
            },
            ops: OpsDelta::default(),
            primary_qps: None,
            shard_rows: Vec::new(),
            about: crate::stages::About::default(),
        };
        let figure = |name: &str, kind, utilization| MachineFigures {
            name: name.into(),
            kind,
            cpus: 0.25,
            cpu_per_request: 0.000_2,
            utilization,
        };
        let on = OnMachines {
            machines: vec![
                figure("app", Kind::App, 0.7),
                figure("db", Kind::Postgres, 0.99),
            ],
            demands: vec![MachineDemand {
                name: "db".into(),
                kind: Kind::Postgres,
                cpus: 0.25,
                per_request: 0.000_15,
                overhead: 0.05,
            }],
            calibration: StageCalibration {
                number,
                title: format!("Stage {number}"),
                roles: vec![
                    Role::new("app", Kind::App, 1, 0.25, 0.000_2, false),
                    Role::new("db", Kind::Postgres, 1, 0.25, 0.000_25, false),
                ],
                ..StageCalibration::default()
            },
            ramp: Ramp {
                steps: vec![
                    RampStep {
                        customers: carried,
                        total: row(rps / 2.0, 50.0),
                        met: true,
                    },
                    RampStep {
                        customers: carried * 2,
                        total: row(rps, 900.0),
                        met: false,
                    },
                ],
            },
            predicted_users: 4_900,
            checks: vec![Check {
                label: "1 app machine of 0.5 core, 1 other".into(),
                measured: 1_000.0,
                predicted: 1_100.0,
                calibrated: false,
                busiest: Some(("db".into(), 0.97)),
                statements: Some(1.5),
            }],
        };
        (result, on)
    }

    #[test]
    fn the_sections_show_carried_checks_limits_and_the_projection() {
        let (r1, m1) = stage(1, 1_000.0, 5_000);
        let (r2, m2) = stage(2, 900.0, 4_000);
        let settings = MachineSettings {
            cpu: 0.25,
            assumptions: Assumptions::default(),
            cores: 16.0,
        };
        let text = sections(&[r1, r2], &[m1.clone(), m2.clone()], &settings, "p.svg");
        for expected in [
            "| 1. Stage 1 | 2 | 1000 | 500 | db 99% | 5,000 | 10,000 (p99 900 ms) | 4,900 |",
            "- stage 2 carries no more than stage 1 (4,000 against 5,000): its busiest machine is db (99%); stage 5 (read/write splitting) moves reads to replicas.",
            "| 2 | 1 app machine of 0.5 core, 1 other | 1000 | 1100 | +10.0% | db 97% | 1.50 | prediction |",
            "- Stage 1: app 200 µs (70%), db 200 µs (99%) → 150 µs + 0.050 core idle",
            "![Customers carried, projected (log scale)](p.svg)",
        ] {
            assert!(text.contains(expected), "{expected}\nin\n{text}");
        }
        // 16 cores at 250 µs a request on the database: 64,000 requests a
        // second at most, some 320,000 customers.
        let projected = text
            .lines()
            .find(|l| l.starts_with("| 1. Stage 1 | app 1 × 16 cores, db 1 × 16 cores |"))
            .unwrap_or_else(|| panic!("no projection row in\n{text}"));
        assert!(projected.contains("| db | stage 5"), "{projected}");
        let chart = projection_chart(&[m1, m2], &settings);
        assert_eq!(crate::loadgen::svg::well_formed(&chart), Ok(()));
        assert!(chart.contains("5k customers"), "{chart}");
    }

    #[test]
    fn every_limit_names_a_later_stage_or_more_machines() {
        assert!(lifted_by(3, "app", Kind::App).starts_with("stage 4"));
        assert!(lifted_by(5, "gateway", Kind::Gateway).starts_with("stage 8"));
        assert!(lifted_by(2, "db", Kind::Postgres).starts_with("stage 5"));
        assert!(lifted_by(5, "db", Kind::Postgres).starts_with("stage 6"));
        assert!(lifted_by(6, "orders-db", Kind::Postgres).starts_with("stage 7"));
        assert!(lifted_by(6, "users-db", Kind::Postgres).starts_with("stage 10"));
        assert!(lifted_by(7, "catalog-db", Kind::Postgres).starts_with("stage 10"));
        assert!(lifted_by(7, "shards-db", Kind::Postgres).starts_with("more shards"));
    }
}
