//! `stages/04-load-balancing/nginx.conf` in front of real instance processes: Debian's nginx, run as
//! a child (not a daemon) with the configuration rendered into a temporary
//! directory (ports from port 0, pid, logs and temp files there too). Skipped with a
//! message when nginx is not installed; a failure under `CI`.
//!
//! A test here is one scenario told top to bottom against the real parts; a few
//! run past 100 lines, kept whole so that each step and its check stay together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::procs::{free_addr, Http, Instances};
use storefront_stage::supervisor::wait_ready;

/// nginx in a process group of its own (master and workers), stopped on
/// drop: SIGTERM to the group (nginx's fast shutdown), SIGKILL to the group if
/// the master is still there five seconds later, and the master reaped.
struct Nginx {
    child: Child,
    dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Killing the master alone left its workers running, reparented to
        // init: they do not notice the master's death.
        let group = format!("-{}", self.child.id());
        let signal = |name: &str| {
            let _ = Command::new("kill")
                .args([name, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            signal("-KILL");
        }
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

/// stages/04-load-balancing/nginx.conf with the test's ports, a low rate limit, and paths in `dir`.
fn render(listen: SocketAddr, instances: &[SocketAddr], dir: &Path) -> String {
    let shipped = include_str!("../stages/04-load-balancing/nginx.conf");
    let servers: String = instances
        .iter()
        .map(|a| format!("        server {a} max_fails=3 fail_timeout=10s;\n"))
        .collect();
    let mut out = String::new();
    let mut servers_written = false;
    for line in shipped.lines() {
        let t = line.trim_start();
        if t.starts_with("server 127.0.0.1:808") {
            if !servers_written {
                out.push_str(&servers);
                servers_written = true;
            }
            continue;
        }
        let line = line
            .replace("listen 127.0.0.1:8080;", &format!("listen {listen};"))
            .replace("rate=200r/s", "rate=20r/s")
            .replace("burst=400", "burst=20");
        out.push_str(&line);
        out.push('\n');
        if t == "http {" {
            for (directive, sub) in [
                ("client_body_temp_path", "body"),
                ("proxy_temp_path", "proxy"),
                ("fastcgi_temp_path", "fastcgi"),
                ("uwsgi_temp_path", "uwsgi"),
                ("scgi_temp_path", "scgi"),
            ] {
                out.push_str(&format!("    {directive} {};\n", dir.join(sub).display()));
            }
        }
    }
    assert!(
        servers_written,
        "stages/04-load-balancing/nginx.conf lost its upstream servers"
    );
    assert!(
        out.contains(&format!("listen {listen};")),
        "stages/04-load-balancing/nginx.conf lost its listen line"
    );
    out
}

fn start_nginx(nginx: &Path, listen: SocketAddr, instances: &[SocketAddr]) -> Nginx {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_owned();
    // Workers may run as another user (nobody): let them use the temp dirs.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
    }
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, render(listen, instances, &dir)).unwrap();
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .arg("-g")
        .arg(format!(
            "daemon off; pid {}; error_log {} warn;",
            dir.join("nginx.pid").display(),
            dir.join("error.log").display()
        ))
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start nginx");
    Nginx {
        child,
        dir,
        _temp: temp,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_balances_and_survives_a_killed_instance() {
    let Some(nginx) = common::find_program("nginx", &["/usr/sbin", "/usr/local/sbin"]) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "nginx is not installed (apt-get install -y nginx); under CI that is a failure"
        );
        eprintln!("skipped nginx_balances_and_survives_a_killed_instance: nginx is not installed (apt-get install -y nginx)");
        return;
    };
    // One SQLite file shared by the instances (WAL mode), filled here.
    let (store, db_dir) = common::sqlite().await;
    let ids = common::catalog(store.as_ref(), 6, 5).await;
    drop(store);
    let db = db_dir.path().join("shop.db");
    let stage = format!(
        r#"
[stage]
number = 4
name = "load-balancing"
title = "Load balancing (nginx test)"
adds = "-"
needs = "-"
[server]
addr = "127.0.0.1:0"
[database]
backend = "sqlite"
file = "{}"
"#,
        db.display()
    );
    let mut procs = Instances::start(&stage, 2);
    wait_ready(&procs.addrs, Duration::from_secs(20))
        .await
        .expect("instances ready");
    let listen = free_addr();
    let server = start_nginx(&nginx, listen, &procs.addrs);
    let base = format!("http://{listen}");
    let http = Http::default();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = http.get(&format!("{base}/livez")).await {
            if r.status == StatusCode::OK {
                break;
            }
        }
        assert!(
            Instant::now() < until,
            "nginx did not start within 10 s: {}",
            server.error_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A page through nginx.
    let page = http
        .get(&format!("{base}/products/{}", ids[0]))
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Item 1 Blue Novel"), "{}", page.body);
    let api = http
        .get(&format!("{base}/api/products/{}", ids[1]))
        .await
        .unwrap();
    assert_eq!(api.json()["name"], "Item 2 Red Kite", "{}", api.body);

    // One instance killed: requests still succeed (nginx passes them on).
    procs.kill(0);
    for i in 0..16 {
        let r = http
            .get(&format!("{base}/api/products/{}", ids[i % ids.len()]))
            .await
            .unwrap();
        assert_eq!(
            r.status,
            StatusCode::OK,
            "request {i} after the kill: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    // Over the per-IP rate (20/s, burst 20 in the test's rendering): 429 + Retry-After.
    let mut limited = None;
    for _ in 0..60 {
        let r = http.get(&format!("{base}/api/categories")).await.unwrap();
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let limited = limited.expect("60 quick requests stay under 20/s with a burst of 20");
    assert_eq!(limited.header("retry-after"), "1");
    assert!(
        limited.body.contains("Too many requests"),
        "{}",
        limited.body
    );
    drop(server);
}
