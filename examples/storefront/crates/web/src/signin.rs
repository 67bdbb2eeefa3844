//! Signing in when someone is guessing: limits on attempts, password hashing off
//! the async threads, and the same work whether an account exists or not.
//!
//! **Limits** (scalekit-limit's [`KeyedRateLimiter`], GCRA; 429 with
//! `Retry-After`, for pages and API alike), from the stage file's `[auth]`
//! section ([`AuthConfig`]):
//!
//! | what is counted | key | default | why |
//! | --- | --- | --- | --- |
//! | every login and sign-up attempt | client address | 30 at once, then one every 4 s | one address cannot spray guesses over many accounts, or make accounts in bulk |
//! | failed logins | account and client address | 5 at once, then one a minute | one guesser is stopped after a few tries, and only that guesser |
//! | failed logins | account | 20 at once, then one a minute | many addresses together cannot guess one account fast |
//!
//! Only failures count against an account: the account's owner, signing in with
//! the right password from an address of their own, is not locked out by someone
//! guessing from another address until that guesser reaches the per-account limit
//! from many addresses; and any lock lifts within a minute of the last failure.
//! An account is checked before its password is (a locked account answers 429
//! without hashing), and unknown emails are limited just like known ones, so the
//! answers do not tell whether an account exists. Concurrent attempts on one
//! account can pass the check before the first failure is recorded: the
//! per-address limit and the hashing queue bound how many.
//!
//! **Client address**: the TCP peer. Behind a proxy the shop trusts
//! (`storefront instance`, the app processes of a stage with a `[gateway]`, which
//! the gateway or `stages/04-load-balancing/nginx.conf` reach on loopback), the last address of
//! `X-Forwarded-For` instead: the one the proxy appended, whatever the client
//! sent before it. IPv6 clients are counted per /64 (one host usually holds a
//! whole /64).
//!
//! **Hashing** ([`HashPool`]): argon2 runs on tokio's blocking threads, at most as
//! many at once as there are cores; up to 16 per core more wait their turn (a
//! fair queue: under a second at the recommended cost), and beyond that the answer is 503 with `Retry-After: 1` at once.
//! So a flood of logins costs at most `cores x 19 MiB` of hashing memory and
//! leaves the async threads free to serve every other page.
//!
//! **Unknown emails** are checked against a dummy hash of the same cost
//! ([`Passwords::verify_dummy`]): a login costs one hash whether the account
//! exists or not.
//!
//! The limits live in each process: behind the stage 4 gateway with N app
//! processes a guesser gets up to N times the budget (a shared
//! `scalekit_limit::RedisRateLimiter` would close that gap).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use scalekit_core::{Admission, Clock, MonotonicClock, Outcome};
use scalekit_limit::{Bulkhead, DenyKind, KeyedRateLimiter, Quota, RateLimitState};
use serde::Deserialize;

use super::auth::{self, Passwords};
use super::error::AppError;
use super::AppState;
use storefront_storage::User;

/// The `[auth]` section of a stage file: cookies and the sign-in limits. Every
/// field has a default; the section may be left out.
///
/// ```toml
/// [auth]
/// # Mark the cookies `Secure` (sent over HTTPS only): for a shop served over
/// # TLS (a proxy in front terminates it). Off by default: plain HTTP on loopback.
/// secure_cookies = true
/// # Failed logins per account and client address: this many at once, then one
/// # more every `failure_refill_secs`.
/// failures_per_account_and_address = 5
/// # Failed logins per account from all addresses, refilled the same way.
/// failures_per_account = 20
/// failure_refill_secs = 60
/// # Login and sign-up attempts per client address: this many at once, then one
/// # more every `attempt_refill_ms`.
/// attempts_per_address = 30
/// attempt_refill_ms = 4000
/// # Password hashes at once (default: the number of cores) and how many more
/// # may wait per hashing thread before the answer is 503.
/// hashing_threads = 2
/// hashing_queue_per_thread = 16
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Mark the shop's cookies `Secure`.
    pub secure_cookies: bool,
    /// Failed logins one address may make on one account at once.
    pub failures_per_account_and_address: NonZeroU32,
    /// Failed logins all addresses together may make on one account at once.
    pub failures_per_account: NonZeroU32,
    /// One more failed login is allowed this often, on both account limits.
    pub failure_refill_secs: NonZeroU32,
    /// Login and sign-up attempts one address may make at once.
    pub attempts_per_address: NonZeroU32,
    /// One more attempt from an address is allowed this often, in milliseconds.
    pub attempt_refill_ms: NonZeroU32,
    /// Password hashes run at once; `None`: one per core.
    pub hashing_threads: Option<NonZeroU32>,
    /// Password checks that may wait per hashing thread; beyond, 503.
    pub hashing_queue_per_thread: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            failures_per_account_and_address: NonZeroU32::MIN.saturating_add(4),
            failures_per_account: NonZeroU32::MIN.saturating_add(19),
            failure_refill_secs: NonZeroU32::MIN.saturating_add(59),
            attempts_per_address: NonZeroU32::MIN.saturating_add(29),
            attempt_refill_ms: NonZeroU32::MIN.saturating_add(3999),
            hashing_threads: None,
            hashing_queue_per_thread: 16,
        }
    }
}

