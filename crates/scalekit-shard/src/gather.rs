//! Scatter-gather: run one request on many shards, concurrently, with a
//! timeout per shard and a policy for failed shards.

use std::error::Error;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};

use crate::router::Target;

/// Your database client, as the executor sees it: run `request` on one target.
///
/// Implement it over sqlx, tokio-postgres, a Redis client or anything else; the
/// executor only calls it. `request` is whatever your client needs (SQL text with
/// `{table}` to fill in, a prepared statement, a closure's input).
///
/// ```
/// use async_trait::async_trait;
/// use scalekit_shard::{ShardExecutor, Target};
///
/// struct Fake;
///
/// #[async_trait]
/// impl ShardExecutor for Fake {
///     type Request = str;
///     type Response = Vec<String>;
///     type Error = std::io::Error;
///
///     async fn execute(&self, target: &Target, sql: &str) -> Result<Vec<String>, std::io::Error> {
///         Ok(vec![sql.replace("{table}", &target.table)])
///     }
/// }
/// ```
#[async_trait]
pub trait ShardExecutor: Send + Sync {
    /// What is sent to each shard.
    type Request: Send + Sync + ?Sized;
    /// What one shard answers.
    type Response: Send;
    /// How one shard fails.
    type Error: Error + Send + Sync + 'static;

    /// Runs `request` on `target`.
    async fn execute(
        &self,
        target: &Target,
        request: &Self::Request,
    ) -> Result<Self::Response, Self::Error>;
}

/// What to do when a shard fails or times out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnShardFailure {
    /// Fail the whole query with the first failure (the default).
    #[default]
    Fail,
    /// Return what the other shards answered and name the missing ones.
    Partial,
}

/// Why one shard gave no answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShardFailure<E> {
    /// The shard's call failed.
    Error(E),
    /// The shard did not answer within the timeout.
    Timeout(Duration),
}

impl<E: fmt::Display> fmt::Display for ShardFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardFailure::Error(e) => write!(f, "{e}"),
            ShardFailure::Timeout(d) => write!(f, "no answer within {d:?}"),
        }
    }
}

/// A shard left out of a partial result.
#[derive(Debug)]
pub struct MissingShard<E> {
    /// The shard.
    pub target: Target,
    /// Why.
    pub failure: ShardFailure<E>,
}

/// What the shards answered, in the order the targets were given.
#[derive(Debug)]
pub struct Gathered<R, E> {
    /// Each answering shard and its answer.
    pub responses: Vec<(Target, R)>,
    /// The shards that failed (only under [`OnShardFailure::Partial`]).
    pub missing: Vec<MissingShard<E>>,
}

impl<R, E> Gathered<R, E> {
    /// Whether every shard answered.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// A scatter-gather that failed (under [`OnShardFailure::Fail`]).
#[derive(Debug)]
pub struct GatherError<E> {
    /// The first shard that failed.
    pub target: Target,
    /// How.
    pub failure: ShardFailure<E>,
}

impl<E: fmt::Display> fmt::Display for GatherError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard {} failed: {}", self.target, self.failure)
    }
}

impl<E: Error + 'static> Error for GatherError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.failure {
            ShardFailure::Error(e) => Some(e),
            ShardFailure::Timeout(_) => None,
        }
    }
}

/// Counters of a [`ScatterGather`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatherStats {
    /// Scatter-gathers run.
    pub runs: u64,
    /// Shard calls made.
    pub calls: u64,
    /// Shard calls that failed.
    pub failures: u64,
    /// Shard calls that timed out.
    pub timeouts: u64,
    /// Runs that returned a partial result.
    pub partial: u64,
}

