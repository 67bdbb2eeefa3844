//! The layer-4 hop measured (`storefront l4 bench`): what a balancer adds
//! between a client and a server, for our nftables datapath, our userspace
//! datapath, HAProxy (`mode tcp`) and nginx (`stream`), side by side in one
//! run on the same topology: three hosts (client, balancer, server) in
//! namespaces on a bridge, and the client also straight to the server (the
//! baseline).
//!
//! The server answers every HTTP/1.1 request with a fixed 2-byte body,
//! written by hand (no framework: the hop is what is measured, not the
//! server). The client runs `connections` kept-alive connections, each
//! sending a request as soon as the previous answer is read, for `seconds`,
//! and records every request's latency; then the same with a new connection
//! for every request (what an L4 balancer spends most on: each new flow).
//! Each proxy gets one thread or process (HAProxy `nbthread 1`, nginx
//! `worker_processes 1`, the userspace balancer a single-threaded runtime);
//! the kernel's datapath runs in the softirq of whichever core the packet
//! lands on. On a 2-core host the client, the server and the hop share the
//! cores: the figures are ratios to each other and to the baseline, not
//! capacities.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scalekit_ring::Maglev;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::balancer::{Control, Options};
use crate::net::{NetError, Network};
use crate::nft;

/// How to measure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchOptions {
    /// Kept-alive connections at once.
    pub connections: usize,
    /// Seconds per measurement.
    pub seconds: f64,
    /// Seconds of load before each (discarded).
    pub warmup: f64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            connections: 16,
            seconds: 5.0,
            warmup: 1.0,
        }
    }
}

/// One path's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct PathFigures {
    /// `direct`, `nft`, `user`, `haproxy`, `nginx`.
    pub name: String,
    /// Requests a second over kept-alive connections.
    pub rps: f64,
    /// Their latency, median and 99th percentile, microseconds.
    pub p50_us: f64,
    /// The 99th percentile.
    pub p99_us: f64,
    /// Requests a second with a new connection each.
    pub new_conn_rps: f64,
    /// Their median latency (connect included), microseconds.
    pub new_conn_p50_us: f64,
    /// Requests that failed (both loads).
    pub errors: u64,
}

const PORT: u16 = 8080;
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// The server: every request, whatever it is, gets [`RESPONSE`].
async fn server(listener: TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let mut have = 0usize;
            loop {
                let Ok(n) = s.read(&mut buf[have..]).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                have += n;
                // Answer each complete request in the buffer.
                while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                    if s.write_all(RESPONSE).await.is_err() {
                        return;
                    }
                    buf.copy_within(end + 4..have, 0);
                    have -= end + 4;
                }
                if have == buf.len() {
                    return;
                }
            }
        });
    }
}

/// Reads one [`RESPONSE`]-sized answer.
async fn answer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; RESPONSE.len()];
    s.read_exact(&mut buf).await.is_ok() && buf == RESPONSE
}

/// Latencies in microseconds, sorted: the value at quantile `q`.
fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64
}