/// Keys the limiters track at most (32 bytes each): past that, a new account
/// or address finds a slot only when an idle one frees up.
const MAX_KEYS: usize = 100_000;

/// A limiter with the kit's checks on settings that are constants here (the
/// shard count is the default power of two, `MAX_KEYS` is in range).
fn keyed<K: std::hash::Hash + ?Sized, C: scalekit_core::Clock>(
    quota: Quota,
    clock: C,
) -> KeyedRateLimiter<K, C> {
    match KeyedRateLimiter::<K>::builder(quota)
        .max_keys(MAX_KEYS)
        .clock(clock)
        .build()
    {
        Ok(limiter) => limiter,
        Err(e) => unreachable!("constant limiter settings are valid: {e}"),
    }
}

/// `burst` units, then one every `every` (at most a day, as quotas allow).
fn quota(burst: NonZeroU32, every: Duration) -> Quota {
    let every = every.clamp(Duration::from_nanos(1), scalekit_limit::MAX_INTERVAL);
    match Quota::with_interval(every) {
        Ok(q) => q.allow_burst(burst),
        Err(e) => unreachable!("a clamped interval is valid: {e}"),
    }
}

/// Time until a bucket in `state` holds one unit again.
fn until_one(state: RateLimitState, quota: Quota) -> Duration {
    let spare = quota.interval() * quota.burst().saturating_sub(1);
    state.reset_after().saturating_sub(spare)
}

