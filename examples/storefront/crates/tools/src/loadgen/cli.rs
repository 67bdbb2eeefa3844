//! The command-line faces of the load generator: `loadgen`, `evolve`, `bench-http`
//! (and the hidden `bare-http` server that `bench-http` starts).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::bench::{self, BenchOptions};
use super::evolve::calibrate::{measure_on_machines, MachineOptions, OnMachines};
use super::evolve::page_machines::MachineSettings;
use super::evolve::{self, MachinesPage, RunInfo};
use super::ramp::{Objective, RampOptions};
use super::svg::report_chart;
use super::{LoadOptions, Loadgen, Mix, Mode, Workload};
use crate::projection::Calibration;
use crate::stages::StageCatalog;

/// Seconds on the command line: positive, finite, at most a day.
fn seconds(flag: &str, s: f64, zero_ok: bool) -> Result<Duration, String> {
    if !(s.is_finite() && (s > 0.0 || (zero_ok && s == 0.0)) && s <= 86_400.0) {
        return Err(format!(
            "{flag} {s}: give seconds, above 0 and at most 86400"
        ));
    }
    Duration::try_from_secs_f64(s).map_err(|e| format!("{flag} {s}: {e}"))
}

/// How to load the shop (shared by `loadgen` and `evolve`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Open loop: start this many journeys per second (latency counts from the
    /// intended start, so a server that falls behind shows it).
    #[arg(long, conflicts_with_all = ["concurrency", "customers"])]
    pub rate: Option<f64>,
    /// Closed loop: this many customers at once, each starting a journey when the
    /// last one ends (the default, with 32).
    #[arg(long, conflicts_with = "customers")]
    pub concurrency: Option<usize>,
    /// Closed loop with think time: this many customers in the shop, each
    /// pausing `--think` seconds on average per request between journeys.
    #[arg(long)]
    pub customers: Option<usize>,
    /// Seconds a customer thinks per request, on average (exponentially
    /// distributed): `--customers`, and evolve's ramp and model.
    #[arg(long, default_value_t = 5.0)]
    pub think: f64,
    /// Journey weights browse,search,buy.
    #[arg(long, default_value = "70,15,15")]
    pub mix: Mix,
    /// Zipf exponent of product popularity (0 = uniform).
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Seeded accounts to log in first (user1@example.com ...; missing ones are signed up).
    #[arg(long, default_value_t = 10)]
    pub users: u32,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds to wait for one answer before counting it an error.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

impl LoadArgs {
    fn options(&self, target: String, path: Option<String>) -> Result<LoadOptions, String> {
        let mode = match (self.rate, self.customers, self.concurrency) {
            (Some(rate), _, _) => Mode::Open { rate },
            (None, Some(customers), _) => Mode::Customers {
                customers,
                think: seconds("--think", self.think, true)?,
            },
            (None, None, c) => Mode::Closed {
                concurrency: c.unwrap_or(32),
            },
        };
        Ok(LoadOptions {
            target,
            mode,
            workload: match path {
                Some(path) => Workload::Raw { path },
                None => Workload::Journeys(self.mix),
            },
            users: self.users,
            zipf: self.zipf,
            seed: self.seed,
            timeout: seconds("--timeout", self.timeout, false)?,
            ..LoadOptions::default()
        })
    }
}

/// `storefront loadgen`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// The shop.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub load: LoadArgs,
    /// Ask for this one path again and again instead of journeys (like /products/1).
    #[arg(long)]
    pub path: Option<String>,
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds of load before measuring (caches, connections and pools warm up).
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Also write a chart (latency by route, requests per second over time) to
    /// this file; without it, nothing is written.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// Runs `storefront loadgen`.
pub async fn loadgen(args: LoadgenArgs) -> Result<(), String> {
    let duration = seconds("--duration", args.duration, false)?;
    let warmup = seconds("--warmup", args.warmup, true)?;
    let options = args.load.options(args.target.clone(), args.path.clone())?;
    eprintln!("connecting to {} ...", args.target);
    let load = Loadgen::connect(options).await?;
    println!("Load: {}", load.describe());
    if !warmup.is_zero() {
        load.run(warmup, Some("warm-up")).await;
    }
    let report = load.run(duration, Some("measuring")).await;
    println!(
        "\n{} s against {}:\n\n{}",
        duration.as_secs_f64(),
        args.target,
        report.table()
    );
    if let Some(svg) = &args.svg {
        let title = format!("storefront loadgen: {}", args.target);
        std::fs::write(svg, report_chart(&title, &report))
            .map_err(|e| format!("cannot write {}: {e}", svg.display()))?;
        println!("Chart: {}", svg.display());
    }
    Ok(())
}

