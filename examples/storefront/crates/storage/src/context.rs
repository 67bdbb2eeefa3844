//! Read-your-writes across requests: the WAL position of a session's last write,
//! held for the length of one request in a tokio task-local.
//!
//! The app's middleware (`storefront_web::wal`) reads the position from the
//! session's cookie, runs the request inside [`scope`], and when the request
//! wrote ([`Db::wrote`](super::Db::wrote) records the primary's WAL position
//! here), sets the cookie to the new position. [`Db::reader`](super::Db::reader)
//! reads [`current`] to choose a replica that has replayed it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use scalekit_replica::Position;

tokio::task_local! {
    static CONTEXT: Arc<RequestContext>;
}

/// One request's view of its session's writes: the position it came with and
/// the highest position it wrote. `0` stands for "none" (no WAL position is 0).
#[derive(Debug, Default)]
pub struct RequestContext {
    seen: AtomicU64,
    written: AtomicU64,
}

impl RequestContext {
    /// A context for a request whose session last wrote at `position`.
    pub fn new(position: Option<Position>) -> Arc<Self> {
        Arc::new(Self {
            seen: AtomicU64::new(position.map_or(0, Position::get)),
            written: AtomicU64::new(0),
        })
    }

    /// The position this request's reads must see: the later of the one it came
    /// with and the ones it wrote.
    pub fn position(&self) -> Option<Position> {
        let p = self
            .seen
            .load(Ordering::Relaxed)
            .max(self.written.load(Ordering::Relaxed));
        (p != 0).then(|| Position::new(p))
    }

    /// The highest position this request wrote, if it wrote.
    pub fn written(&self) -> Option<Position> {
        let p = self.written.load(Ordering::Relaxed);
        (p != 0).then(|| Position::new(p))
    }

    /// Records a write committed at `position`.
    pub fn record_write(&self, position: Position) {
        self.written.fetch_max(position.get(), Ordering::Relaxed);
    }
}

/// Runs `f` with `context` as the current request's context.
pub async fn scope<F: Future>(context: Arc<RequestContext>, f: F) -> F::Output {
    CONTEXT.scope(context, f).await
}

/// Whether code runs inside a request's [`scope`], and if so the position its
/// reads must see: `None` outside any request, `Some(None)` in a request whose
/// session has no recorded write.
pub fn current() -> Option<Option<Position>> {
    CONTEXT.try_with(|c| c.position()).ok()
}

/// The current request's context, if code runs inside one: to carry it into a
/// task spawned for the request (see [`spawn`]).
pub fn handle() -> Option<Arc<RequestContext>> {
    CONTEXT.try_with(Arc::clone).ok()
}

/// Spawns `f` as a task of its own that runs in the current request's context (if
/// any), so that its reads see the request's writes and its writes are recorded
/// for the request (the context is shared, not copied).
pub fn spawn<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match handle() {
        Some(context) => tokio::spawn(CONTEXT.scope(context, f)),
        None => tokio::spawn(f),
    }
}

/// Records a write in the current request's context (nothing outside a request).
pub fn record_write(position: Position) {
    let _ = CONTEXT.try_with(|c| c.record_write(position));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_sees_the_later_of_its_cookie_and_its_writes() {
        assert_eq!(current(), None);
        let ctx = RequestContext::new(Some(Position::new(10)));
        let seen = scope(ctx.clone(), async {
            let before = current();
            record_write(Position::new(7));
            let mid = current();
            record_write(Position::new(20));
            (before, mid, current())
        })
        .await;
        assert_eq!(
            seen,
            (
                Some(Some(Position::new(10))),
                Some(Some(Position::new(10))),
                Some(Some(Position::new(20)))
            )
        );
        assert_eq!(ctx.written(), Some(Position::new(20)));
        let none = RequestContext::new(None);
        assert_eq!(scope(none.clone(), async { current() }).await, Some(None));
        assert_eq!(none.written(), None);
        // Outside a scope, a write is recorded nowhere.
        record_write(Position::new(5));
    }

    #[tokio::test]
    async fn a_spawned_task_records_its_writes_for_the_request() {
        let ctx = RequestContext::new(None);
        let seen = scope(ctx.clone(), async {
            spawn(async {
                record_write(Position::new(30));
                current()
            })
            .await
            .ok()
        })
        .await;
        assert_eq!(seen, Some(Some(Some(Position::new(30)))));
        assert_eq!(ctx.written(), Some(Position::new(30)));
        // Outside a request, a spawned task has no context.
        assert_eq!(spawn(async { current() }).await.ok(), Some(None));
    }
}
