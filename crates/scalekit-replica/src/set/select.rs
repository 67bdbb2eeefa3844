//! Selection: two random candidates, the cheaper one; zones, the primary,
//! exclusions and read-your-writes tokens. Lock-free.

use crate::config::{Balance, PrimaryReads};
use crate::endpoint::{nanos, reason_code, reason_from_code, Endpoint, Shared};
use crate::error::SelectError;
use crate::member::Position;
use crate::set::handle::ReplicaSet;
use crate::set::selected::Selected;
use crate::set::snapshot::{draw, Snapshot};
use scalekit_core::{Admission, Clock, RejectReason, Rejected};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl<T, A: Admission, C: Clock> ReplicaSet<T, A, C> {
    /// Chooses an endpoint for a read: two random available candidates from the
    /// local zone, the cheaper one by peak-EWMA latency times (outstanding + 1)
    /// over weight; another zone when no local one is available or a remote one
    /// is much cheaper; the primary when no replica is available (unless
    /// [`PrimaryReads::Never`]). Takes no lock.
    ///
    /// Report the call's outcome on the returned [`Selected`]; dropping it
    /// unreported counts the call as cancelled.
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet};
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::replica("a", "10.0.0.1:5432"))
    ///     .member(Member::replica("b", "10.0.0.2:5432"))
    ///     .build()?;
    /// let endpoint = set.select()?;
    /// println!("reading from {} at {}", endpoint.name(), *endpoint);
    /// endpoint.success();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn select(&self) -> Result<Selected<T, A, C>, SelectError> {
        self.select_read(0, NoSkip, true)
    }

    /// Chooses an endpoint for a read that must see a write at `token`: a
    /// replica that has applied it, else the primary at once. See
    /// [`select_at_within`](Self::select_at_within) to wait for a replica.
    ///
    /// ```
    /// use scalekit_replica::{Member, Position, ReplicaSet, Role};
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::primary("p", 0))
    ///     .member(Member::replica("r", 1))
    ///     .build()?;
    /// let token = Position::new(100);                      // returned by the write
    /// assert_eq!(set.select_at(token)?.role(), Role::Primary);
    /// set.report_applied("r", Position::new(120))?;        // the replica caught up
    /// assert_eq!(set.select_at(token)?.role(), Role::Replica);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn select_at(&self, token: Position) -> Result<Selected<T, A, C>, SelectError> {
        match self.select_read(token.get(), NoSkip, false) {
            Ok(s) => Ok(s),
            Err(_) => self.primary_for_read(),
        }
    }

    /// Like [`select_at`](Self::select_at), but waits up to `max_wait` for a
    /// replica to apply `token` (woken by
    /// [`report_applied`](Self::report_applied)) before falling back to the
    /// primary.
    pub async fn select_at_within(
        &self,
        token: Position,
        max_wait: Duration,
    ) -> Result<Selected<T, A, C>, SelectError> {
        // A wait too long to represent (`Duration::MAX`) has no deadline.
        let deadline = tokio::time::Instant::now().checked_add(max_wait);
        loop {
            let notified = self.inner.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Ok(s) = self.select_read(token.get(), NoSkip, false) {
                return Ok(s);
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        break;
                    }
                }
                None => notified.await,
            }
        }
        self.primary_for_read()
    }

    /// Like [`select`](Self::select), but never returns an endpoint named in
    /// `exclude`: the ones a request already tried, to retry it elsewhere.
    /// The primary is left out too if named. When every endpoint that could
    /// take the read is excluded, the error is
    /// [`SelectError::Unavailable`]`(None)`; refusals of excluded endpoints
    /// are not reported.
    ///
    /// `exclude` is any slice of names (`&[&str]`, `&[String]`,
    /// `&[Arc<str>]`); it is scanned for each candidate, allocates nothing,
    /// and suits the few endpoints one request tries.
    ///
    /// ```
    /// use scalekit_replica::{Member, ReplicaSet, SelectError};
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::replica("a", "10.0.0.1:80"))
    ///     .member(Member::replica("b", "10.0.0.2:80"))
    ///     .member(Member::replica("c", "10.0.0.3:80"))
    ///     .build()?;
    /// let mut tried: Vec<String> = Vec::new();
    /// loop {
    ///     let endpoint = match set.select_excluding(&tried) {
    ///         Ok(endpoint) => endpoint,
    ///         Err(SelectError::Unavailable(None)) => break, // all tried
    ///         Err(e) => return Err(e.into()),
    ///     };
    ///     assert!(!tried.iter().any(|t| t == endpoint.name()));
    ///     tried.push(endpoint.name().to_owned());
    ///     endpoint.failure(); // say the call failed: try another
    /// }
    /// assert_eq!(tried.len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn select_excluding<S: AsRef<str>>(
        &self,
        exclude: &[S],
    ) -> Result<Selected<T, A, C>, SelectError> {
        self.select_read(0, Names(exclude), true)
    }

    /// Like [`select_at`](Self::select_at), but never returns an endpoint
    /// named in `exclude` (see [`select_excluding`](Self::select_excluding)):
    /// a replica not excluded that has applied `token`, else the primary if it
    /// is not excluded, else [`SelectError::Unavailable`].
    ///
    /// ```
    /// use scalekit_replica::{Member, Position, ReplicaSet, SelectError};
    ///
    /// let set = ReplicaSet::builder()
    ///     .member(Member::primary("p", 0))
    ///     .member(Member::replica("r1", 1))
    ///     .member(Member::replica("r2", 2))
    ///     .build()?;
    /// set.report_applied("r1", Position::new(10))?;
    /// set.report_applied("r2", Position::new(10))?;
    /// let token = Position::new(10);
    /// assert_eq!(set.select_at_excluding(token, &["r1"])?.name(), "r2");
    /// assert_eq!(set.select_at_excluding(token, &["r1", "r2"])?.name(), "p");
    /// assert!(matches!(
    ///     set.select_at_excluding(token, &["r1", "r2", "p"]),
    ///     Err(SelectError::Unavailable(None))
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn select_at_excluding<S: AsRef<str>>(
        &self,
        token: Position,
        exclude: &[S],
    ) -> Result<Selected<T, A, C>, SelectError> {
        match self.select_read(token.get(), Names(exclude), false) {
            Ok(s) => Ok(s),
            Err(e) => {
                let primary_excluded = self
                    .inner
                    .snap
                    .load()
                    .primary
                    .as_ref()
                    .is_some_and(|p| Skip::<T, A, C>::skips(Names(exclude), p));
                if primary_excluded {
                    Err(e)
                } else {
                    self.primary_for_read()
                }
            }
        }
    }

    /// The primary, for a write. Its admission policy is asked; ejection,
    /// health and lag are not (there is no other place for a write).
    pub fn select_primary(&self) -> Result<Selected<T, A, C>, SelectError> {
        let snap = self.inner.snap.load();
        let Some(p) = &snap.primary else {
            return Err(SelectError::NoEndpoint);
        };
        let now = self.now();
        acquire(p, now, false).map_err(|r| SelectError::Unavailable(Some(r)))
    }

    fn primary_for_read(&self) -> Result<Selected<T, A, C>, SelectError> {
        let s = self.select_primary()?;
        self.inner
            .shared
            .primary_fallbacks
            .fetch_add(1, Ordering::Relaxed);
        Ok(s)
    }

    /// A read on another endpoint than `other` (for hedges and retries).
    pub(crate) fn select_other(
        &self,
        other: &Selected<T, A, C>,
    ) -> Result<Selected<T, A, C>, SelectError> {
        self.select_read(0, Other(&other.ep), false)
    }

    #[inline]
    fn select_read(
        &self,
        min_applied: u64,
        skip: impl Skip<T, A, C>,
        fallback: bool,
    ) -> Result<Selected<T, A, C>, SelectError> {
        let snap = self.inner.snap.load();
        let shared = &*self.inner.shared;
        let now = shared.clock.now_nanos();
        self.refresh_serving(&snap, now);
        let mut refused = None;
        for _ in 0..3 {
            let Some(ep) = pick(shared, &snap, now, min_applied, skip) else {
                break;
            };
            match acquire(ep, now, true) {
                Ok(s) => return Ok(s),
                Err(r) => refused = Some(r),
            }
        }
        if fallback && shared.config.primary_reads != PrimaryReads::Never {
            if let Some(p) = &snap.primary {
                if !skip.skips(p) {
                    if let Ok(s) = acquire(p, now, false) {
                        shared.primary_fallbacks.fetch_add(1, Ordering::Relaxed);
                        return Ok(s);
                    }
                }
            }
        }
        if snap.local.is_empty() && snap.remote.is_empty() && snap.primary.is_none() {
            return Err(SelectError::NoEndpoint);
        }
        Err(SelectError::Unavailable(
            refused.or_else(|| skipped_refusal(&snap, now, min_applied, skip)),
        ))
    }
}

