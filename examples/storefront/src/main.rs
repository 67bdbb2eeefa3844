//! The `storefront` command: it parses the command line and hands each command
//! to the crate that does it (serve and instance: storefront-stage's
//! composition root; loadgen, evolve, bench-http: storefront-tools; reshard:
//! storefront-storage). See the README for the commands.

mod l4_cli;
mod machines_cli;
mod reshard_cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use storefront_stage::catalog::BuiltinStages;
use storefront_stage::compose::{self, BoxError, BuildOptions};
use storefront_stage::config::StageConfig;
use storefront_stage::seed::{self, SeedOptions};
use storefront_tools::loadgen::cli as tools;
use storefront_web::Passwords;

#[derive(Debug, Parser)]
#[command(
    name = "storefront",
    version,
    about = "The scalekit storefront: a shop that walks the architecture evolution"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// Which stage's configuration to use (`storefront stages` lists them).
    #[arg(long, default_value_t = 1)]
    pub(crate) stage: u32,
    /// A stage file to use instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Where SQLite keeps its file.
    #[arg(long, default_value = "storefront-data", value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start, check or stop the services the stages use (PostgreSQL primary and
    /// streaming replica, the stages' databases, Redis), on loopback.
    Services {
        /// `up` creates what is missing and starts what is down; `status` says what
        /// runs where; `down` stops what `up` started.
        #[arg(value_enum, default_value_t = ServicesAction::Status)]
        action: ServicesAction,
    },
    /// Run the shop (stage 1 at http://127.0.0.1:8080 unless told otherwise).
    Serve {
        #[command(flatten)]
        target: Target,
        /// Listen here instead of the stage's address.
        #[arg(long)]
        addr: Option<SocketAddr>,
        /// On SIGTERM or Ctrl-C, how long requests in flight have to finish before
        /// the remaining connections are dropped: seconds ("10", "2.5s") or
        /// milliseconds ("500ms"). Default: the stage's server.drain_timeout_ms
        /// (10 s).
        #[arg(long, value_name = "DURATION", value_parser = storefront_server::parse_duration)]
        drain_timeout: Option<Duration>,
        /// Run on miniature machines: this process (or the gateway and each
        /// instance) and every PostgreSQL and Redis server of the stage file on
        /// this host in a cgroup with this share of a core (needs root and cgroup
        /// v1's cpu and cpuacct controllers), until the shop stops.
        #[arg(long, value_name = "CORES")]
        machine_cpu: Option<f64>,
        /// One of stage 8's gateways (started by `serve --stage 8` in a
        /// namespace of its own): serve as the stage-4 gateway the stage file
        /// describes, with its instances.
        #[arg(long, hide = true)]
        behind_l4: bool,
    },
    /// Fill the stage's database with a made-up catalog and accounts.
    Seed {
        #[command(flatten)]
        target: Target,
        /// Products to add.
        #[arg(long, default_value_t = 100_000)]
        products: u64,
        /// Accounts user1@example.com ... userN@example.com (password "storefront").
        #[arg(long, default_value_t = 1_000)]
        users: u64,
        /// The random seed (the same seed makes the same catalog).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// List the stages: what each adds and what it needs.
    Stages,
    /// One app process behind a stage's gateway (started by `serve`).
    #[command(hide = true)]
    Instance {
        #[command(flatten)]
        target: Target,
        /// Where this instance listens.
        #[arg(long)]
        addr: SocketAddr,
        /// Its number, from 1.
        #[arg(long)]
        number: u32,
        /// As for `serve`.
        #[arg(long, value_name = "DURATION", value_parser = storefront_server::parse_duration)]
        drain_timeout: Option<Duration>,
    },
    /// Stage 8's balancer host (`l4 balance`): health checks of the gateways
    /// and the Maglev table of the kernel's datapath or the userspace one.
    L4(l4_cli::L4Args),
    /// Move the sharded orders (stage 7) to more databases, online; or roll back.
    Reshard(reshard_cli::ReshardArgs),
    /// Drive a running shop with user journeys and measure it.
    Loadgen(tools::LoadgenArgs),
    /// Run stages in turn under the same load and write docs/evolution.md.
    Evolve(tools::EvolveArgs),
    /// What one stage's topology carries on real machines, from the demands
    /// evolve measured on miniature ones.
    Project(storefront_tools::projection::cli::ProjectArgs),
    /// Requests per second of a product page from L1 against a bare axum handler.
    BenchHttp(tools::BenchArgs),
    /// The bare axum server that bench-http compares with.
    #[command(hide = true)]
    BareHttp(tools::BareArgs),
}

fn load(target: &Target) -> Result<StageConfig, BoxError> {
    Ok(match &target.config {
        Some(path) => StageConfig::load(path)?,
        None => StageConfig::builtin(target.stage)?,
    })
}

/// `serve` and `instance`: a stage with a gateway starts its instances and the
/// gateway (stage 4 on); otherwise this process is the stage's app.
async fn serve(
    target: Target,
    addr: Option<SocketAddr>,
    drain_timeout: Option<Duration>,
    instance: bool,
    behind_l4: bool,
) -> Result<(), BoxError> {
    let mut config = load(&target)?;
    if let Some(drain) = drain_timeout {
        config.server.drain_timeout_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX);
    }
    if config.l4.is_some() && !instance && !behind_l4 {
        return l4_cli::serve(&config, &target).await;
    }
    let addr = addr.unwrap_or(config.server.addr);
    if config.gateway.is_some() && !instance {
        return storefront_stage::supervisor::run_stage(
            &config,
            target.stage,
            target.config.as_deref(),
            &target.data_dir,
            addr,
        )
        .await;
    }
    let options = BuildOptions {
        data_dir: target.data_dir,
        // An instance behind the stage's gateway (or stages/04-load-balancing/nginx.conf)
        // takes the client's address from the proxy's X-Forwarded-For.
        behind_proxy: instance && config.gateway.is_some(),
    };
    compose::build(&config, &options).await?.serve(addr).await
}