/// Runs one request on many shards: at most `concurrency` at once, each within
/// `timeout`, failed shards handled by the [`OnShardFailure`] policy.
///
/// ```
/// # use async_trait::async_trait;
/// # use scalekit_shard::{ShardExecutor, Target};
/// # struct Count;
/// # #[async_trait]
/// # impl ShardExecutor for Count {
/// #     type Request = ();
/// #     type Response = u64;
/// #     type Error = std::io::Error;
/// #     async fn execute(&self, t: &Target, _: &()) -> Result<u64, std::io::Error> { Ok(t.table.len() as u64) }
/// # }
/// use scalekit_shard::{OnShardFailure, ScatterGather};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let sg = ScatterGather::new()
///     .concurrency(8)
///     .timeout(Duration::from_secs(2))
///     .on_failure(OnShardFailure::Partial);
/// let targets = [Target::new("a", "t_0"), Target::new("b", "t_10")];
/// let got = sg.run(&Count, &targets, &()).await.unwrap();
/// let total: u64 = got.responses.iter().map(|(_, n)| n).sum();
/// assert_eq!(total, 7);
/// assert!(got.is_complete());
/// # });
/// ```
#[derive(Debug)]
pub struct ScatterGather {
    concurrency: NonZeroUsize,
    timeout: Option<Duration>,
    on_failure: OnShardFailure,
    runs: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    partial: AtomicU64,
}

impl Default for ScatterGather {
    fn default() -> Self {
        Self::new()
    }
}

impl ScatterGather {
    /// 16 shards at once, a 10 s timeout per shard, fail on the first failure.
    pub fn new() -> Self {
        Self {
            concurrency: NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN),
            timeout: Some(Duration::from_secs(10)),
            on_failure: OnShardFailure::Fail,
            runs: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            partial: AtomicU64::new(0),
        }
    }

    /// At most `n` shards queried at once (0 is taken as 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        self
    }

    /// The time each shard has to answer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// No timeout: wait for every shard.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// What a failed shard does to the query.
    pub fn on_failure(mut self, policy: OnShardFailure) -> Self {
        self.on_failure = policy;
        self
    }

    /// The counters.
    pub fn stats(&self) -> GatherStats {
        GatherStats {
            runs: self.runs.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            partial: self.partial.load(Ordering::Relaxed),
        }
    }

    /// Runs `request` on every target. Under [`OnShardFailure::Fail`] the first
    /// failure cancels the calls still running and is returned.
    pub async fn run<X>(
        &self,
        executor: &X,
        targets: &[Target],
        request: &X::Request,
    ) -> Result<Gathered<X::Response, X::Error>, GatherError<X::Error>>
    where
        X: ShardExecutor + ?Sized,
    {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let timeout = self.timeout;
        // The calls are collected before they become a stream: a stream mapped
        // by a closure over borrowed targets makes this future fail the
        // higher-ranked `Send` check (rust-lang/rust#102211), so it could not be
        // awaited inside an `async_trait` method or `tokio::spawn`.
        let calls: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| async move {
                let answer = match timeout {
                    Some(d) => match tokio::time::timeout(d, executor.execute(t, request)).await {
                        Ok(r) => r.map_err(ShardFailure::Error),
                        Err(_) => Err(ShardFailure::Timeout(d)),
                    },
                    None => executor
                        .execute(t, request)
                        .await
                        .map_err(ShardFailure::Error),
                };
                (i, answer)
            })
            .collect();
        let mut calls = stream::iter(calls).buffer_unordered(self.concurrency.get());
        let mut ok: Vec<(usize, X::Response)> = Vec::with_capacity(targets.len());
        let mut missing: Vec<(usize, ShardFailure<X::Error>)> = Vec::new();
        while let Some((i, answer)) = calls.next().await {
            self.calls.fetch_add(1, Ordering::Relaxed);
            match answer {
                Ok(r) => ok.push((i, r)),
                Err(failure) => {
                    match failure {
                        ShardFailure::Timeout(_) => self.timeouts.fetch_add(1, Ordering::Relaxed),
                        ShardFailure::Error(_) => self.failures.fetch_add(1, Ordering::Relaxed),
                    };
                    if self.on_failure == OnShardFailure::Fail {
                        return Err(GatherError {
                            target: targets[i].clone(),
                            failure,
                        });
                    }
                    missing.push((i, failure));
                }
            }
        }
        if !missing.is_empty() {
            self.partial.fetch_add(1, Ordering::Relaxed);
        }
        ok.sort_by_key(|(i, _)| *i);
        missing.sort_by_key(|(i, _)| *i);
        Ok(Gathered {
            responses: ok
                .into_iter()
                .map(|(i, r)| (targets[i].clone(), r))
                .collect(),
            missing: missing
                .into_iter()
                .map(|(i, failure)| MissingShard {
                    target: targets[i].clone(),
                    failure,
                })
                .collect(),
        })
    }
}
