//! Stand-ins for stage 4's tests: upstreams on port 0 that answer as told, and a
//! gateway served on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{any, get};
use axum::Router;
use storefront_gateway::{Gateway, GatewayFigures, InstanceFigures};

use super::procs::free_addr;

/// An upstream that answers `name|host|x-forwarded-for|hop|body` after `delay_ms`.
pub async fn upstream(name: &'static str, status: StatusCode, delay_ms: u64) -> SocketAddr {
    let app = Router::new()
        .route("/readyz", get(|| async { "ready\n" }))
        .fallback(any(move |headers: HeaderMap, body: String| async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            (
                status,
                format!(
                    "{name}|{}|{}|{}|{body}",
                    h("host"),
                    h("x-forwarded-for"),
                    h("x-hop")
                ),
            )
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An address nothing listens on.
pub fn dead_addr() -> SocketAddr {
    free_addr()
}

/// A gateway served on port 0; stops when the returned sender is dropped.
pub async fn serve(gw: &Gateway) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let gw = gw.clone();
    tokio::spawn(async move {
        gw.serve(listener, async {
            let _ = rx.await;
        })
        .await
    });
    (base, tx)
}

/// The instance called `name` in a snapshot.
pub fn instance<'a>(snap: &'a GatewayFigures, name: &str) -> &'a InstanceFigures {
    snap.instances.iter().find(|i| i.name == name).unwrap()
}