/// `serve --machine-cpu`: the shop, put on its machines once it has started
/// its instances; they are given back when it stops.
async fn serve_on_machines(
    target: Target,
    addr: Option<SocketAddr>,
    drain_timeout: Option<Duration>,
    cpu: f64,
) -> Result<(), BoxError> {
    machines_cli::check(cpu)?;
    let config = load(&target)?;
    let instances = config.gateway.as_ref().map(|g| g.instances);
    let (stage, file) = (target.stage, target.config.clone());
    let placing = tokio::spawn(async move {
        let placed = machines_cli::place(stage, file.as_deref(), instances, cpu).await;
        if let Err(e) = &placed {
            tracing::warn!("the shop runs without miniature machines: {e}");
        }
        placed
    });
    let served = serve(target, addr, drain_timeout, false, false).await;
    // Still waiting for the instances: stop waiting. Placed: moved back here.
    placing.abort();
    if let Ok(Ok(placement)) = placing.await {
        drop(placement);
    }
    served
}

async fn seed_command(target: Target, options: SeedOptions) -> Result<(), BoxError> {
    let config = load(&target)?;
    println!(
        "Seeding {} with {} products and {} accounts",
        config.database.describe(&target.data_dir),
        options.products,
        options.users
    );
    let store = storefront_storage::open(&config.databases(), &target.data_dir).await?;
    let bar = ProgressBar::new(options.products + options.users);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({per_sec}, {eta} left)")?
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let report = seed::seed(store.as_ref(), options, &Passwords::recommended(), &|n| {
        bar.inc(n)
    })
    .await?;
    bar.finish();
    println!(
        "Added {} products and up to {} accounts in {:.1} s; the catalog holds {} products. Log in as user1@example.com with password \"{}\".",
        report.products,
        report.users,
        started.elapsed().as_secs_f64(),
        report.catalog_size,
        seed::DEMO_PASSWORD,
    );
    Ok(())
}

/// What `storefront services` does.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ServicesAction {
    /// Create what is missing, start what is down.
    Up,
    /// What runs where.
    Status,
    /// Stop what `up` started.
    Down,
}

/// `deploy/services.sh`, built in so that `storefront services` works from any
/// directory; .ci/run runs the same file.
const SERVICES_SCRIPT: &str = include_str!("../../../deploy/services.sh");

fn services(action: ServicesAction) -> Result<(), BoxError> {
    let arg = match action {
        ServicesAction::Up => "up",
        ServicesAction::Status => "status",
        ServicesAction::Down => "down",
    };
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(SERVICES_SCRIPT)
        .arg("services")
        .arg(arg)
        .status()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    if !status.success() {
        return Err(format!("services {arg} failed ({status})").into());
    }
    Ok(())
}

fn stages() -> Result<(), BoxError> {
    for s in StageConfig::all_builtin()? {
        println!(
            "{}. {} (storefront serve --stage {})",
            s.stage.number, s.stage.title, s.stage.number
        );
        println!("   adds:  {}", s.stage.adds);
        println!("   needs: {}", s.stage.needs);
        println!();
    }
    println!("Stages 5 to 8 need `storefront services up` first (PostgreSQL primary and replica, the fleet, Redis; for stage 8 nftables and keepalived), and stage 8 root (it builds a network of namespaces).");
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        // Colours for a terminal only: not in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("storefront: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None => {
                serve(
                    Target {
                        stage: 1,
                        config: None,
                        data_dir: "storefront-data".into(),
                    },
                    None,
                    None,
                    false,
                    false,
                )
                .await
            }
            Some(Command::Serve {
                target,
                addr,
                drain_timeout,
                machine_cpu: None,
                behind_l4,
            }) => serve(target, addr, drain_timeout, false, behind_l4).await,
            Some(Command::Serve {
                target,
                addr,
                drain_timeout,
                machine_cpu: Some(cpu),
                ..
            }) => serve_on_machines(target, addr, drain_timeout, cpu).await,
            Some(Command::Instance {
                target,
                addr,
                number,
                drain_timeout,
            }) => match storefront_stage::supervisor::instance_setup() {
                Ok(()) => {
                    tracing::info!("instance {number}");
                    serve(target, Some(addr), drain_timeout, true, false).await
                }
                Err(e) => Err(e.into()),
            },
            Some(Command::Seed {
                target,
                products,
                users,
                seed,
            }) => {
                seed_command(
                    target,
                    SeedOptions {
                        products,
                        users,
                        seed,
                    },
                )
                .await
            }
            Some(Command::Stages) => stages(),
            Some(Command::Services { action }) => services(action),
            Some(Command::Reshard(args)) => reshard_cli::run(args).await,
            Some(Command::L4(args)) => l4_cli::run(args).await,
            Some(Command::Loadgen(args)) => Ok(tools::loadgen(args).await?),
            Some(Command::Evolve(args)) => Ok(tools::evolve(args, Arc::new(BuiltinStages)).await?),
            Some(Command::Project(args)) => {
                println!("{}", storefront_tools::projection::cli::project(&args)?);
                Ok(())
            }
            Some(Command::BenchHttp(args)) => {
                Ok(tools::bench_http(args, Arc::new(BuiltinStages)).await?)
            }
            Some(Command::BareHttp(args)) => Ok(tools::bare_http(args).await?),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storefront: {e}");
            ExitCode::FAILURE
        }
    }
}
