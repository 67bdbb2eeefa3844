//! The server's connection limits (`storefront_server`): timeouts, the cap and
//! the drain against an in-process app on port 0; then the real `storefront serve`
//! holding 2,000 idle sockets under a 1,024-descriptor limit, and stopping on
//! SIGTERM within its drain deadline while clients hold connections open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use common::procs::{free_addr, Http};
use storefront_server::{ConnStats, Drained, Limits, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

/// An app with a route that answers when the test says so.
fn app(release: Arc<Notify>, entered: Arc<Notify>) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/wait",
            get(move || async move {
                entered.notify_one();
                release.notified().await;
                "done"
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
}

/// A server on port 0, serving until `stop` is sent.
struct Running {
    addr: SocketAddr,
    server: Arc<Server>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<Drained>>,
    release: Arc<Notify>,
    entered: Arc<Notify>,
}

async fn start(limits: Limits) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server::new(limits));
    let (stop, stopped) = oneshot::channel::<()>();
    let (release, entered) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let router = app(release.clone(), entered.clone());
    let task = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .serve(listener, router, async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    Running {
        addr,
        server,
        stop: Some(stop),
        task,
        release,
        entered,
    }
}

impl Running {
    /// Waits (bounded) until the server's figures satisfy `ok`.
    async fn until(&self, what: &str, ok: impl Fn(&ConnStats) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok(&self.server.stats()) {
            assert!(
                Instant::now() < deadline,
                "{what}: {:?}",
                self.server.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .expect("connect within 10 s")
        .expect("connect")
}

/// Reads until the server closes the connection (end of stream or reset): what
/// arrived, and when it closed. Fails after `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (String, Instant) {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let at = tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| panic!("the server kept the connection open for {within:?}"));
    (String::from_utf8_lossy(&got).into_owned(), at)
}

/// Sends a whole GET and reads its answer, leaving the connection open.
async fn get_on(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        // The app's answers are short and end with their body.
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer: {got:?}");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return text.into_owned();
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s")
}

#[tokio::test]
async fn half_sent_headers_silent_and_idle_connections_are_closed_after_their_timeouts() {
    let header = Duration::from_millis(400);
    let idle = Duration::from_millis(700);
    let s = start(Limits {
        header_read_timeout: header,
        idle_timeout: idle,
        ..Limits::default()
    })
    .await;
    // Slowloris: headers begun and never finished.
    let mut slow = connect(s.addr).await;
    let slow_opened = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: 1")
        .await
        .unwrap();
    // Connected, and nothing sent.
    let mut silent = connect(s.addr).await;
    let silent_opened = Instant::now();
    // A kept-alive connection after two answers.
    let mut kept = connect(s.addr).await;
    assert!(get_on(&mut kept, "/").await.starts_with("HTTP/1.1 200"));
    assert!(get_on(&mut kept, "/").await.ends_with("ok"));
    let answered = Instant::now();

    let (text, closed) = until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(closed - slow_opened >= header, "{:?}", closed - slow_opened);
    assert_eq!(text, "", "closed without an answer");
    let (_, closed) = until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(closed - silent_opened >= header);
    let (text, closed) = until_closed(&mut kept, Duration::from_secs(10)).await;
    assert!(closed - answered >= idle, "{:?}", closed - answered);
    assert_eq!(text, "");
    s.until("timeouts counted", |st| {
        st.header_timeouts == 2 && st.idle_timeouts == 1 && st.open == 0
    })
    .await;
    assert_eq!(s.server.stats().accepted, 3);
    // The figures in /metrics.
    let ops = storefront_ops::Ops::default();
    let server = s.server.clone();
    ops.set_connections(Arc::new(move || server.stats()));
    let metrics = ops.render_metrics();
    for line in [
        "storefront_connections_open 0",
        "storefront_connections_max 10000",
        "storefront_connections_accepted_total 3",
        "storefront_connections_header_timeouts_total 2",
        "storefront_connections_idle_timeouts_total 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_400_and_the_connection_closes() {
    let s = start(Limits {
        body_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut c = connect(s.addr).await;
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhalf")
        .await
        .unwrap();
    let (text, _) = until_closed(&mut c, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("did not arrive within 300ms"), "{text}");
    assert_eq!(s.server.stats().body_timeouts, 1);
    // A whole body is echoed.
    let mut c = connect(s.addr).await;
    c.write_all(
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nwhole",
    )
    .await
    .unwrap();
    let (text, _) = until_closed(&mut c, Duration::from_secs(10)).await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("whole"),
        "{text}"
    );
}

#[tokio::test]
async fn at_the_cap_the_longest_idle_connection_makes_room_else_503() {
    let s = start(Limits {
        max_connections: 3,
        header_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    })
    .await;
    let mut oldest = connect(s.addr).await;
    s.until("one open", |st| st.open == 1).await;
    let mut idle = connect(s.addr).await;
    let mut sending = connect(s.addr).await;
    sending.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    s.until("three open, two idle", |st| st.open == 3 && st.idle == 2)
        .await;

    // Full: a new client is served, and the connection idle the longest goes.
    let mut new = connect(s.addr).await;
    assert!(get_on(&mut new, "/").await.starts_with("HTTP/1.1 200"));
    let (text, _) = until_closed(&mut oldest, Duration::from_secs(10)).await;
    assert_eq!(text, "");
    assert_eq!(s.server.stats().evicted, 1);

    // Every connection busy or sending headers: the next one gets 503, closed.
    idle.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    new.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    s.until("none idle", |st| st.open == 3 && st.idle == 0)
        .await;
    let mut refused = connect(s.addr).await;
    let (text, _) = until_closed(&mut refused, Duration::from_secs(10)).await;
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("retry-after: 1\r\n"), "{text}");
    assert!(
        text.ends_with("too many connections; try again shortly.\n"),
        "{text}"
    );
    let stats = s.server.stats();
    assert_eq!(
        (stats.refused, stats.open, stats.max_connections),
        (1, 3, 3)
    );
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_drops_the_rest_at_the_deadline() {
    let mut s = start(Limits {
        drain_timeout: Duration::from_millis(1_500),
        header_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    })
    .await;
    // A request in flight, a half-sent one, an idle kept-alive connection.
    let mut busy = connect(s.addr).await;
    busy.write_all(b"GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), s.entered.notified())
        .await
        .expect("the request reached its handler");
    let mut half = connect(s.addr).await;
    half.write_all(b"POST /echo HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let mut kept = connect(s.addr).await;
    assert!(get_on(&mut kept, "/").await.starts_with("HTTP/1.1 200"));
    s.until("three open, one idle", |st| st.open == 3 && st.idle == 1)
        .await;

    let asked = Instant::now();
    s.stop.take().unwrap().send(()).unwrap();
    // The idle connection closes at once; the request in flight may finish.
    let (text, _) = until_closed(&mut kept, Duration::from_secs(10)).await;
    assert_eq!(text, "");
    s.release.notify_one();
    let (text, _) = until_closed(&mut busy, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("done"), "{text}");
    // The half-sent request is dropped at the deadline, and serve returns.
    let drained = tokio::time::timeout(Duration::from_secs(10), &mut s.task)
        .await
        .expect("serve returns after the drain deadline")
        .unwrap()
        .unwrap();
    assert!(asked.elapsed() >= Duration::from_millis(1_500));
    assert_eq!(
        drained,
        Drained {
            dropped: 1,
            dropped_busy: 0
        }
    );
    let (text, _) = until_closed(&mut half, Duration::from_secs(1)).await;
    assert_eq!(text, "");
    assert_eq!(s.server.stats().dropped_at_drain, 1);
    // Nothing listens any more.
    assert!(TcpStream::connect(s.addr).await.is_err());
}

/// A `storefront` process whose log (stdout) is collected; killed on drop.
struct Shop {
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Shop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Shop {
    /// `[prefix...] storefront serve --config <stage 1 on SQLite, server_lines>
    /// [args]`, once it serves.
    async fn start(prefix: &[&str], server_lines: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let stage = format!(
            "[stage]\nnumber = 1\nname = \"single-machine\"\ntitle = \"Connections (test)\"\nadds = \"-\"\nneeds = \"-\"\n[server]\naddr = \"{addr}\"\n{server_lines}\n[database]\nbackend = \"sqlite\"\nfile = \"shop.db\"\n"
        );
        let file = dir.path().join("stage.toml");
        std::fs::write(&file, stage).unwrap();
        let bin = env!("CARGO_BIN_EXE_storefront");
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("RUST_LOG", "info,sqlx=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    log.lock().unwrap().push(line);
                }
            });
        }
        let shop = Self {
            child: Some(child),
            log,
            addr,
            _dir: dir,
        };
        shop.wait_for("serving at", Duration::from_secs(60)).await;
        shop
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    async fn wait_for(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged within {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM; waits (up to `within`) for the exit, and says how long it took.
    async fn terminate(&mut self, within: Duration) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let sent = Instant::now();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, sent.elapsed());
            }
            if sent.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "still running {within:?} after SIGTERM; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// 2,000 idle sockets against a 1,024-descriptor limit: the shop runs with 1,024
/// descriptors, fits its cap to them, closes idle connections to make room and
/// after the header timeout, and keeps serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_sockets_under_a_1024_file_limit_do_not_stop_the_shop() {
    let Some(prlimit) = common::find_program("prlimit", &["/usr/bin", "/bin"]) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "prlimit (util-linux) is needed under CI"
        );
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    };
    // This process holds 2,000 sockets itself.
    let files = storefront_server::raise_file_limit().unwrap_or(u64::MAX);
    assert!(
        files >= 2_100,
        "this test needs 2,100 descriptors, has {files}"
    );
    let prlimit = prlimit.to_str().unwrap();
    // The header timeout leaves time to open all 2,000 sockets while the first
    // ones are still waiting: at 2 s, a run beside the other tests once saw the
    // first sockets time out before the 897th arrived, and nothing was closed to
    // make room.
    let mut shop = Shop::start(
        &[prlimit, "--nofile=1024:1024"],
        "header_read_timeout_ms = 5000",
        &[],
    )
    .await;
    assert!(
        shop.log()
            .contains("server.max_connections lowered from 10000 to 896"),
        "{}",
        shop.log()
    );

    let mut idle = Vec::with_capacity(2_000);
    for _ in 0..20 {
        let batch: Vec<_> = (0..100).map(|_| tokio::spawn(connect(shop.addr))).collect();
        for c in batch {
            idle.push(c.await.unwrap());
        }
    }
    // Others are served (each request within the client's 10 s deadline).
    let http = Http::default();
    let url = format!("http://{}/", shop.addr);
    for _ in 0..5 {
        let r = Http::default().get(&url).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(http.get(&url).await.unwrap().status, 200);
    }
    // Every idle socket is closed by the server: to make room, or at the header
    // timeout (5 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    for socket in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now());
        let (text, _) = until_closed(socket, left).await;
        assert_eq!(text, "");
    }
    drop(idle);
    shop.wait_for("idle connection(s) to make room", Duration::from_secs(5))
        .await;
    shop.wait_for(
        "did not send a request's headers in time",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(http.get(&url).await.unwrap().status, 200);
    let (status, _) = shop.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
}

/// SIGTERM with a half-sent request and an idle kept-alive connection open: the
/// shop stops within its drain deadline (2 s here) and says what it dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_within_the_drain_deadline_whatever_clients_hold_open() {
    let mut shop = Shop::start(
        &[],
        "header_read_timeout_ms = 60000",
        &["--drain-timeout", "2"],
    )
    .await;
    // Half a request's headers; a request whose body does not come (its handler
    // waits for it); an idle kept-alive connection (its round trip also gives the
    // server time to read the others).
    let mut half = connect(shop.addr).await;
    half.write_all(b"POST /cart/add HTTP/1.1\r\nHost: shop\r\nContent-")
        .await
        .unwrap();
    let mut body = connect(shop.addr).await;
    body.write_all(b"POST /cart/add HTTP/1.1\r\nHost: shop\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nproduct_id=1")
        .await
        .unwrap();
    let mut kept = connect(shop.addr).await;
    assert!(get_on(&mut kept, "/livez")
        .await
        .starts_with("HTTP/1.1 200"));

    let (status, took) = shop.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}\n{}", shop.log());
    assert!(
        took < Duration::from_secs(2) + Duration::from_secs(5),
        "stopped after {took:?}"
    );
    let log = shop.log();
    assert!(log.contains("requests have 2s to finish"), "{log}");
    assert!(
        log.contains(
            "the drain deadline (2s) passed: dropped 2 connections, 1 of them answering a request"
        ),
        "{log}"
    );
    assert!(
        log.lines().last().unwrap_or("").contains("stopped"),
        "{log}"
    );
    for socket in [&mut half, &mut body, &mut kept] {
        until_closed(socket, Duration::from_secs(1)).await;
    }
}
