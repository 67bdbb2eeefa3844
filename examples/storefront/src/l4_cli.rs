//! Stage 8 on the command line: `serve --stage 8` (the network, the
//! gateways, the balancers and the virtual IP: `storefront_l4::stage`) and
//! `storefront l4 balance` (one balancer host's daemon, which `serve` starts
//! in each balancer's namespace; `--datapath user` is the userspace TCP
//! balancer, usable on its own).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use storefront_l4::balancer::Options;
use storefront_l4::config::Datapath;
use storefront_l4::daemon::{self, DaemonOptions};
use storefront_l4::stage::{Layout, Stage};
use storefront_stage::compose::BoxError;
use storefront_stage::config::StageConfig;

use crate::Target;

/// `storefront l4 ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct L4Args {
    #[command(subcommand)]
    command: L4Command,
}

#[derive(Debug, clap::Subcommand)]
enum L4Command {
    /// One balancer host: checks the gateways and keeps the datapath's
    /// Maglev table (the kernel's nftables map, or a userspace balancer on
    /// `--port`) to the healthy ones, until Ctrl-C or SIGTERM.
    Balance {
        /// The virtual IP (nft: the address whose traffic is balanced).
        #[arg(long)]
        vip: Ipv4Addr,
        /// The port balanced.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// This host's own address (nft: connections to the gateways come from it).
        #[arg(long)]
        own: Ipv4Addr,
        /// Its interface (nft).
        #[arg(long, default_value = "eth0")]
        dev: String,
        /// The gateways, `host:port,host:port`.
        #[arg(long, value_delimiter = ',', required = true)]
        gateways: Vec<SocketAddr>,
        /// `nft` (the kernel's DNAT) or `user` (a TCP balancer here).
        #[arg(long, default_value = "nft")]
        datapath: Datapath,
        /// Milliseconds between rounds of checks.
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
        /// One check's limit, milliseconds.
        #[arg(long, default_value_t = 150)]
        timeout_ms: u64,
        /// Failed checks in a row that take a gateway out.
        #[arg(long, default_value_t = 2)]
        fall: u32,
        /// Passed checks in a row that bring it back.
        #[arg(long, default_value_t = 2)]
        rise: u32,
        /// Where to answer `GET /status` (JSON) and `POST
        /// /drain?gateway=host:port[&on=false]`.
        #[arg(long)]
        status: Option<SocketAddr>,
        /// The environment variable whose token `POST /drain` needs
        /// (`Authorization: Bearer <token>`); unset: draining is refused.
        #[arg(long, default_value = "SCALEKIT_ADMIN_TOKEN")]
        token_env: String,
    },
    /// The layer-4 hop measured: our nftables and userspace datapaths,
    /// HAProxy (mode tcp) and nginx (stream), against the direct path, in
    /// one run on a network of namespaces (needs root). Prints a Markdown
    /// table.
    Bench(BenchArgs),
}

/// `storefront l4 bench`: the options.
#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Kept-alive connections at once (half as many open one per request).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of load before each.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

