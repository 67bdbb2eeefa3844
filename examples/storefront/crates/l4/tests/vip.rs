//! The virtual IP moves: keepalived on two balancer hosts, a client that
//! connects to the virtual IP every 10 ms; the holder dies (`kill -9` of its
//! keepalived and its link down, as a host that loses power) and the other
//! takes the address over. Reports the failover time and the connections that
//! failed meanwhile.
//!
//! Needs root, network namespaces and keepalived (`storefront services up`
//! installs it); skipped without them, except under `CI`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scalekit_test_support::services::runnable;
use storefront_l4::net::{self, Network};
use storefront_l4::vrrp::Keepalived;

fn ready(test: &str) -> bool {
    runnable(test, net::available_with(&["keepalived"]))
}

/// Answers each connection on port 9000 with the host's name, until `stop`.
fn responder(net: &Network, host: &'static str, stop: Arc<AtomicBool>) {
    let _ = net
        .spawn_in(host, move || {
            let listener = TcpListener::bind("0.0.0.0:9000").unwrap();
            listener.set_nonblocking(true).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(host.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        })
        .unwrap();
}

/// Who answers at `addr`, or `None` within 100 ms.
fn who(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
    let mut name = String::new();
    s.read_to_string(&mut name).ok()?;
    (!name.is_empty()).then_some(name)
}

#[test]
fn the_virtual_ip_moves_when_its_balancer_dies() {
    if !ready("the_virtual_ip_moves_when_its_balancer_dies") {
        return;
    }
    let net = Network::build(&["lb1", "lb2", "client"]).unwrap();
    let (a, b) = (net.host("lb1").unwrap().addr, net.host("lb2").unwrap().addr);
    let dir = tempfile::tempdir().unwrap();
    let keepalived = |name: &str, own, peer, priority| Keepalived {
        router_id: name.into(),
        dev: "eth0".into(),
        own,
        peers: vec![peer],
        vip: net.vip(),
        priority,
        advert_ms: 100,
    };
    let mut first = keepalived("lb1", a, b, 150)
        .start(Some(net.launcher("lb1")), &dir.path().join("lb1"))
        .unwrap();
    let _second = keepalived("lb2", b, a, 100)
        .start(Some(net.launcher("lb2")), &dir.path().join("lb2"))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    responder(&net, "lb1", stop.clone());
    responder(&net, "lb2", stop.clone());

    let vip = SocketAddr::from((net.vip(), 9000));
    let held = net
        .run_in("client", move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if who(vip).as_deref() == Some("lb1") {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        })
        .unwrap();
    assert!(held, "lb1 did not take the virtual IP: {}", first.log());
    assert!(net.holds("lb1", net.vip()) && !net.holds("lb2", net.vip()));

    // The client connects every 10 ms; lb1's host dies after 0.5 s.
    let probe = {
        let stop = stop.clone();
        net.spawn_in("client", move || {
            let mut answers: Vec<(Instant, Option<String>)> = Vec::new();
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(15) {
                answers.push((Instant::now(), who(vip)));
                std::thread::sleep(Duration::from_millis(10));
            }
            answers
        })
        .unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    let died = Instant::now();
    first.kill();
    net.set_link("lb1", false).unwrap();
    let moved = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        net.holds("lb2", net.vip())
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let answers = probe.join().unwrap().unwrap();
    assert!(moved, "lb2 did not take the virtual IP over");
    let back = answers
        .iter()
        .find(|(t, who)| *t > died && who.as_deref() == Some("lb2"))
        .map(|(t, _)| t.duration_since(died))
        .expect("lb2 answered at the virtual IP");
    let failed = answers
        .iter()
        .filter(|(t, who)| *t > died && who.is_none())
        .count();
    let tries = answers.iter().filter(|(t, _)| *t > died).count();
    eprintln!(
        "virtual IP failover: lb2 answered {back:?} after lb1 died; {failed} of {tries} connections failed meanwhile"
    );
    // Three adverts of 100 ms and the backup's skew: well under two seconds.
    assert!(back < Duration::from_secs(2), "{back:?}");
    // No one else answered once lb2 had.
    assert!(answers
        .iter()
        .filter(|(t, _)| t.duration_since(died) > back)
        .all(|(_, w)| w.as_deref() != Some("lb1")));
}
