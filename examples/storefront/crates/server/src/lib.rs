//! The HTTP/1 server of `storefront serve`, of stage 4's instances and of its
//! gateway: an accept loop over hyper's connection driver, with the limits that
//! `axum::serve` does not have.
//!
//! | `[server]` key | default | what happens |
//! | --- | --- | --- |
//! | `header_read_timeout_ms` | 10,000 | a connection that has not sent its first request's headers this long after it was accepted, or a later request's this long after their first byte, is closed (slowloris) |
//! | `idle_timeout_ms` | 60,000 | a kept-alive connection with no next request this long is closed; so is one whose client has taken nothing of a response this long |
//! | `body_timeout_ms` | 30,000 | a request body not all there this long after its headers fails: the handler sees an error (the shop answers 400) and the connection is closed |
//! | `max_connections` | 10,000 | connections open at once, lowered at start to what the file limit allows (see [`Limits::fit_to_file_limit`]); at the cap the connection idle the longest is closed to make room, and when none is idle the new one gets a `503` with `Retry-After: 1` and is closed |
//! | `drain_timeout_ms` | 10,000 | on shutdown, idle connections close at once, requests in flight have this long to finish, then the rest are dropped (`--drain-timeout` overrides it) |
//!
//! A handler has no deadline of its own here (the gateway has its upstream timeout).
//! Errors from `accept` that mean "no descriptor left" (`EMFILE`, `ENFILE`) close the
//! longest-idle connection and back off from 10 ms to 1 s; no error makes the loop
//! spin. Refusals, evictions, timeouts and accept errors are counted
//! ([`Server::stats`]) and logged at most once per 10 s with their number.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use storefront_server::{Limits, Server};
//!
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let server = Server::new(Limits::default().fit_to_file_limit(1));
//! let drained = server.serve(listener, app, storefront_server::shutdown_signal()).await?;
//! println!("dropped {} connections at the drain deadline", drained.dropped);
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

pub mod config;
mod conn;
pub mod headers;
mod limits;
mod registry;
mod signal;

pub use config::ServerConfig;
pub use conn::BodyTimeout;
pub use limits::{
    default_body_timeout_ms, default_drain_timeout_ms, default_header_read_timeout_ms,
    default_idle_timeout_ms, default_max_connections, parse_duration, raise_file_limit, Limits,
    RESERVED_FILES,
};
pub use signal::{no_delay, shutdown_signal, NoDelayListener};

use conn::{ConnState, Expired, Tracked, Watched};
use limits::Every;
use registry::{Admission, Counts, Registry};

/// A counter of events.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the server counts (see [`ConnStats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    accepted: Counter,
    refused: Counter,
    evicted: Counter,
    header_timeouts: Counter,
    idle_timeouts: Counter,
    write_timeouts: Counter,
    pub(crate) body_timeouts: Counter,
    accept_errors: Counter,
    dropped_at_drain: Counter,
}

/// The server's connection figures since it started.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ConnStats {
    /// Connections open now.
    pub open: u64,
    /// Of those, connections waiting for a request (the first, or the next).
    pub idle: u64,
    /// The cap in effect.
    pub max_connections: u64,
    /// Connections accepted (refused ones included).
    pub accepted: u64,
    /// Connections answered 503 and closed at the cap.
    pub refused: u64,
    /// Idle connections closed to make room for a new one.
    pub evicted: u64,
    /// Connections closed for not sending a request's headers in time.
    pub header_timeouts: u64,
    /// Kept-alive connections closed for sending no next request in time.
    pub idle_timeouts: u64,
    /// Connections closed because the client took no more of a response in time.
    pub write_timeouts: u64,
    /// Request bodies that did not arrive in time.
    pub body_timeouts: u64,
    /// Errors from `accept` (out of descriptors, ...).
    pub accept_errors: u64,
    /// Connections dropped when the drain deadline passed.
    pub dropped_at_drain: u64,
}

/// What [`Server::serve`] left behind when it returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open at the drain deadline, dropped.
    pub dropped: usize,
    /// Of those, connections that were answering a request.
    pub dropped_busy: usize,
}

/// What the connections are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Serve,
    Drain,
    Stop,
}

/// Things said at most once per 10 s.
#[derive(Debug)]
struct Logs {
    refused: Every,
    evicted: Every,
    header_timeouts: Every,
    accept: Every,
}

/// An HTTP/1 server with connection limits (see the module docs). Serves an axum
/// [`Router`], with the client's address as [`ConnectInfo<SocketAddr>`].
#[derive(Debug)]
pub struct Server {
    limits: Arc<Limits>,
    counters: Arc<Counters>,
    registry: Arc<Registry>,
    /// Refused connections being closed politely (the rest are closed at once).
    refusing: Arc<Semaphore>,
    logs: Arc<Logs>,
}

