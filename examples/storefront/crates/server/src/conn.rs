//! One connection's phase and the deadline that follows from it, and the wrappers
//! that move it from phase to phase: its socket (bytes read, writes blocked), the
//! request (headers parsed), the request body (its deadline) and the response
//! body (the request is over when it is).
//!
//! ```text
//!   accept ──> Idle ──first byte──> Head ──headers parsed──> Busy ──response sent──> Idle ...
//!              deadline:            deadline:                no deadline (but the
//!              header (1st request) header (from its         body's, and writes
//!              or idle (later ones) first byte; the 1st      blocked for idle_timeout)
//!                                   request keeps accept's)
//! ```

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::limits::Limits;
use super::Counters;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for a request's first byte (closable at once to make room or to stop).
    Idle,
    /// A request's headers are arriving.
    Head,
    /// A request is being answered.
    Busy,
}

/// Why the watchdog closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expired {
    /// A request's headers did not arrive in time (or the first request at all).
    Header,
    /// No next request within the idle timeout.
    Idle,
    /// The client took no more of the response within the idle timeout.
    Write,
}

#[derive(Debug)]
struct Timing {
    phase: Phase,
    /// When the phase's time runs out (none while busy).
    deadline: Option<Instant>,
    /// Since when the connection has been idle.
    idle_since: Instant,
    /// Requests whose response has not been sent yet.
    in_flight: u32,
    /// Requests received so far.
    requests: u64,
    /// Since when a write has been waiting for the client to read.
    write_blocked_since: Option<Instant>,
}

/// One connection's state, shared by its task, its socket wrapper, its requests and
/// the server's registry.
#[derive(Debug)]
pub(super) struct ConnState {
    limits: Arc<Limits>,
    counters: Arc<Counters>,
    /// `phase == Idle`, readable without the lock (on every read, and by eviction).
    idle: AtomicBool,
    /// A write is waiting for the client, readable without the lock.
    write_blocked: AtomicBool,
    timing: Mutex<Timing>,
    /// Wakes the watchdog when the deadline may have moved.
    changed: Notify,
    /// Set when the server closes the connection to make room.
    evicted: AtomicBool,
    evict: Notify,
}

impl ConnState {
    /// A connection accepted now: idle, with the header timeout to send its first
    /// request.
    pub(super) fn new(limits: Arc<Limits>, counters: Arc<Counters>) -> Self {
        let now = Instant::now();
        let deadline = now + limits.header_read_timeout;
        Self {
            limits,
            counters,
            idle: AtomicBool::new(true),
            write_blocked: AtomicBool::new(false),
            timing: Mutex::new(Timing {
                phase: Phase::Idle,
                deadline: Some(deadline),
                idle_since: now,
                in_flight: 0,
                requests: 0,
                write_blocked_since: None,
            }),
            changed: Notify::new(),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    /// Whether it waits for a request's first byte.
    pub(super) fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }

    /// Since when it has been idle, if it is.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        let timing = self.timing.lock();
        (timing.phase == Phase::Idle).then_some(timing.idle_since)
    }

    /// Whether a request is being answered.
    pub(super) fn is_busy(&self) -> bool {
        self.timing.lock().phase == Phase::Busy
    }

    /// Bytes arrived: an idle connection starts a request's headers.
    fn on_read(&self) {
        if !self.idle.load(Ordering::Acquire) {
            return;
        }
        let mut timing = self.timing.lock();
        if timing.phase == Phase::Idle {
            timing.phase = Phase::Head;
            // The first request's headers are due within the header timeout of
            // the connection (an attacker cannot wait, send a byte and wait again);
            // a later request's, of its first byte.
            if timing.requests > 0 {
                timing.deadline = Some(Instant::now() + self.limits.header_read_timeout);
            }
            self.idle.store(false, Ordering::Release);
            drop(timing);
            self.changed.notify_one();
        }
    }