/// `connections` loops until `until`; with `reuse` each keeps its
/// connection, else opens one per request. The latencies (microseconds,
/// sorted) and the errors.
async fn load(
    target: SocketAddr,
    connections: usize,
    until: Instant,
    reuse: bool,
) -> (Vec<u64>, u64) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut conn: Option<TcpStream> = None;
            while Instant::now() < until {
                let started = Instant::now();
                if conn.is_none() {
                    let connect = TcpStream::connect(target);
                    match tokio::time::timeout(Duration::from_secs(2), connect).await {
                        Ok(Ok(s)) => {
                            let _ = s.set_nodelay(true);
                            conn = Some(s);
                        }
                        _ => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(s) = conn.as_mut() else { continue };
                let ok = s.write_all(REQUEST).await.is_ok()
                    && tokio::time::timeout(Duration::from_secs(2), answer(s))
                        .await
                        .unwrap_or(false);
                if ok {
                    latencies.push(started.elapsed().as_micros().max(1) as u64);
                } else {
                    errors += 1;
                    conn = None;
                }
                if !reuse {
                    conn = None;
                }
            }
            (latencies, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(Ok((l, e))) = tasks.join_next().await {
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    (all, errors)
}

/// A runtime for one thread in a namespace.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("a runtime: {e}"))
}

/// Measures `target` from the client host.
fn measure(
    net: &Network,
    name: &str,
    target: SocketAddr,
    o: BenchOptions,
) -> Result<PathFigures, String> {
    let name = name.to_owned();
    let measured = net.run_in("client", move || {
        runtime().map(|rt| {
            rt.block_on(async move {
                let span = Duration::from_secs_f64(o.seconds);
                let warm = Duration::from_secs_f64(o.warmup);
                load(target, o.connections, Instant::now() + warm, true).await;
                let started = Instant::now();
                let (kept, e1) = load(target, o.connections, started + span, true).await;
                let kept_rps = kept.len() as f64 / started.elapsed().as_secs_f64();
                // New connections: half as many at once (each costs a
                // handshake, and a conntrack entry or a proxy's socket pair).
                let started = Instant::now();
                let fresh_conns = o.connections.div_ceil(2);
                let (fresh, e2) = load(target, fresh_conns, started + span, false).await;
                let fresh_rps = fresh.len() as f64 / started.elapsed().as_secs_f64();
                PathFigures {
                    name,
                    rps: kept_rps,
                    p50_us: quantile(&kept, 0.5),
                    p99_us: quantile(&kept, 0.99),
                    new_conn_rps: fresh_rps,
                    new_conn_p50_us: quantile(&fresh, 0.5),
                    errors: e1 + e2,
                }
            })
        })
    });
    measured.map_err(|NetError(e)| e)?
}

/// A process in host `host`, killed (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(net: &Network, host: &str, program: &str, args: &[&str]) -> Result<Proc, String> {
    net.command(host, program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Proc)
        .map_err(|e| format!("cannot start {program}: {e}"))
}

/// Waits (5 s at most) until something accepts on `addr` from the client.
fn wait_listening(net: &Network, addr: SocketAddr) -> Result<(), String> {
    let up = net
        .run_in("client", move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
        .map_err(|NetError(e)| e)?;
    if up {
        Ok(())
    } else {
        Err(format!("nothing listens on {addr}"))
    }
}

/// A thread serving in a host: its outcome, or why it could not enter.
type Serving = std::thread::JoinHandle<Result<Result<(), String>, NetError>>;

/// A thread in host `host` running `serve` on a single-threaded runtime
/// until `stop` is notified.
fn serve_in<F>(
    net: &Network,
    host: &str,
    stop: Arc<tokio::sync::Notify>,
    serve: impl FnOnce() -> F + Send + 'static,
) -> Result<Serving, String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    net.spawn_in(host, move || {
        runtime()?.block_on(async move {
            tokio::select! {
                r = serve() => r,
                () = stop.notified() => Ok(()),
            }
        })
    })
    .map_err(|NetError(e)| e)
}

/// Runs every path in turn; the figures in order: direct, nft, user,
/// haproxy, nginx (a proxy that is not installed is left out, with a note).
pub fn run(o: BenchOptions) -> Result<(Vec<PathFigures>, Vec<String>), String> {
    let net = Network::build(&["client", "lb", "srv"]).map_err(|NetError(e)| e)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let addr = |h: &str| net.host(h).map_or(Ipv4Addr::UNSPECIFIED, |h| h.addr);
    let (lb, srv) = (addr("lb"), addr("srv"));
    let backend = SocketAddr::from((srv, PORT));
    let mut notes = Vec::new();

    // The server, until the run ends.
    let server_stop = Arc::new(tokio::sync::Notify::new());
    let server_thread = serve_in(&net, "srv", server_stop.clone(), move || async move {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT));
        let listener = TcpListener::bind(any)
            .await
            .map_err(|e| format!("the bench server's port: {e}"))?;
        server(listener).await;
        Ok(())
    })?;
    wait_listening(&net, backend)?;
    let mut out = vec![measure(&net, "direct", backend, o)?];

    // Our kernel datapath: the virtual IP on the balancer, DNAT through the map.
    net.sysctl("lb", "net.ipv4.ip_forward", "1")
        .map_err(|NetError(e)| e)?;
    let vip = net.vip();
    let status = net
        .command("lb", "ip")
        .args(["addr", "add", &format!("{vip}/32"), "dev", "eth0"])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("cannot put {vip} on the balancer"));
    }
    let balancer = nft::Balancer {
        vip,
        port: PORT,
        own: lb,
        dev: "eth0".into(),
    };
    nft::apply(net.command("lb", "nft"), &balancer.ruleset())?;
    let table = Maglev::with_nodes([backend]).map_err(|e| e.to_string())?;
    nft::apply(net.command("lb", "nft"), &nft::fill(&nft::slots(&table)))?;
    out.push(measure(&net, "nft", SocketAddr::from((vip, PORT)), o)?);
    nft::apply(
        net.command("lb", "nft"),
        &format!("delete table ip {}\n", nft::TABLE),
    )?;

    // Our userspace datapath, one thread.
    let user_port = 9001;
    let control = Arc::new(Control::new(&[backend], Options::default())?);
    let user_stop = Arc::new(tokio::sync::Notify::new());
    let user = serve_in(&net, "lb", user_stop.clone(), move || async move {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, user_port));
        let listener = TcpListener::bind(any)
            .await
            .map_err(|e| format!("the userspace balancer's port: {e}"))?;
        crate::user::serve(listener, control, std::future::pending())
            .await
            .map_err(|e| e.to_string())
    })?;
    let target = SocketAddr::from((lb, user_port));
    wait_listening(&net, target)?;
    out.push(measure(&net, "user", target, o)?);
    user_stop.notify_one();
    let _ = user.join();

    // HAProxy, mode tcp, one thread.
    let hap_port = 9002;
    let hap_conf = dir.path().join("haproxy.cfg");
    std::fs::write(
        &hap_conf,
        format!(
            "global\n  maxconn 4096\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\nfrontend vip\n  bind {lb}:{hap_port}\n  default_backend pool\nbackend pool\n  server s1 {backend}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let conf = hap_conf.to_string_lossy().into_owned();
    match start(&net, "lb", "haproxy", &["-db", "-f", &conf]) {
        Ok(_running) => {
            let target = SocketAddr::from((lb, hap_port));
            wait_listening(&net, target)?;
            out.push(measure(&net, "haproxy", target, o)?);
        }
        Err(e) => notes.push(format!("HAProxy left out: {e}")),
    }

    // nginx stream, one worker.
    let ngx_port = 9003;
    let module = "/usr/lib/nginx/modules/ngx_stream_module.so";
    let ngx_conf = dir.path().join("nginx.conf");
    let load_module = if std::path::Path::new(module).exists() {
        format!("load_module {module};\n")
    } else {
        String::new()
    };
    std::fs::write(
        &ngx_conf,
        format!(
            "{load_module}daemon off;\nmaster_process on;\nworker_processes 1;\npid {pid};\nerror_log stderr error;\nevents {{ worker_connections 4096; }}\nstream {{\n  upstream pool {{ server {backend}; }}\n  server {{ listen {lb}:{ngx_port}; proxy_pass pool; proxy_connect_timeout 2s; proxy_timeout 30s; }}\n}}\n",
            pid = dir.path().join("nginx.pid").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let nginx = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|p| Command::new(p).arg("-v").output().is_ok());
    let prefix = dir.path().to_string_lossy().into_owned();
    let conf = ngx_conf.to_string_lossy().into_owned();
    match nginx.map(|n| start(&net, "lb", n, &["-e", "stderr", "-p", &prefix, "-c", &conf])) {
        Some(Ok(_running)) => {
            let target = SocketAddr::from((lb, ngx_port));
            wait_listening(&net, target)?;
            out.push(measure(&net, "nginx", target, o)?);
        }
        Some(Err(e)) => notes.push(format!("nginx left out: {e}")),
        None => notes.push("nginx left out: not installed".into()),
    }
    server_stop.notify_one();
    let _ = server_thread.join();
    Ok((out, notes))
}

/// The figures as a Markdown table, each hop's added median latency against
/// the direct path and its throughput as a share of it.
pub fn table(figures: &[PathFigures]) -> String {
    let direct = figures.iter().find(|f| f.name == "direct");
    let mut out = String::from(
        "| path | kept-alive requests/s | of direct | p50 µs | added p50 µs | p99 µs | new connections/s | of direct | p50 µs (with connect) | errors |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for f in figures {
        let (share, added, share_new) = direct.map_or((1.0, 0.0, 1.0), |d| {
            (
                f.rps / d.rps.max(f64::MIN_POSITIVE),
                f.p50_us - d.p50_us,
                f.new_conn_rps / d.new_conn_rps.max(f64::MIN_POSITIVE),
            )
        });
        out.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.0} | {:+.0} | {:.0} | {:.0} | {:.2} | {:.0} | {} |\n",
            f.name,
            f.rps,
            share,
            f.p50_us,
            added,
            f.p99_us,
            f.new_conn_rps,
            share_new,
            f.new_conn_p50_us,
            f.errors
        ));
    }
    out
}

