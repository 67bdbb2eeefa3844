//! `storefront bench-http`: how close a product page served from the L1 cache comes
//! to the HTTP stack's own limit. A bare axum handler that returns a fixed string
//! and stage 3's product page are put, in turn, under the same load generator with
//! the same settings; their requests per second and the ratio are reported.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::routing::get;
use axum::Router;

use super::evolve::{fetch_snapshot, free_port, launch_stage, machine, today, OpsDelta};
use super::http::HttpClient;
use super::stats::{ms, Row};
use super::{LoadOptions, Loadgen, Mode, Workload};

/// The fixed answer of the bare server.
pub const BARE_BODY: &str = "Hello, World!";

/// The bare server: `GET /` and `GET /products/{id}` answer [`BARE_BODY`], nothing
/// else happens. Its requests per second are what axum, hyper and tokio can do on
/// this machine with no application work.
pub fn bare_router() -> Router {
    Router::new()
        .route("/", get(|| async { BARE_BODY }))
        .route("/products/{id}", get(|| async { BARE_BODY }))
}

/// Serves [`bare_router`] at `addr` until Ctrl-C or SIGTERM.
pub async fn serve_bare(addr: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    axum::serve(storefront_server::no_delay(listener), bare_router())
        .with_graceful_shutdown(storefront_server::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// A child process, killed when dropped.
#[derive(Debug)]
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The settings of a comparison.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Requests in flight (closed loop).
    pub concurrency: usize,
    /// Rounds of each server, alternating.
    pub rounds: u32,
    /// Length of one round.
    pub round: Duration,
    /// Warm-up of each server before the first round.
    pub warmup: Duration,
    /// The product whose page is asked for.
    pub product: u64,
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/<pid>/stat` (Linux; `None` elsewhere).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "pid (comm) ": state is field 3, utime 14 and stime 15, in
    // USER_HZ ticks (100 per second on Linux).
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One server's figures across the rounds.
#[derive(Clone, Debug, Default)]
pub struct Side {
    /// Each round's totals.
    pub rounds: Vec<Row>,
    /// Each round's server CPU time per request, in microseconds.
    pub server_cpu_us: Vec<f64>,
    /// Each round's load-generator CPU time per request, in microseconds.
    pub client_cpu_us: Vec<f64>,
}

impl Side {
    /// The median server CPU time per request, µs (0 when unknown).
    pub fn median_server_cpu_us(&self) -> f64 {
        median(self.server_cpu_us.clone())
    }

    /// The median load-generator CPU time per request, µs (0 when unknown).
    pub fn median_client_cpu_us(&self) -> f64 {
        median(self.client_cpu_us.clone())
    }

    /// The median requests per second.
    pub fn median_rps(&self) -> f64 {
        median(self.rounds.iter().map(|r| r.rps).collect())
    }
}

/// Runs the comparison and returns it as Markdown.
pub async fn bench_http(
    options: &BenchOptions,
    command: &str,
    catalog: &std::sync::Arc<dyn crate::stages::StageCatalog>,
) -> Result<String, String> {
    if options.rounds == 0 {
        return Err("--rounds: give at least 1".into());
    }
    let machine = machine();
    let port = free_port()?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let bare_url = format!("http://127.0.0.1:{port}");
    let mut bare = ChildGuard(
        Command::new(exe)
            .args(["bare-http", "--addr", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the bare server: {e}"))?,
    );
    wait_bare(&mut bare.0, &bare_url).await?;
    eprintln!("starting stage 3 (PostgreSQL + Redis) ...");
    let shop = launch_stage(catalog, 3).await?;
    let path = format!("/products/{}", options.product);
    let warm = HttpClient::new(&shop.url, Duration::from_secs(10))?;
    for _ in 0..3 {
        let a = warm.get(&path, None).await?;
        if a.status != 200 {
            return Err(format!("{path} answered {} on stage 3", a.status));
        }
    }
    let load = |target: &str| {
        Loadgen::connect(LoadOptions {
            target: target.to_owned(),
            mode: Mode::Closed {
                concurrency: options.concurrency,
            },
            workload: Workload::Raw { path: path.clone() },
            ..LoadOptions::default()
        })
    };
    let bare_load = load(&bare_url).await?;
    let shop_load = load(&shop.url).await?;
    bare_load.run(options.warmup, Some("bare warm")).await;
    shop_load.run(options.warmup, Some("page warm")).await;
    let ops_http = shop.ops_client(Duration::from_secs(10))?;
    let before = fetch_snapshot(&ops_http).await;
    let (mut bare_side, mut shop_side) = (Side::default(), Side::default());
    for round in 0..options.rounds {
        // Alternate which goes first, so neither always runs on a warmer machine.
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_bare in order {
            let (gen, side, label, pid) = if is_bare {
                (&bare_load, &mut bare_side, "bare", bare.0.id())
            } else {
                (&shop_load, &mut shop_side, "page", shop.pid())
            };
            let me = std::process::id();
            let (server0, client0) = (cpu_seconds(pid), cpu_seconds(me));
            let report = gen.run(options.round, Some(label)).await;
            let (server1, client1) = (cpu_seconds(pid), cpu_seconds(me));
            let per_request = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if report.total.count > 0 => {
                    Some((b - a) * 1e6 / report.total.count as f64)
                }
                _ => None,
            };
            side.server_cpu_us.extend(per_request(server0, server1));
            side.client_cpu_us.extend(per_request(client0, client1));
            side.rounds.push(report.total);
        }
    }
    let after = fetch_snapshot(&ops_http).await;
    let ops = OpsDelta::between(
        before.as_ref().map(|s| &s.totals),
        after.as_ref().map(|s| &s.totals),
    );
    shop.stop().await;
    drop(bare);

    Ok(render(
        options,
        &Header {
            command,
            machine: &machine,
            path: &path,
        },
        &bare_side,
        &shop_side,
        &ops,
    ))
}

/// What the page says of the run besides the figures.
struct Header<'a> {
    command: &'a str,
    machine: &'a str,
    path: &'a str,
}

/// The comparison as Markdown: the run, a row per round, the medians, CPU time
/// per request, errors and the cache's figures.
fn render(
    options: &BenchOptions,
    header: &Header<'_>,
    bare_side: &Side,
    shop_side: &Side,
    ops: &OpsDelta,
) -> String {
    let Header {
        command,
        machine,
        path,
    } = header;
    let (b, s) = (bare_side.median_rps(), shop_side.median_rps());
    let ratio = if b > 0.0 { s / b } else { 0.0 };
    let mut out = String::new();
    let _ = writeln!(out, "- Command: `{command}`");
    let _ = writeln!(out, "- Machine: {machine}");
    let _ = writeln!(out, "- Date: {}", today());
    let _ = writeln!(
        out,
        "- Load: closed loop, {} requests in flight, GET {path}, {} rounds of {} s each, alternating (after {} s warm-up each); the load generator runs on the same machine.\n",
        options.concurrency,
        options.rounds,
        options.round.as_secs_f64(),
        options.warmup.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| round | bare axum req/s | p50 / p99 ms | product page from L1 req/s | p50 / p99 ms | ratio |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for (i, (x, y)) in bare_side.rounds.iter().zip(&shop_side.rounds).enumerate() {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} / {} | {:.0} | {} / {} | {:.2} |",
            i + 1,
            x.rps,
            ms(x.p50_ms),
            ms(x.p99_ms),
            y.rps,
            ms(y.p50_ms),
            ms(y.p99_ms),
            if x.rps > 0.0 { y.rps / x.rps } else { 0.0 }
        );
    }
    let _ = writeln!(
        out,
        "| **median** | **{b:.0}** | | **{s:.0}** | | **{ratio:.2}** |\n"
    );
    let errors: u64 = bare_side
        .rounds
        .iter()
        .chain(&shop_side.rounds)
        .map(|r| r.errors)
        .sum();
    let (cb, cs) = (
        bare_side.median_server_cpu_us(),
        shop_side.median_server_cpu_us(),
    );
    if cb > 0.0 && cs > 0.0 {
        let _ = writeln!(
            out,
            "CPU time per request (median of the rounds, from /proc): bare server {cb:.1} µs, storefront {cs:.1} µs; the load generator {:.1} µs (bare rounds) and {:.1} µs (page rounds). On cores of its own the product page would answer {:.2} of the bare handler's rate (the ratio of server CPU per request).\n",
            bare_side.median_client_cpu_us(),
            shop_side.median_client_cpu_us(),
            cb / cs
        );
    }
    let _ = writeln!(
        out,
        "Errors: {errors}. Database queries per product request during the rounds: {}; L1 hit ratio: {}.",
        ops.db_per_request
            .map_or_else(|| "n/a (no /ops/data.json)".to_owned(), |v| format!("{v:.3}")),
        ops.l1_ratio
            .map_or_else(|| "n/a".to_owned(), |v| format!("{:.1}%", v * 100.0)),
    );
    out
}

/// Waits until the bare server answers on `/` (it has no `/readyz`).
async fn wait_bare(child: &mut Child, url: &str) -> Result<(), String> {
    let http = HttpClient::new(url, Duration::from_secs(2))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the bare server exited ({status})"));
        }
        if http.get("/", None).await.is_ok() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("the bare server at {url} did not answer in 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
