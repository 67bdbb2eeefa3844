//! The `storefront` command: serve a stage, seed the database, list the stages.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use storefront::app::{self, AppConfig, AppState, Passwords};
use storefront::config::{DatabaseConfig, StageConfig};
use storefront::seed::{self, SeedOptions};
use storefront::server::{Limits, Server};
use storefront::store;

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
struct Target {
    /// Which stage's configuration to use (`storefront stages` lists them).
    #[arg(long, default_value_t = 1)]
    stage: u32,
    /// A stage file to use instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where SQLite keeps its file.
    #[arg(long, default_value = "storefront-data", value_name = "DIR")]
    data_dir: PathBuf,
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
        #[arg(long, value_name = "DURATION", value_parser = storefront::server::parse_duration)]
        drain_timeout: Option<Duration>,
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
        #[arg(long, value_name = "DURATION", value_parser = storefront::server::parse_duration)]
        drain_timeout: Option<Duration>,
    },
    /// Move the sharded orders (stage 7) to more databases, online; or roll back.
    Reshard(storefront::reshard_cli::ReshardArgs),
    /// Drive a running shop with user journeys and measure it.
    Loadgen(storefront::loadgen::cli::LoadgenArgs),
    /// Run stages in turn under the same load and write docs/evolution.md.
    Evolve(storefront::loadgen::cli::EvolveArgs),
    /// Requests per second of a product page from L1 against a bare axum handler.
    BenchHttp(storefront::loadgen::cli::BenchArgs),
    /// The bare axum server that bench-http compares with.
    #[command(hide = true)]
    BareHttp(storefront::loadgen::cli::BareArgs),
}

fn load(target: &Target) -> Result<StageConfig, Box<dyn std::error::Error>> {
    Ok(match &target.config {
        Some(path) => StageConfig::load(path)?,
        None => StageConfig::builtin(target.stage)?,
    })
}

fn describe(db: &DatabaseConfig, data_dir: &std::path::Path) -> String {
    match db {
        DatabaseConfig::Sqlite { file, .. } => {
            format!("SQLite at {}", data_dir.join(file).display())
        }
        DatabaseConfig::Postgres { .. } => {
            let url = db.postgres_url().unwrap_or_default();
            // Do not print a password.
            let shown = match (url.find("://"), url.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
                _ => url,
            };
            format!("PostgreSQL at {shown}")
        }
    }
}