fn whole_secs(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

/// The three limits, on any clock (tests use a manual one).
#[derive(Debug)]
pub struct Limits<C = MonotonicClock> {
    per_address: KeyedRateLimiter<IpAddr, C>,
    per_account: KeyedRateLimiter<str, C>,
    per_account_address: KeyedRateLimiter<str, C>,
    limited_by_address: AtomicU64,
    limited_by_account: AtomicU64,
}

impl Limits {
    /// The limits of `config` on the real clock.
    pub fn new(config: &AuthConfig) -> Self {
        Self::with_clock(config, MonotonicClock)
    }
}

impl<C: Clock + Clone> Limits<C> {
    /// The limits of `config` reading time from `clock`.
    pub fn with_clock(config: &AuthConfig, clock: C) -> Self {
        let failures = Duration::from_secs(u64::from(config.failure_refill_secs.get()));
        let attempts = Duration::from_millis(u64::from(config.attempt_refill_ms.get()));
        Self {
            per_address: keyed(quota(config.attempts_per_address, attempts), clock.clone()),
            per_account: keyed(quota(config.failures_per_account, failures), clock.clone()),
            per_account_address: keyed(
                quota(config.failures_per_account_and_address, failures),
                clock,
            ),
            limited_by_address: AtomicU64::new(0),
            limited_by_account: AtomicU64::new(0),
        }
    }

    /// Takes one attempt from `addr`'s budget (a shared one for requests with no
    /// known address).
    pub fn attempt(&self, addr: Option<IpAddr>) -> Result<(), AppError> {
        let checked = match addr {
            Some(ip) => self.per_address.check_key(&ip),
            None => self.per_address.check_unkeyed(),
        };
        checked.map(|_| ()).map_err(|denied| {
            self.limited_by_address.fetch_add(1, Ordering::Relaxed);
            let secs = denied.retry_after_secs().unwrap_or(1);
            let reason = match denied.kind() {
                DenyKind::KeysFull => "the shop is tracking too many addresses right now",
                _ => "too many sign-in attempts from your address",
            };
            AppError::TooManyAttempts {
                message: format!("{reason}: please try again in {secs} s"),
                retry_after_secs: secs,
            }
        })
    }

    fn pair_key(email: &str, addr: Option<IpAddr>) -> String {
        match addr {
            Some(ip) => format!("{email}\u{0}{ip}"),
            None => format!("{email}\u{0}-"),
        }
    }

    /// `Err` (429) while `email` may not fail again, from `addr` or at all.
    pub fn account_open(&self, email: &str, addr: Option<IpAddr>) -> Result<(), AppError> {
        let pair = Self::pair_key(email, addr);
        let waits = [
            (
                self.per_account_address.state_of(&pair),
                self.per_account_address.quota(),
            ),
            (self.per_account.state_of(email), self.per_account.quota()),
        ];
        let wait = waits
            .into_iter()
            .filter(|(state, _)| state.remaining() == 0)
            .map(|(state, quota)| until_one(state, quota))
            .max();
        match wait {
            None => Ok(()),
            Some(wait) => {
                self.limited_by_account.fetch_add(1, Ordering::Relaxed);
                let secs = whole_secs(wait);
                Err(AppError::TooManyAttempts {
                    message: format!(
                        "too many failed sign-ins for this account: please try again in {secs} s"
                    ),
                    retry_after_secs: secs,
                })
            }
        }
    }

    /// Counts a failed login on `email` from `addr`. A full key table is let
    /// pass here: the per-address limit still holds.
    pub fn failed(&self, email: &str, addr: Option<IpAddr>) {
        let _ = self
            .per_account_address
            .check_key(&Self::pair_key(email, addr));
        let _ = self.per_account.check_key(email);
    }

    /// Requests refused so far: (by address, by account).
    pub fn refused(&self) -> (u64, u64) {
        (
            self.limited_by_address.load(Ordering::Relaxed),
            self.limited_by_account.load(Ordering::Relaxed),
        )
    }
}

/// A slot in the hashing queue, freed on drop (wherever the work ends).
struct Admitted(Arc<Bulkhead>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.record((), Outcome::Ignored, Duration::ZERO);
    }
}

/// Lowers the running count when a hash ends, even by a panic.
struct Running(Arc<AtomicU32>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Password hashing off the async threads: at most `threads` hashes run at once
/// on tokio's blocking threads, up to `queue` more wait in a fair queue, and the
/// rest are refused at once ([`AppError::Busy`], 503 with `Retry-After: 1`).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::num::NonZeroU32;
/// use storefront_web::signin::HashPool;
///
/// let pool = HashPool::new(NonZeroU32::new(2).unwrap(), 4);
/// let answer = pool.run(|| 6 * 7).await.unwrap();
/// assert_eq!(answer, 42);
/// assert_eq!(pool.stats().peak, 1);
/// # });
/// ```
#[derive(Debug)]
pub struct HashPool {
    threads: Arc<tokio::sync::Semaphore>,
    size: u32,
    admitted: Arc<Bulkhead>,
    running: Arc<AtomicU32>,
    peak: Arc<AtomicU32>,
    completed: AtomicU64,
    rejected: AtomicU64,
}

/// What a [`HashPool`] has done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashPoolStats {
    /// Hashes allowed at once.
    pub size: u32,
    /// Checks that may wait beyond those.
    pub queue: u32,
    /// Hashes running now.
    pub running: u32,
    /// The most hashes that ran at once.
    pub peak: u32,
    /// Hashes finished.
    pub completed: u64,
    /// Checks refused because the queue was full.
    pub rejected: u64,
}