    fn on_write(&self, blocked: bool) {
        if blocked == self.write_blocked.load(Ordering::Relaxed) {
            return;
        }
        let mut timing = self.timing.lock();
        timing.write_blocked_since = blocked.then(Instant::now);
        self.write_blocked.store(blocked, Ordering::Relaxed);
        drop(timing);
        self.changed.notify_one();
    }

    /// A request's headers were parsed: busy until the guard is dropped.
    pub(super) fn begin_request(self: &Arc<Self>) -> RequestGuard {
        let mut timing = self.timing.lock();
        timing.phase = Phase::Busy;
        timing.deadline = None;
        timing.in_flight += 1;
        timing.requests += 1;
        self.idle.store(false, Ordering::Release);
        drop(timing);
        self.changed.notify_one();
        RequestGuard(Arc::clone(self))
    }

    /// Closes the connection to make room (see [`evicted`](Self::evicted)).
    pub(super) fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.evict.notify_one();
    }

    /// Resolves once [`evict`](Self::evict) was called.
    pub(super) async fn evicted(&self) {
        while !self.evicted.load(Ordering::Acquire) {
            self.evict.notified().await;
        }
    }

    /// The phase's deadline, or the blocked write's, whichever comes first.
    fn deadline(&self) -> (Option<Instant>, Expired) {
        let timing = self.timing.lock();
        let phase = match (timing.phase, timing.requests) {
            (Phase::Idle, 0) | (Phase::Head, _) => Expired::Header,
            (Phase::Idle, _) | (Phase::Busy, _) => Expired::Idle,
        };
        let write = timing
            .write_blocked_since
            .map(|since| since + self.limits.idle_timeout);
        match (timing.deadline, write) {
            (Some(d), Some(w)) if w < d => (Some(w), Expired::Write),
            (None, Some(w)) => (Some(w), Expired::Write),
            (d, _) => (d, phase),
        }
    }

    /// Resolves when the connection's time is up, saying why.
    pub(super) async fn watchdog(&self) -> Expired {
        loop {
            // Registered before reading the deadline: a change made in between
            // wakes this at once rather than being missed.
            let changed = self.changed.notified();
            match self.deadline().0 {
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {
                            // Still due (it may have moved while this slept)?
                            if let (Some(due), why) = self.deadline() {
                                if due <= Instant::now() {
                                    return why;
                                }
                            }
                        }
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// A request being answered; dropped when its response has been sent (or dropped).
#[derive(Debug)]
pub(super) struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let state = &self.0;
        let mut timing = state.timing.lock();
        timing.in_flight = timing.in_flight.saturating_sub(1);
        if timing.in_flight == 0 {
            let now = Instant::now();
            timing.phase = Phase::Idle;
            timing.idle_since = now;
            timing.deadline = Some(now + state.limits.idle_timeout);
            state.idle.store(true, Ordering::Release);
            drop(timing);
            state.changed.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// A socket that tells its connection's state when bytes arrive and when
    /// writes wait for the client.
    #[derive(Debug)]
    pub(super) struct Watched<S> {
        #[pin]
        io: S,
        state: Arc<ConnState>,
    }
}

impl<S> Watched<S> {
    pub(super) fn new(io: S, state: Arc<ConnState>) -> Self {
        Self { io, state }
    }
}

impl<S: AsyncRead> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let polled = this.io.poll_write(cx, buf);
        this.state.on_write(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let polled = this.io.poll_write_vectored(cx, bufs);
        this.state.on_write(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let polled = this.io.poll_flush(cx);
        this.state.on_write(polled.is_pending());
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// A request body that did not arrive within the body timeout.
#[derive(Debug)]
pub struct BodyTimeout(Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {:?} of its headers",
            self.0
        )
    }
}

impl std::error::Error for BodyTimeout {}

pin_project_lite::pin_project! {
    /// A request body that fails once the body timeout has passed.
    struct TimedBody<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: tokio::time::Sleep,
        limit: Duration,
        expired: bool,
        state: Arc<ConnState>,
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.expired {
            return Poll::Ready(Some(Err(BodyTimeout(*this.limit).into())));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                if std::future::Future::poll(this.deadline, cx).is_ready() {
                    *this.expired = true;
                    this.state.counters().body_timeouts.inc();
                    return Poll::Ready(Some(Err(BodyTimeout(*this.limit).into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.expired && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request's body, failing after the body timeout (unless it is empty).
pub(super) fn timed_body<B>(body: B, state: &Arc<ConnState>) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    if body.is_end_stream() {
        return Body::new(body);
    }
    let limit = state.limits.body_timeout;
    Body::new(TimedBody {
        inner: body,
        deadline: tokio::time::sleep(limit),
        limit,
        expired: false,
        state: Arc::clone(state),
    })
}

pin_project_lite::pin_project! {
    /// A response body; the request is over when it ends or is dropped.
    pub(super) struct Tracked {
        #[pin]
        inner: Body,
        guard: Option<RequestGuard>,
    }
}

impl Tracked {
    pub(super) fn new(inner: Body, guard: RequestGuard) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            *this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn state(limits: Limits) -> Arc<ConnState> {
        Arc::new(ConnState::new(Arc::new(limits), Arc::default()))
    }

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            ..Limits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_has_the_header_timeout_from_the_connection() {
        let s = state(limits());
        let start = Instant::now();
        tokio::time::advance(Duration::from_millis(1_500)).await;
        s.on_read(); // a byte after 1.5 s does not restart the clock
        assert!(!s.is_idle());
        assert_eq!(s.watchdog().await, Expired::Header);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn busy_has_no_deadline_then_idle_then_header_from_the_first_byte() {
        let s = state(limits());
        let guard = s.begin_request();
        let watchdog = s.watchdog();
        tokio::pin!(watchdog);
        // However long a handler takes, the connection stays.
        assert!(
            tokio::time::timeout(Duration::from_secs(3_600), watchdog.as_mut())
                .await
                .is_err()
        );
        let answered = Instant::now();
        drop(guard);
        assert!(s.is_idle());
        // Idle: 5 s; a first byte after 4 s gives the headers 2 s from then.
        tokio::time::advance(Duration::from_secs(4)).await;
        s.on_read();
        assert_eq!(watchdog.await, Expired::Header);
        assert_eq!(answered.elapsed(), Duration::from_secs(6));
        let s = state(limits());
        drop(s.begin_request());
        let idle = Instant::now();
        assert_eq!(s.watchdog().await, Expired::Idle);
        assert_eq!(idle.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_the_client_does_not_read_times_out() {
        let s = state(limits());
        let _guard = s.begin_request();
        let start = Instant::now();
        s.on_write(true);
        tokio::time::advance(Duration::from_secs(3)).await;
        s.on_write(false); // progress
        s.on_write(true);
        assert_eq!(s.watchdog().await, Expired::Write);
        assert_eq!(start.elapsed(), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_in_time_fails() {
        use http_body_util::BodyExt;
        let s = state(Limits {
            body_timeout: Duration::from_secs(3),
            ..limits()
        });
        /// Half a body, then nothing.
        struct Half(bool);
        impl HttpBody for Half {
            type Data = Bytes;
            type Error = Infallible;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
                if std::mem::replace(&mut self.0, true) {
                    Poll::Pending
                } else {
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"half")))))
                }
            }
        }
        let body = timed_body(Half(false), &s);
        let start = Instant::now();
        let err = body.collect().await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the request body did not arrive within 3s of its headers")
        );
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(s.counters().body_timeouts.get(), 1);
        // An empty body is not wrapped: nothing to wait for.
        let empty = timed_body(http_body_util::Empty::<Bytes>::new(), &s);
        assert!(empty.is_end_stream());
    }
}