#[inline]
fn acquire<T, A: Admission, C: Clock>(
    ep: &Arc<Endpoint<T, A, C>>,
    now: u64,
    counts: bool,
) -> Result<Selected<T, A, C>, Rejected> {
    let permit = match &ep.admission {
        None => None,
        Some(a) => match a.try_acquire() {
            Ok(p) => Some(p),
            Err(r) => {
                // A concurrency limit frees up as calls finish: no backoff (the
                // outstanding count in the cost already steers calls away).
                // Other refusals (an open breaker, a rate limit, load shedding)
                // skip the endpoint for their retry time.
                if r.reason() != RejectReason::ConcurrencyLimited {
                    let backoff = r
                        .retry_after_hint()
                        .unwrap_or(ep.shared.config.refusal_backoff);
                    let until = now.saturating_add(nanos(backoff));
                    ep.refused_reason
                        .store(reason_code(r.reason()), Ordering::Relaxed);
                    ep.refused_until
                        .store(until.max(now.saturating_add(1)), Ordering::Relaxed);
                }
                return Err(r);
            }
        },
    };
    ep.outstanding.fetch_add(1, Ordering::Relaxed);
    Ok(Selected {
        ep: Arc::clone(ep),
        permit,
        start: now,
        epoch: ep.epoch.load(Ordering::Acquire),
        counts,
        finished: false,
    })
}