/// `storefront evolve`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvolveArgs {
    /// Which stages, like 1-4 or 1,3 (default: every built-in stage).
    #[arg(long)]
    pub stages: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub load: LoadArgs,
    /// Seconds measured per stage.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds of load per stage before measuring.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// The page to write.
    #[arg(long, default_value = "docs/evolution.md")]
    pub out: PathBuf,
    /// The chart (default: the page's name with .svg).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Each stage's machines (the app or each instance, the gateway, each
    /// PostgreSQL cluster, Redis) in a cgroup holding it to this share of a
    /// core; 0 runs every process on the whole host, as without cgroups.
    #[arg(long, default_value_t = 0.25)]
    pub machine_cpu: f64,
    /// The p99 objective of the ramp and the model, ms.
    #[arg(long, default_value_t = 200.0)]
    pub objective_ms: f64,
    /// Seconds measured per ramp step (plus a second of settling).
    #[arg(long, default_value_t = 8.0)]
    pub ramp_step: f64,
    /// Ramp steps at most per stage.
    #[arg(long, default_value_t = 8)]
    pub ramp_steps: u32,
    /// Skip the second configuration that checks the model.
    #[arg(long)]
    pub no_check: bool,
    /// Cores of each real machine in the projection.
    #[arg(long, default_value_t = 16.0)]
    pub cores: f64,
    /// Cache hit ratio at scale in the projection (default: as measured).
    #[arg(long)]
    pub hit_ratio: Option<f64>,
    /// Where the calibration goes (default: the page's name with .json);
    /// `storefront project` reads it.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
}

impl EvolveArgs {
    /// The machine settings, or `None` when every process shares the host
    /// (`--machine-cpu 0`, or no cgroups here: said on stderr).
    fn machines(&self) -> Result<Option<(MachineOptions, MachineSettings)>, String> {
        if self.machine_cpu == 0.0 {
            return Ok(None);
        }
        if !(self.machine_cpu.is_finite() && (0.05..=2.0).contains(&self.machine_cpu)) {
            return Err(format!(
                "--machine-cpu {}: give a share of a core from 0.05 to 2 (0: no machines)",
                self.machine_cpu
            ));
        }
        let assumptions = crate::projection::cli::assumptions(
            self.load.think,
            self.objective_ms,
            self.hit_ratio,
        )?;
        let cores = crate::projection::cli::cores(self.cores)?;
        if let Err(e) = storefront_machines::Machines::open("evolve-check") {
            eprintln!(
                "no miniature machines here ({e}): every process shares the host, as with --machine-cpu 0"
            );
            return Ok(None);
        }
        if !(1..=64).contains(&self.ramp_steps) {
            return Err(format!("--ramp-steps {}: give 1 to 64", self.ramp_steps));
        }
        let ramp = RampOptions {
            think: seconds("--think", self.load.think, true)?,
            objective: Objective {
                p99: seconds("--objective-ms", self.objective_ms / 1_000.0, false)?,
                ..Objective::default()
            },
            settle: Duration::from_secs(1),
            step: seconds("--ramp-step", self.ramp_step, false)?,
            max_steps: self.ramp_steps,
            ..RampOptions::default()
        };
        Ok(Some((
            MachineOptions {
                cpu: self.machine_cpu,
                ramp,
                check: !self.no_check,
                ..MachineOptions::default()
            },
            MachineSettings {
                cpu: self.machine_cpu,
                assumptions,
                cores,
            },
        )))
    }
}

/// The command line as typed, with the program called `storefront`.
pub fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.insert(0, "storefront".into());
    args.join(" ")
}

