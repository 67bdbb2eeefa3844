//! The balancer daemon on loopback (no namespaces needed), with the userspace
//! datapath in front of three stand-in gateways: its status says what it
//! sees, and `POST /drain` (with the token) takes a gateway out of the table
//! for new connections while its open ones keep being served there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use storefront_l4::balancer::Options;
use storefront_l4::config::Datapath;
use storefront_l4::daemon::{run, DaemonOptions, Status};

fn free() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A gateway stand-in answering `/readyz` and, for anything else, `name`.
async fn gateway(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/readyz", axum::routing::get(|| async { "ready" }))
        .fallback(move || async move { name });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// One request on a kept-alive connection (blocking): the body, or `None`.
fn get(s: &mut BufReader<TcpStream>, path: &str) -> Option<String> {
    write!(s.get_mut(), "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").ok()?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line.trim_end().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    s.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    BufReader::new(s)
}

/// `POST path` with an optional token: the status code and body.
fn post(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (code, body)
}

fn status(addr: SocketAddr) -> Status {
    let mut s = connect(addr);
    serde_json::from_str(&get(&mut s, "/status").unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_gateway_gets_no_new_connection_and_keeps_its_open_ones() {
    let gateways = vec![gateway("a").await, gateway("b").await, gateway("c").await];
    let (front, status_at) = (free(), free());
    let options = DaemonOptions {
        vip: Ipv4Addr::LOCALHOST,
        port: front.port(),
        own: Ipv4Addr::LOCALHOST,
        dev: "lo".into(),
        gateways: gateways.clone(),
        datapath: Datapath::User,
        options: Options::default(),
        status: Some(status_at),
        control_token: Some("s3cret".into()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(run(options, async {
        let _ = stopped.await;
    }));
    let front = SocketAddr::from((Ipv4Addr::LOCALHOST, front.port()));
    tokio::task::spawn_blocking(move || {
        // Up, and every gateway healthy in the table.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(status_at).is_err() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let s = status(status_at);
        assert_eq!(s.datapath, "user");
        assert!(s.gateways.iter().all(|g| g.healthy && g.share > 0.3));

        // Connections spread over the three; keep one on each.
        let mut open: Vec<(String, BufReader<TcpStream>)> = Vec::new();
        for _ in 0..60 {
            let mut c = connect(front);
            let who = get(&mut c, "/").unwrap();
            if !open.iter().any(|(w, _)| *w == who) {
                open.push((who, c));
            }
        }
        assert_eq!(open.len(), 3, "every gateway got connections");

        // Without the token: refused, nothing changes.
        let path = format!("/drain?gateway={}", gateways[0]);
        assert_eq!(post(status_at, &path, None).0, 401);
        assert_eq!(post(status_at, &path, Some("wrong")).0, 401);
        assert_eq!(
            post(status_at, "/drain?gateway=1.2.3.4:5", Some("s3cret")).0,
            404
        );
        assert_eq!(
            post(status_at, "/drain?gateway=nonsense", Some("s3cret")).0,
            400
        );
        let (code, body) = post(status_at, &path, Some("s3cret"));
        assert_eq!(code, 200, "{body}");
        let s = status(status_at);
        let a = s
            .gateways
            .iter()
            .find(|g| g.addr == gateways[0].to_string())
            .unwrap();
        assert_eq!(a.share, 0.0);
        assert!(a.healthy, "drained, not failed");

        // New connections: never "a"; the open one on "a" still answers there.
        for _ in 0..60 {
            let mut c = connect(front);
            assert_ne!(get(&mut c, "/").as_deref(), Some("a"));
        }
        for (who, c) in &mut open {
            assert_eq!(get(c, "/").as_deref(), Some(who.as_str()));
        }

        // Back.
        let (code, _) = post(status_at, &format!("{path}&on=false"), Some("s3cret"));
        assert_eq!(code, 200);
        let s = status(status_at);
        assert!(s.gateways.iter().all(|g| g.share > 0.3), "{s:?}");
    })
    .await
    .unwrap();
    let _ = stop.send(());
    daemon.await.unwrap().unwrap();
}