impl HashPool {
    /// `threads` hashes at once and `queue` more waiting.
    pub fn new(threads: NonZeroU32, queue: u32) -> Self {
        let size = threads.get();
        Self {
            threads: Arc::new(tokio::sync::Semaphore::new(size as usize)),
            size,
            admitted: Arc::new(Bulkhead::new(size.saturating_add(queue))),
            running: Arc::default(),
            peak: Arc::default(),
            completed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// The pool `config` asks for: one thread per core unless it says otherwise.
    pub fn for_config(config: &AuthConfig) -> Self {
        let threads = config.hashing_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .and_then(|n| NonZeroU32::new(u32::try_from(n.get()).unwrap_or(u32::MAX)))
                .unwrap_or(NonZeroU32::MIN)
        });
        Self::new(
            threads,
            threads
                .get()
                .saturating_mul(config.hashing_queue_per_thread),
        )
    }

    /// Runs `work` on a blocking thread once a slot is free; [`AppError::Busy`]
    /// at once when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        if self.admitted.try_acquire().is_err() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(AppError::Busy {
                retry_after_secs: 1,
            });
        }
        let admitted = Admitted(self.admitted.clone());
        let permit = self
            .threads
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppError::Internal("the password hashing pool is closed".into()))?;
        let (running, peak) = (self.running.clone(), self.peak.clone());
        // The slot and the permit go with the work: a client that leaves does not
        // free them while its hash still runs.
        let done = tokio::task::spawn_blocking(move || {
            let _slot = (admitted, permit);
            let now = running.fetch_add(1, Ordering::AcqRel) + 1;
            peak.fetch_max(now, Ordering::AcqRel);
            let _running = Running(running);
            work()
        })
        .await
        .map_err(|e| AppError::Internal(format!("a password hash failed: {e}")))?;
        self.completed.fetch_add(1, Ordering::Relaxed);
        Ok(done)
    }

    /// The figures now.
    pub fn stats(&self) -> HashPoolStats {
        HashPoolStats {
            size: self.size,
            queue: self.admitted.max().saturating_sub(self.size),
            running: self.running.load(Ordering::Acquire),
            peak: self.peak.load(Ordering::Acquire),
            completed: self.completed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// The sign-in guard every handler shares: the limits and the hashing pool.
#[derive(Debug)]
pub struct SignIn {
    /// Attempts per address, failures per account.
    pub limits: Limits,
    /// Where passwords are hashed and checked.
    pub pool: HashPool,
}

impl SignIn {
    /// The guard `config` describes.
    pub fn new(config: &AuthConfig) -> Self {
        Self {
            limits: Limits::new(config),
            pool: HashPool::for_config(config),
        }
    }

    /// A new password's hash, made in the pool.
    pub async fn hash(&self, passwords: &Passwords, password: &str) -> Result<String, AppError> {
        let (passwords, password) = (passwords.clone(), password.to_owned());
        self.pool.run(move || passwords.hash(&password)).await?
    }

    /// Whether `password` matches `hash`, checked in the pool; without a hash
    /// (no such account), checked against the dummy hash: the same work, `false`.
    pub async fn verify(
        &self,
        passwords: &Passwords,
        password: &str,
        hash: Option<String>,
    ) -> Result<bool, AppError> {
        let (passwords, password) = (passwords.clone(), password.to_owned());
        self.pool
            .run(move || match hash {
                Some(hash) => passwords.verify(&password, &hash),
                None => passwords.verify_dummy(&password),
            })
            .await
    }
}

/// The client's address as the limits count it (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The address of a request with these `headers` from `peer`, trusting
    /// `X-Forwarded-For` when `trust_forwarded` (a proxy the shop trusts is in
    /// front). IPv6 addresses are cut to their /64.
    pub fn from_request(
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        trust_forwarded: bool,
    ) -> Self {
        let forwarded = trust_forwarded
            .then(|| {
                headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .next_back()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit(',').next())
                    .and_then(|last| last.trim().parse::<IpAddr>().ok())
            })
            .flatten();
        Self(forwarded.or(peer.map(|p| p.ip())).map(per_host))
    }
}

/// IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 cut to the /64.
fn per_host(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(Self::from_request(
            &parts.headers,
            peer,
            state.config.trust_forwarded,
        ))
    }
}

/// A login: the address's budget, the account's lock, then the password (in
/// the pool; an unknown email against the dummy hash). Failures are counted on
/// the account.
pub(crate) async fn log_in(
    state: &AppState,
    addr: ClientAddr,
    email: &str,
    password: &str,
) -> Result<User, AppError> {
    let limits = &state.signin.limits;
    limits.attempt(addr.0)?;
    let typed = email;
    let email = auth::valid_email(typed)?;
    limits.account_open(&email, addr.0)?;
    if password.is_empty() || password.chars().count() > 128 {
        limits.failed(&email, addr.0);
        return Err(AppError::BadCredentials);
    }
    let mut found = state.store.user_credentials(&email).await?;
    let legacy = auth::legacy_email(typed);
    if found.is_none() && legacy != email {
        found = state.store.user_credentials(&legacy).await?;
    }
    let (user, hash) = found.unzip();
    let matches = state
        .signin
        .verify(&state.passwords, password, hash)
        .await?;
    match user {
        Some(user) if matches => Ok(user),
        _ => {
            limits.failed(&email, addr.0);
            Err(AppError::BadCredentials)
        }
    }
}