/// Refused connections closed politely at once, at most: each waits up to
/// [`LINGER`] for the client to read the 503 and close first.
const POLITE_REFUSALS: usize = 64;
const LINGER: Duration = Duration::from_secs(1);

/// The answer at the cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 56\r\n\r\nThe server has too many connections; try again shortly.\n";

impl Server {
    /// A server with these limits (taken as they are: see
    /// [`Limits::fit_to_file_limit`] to fit the cap to the process's file limit).
    pub fn new(limits: Limits) -> Self {
        let every = || Every::new(Duration::from_secs(10));
        Self {
            registry: Arc::new(Registry::new(limits.max_connections)),
            limits: Arc::new(limits),
            counters: Arc::default(),
            refusing: Arc::new(Semaphore::new(POLITE_REFUSALS)),
            logs: Arc::new(Logs {
                refused: every(),
                evicted: every(),
                header_timeouts: every(),
                accept: every(),
            }),
        }
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Its figures now.
    pub fn stats(&self) -> ConnStats {
        let c = &self.counters;
        let now = self.registry.counts();
        ConnStats {
            open: now.open as u64,
            idle: now.idle as u64,
            max_connections: self.registry.max() as u64,
            accepted: c.accepted.get(),
            refused: c.refused.get(),
            evicted: c.evicted.get(),
            header_timeouts: c.header_timeouts.get(),
            idle_timeouts: c.idle_timeouts.get(),
            write_timeouts: c.write_timeouts.get(),
            body_timeouts: c.body_timeouts.get(),
            accept_errors: c.accept_errors.get(),
            dropped_at_drain: c.dropped_at_drain.get(),
        }
    }

    /// Serves `app` on `listener` until `shutdown` resolves; then stops accepting,
    /// closes idle connections, gives the requests in flight the drain timeout to
    /// finish, drops what is left and returns (logging how many it dropped).
    /// Errors only if the listener cannot be read at all.
    pub async fn serve(
        &self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<Drained> {
        let (mode, watching) = watch::channel(Mode::Serve);
        let mut backoff = MIN_BACKOFF;
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = MIN_BACKOFF;
                    self.connection(stream, peer, &app, &watching);
                }
                // The client gave up between its connect and our accept.
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    self.counters.accept_errors.inc();
                    let out_of_files = is_out_of_files(&e);
                    if let Some(n) = self.logs.accept.hit() {
                        tracing::warn!(
                            "cannot accept connections: {e} ({n} times since the last report, at most one every 10 s; {} connections open){}",
                            self.registry.len(),
                            if out_of_files {
                                "; closing idle connections and backing off: raise the open files limit (ulimit -n) or lower server.max_connections"
                            } else {
                                "; backing off"
                            }
                        );
                    }
                    if out_of_files && self.registry.evict_one() {
                        self.counters.evicted.inc();
                        // Let the evicted connection's task close its socket.
                        tokio::task::yield_now().await;
                        continue;
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        // New connections are refused by the kernel from here on.
        drop(listener);
        Ok(self.drain(mode).await)
    }

    fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        app: &Router,
        mode: &watch::Receiver<Mode>,
    ) {
        self.counters.accepted.inc();
        // A response that leaves in two writes (headers, then a body streamed
        // through the gateway) must not wait for the client's delayed ACK: with
        // Nagle on, that costs 40 ms on Linux.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let state = Arc::new(ConnState::new(
            Arc::clone(&self.limits),
            Arc::clone(&self.counters),
        ));
        let slot = match self.registry.admit(Arc::clone(&state)) {
            Admission::Admitted(slot) => slot,
            Admission::MadeRoom(slot) => {
                self.counters.evicted.inc();
                if let Some(n) = self.logs.evicted.hit() {
                    tracing::info!(
                        "at the connection limit ({}): closed {n} idle connection(s) to make room since the last report (at most one every 10 s)",
                        self.registry.max()
                    );
                }
                slot
            }
            Admission::Full => {
                self.counters.refused.inc();
                if let Some(n) = self.logs.refused.hit() {
                    tracing::warn!(
                        "at the connection limit ({}) with every connection busy: refused {n} connection(s) with a 503 since the last report (at most one every 10 s); raise server.max_connections (and ulimit -n), or add instances",
                        self.registry.max()
                    );
                }
                self.refuse(stream);
                return;
            }
        };
        let task = Connection {
            state,
            peer,
            app: app.clone(),
            mode: mode.clone(),
        };
        let logs = Arc::clone(&self.logs);
        tokio::spawn(async move {
            let _slot = slot;
            if task.run(stream).await == Some(Expired::Header) {
                if let Some(n) = logs.header_timeouts.hit() {
                    tracing::info!("closed {n} connection(s) that did not send a request's headers in time, since the last report (at most one every 10 s)");
                }
            }
        });
    }

    /// Answers 503 at once and closes: politely (waiting up to [`LINGER`] for the
    /// client to read it) while few refusals are under way, else at once.
    fn refuse(&self, stream: TcpStream) {
        // A new socket's send buffer is empty: this does not block.
        let _ = stream.try_write(BUSY);
        match Arc::clone(&self.refusing).try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    let _permit = permit;
                    let mut stream = stream;
                    let _ = stream.shutdown().await;
                    // Closing with the request unread would send a reset, which
                    // can destroy the 503 before the client reads it.
                    let mut sink = [0u8; 2048];
                    let _ = tokio::time::timeout(LINGER, async {
                        while let Ok(1..) = stream.read(&mut sink).await {}
                    })
                    .await;
                });
            }
            Err(_) => drop(stream),
        }
    }

    async fn drain(&self, mode: watch::Sender<Mode>) -> Drained {
        let now = self.registry.counts();
        let deadline = self.limits.drain_timeout;
        tracing::info!(
            "shutting down: no new connections; {} open ({} idle, closed now; {} answering a request); requests have {deadline:?} to finish",
            now.open,
            now.idle,
            now.busy,
        );
        let _ = mode.send(Mode::Drain);
        if tokio::time::timeout(deadline, self.registry.all_closed())
            .await
            .is_ok()
        {
            tracing::info!("all connections closed");
            return Drained::default();
        }
        let Counts { open, busy, .. } = self.registry.counts();
        let _ = mode.send(Mode::Stop);
        self.counters.dropped_at_drain.add(open as u64);
        tracing::warn!(
            "the drain deadline ({deadline:?}) passed: dropped {open} connection{}, {busy} of them answering a request",
            if open == 1 { "" } else { "s" }
        );
        // They close at once; wait for it (bounded) so that their sockets are
        // closed when this returns.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.registry.all_closed()).await;
        Drained {
            dropped: open,
            dropped_busy: busy,
        }
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Errors of one connection, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// `EMFILE` or `ENFILE`: no descriptor left for the process or the system.
fn is_out_of_files(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        let code = e.raw_os_error();
        code == Some(Errno::MFILE.raw_os_error()) || code == Some(Errno::NFILE.raw_os_error())
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// One accepted connection, served by its task.
struct Connection {
    state: Arc<ConnState>,
    peer: SocketAddr,
    app: Router,
    mode: watch::Receiver<Mode>,
}

impl Connection {
    /// Serves the connection until it ends, its time is up, it is evicted or the
    /// server stops; says which deadline closed it, if one did.
    async fn run(mut self, stream: TcpStream) -> Option<Expired> {
        let (state, peer) = (Arc::clone(&self.state), self.peer);
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let guard = state.begin_request();
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let req = Request::from_parts(parts, conn::timed_body(body, &state));
            let mut app = app.clone();
            async move {
                let resp = match tower_service::Service::call(&mut app, req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, guard)))
            }
        });
        let io = TokioIo::new(Watched::new(stream, Arc::clone(&self.state)));
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::pin!(conn);
        let watchdog = self.state.watchdog();
        tokio::pin!(watchdog);
        let mut draining = false;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!("connection from {}: {e}", self.peer);
                    }
                    return None;
                }
                why = watchdog.as_mut() => {
                    let counters = self.state.counters();
                    match why {
                        Expired::Header => counters.header_timeouts.inc(),
                        Expired::Idle => counters.idle_timeouts.inc(),
                        Expired::Write => counters.write_timeouts.inc(),
                    }
                    tracing::debug!("connection from {}: closed ({why:?} timeout)", self.peer);
                    return Some(why);
                }
                () = self.state.evicted() => return None,
                changed = self.mode.changed() => {
                    if changed.is_err() {
                        return None; // the server is gone
                    }
                    let mode = *self.mode.borrow_and_update();
                    match mode {
                        Mode::Serve => {}
                        Mode::Drain if self.state.is_idle() => return None,
                        Mode::Drain => {
                            if !draining {
                                // Keep-alive off: closes after the response.
                                conn.as_mut().graceful_shutdown();
                                draining = true;
                            }
                        }
                        Mode::Stop => return None,
                    }
                }
            }
        }
    }
}