/// When one of `n` gateways leaves: the share of the table's slots that
/// change gateway, against the least possible (the leaver's own slots: new
/// flows that hashed to it must go elsewhere). Maglev moves its own plus the
/// few that its refill order shifts. For `n` from 2 to `max`.
pub fn flows_moved(max: u32) -> Vec<(u32, f64, f64)> {
    (2..=max)
        .filter_map(|n| {
            let gateways: Vec<SocketAddr> = (0..n)
                .map(|i| SocketAddr::from(([10, 88, 0, 20 + i as u8], PORT)))
                .collect();
            let before = Maglev::with_nodes(gateways.iter().copied()).ok()?;
            let leaver = *gateways.last()?;
            let after = Maglev::with_nodes(gateways[..gateways.len() - 1].iter().copied()).ok()?;
            let (b, a): (Vec<&SocketAddr>, Vec<&SocketAddr>) =
                (before.entries().collect(), after.entries().collect());
            let total = b.len() as f64;
            let moved = b.iter().zip(&a).filter(|(x, y)| x != y).count() as f64;
            let own = b.iter().filter(|x| ***x == leaver).count() as f64;
            Some((n, moved / total, own / total))
        })
        .collect()
}

/// [`flows_moved`] as a Markdown table.
pub fn flows_moved_table(max: u32) -> String {
    let mut out = String::from(
        "| gateways | slots moved when one leaves | its own (the least) | moved over least |\n| ---: | ---: | ---: | ---: |\n",
    );
    for (n, moved, own) in flows_moved(max) {
        out.push_str(&format!(
            "| {n} | {:.2}% | {:.2}% | {:.3} |\n",
            moved * 100.0,
            own * 100.0,
            moved / own.max(f64::MIN_POSITIVE)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaver_moves_its_own_flows_and_few_others() {
        for (n, moved, own) in flows_moved(16) {
            // Its own slots always move; Maglev's refill moves a few more.
            assert!(moved >= own, "{n}: {moved} < {own}");
            assert!(moved <= own * 1.5, "{n}: {moved} against {own}");
            assert!((own - 1.0 / f64::from(n)).abs() < 0.01, "{n}: {own}");
        }
        assert!(flows_moved_table(4).starts_with("| gateways |"));
    }

    #[test]
    fn quantiles_of_sorted_latencies() {
        assert_eq!(quantile(&[], 0.5), 0.0);
        assert_eq!(quantile(&[1, 2, 3, 4, 100], 0.5), 3.0);
        assert_eq!(quantile(&[1, 2, 3, 4, 100], 0.99), 100.0);
    }
}