/// A new account's checked name, email and password hash: the address's budget,
/// the input rules and the password policy, then the hash (in the pool).
pub(crate) async fn new_account(
    state: &AppState,
    addr: ClientAddr,
    name: &str,
    email: &str,
    password: &str,
) -> Result<storefront_storage::NewUser, AppError> {
    state.signin.limits.attempt(addr.0)?;
    let name = auth::valid_name(name)?;
    let email = auth::valid_email(email)?;
    auth::valid_password(password, &email, &name)?;
    let password_hash = state.signin.hash(&state.passwords, password).await?;
    Ok(storefront_storage::NewUser {
        email,
        name,
        password_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalekit_core::ManualClock;

    fn config() -> AuthConfig {
        AuthConfig::default()
    }

    #[test]
    fn failures_lock_the_account_for_that_address_first() {
        let clock = ManualClock::new();
        let limits = Limits::with_clock(&config(), clock.clone());
        let (a, b) = (
            Some(IpAddr::from([192, 0, 2, 1])),
            Some(IpAddr::from([192, 0, 2, 2])),
        );
        for _ in 0..5 {
            assert!(limits.account_open("ann@example.com", a).is_ok());
            limits.failed("ann@example.com", a);
        }
        let locked = limits.account_open("ann@example.com", a).err();
        assert_eq!(
            locked.as_ref().and_then(AppError::retry_after_secs),
            Some(60)
        );
        assert!(locked.is_some_and(|e| e.to_string().contains("this account")));
        // Another address, another account: open.
        assert!(limits.account_open("ann@example.com", b).is_ok());
        assert!(limits.account_open("bob@example.com", a).is_ok());
        // A minute later, one more try.
        clock.advance(Duration::from_secs(59));
        assert!(limits.account_open("ann@example.com", a).is_err());
        clock.advance(Duration::from_secs(1));
        assert!(limits.account_open("ann@example.com", a).is_ok());
        assert_eq!(limits.refused(), (0, 2));
    }

    #[test]
    fn many_addresses_lock_the_account_at_its_own_limit() {
        let clock = ManualClock::new();
        let limits = Limits::with_clock(&config(), clock.clone());
        for i in 0..20u8 {
            let addr = Some(IpAddr::from([198, 51, 100, i]));
            assert!(limits.account_open("ann@example.com", addr).is_ok(), "{i}");
            limits.failed("ann@example.com", addr);
        }
        let fresh = Some(IpAddr::from([203, 0, 113, 9]));
        let locked = limits.account_open("ann@example.com", fresh).err();
        assert_eq!(locked.and_then(|e| e.retry_after_secs()), Some(60));
        clock.advance(Duration::from_secs(60));
        assert!(limits.account_open("ann@example.com", fresh).is_ok());
    }

    #[test]
    fn attempts_per_address_refill_every_four_seconds() {
        let clock = ManualClock::new();
        let limits = Limits::with_clock(&config(), clock.clone());
        let a = Some(IpAddr::from([192, 0, 2, 1]));
        for _ in 0..30 {
            assert!(limits.attempt(a).is_ok());
        }
        let refused = limits.attempt(a).err();
        assert_eq!(
            refused.as_ref().and_then(AppError::retry_after_secs),
            Some(4)
        );
        assert!(refused.is_some_and(|e| e.to_string().contains("from your address")));
        assert!(limits.attempt(Some(IpAddr::from([192, 0, 2, 2]))).is_ok());
        clock.advance(Duration::from_secs(4));
        assert!(limits.attempt(a).is_ok());
        assert!(limits.attempt(a).is_err());
    }

    #[test]
    fn forwarded_for_is_trusted_only_behind_a_proxy() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            "203.0.113.5, 10.0.0.1"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        headers.append(
            "x-forwarded-for",
            "198.51.100.7".parse().unwrap_or_else(|_| unreachable!()),
        );
        let peer = Some(SocketAddr::from(([127, 0, 0, 1], 5000)));
        assert_eq!(
            ClientAddr::from_request(&headers, peer, true).0,
            Some(IpAddr::from([198, 51, 100, 7])),
            "the last hop the proxy appended"
        );
        assert_eq!(
            ClientAddr::from_request(&headers, peer, false).0,
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        let v6 = SocketAddr::new(
            "2001:db8:1:2:3:4:5:6"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            1,
        );
        assert_eq!(
            ClientAddr::from_request(&HeaderMap::new(), Some(v6), true).0,
            Some("2001:db8:1:2::".parse().unwrap_or_else(|_| unreachable!()))
        );
        assert_eq!(
            ClientAddr::from_request(&HeaderMap::new(), None, true).0,
            None
        );
    }

    /// Work in the pool runs off the runtime's own thread: on a single-threaded
    /// runtime, a task that is blocked until the runtime answers it would never
    /// be answered if it ran on that thread.
    #[test]
    fn pool_work_runs_off_the_async_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(runtime) = runtime else {
            panic!("cannot build a runtime");
        };
        runtime.block_on(async {
            let pool = Arc::new(HashPool::new(NonZeroU32::MIN, 2));
            let (ask, mut asked) =
                tokio::sync::mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<u32>>();
            let work = {
                let pool = pool.clone();
                tokio::spawn(async move {
                    pool.run(move || {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        let _ = ask.send(tx);
                        // Blocks this thread until the async side answers.
                        rx.blocking_recv().unwrap_or(0)
                    })
                    .await
                })
            };
            // The async side answers the question from the work.
            let Some(reply) = asked.recv().await else {
                panic!("the work never asked");
            };
            let _ = reply.send(42);
            let answer = work.await.ok().and_then(Result::ok);
            assert_eq!(answer, Some(42));
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_runs_at_most_its_size_and_refuses_past_its_queue() {
        let pool = Arc::new(HashPool::new(NonZeroU32::MIN.saturating_add(1), 3));
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (pool, gate) = (pool.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    let (open, cv) = &*gate;
                    let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
                    while !*open {
                        open = cv.wait(open).unwrap_or_else(|p| p.into_inner());
                    }
                })
                .await
            }));
        }
        // Two run (held at the gate), three wait: until they are all in.
        while pool.admitted.in_flight() < 5 || pool.stats().running < 2 {
            tokio::task::yield_now().await;
        }
        let busy = pool.run(|| ()).await.err();
        assert_eq!(
            busy.as_ref().map(AppError::status).map(|s| s.as_u16()),
            Some(503)
        );
        assert_eq!(busy.and_then(|e| e.retry_after_secs()), Some(1));
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
        for t in tasks {
            assert!(t.await.is_ok_and(|r| r.is_ok()));
        }
        let stats = pool.stats();
        assert_eq!(
            (stats.size, stats.queue, stats.peak),
            (2, 3, 2),
            "{stats:?}"
        );
        assert_eq!((stats.completed, stats.rejected, stats.running), (5, 1, 0));
        assert_eq!(pool.admitted.in_flight(), 0);
    }
}