#[inline]
fn pick<'s, T, A, C>(
    shared: &Shared<C>,
    snap: &'s Snapshot<T, A, C>,
    now: u64,
    min_applied: u64,
    skip: impl Skip<T, A, C>,
) -> Option<&'s Arc<Endpoint<T, A, C>>> {
    let balance = shared.config.balance;
    if balance == Balance::RoundRobin {
        return round_robin(shared, &snap.local, now, min_applied, skip)
            .or_else(|| round_robin(shared, &snap.remote, now, min_applied, skip));
    }
    match p2c(
        &snap.local,
        &snap.local_cum,
        now,
        min_applied,
        skip,
        balance,
    ) {
        Some((ep, cost)) => {
            if !snap.remote.is_empty() {
                let r = &snap.remote[draw(snap.remote.len(), &snap.remote_cum, None)];
                if usable(r, now, min_applied, skip)
                    && r.cost(now, balance) * shared.config.zone_spill_factor < cost
                {
                    return Some(r);
                }
            }
            Some(ep)
        }
        None => p2c(
            &snap.remote,
            &snap.remote_cum,
            now,
            min_applied,
            skip,
            balance,
        )
        .map(|(ep, _)| ep),
    }
}

/// An endpoint and its cost.
type Costed<'a, T, A, C> = (&'a Arc<Endpoint<T, A, C>>, f64);

#[inline]
fn p2c<'s, T, A, C>(
    list: &'s [Arc<Endpoint<T, A, C>>],
    cum: &[u64],
    now: u64,
    min_applied: u64,
    skip: impl Skip<T, A, C>,
    balance: Balance,
) -> Option<Costed<'s, T, A, C>> {
    let n = list.len();
    match n {
        0 => return None,
        1 => {
            let e = &list[0];
            return usable(e, now, min_applied, skip).then(|| (e, e.cost(now, balance)));
        }
        _ => {}
    }
    for _ in 0..2 {
        // Two distinct candidates, each drawn in proportion to its weight.
        let i = draw(n, cum, None);
        let j = draw(n, cum, Some(i));
        let (a, b) = (&list[i], &list[j]);
        match (
            usable(a, now, min_applied, skip),
            usable(b, now, min_applied, skip),
        ) {
            (true, true) => {
                let (ca, cb) = (a.cost(now, balance), b.cost(now, balance));
                return Some(if cb < ca { (b, cb) } else { (a, ca) });
            }
            (true, false) => return Some((a, a.cost(now, balance))),
            (false, true) => return Some((b, b.cost(now, balance))),
            (false, false) => {}
        }
    }
    // Most candidates are out: look at all of them, the cheapest wins.
    let mut best: Option<Costed<'_, T, A, C>> = None;
    for e in list {
        if usable(e, now, min_applied, skip) {
            let c = e.cost(now, balance);
            if best.is_none_or(|(_, bc)| c < bc) {
                best = Some((e, c));
            }
        }
    }
    best
}

