//! The link from the stage's network to the services on this host's
//! loopback (PostgreSQL, Redis): a TCP relay on the host link's address for
//! each, so that the gateways and instances in their namespaces reach the
//! same database as every other stage, and the database sees its clients
//! come from loopback (its `pg_hba.conf` trusts only that). It stands for the
//! data centre's network between the web tier and the data tier; it is not
//! on the path this stage measures (client, virtual IP, balancer, gateway).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let listen = "10.88.1.1:5432".parse().unwrap();
//! let to = "127.0.0.1:5432".parse().unwrap();
//! let relay = storefront_l4::relay::start(listen, to).await?;
//! // ... the stage runs ...
//! relay.abort();
//! # Ok(()) }
//! ```

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Listens on `listen` and splices each connection to `to`, until the
/// returned task is aborted (its open connections are closed with it).
pub async fn start(listen: SocketAddr, to: SocketAddr) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(listen).await?;
    Ok(tokio::spawn(async move {
        let mut open = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut client, _)) = accepted else {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        continue;
                    };
                    open.spawn(async move {
                        let _ = client.set_nodelay(true);
                        if let Ok(mut server) = TcpStream::connect(to).await {
                            let _ = server.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
                // Reap the finished ones as they end.
                Some(_) = open.join_next(), if !open.is_empty() => {}
            }
        }
    }))
}
