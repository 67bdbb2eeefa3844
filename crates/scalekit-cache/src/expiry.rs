//! Deadlines per entry.

use std::time::Duration;

/// A deadline per entry, from its key and value, set when it is written and
/// optionally moved when it is read (moka's and Caffeine's `Expiry`).
///
/// Each method returns the entry's lifetime from now: `Some(duration)`, or
/// `None` for no deadline from this policy (the cache's time-to-live and
/// time-to-idle still apply: the earliest deadline wins).
///
/// ```
/// use std::time::Duration;
/// use scalekit_cache::{Cache, Expiry};
///
/// /// "Not found" answers are kept for a shorter time than found ones.
/// struct Negative;
/// impl Expiry<u64, Option<String>> for Negative {
///     fn expire_after_create(&self, _: &u64, value: &Option<String>) -> Option<Duration> {
///         Some(if value.is_some() { Duration::from_secs(300) } else { Duration::from_secs(5) })
///     }
/// }
///
/// let cache: Cache<u64, Option<String>> =
///     Cache::builder().max_capacity(1_000).expire_after(Negative).build()?;
/// cache.insert(1, None);
/// assert_eq!(cache.get(&1), Some(None));
/// # Ok::<(), scalekit_cache::ConfigError>(())
/// ```
///
/// A deadline that reads move (a session kept for ten minutes after each read,
/// at most a day after it was written):
///
/// ```
/// use std::time::Duration;
/// use scalekit_cache::{Cache, Expiry};
/// use scalekit_core::ManualClock;
///
/// struct Sessions;
/// impl Expiry<u64, String> for Sessions {
///     fn expire_after_create(&self, _: &u64, _: &String) -> Option<Duration> {
///         Some(Duration::from_secs(600))
///     }
///     fn expire_after_read(&self, _: &u64, _: &String, _remaining: Option<Duration>) -> Option<Duration> {
///         Some(Duration::from_secs(600))
///     }
/// }
///
/// let clock = ManualClock::new();
/// let sessions: Cache<u64, String, _, ManualClock> = Cache::builder()
///     .max_capacity(1_000)
///     .time_to_live(Duration::from_secs(86_400))
///     .expire_after(Sessions)
///     .clock(clock.clone())
///     .build()?;
/// sessions.insert(7, "ada".into());
/// clock.advance(Duration::from_secs(599));
/// assert!(sessions.get(&7).is_some()); // read: ten more minutes
/// clock.advance(Duration::from_secs(599));
/// assert!(sessions.get(&7).is_some());
/// clock.advance(Duration::from_secs(600));
/// assert_eq!(sessions.get(&7), None);
/// # Ok::<(), scalekit_cache::ConfigError>(())
/// ```
pub trait Expiry<K, V>: Send + Sync {
    /// The lifetime of a new entry.
    fn expire_after_create(&self, key: &K, value: &V) -> Option<Duration>;

    /// The lifetime of an entry whose value was replaced; by default the same
    /// as a new one.
    fn expire_after_update(&self, key: &K, value: &V) -> Option<Duration> {
        self.expire_after_create(key, value)
    }

    /// The lifetime of an entry from the moment it is read (by
    /// [`get`](crate::Cache::get), the loading methods and
    /// [`entry`](crate::Cache::entry)), given the time it has left (`None`:
    /// no deadline). Returning `remaining` unchanged (the default) keeps the
    /// deadline; anything else replaces this policy's deadline with
    /// `now + duration` (`None`: none). The time-to-live still caps it.
    ///
    /// It runs on the read path, under the shard's shared lock: keep it
    /// cheap. A deadline a read moves earlier is rescheduled on the timer
    /// wheel at once (under the shard's exclusive lock); one moved later is
    /// rescheduled lazily, when the wheel reaches the old one.
    fn expire_after_read(
        &self,
        key: &K,
        value: &V,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        let _ = (key, value);
        remaining
    }
}