fn round_robin<'s, T, A, C>(
    shared: &Shared<C>,
    list: &'s [Arc<Endpoint<T, A, C>>],
    now: u64,
    min_applied: u64,
    skip: impl Skip<T, A, C>,
) -> Option<&'s Arc<Endpoint<T, A, C>>> {
    let n = list.len();
    if n == 0 {
        return None;
    }
    let start = shared.rr.fetch_add(1, Ordering::Relaxed);
    (0..n)
        .map(|k| &list[(start + k) % n])
        .find(|e| usable(e, now, min_applied, skip))
}

/// Endpoints a selection leaves out besides the unavailable ones. Each kind is
/// its own type, so that `select` (which leaves out nothing) pays nothing.
trait Skip<T, A, C>: Copy {
    fn skips(self, ep: &Endpoint<T, A, C>) -> bool;
}

/// Leaves out nothing.
#[derive(Clone, Copy)]
struct NoSkip;

impl<T, A, C> Skip<T, A, C> for NoSkip {
    #[inline(always)]
    fn skips(self, _: &Endpoint<T, A, C>) -> bool {
        false
    }
}

/// Leaves out one endpoint (a hedge's first attempt).
struct Other<'a, T, A, C>(&'a Arc<Endpoint<T, A, C>>);

impl<T, A, C> Clone for Other<'_, T, A, C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, A, C> Copy for Other<'_, T, A, C> {}

impl<T, A, C> Skip<T, A, C> for Other<'_, T, A, C> {
    #[inline]
    fn skips(self, ep: &Endpoint<T, A, C>) -> bool {
        std::ptr::eq(Arc::as_ptr(self.0), ep)
    }
}

/// Leaves out the endpoints of these names (a linear scan: meant for the few
/// a request has tried).
struct Names<'a, S>(&'a [S]);

impl<S> Clone for Names<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for Names<'_, S> {}

impl<T, A, C, S: AsRef<str>> Skip<T, A, C> for Names<'_, S> {
    #[inline]
    fn skips(self, ep: &Endpoint<T, A, C>) -> bool {
        self.0.iter().any(|n| n.as_ref() == &*ep.name)
    }
}

/// Whether `ep` may take this read: not left out by the caller, and
/// available.
#[inline(always)]
fn usable<T, A, C>(
    ep: &Endpoint<T, A, C>,
    now: u64,
    min_applied: u64,
    skip: impl Skip<T, A, C>,
) -> bool {
    !skip.skips(ep) && ep.available(now, min_applied)
}

/// When no endpoint was available and none refused this time: the refusal of
/// the endpoint that is skipped after an earlier admission refusal and may be
/// tried again first (its reason, and the time left as the retry hint), if any
/// endpoint is out only for that reason.
#[cold]
fn skipped_refusal<T, A, C>(
    snap: &Snapshot<T, A, C>,
    now: u64,
    min_applied: u64,
    skip: impl Skip<T, A, C>,
) -> Option<Rejected> {
    snap.local
        .iter()
        .chain(&snap.remote)
        .filter(|e| {
            !skip.skips(e)
                && e.healthy.load(Ordering::Relaxed)
                && e.try_return(now)
                && e.lag_ok.load(Ordering::Relaxed)
                && (min_applied == 0
                    || e.applied.load(Ordering::Acquire) >= min_applied
                    || e.is_primary.load(Ordering::Relaxed))
        })
        .map(|e| {
            (
                e.refused_until.load(Ordering::Relaxed),
                e.refused_reason.load(Ordering::Relaxed),
            )
        })
        .filter(|&(until, _)| until > now)
        .min_by_key(|&(until, _)| until)
        .map(|(until, code)| {
            Rejected::new(reason_from_code(code)).retry_after(Duration::from_nanos(until - now))
        })
}