async fn serve(
    target: Target,
    addr: Option<SocketAddr>,
    drain_timeout: Option<Duration>,
    instance: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = load(&target)?;
    if let Some(drain) = drain_timeout {
        config.server.drain_timeout_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX);
    }
    let addr = addr.unwrap_or(config.server.addr);
    if config.gateway.is_some() && !instance {
        return storefront::supervisor::run_stage(
            &config,
            target.stage,
            target.config.as_deref(),
            &target.data_dir,
            addr,
        )
        .await;
    }
    tracing::info!(
        stage = config.stage.number,
        "{}: opening {}",
        config.stage.title,
        describe(&config.database, &target.data_dir)
    );
    let ops = std::sync::Arc::new(storefront::compose::ops_for(&config));
    let opened = store::open_parts(&config.databases(), &target.data_dir).await?;
    // Stage 7: the shard figures on the ops page, the admin pages over every shard.
    let admin = app::admin::Admin::from_config(
        config.admin.as_ref(),
        opened.sharding.clone().map(|s| {
            std::sync::Arc::new(s) as std::sync::Arc<dyn store::sharded::analytics::OrderAnalytics>
        }),
    );
    if let Some(sharding) = opened.sharding {
        storefront::compose::watch_shards(&ops, sharding);
    }
    let store = storefront::store::MeteredStore::wrap(opened.store, ops.db_query_counter());
    let store = with_caches(store, &config, &ops).await?;
    seed_if_empty(store.as_ref(), &config).await?;
    let state = AppState::new(
        store,
        AppConfig {
            page_size: config.server.page_size,
            stage: (config.stage.number, config.stage.title.clone()),
            auth: config.auth.clone(),
            // An instance behind the stage's gateway (or stages/04-load-balancing/nginx.conf) takes
            // the client's address from the proxy's X-Forwarded-For.
            trust_forwarded: instance && config.gateway.is_some(),
            ..AppConfig::default()
        },
    )
    .with_ops(ops.clone());
    ops.start();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(
        "stage {} ({}) serving at http://{addr}",
        config.stage.number,
        config.stage.title
    );
    let app = app::router(state).merge(app::admin::router(admin));
    let server = Arc::new(Server::new(
        Limits::from_config(&config.server).fit_to_file_limit(1),
    ));
    let figures = Arc::clone(&server);
    ops.set_connections(Arc::new(move || figures.stats()));
    server
        .serve(listener, app, storefront::server::shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Stage 3 on: the caches in front of `store`, with their figures on `ops`.
async fn with_caches(
    store: Arc<dyn store::Store>,
    config: &StageConfig,
    ops: &Arc<storefront::ops::Ops>,
) -> Result<Arc<dyn store::Store>, Box<dyn std::error::Error>> {
    let Some(cache) = &config.cache else {
        return Ok(store);
    };
    tracing::info!(
        "caches: L1 in this process, L2 and invalidations in Redis under \"{}\"",
        cache.namespace
    );
    let cached = storefront::cache::CachedStore::connect(store, cache)
        .await
        .map_err(|e| {
            format!(
                "cannot set up the caches (Redis at {}): {e}",
                cache.redis_url()
            )
        })?;
    let cached = Arc::new(cached);
    ops.set_cache(cached.clone());
    Ok(cached)
}

/// An empty catalog gets the stage's demo products and ten accounts.
async fn seed_if_empty(
    store: &dyn store::Store,
    config: &StageConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    let seed_if_empty = config.database.seed_if_empty();
    if seed_if_empty > 0 && store.count_products().await? == 0 {
        tracing::info!("the catalog is empty: adding {seed_if_empty} demo products (storefront seed adds more)");
        let options = SeedOptions {
            products: u64::from(seed_if_empty),
            users: 10,
            seed: 42,
        };
        seed::seed(store, options, &Passwords::recommended(), &|_| {}).await?;
    }
    Ok(())
}

async fn seed_command(
    target: Target,
    options: SeedOptions,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = load(&target)?;
    println!(
        "Seeding {} with {} products and {} accounts",
        describe(&config.database, &target.data_dir),
        options.products,
        options.users
    );
    let store = store::open(&config.databases(), &target.data_dir).await?;
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

fn services(action: ServicesAction) -> Result<(), Box<dyn std::error::Error>> {
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

fn stages() -> Result<(), Box<dyn std::error::Error>> {
    for s in StageConfig::all_builtin()? {
        println!(
            "{}. {} (storefront serve --stage {})",
            s.stage.number, s.stage.title, s.stage.number
        );
        println!("   adds:  {}", s.stage.adds);
        println!("   needs: {}", s.stage.needs);
        println!();
    }
    println!("Stages 5 to 7 need `storefront services up` first (PostgreSQL primary and replica, Redis).");
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
                )
                .await
            }
            Some(Command::Serve {
                target,
                addr,
                drain_timeout,
            }) => serve(target, addr, drain_timeout, false).await,
            Some(Command::Instance {
                target,
                addr,
                number,
                drain_timeout,
            }) => match storefront::supervisor::instance_setup() {
                Ok(()) => {
                    tracing::info!("instance {number}");
                    serve(target, Some(addr), drain_timeout, true).await
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
            Some(Command::Reshard(args)) => storefront::reshard_cli::run(args).await,
            Some(Command::Loadgen(args)) => Ok(storefront::loadgen::cli::loadgen(args).await?),
            Some(Command::Evolve(args)) => Ok(storefront::loadgen::cli::evolve(
                args,
                std::sync::Arc::new(storefront::catalog::BuiltinStages),
            )
            .await?),
            Some(Command::BenchHttp(args)) => Ok(storefront::loadgen::cli::bench_http(
                args,
                std::sync::Arc::new(storefront::catalog::BuiltinStages),
            )
            .await?),
            Some(Command::BareHttp(args)) => Ok(storefront::loadgen::cli::bare_http(args).await?),
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