/// Runs `storefront l4 ...`.
pub(crate) async fn run(args: L4Args) -> Result<(), BoxError> {
    match args.command {
        L4Command::Bench(b) => {
            if !(1..=4_096).contains(&b.connections)
                || !(0.1..=600.0).contains(&b.seconds)
                || !(0.0..=60.0).contains(&b.warmup)
            {
                return Err(
                    "give 1 to 4,096 --connections, 0.1 to 600 --seconds, 0 to 60 --warmup".into(),
                );
            }
            let options = storefront_l4::bench::BenchOptions {
                connections: b.connections,
                seconds: b.seconds,
                warmup: b.warmup,
            };
            let (figures, notes) =
                tokio::task::spawn_blocking(move || storefront_l4::bench::run(options)).await??;
            println!("{}", storefront_l4::bench::table(&figures));
            for n in notes {
                println!("- {n}");
            }
            println!(
                "\nWhen a gateway leaves (the Maglev table of {} slots):\n\n{}",
                storefront_l4::nft::SLOTS,
                storefront_l4::bench::flows_moved_table(8)
            );
            Ok(())
        }
        L4Command::Balance {
            vip,
            port,
            own,
            dev,
            gateways,
            datapath,
            interval_ms,
            timeout_ms,
            fall,
            rise,
            status,
            token_env,
        } => {
            if !(10..=60_000).contains(&interval_ms) || timeout_ms == 0 || timeout_ms > interval_ms
            {
                return Err(format!(
                    "--interval-ms {interval_ms} --timeout-ms {timeout_ms}: give an interval of 10 to 60,000 ms and a timeout of 1 ms up to it"
                )
                .into());
            }
            let options = DaemonOptions {
                vip,
                port,
                own,
                dev,
                gateways,
                datapath,
                options: Options {
                    interval: Duration::from_millis(interval_ms),
                    timeout: Duration::from_millis(timeout_ms),
                    fall: fall.clamp(1, 10),
                    rise: rise.clamp(1, 10),
                },
                status,
                control_token: std::env::var(&token_env).ok(),
            };
            tracing::info!(
                "balancing {vip}:{port} over {} gateways ({datapath} datapath)",
                options.gateways.len()
            );
            daemon::run(options, storefront_server::shutdown_signal()).await?;
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// The stage file the gateways run: the one given (`--config`) or the
/// built-in one, with its `_env` keys resolved from this environment.
fn gateway_file(target: &Target) -> Result<String, BoxError> {
    let text = match &target.config {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => storefront_stage::config::BuiltinStage::find(target.stage)
            .map(|s| s.file.to_owned())
            .ok_or_else(|| format!("stage {} is not built in", target.stage))?,
    };
    let mut doc: toml::Table = toml::from_str(&text)?;
    storefront_l4::stage::resolve_env(&mut doc, &|var| std::env::var(var).ok());
    Ok(toml::to_string(&doc)?)
}

/// `serve` for a stage with `[l4]`: builds it, says where the shop is, and
/// runs until Ctrl-C or SIGTERM.
pub(crate) async fn serve(config: &StageConfig, target: &Target) -> Result<(), BoxError> {
    let l4 = config.l4.clone().ok_or("this stage has no [l4] section")?;
    storefront_l4::net::available()?;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this program to start the gateways: {e}"))?;
    let gateway_args: Vec<OsString> = vec![
        "--data-dir".into(),
        std::path::absolute(&target.data_dir)?.into(),
    ];
    let layout = Layout {
        l4,
        exe,
        gateway_file: gateway_file(target)?,
        gateway_args,
        ready_timeout: Duration::from_secs(120),
        logs: None,
    };
    tracing::info!(
        "stage {} ({}): building the network, {} gateways and {} balancers",
        config.stage.number,
        config.stage.title,
        layout.l4.gateways,
        layout.l4.balancers
    );
    let started = tokio::select! {
        s = Stage::start(&layout) => s?,
        () = storefront_server::shutdown_signal() => return Ok(()),
    };
    tracing::info!(
        "stage {}: the shop answers at http://{} (the virtual IP; balancers' status at {})",
        config.stage.number,
        started.vip(layout.l4.port),
        started
            .status_addrs()
            .iter()
            .map(|a| format!("http://{a}/status"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The ops routes on the stage's own address: what the balancers see.
    let ops = storefront_l4::ops::OpsState::new(
        started.vip(layout.l4.port),
        started
            .status_addrs()
            .into_iter()
            .enumerate()
            .map(|(i, a)| (format!("lb{}", i + 1), a))
            .collect(),
        config.ops.as_ref(),
    );
    tracing::info!(
        "stage {}: ops at http://{}/ops",
        config.stage.number,
        config.server.addr
    );
    storefront_l4::ops::serve(
        config.server.addr,
        ops,
        storefront_server::shutdown_signal(),
    )
    .await?;
    tracing::info!("stopping the balancers, then the gateways");
    let grace = Duration::from_millis(config.server.drain_timeout_ms) + Duration::from_secs(3);
    tokio::task::spawn_blocking(move || started.stop(grace)).await?;
    tracing::info!("stopped");
    Ok(())
}
