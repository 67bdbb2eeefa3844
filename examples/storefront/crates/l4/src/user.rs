//! The userspace datapath: a TCP balancer over the same Maglev table as the
//! kernel's, for hosts without nftables and as the measured alternative.
//!
//! Each accepted connection is placed by its client's address and port
//! (`StableHash` of the peer, then the table), exactly as the kernel places
//! a new flow, and spliced to the gateway with `copy_bidirectional`. A
//! connection stays with its gateway for its life; the table only places new
//! ones. When the chosen gateway refuses, the connection tries the next
//! placement of the same flow (another hash of it), at most twice, before it
//! is closed: it never reached a gateway, so nothing was half done.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use storefront_l4::balancer::{Control, Options};
//! let gateways = vec!["10.88.1.20:8080".parse().unwrap()];
//! let control = Arc::new(Control::new(&gateways, Options::default()).unwrap());
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! storefront_l4::user::serve(listener, control, std::future::pending()).await
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use scalekit_core::{hash_pair, Placement, StableHash};
use tokio::net::{TcpListener, TcpStream};

use crate::balancer::Control;

/// How long a gateway may take to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Placements tried per connection.
const TRIES: u64 = 3;

/// The gateway `peer`'s connection goes to on try `attempt` (0 first).
pub fn place(control: &Control, peer: SocketAddr, attempt: u64) -> Option<SocketAddr> {
    let hash = peer.stable_hash();
    let hash = if attempt == 0 {
        hash
    } else {
        hash_pair(hash, attempt)
    };
    control.table().locate_hash(hash).copied()
}

/// Accepts on `listener` until `stop` resolves, each connection spliced to
/// its gateway on a task of its own (open ones run on after `stop`).
pub async fn serve(
    listener: TcpListener,
    control: Arc<Control>,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(stop);
    loop {
        let (client, peer) = tokio::select! {
            () = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors, a connection reset before accept: keep
                // serving the others.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            splice(&control, client, peer).await;
        });
    }
}

async fn splice(control: &Control, mut client: TcpStream, peer: SocketAddr) {
    let mut tried: Vec<SocketAddr> = Vec::new();
    for attempt in 0..TRIES {
        let Some(gateway) = place(control, peer, attempt) else {
            return;
        };
        if tried.contains(&gateway) {
            continue;
        }
        tried.push(gateway);
        let Some(counters) = control.counters(gateway).cloned() else {
            continue;
        };
        let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(gateway)).await;
        let Ok(Ok(mut upstream)) = upstream else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let _ = upstream.set_nodelay(true);
        counters.flows.fetch_add(1, Ordering::Relaxed);
        counters.open.fetch_add(1, Ordering::Relaxed);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        counters.open.fetch_sub(1, Ordering::Relaxed);
        return;
    }
}