/// Runs `storefront evolve`.
pub async fn evolve(args: EvolveArgs, catalog: Arc<dyn StageCatalog>) -> Result<(), String> {
    let stages = match &args.stages {
        Some(s) => evolve::parse_stages(s)?,
        None => catalog
            .numbers()
            .into_iter()
            .filter(|&n| catalog.not_evolvable(n).is_none())
            .collect(),
    };
    // Refuse an unknown stage, or one evolve cannot run, before running any.
    for &n in &stages {
        evolve::builtin_stage(catalog.as_ref(), n)?;
        if let Some(why) = catalog.not_evolvable(n) {
            return Err(format!("stage {n}: {why}"));
        }
    }
    let duration = seconds("--duration", args.duration, false)?;
    let warmup = seconds("--warmup", args.warmup, true)?;
    let options = args.load.options(String::new(), None)?;
    let machines = args.machines()?;
    let machine = evolve::machine();
    let mut results = Vec::new();
    let mut on_machines = Vec::new();
    let mut load = String::new();
    for n in stages {
        eprintln!("stage {n}: starting ...");
        // Ctrl-C or SIGTERM: the stage's future is dropped, which stops its
        // server and moves its machines' processes back (PostgreSQL and Redis
        // must not stay held to a quarter core).
        let stage = async {
            let (result, described) = match &machines {
                None => evolve::measure_stage(&catalog, n, &options, warmup, duration).await?,
                Some((m, _)) => {
                    let (result, on, described) =
                        measure_on_machines(&catalog, n, &options, warmup, duration, m).await?;
                    println!("{}", on_machines_summary(&on));
                    on_machines.push(on);
                    (result, described)
                }
            };
            Ok::<_, String>((result, described))
        };
        let (result, described) = tokio::select! {
            r = stage => r?,
            () = storefront_server::shutdown_signal() => {
                return Err(format!("stopped by a signal during stage {n}"));
            }
        };
        println!(
            "\nStage {n}. {}:\n\n{}",
            result.title,
            result.report.table()
        );
        load = described;
        results.push(result);
    }
    let info = RunInfo {
        command: command_line(),
        load,
        warmup,
        duration,
        machine,
    };
    let machines_page = machines.map(|(_, settings)| MachinesPage {
        on: on_machines,
        settings,
    });
    let svg = evolve::write_page(
        &args.out,
        args.svg.clone(),
        &info,
        &results,
        machines_page.as_ref(),
    )?;
    println!("Wrote {} and {}", args.out.display(), svg.display());
    if let Some(m) = &machines_page {
        let path = args
            .calibration
            .clone()
            .unwrap_or_else(|| args.out.with_extension("json"));
        let calibration = Calibration {
            date: evolve::today(),
            host: info.machine.clone(),
            machine_cpu: m.settings.cpu,
            stages: m.on.iter().map(|o| o.calibration.clone()).collect(),
        };
        let text = serde_json::to_string_pretty(&calibration)
            .map_err(|e| format!("cannot write the calibration: {e}"))?;
        std::fs::write(&path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("Wrote {} (`storefront project` reads it)", path.display());
    }
    Ok(())
}

/// A stage's machines in a few lines, for the terminal.
fn on_machines_summary(on: &OnMachines) -> String {
    let mut out = String::new();
    for m in &on.machines {
        out.push_str(&format!(
            "  {:<14} {:>5.2} core  {:>7.0} µs/request  {:>4.0}% busy\n",
            m.name,
            m.cpus,
            m.cpu_per_request * 1e6,
            m.utilization * 100.0
        ));
    }
    for step in &on.ramp.steps {
        out.push_str(&format!(
            "  {:>7} customers: {:>7.0} req/s, p99 {:>7.1} ms, {} errors{}\n",
            step.customers,
            step.total.rps,
            step.total.p99_ms,
            step.total.errors,
            if step.met { "" } else { "  (missed)" }
        ));
    }
    for c in &on.checks {
        out.push_str(&format!(
            "  model, {}: measured {:.0} req/s, predicted {:.0} ({:+.1}%), busiest {}\n",
            c.label,
            c.measured,
            c.predicted,
            c.error() * 100.0,
            c.busiest
                .as_ref()
                .map(|(n, u)| format!("{n} {:.0}%", u * 100.0))
                .unwrap_or_default()
        ));
    }
    out
}

/// `storefront bench-http`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Rounds of each server, alternating.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Seconds per round.
    #[arg(long, default_value_t = 5.0)]
    pub round_secs: f64,
    /// Seconds of warm-up of each server.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// The product whose page is asked for.
    #[arg(long, default_value_t = 1)]
    pub product: u64,
}

/// Runs `storefront bench-http`.
pub async fn bench_http(args: BenchArgs, catalog: Arc<dyn StageCatalog>) -> Result<(), String> {
    let options = BenchOptions {
        concurrency: args.concurrency,
        rounds: args.rounds,
        round: seconds("--round-secs", args.round_secs, false)?,
        warmup: seconds("--warmup", args.warmup, true)?,
        product: args.product,
    };
    let text = bench::bench_http(&options, &command_line(), &catalog).await?;
    println!("\n{text}");
    Ok(())
}

/// `storefront bare-http` (hidden): the bare server `bench-http` compares with.
#[derive(Debug, Clone, clap::Args)]
pub struct BareArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub addr: SocketAddr,
}

/// Runs the bare server.
pub async fn bare_http(args: BareArgs) -> Result<(), String> {
    bench::serve_bare(args.addr).await
}
