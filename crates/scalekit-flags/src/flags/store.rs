//! The store itself: the serving state behind an atomic pointer, its history, the
//! kill switches, the pending metrics and the hooks. Evaluation is in
//! [`eval`](super::eval), construction in [`builder`](super::builder).

use crate::compile::{compile, Compiled, Options};
use crate::error::FlagsError;
use crate::event::{Event, Hook, LoadReport};
use crate::flags::parse::{parse_json, Update};
use crate::impression::ImpressionHook;
use crate::metrics::{MetricsBucket, ToggleMetrics, WallAnchor};
use crate::model::{ClientFeatures, Delta};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use scalekit_core::{Clock, MonotonicClock};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One version of the state with the kill switches applied to it.
pub(crate) struct Snapshot {
    pub(crate) compiled: Arc<Compiled>,
    pub(crate) killed: Box<[bool]>,
    pub(crate) version: u64,
}

/// Counts drained from retired states, and when the current bucket started.
pub(super) struct Pending {
    /// The clock's reading when the bucket started.
    pub(super) start: u64,
    pub(super) toggles: BTreeMap<String, ToggleMetrics>,
}

pub(super) struct Inner<C> {
    /// The serving snapshot's stamp: a fresh [`next_stamp`] on every swap, unique
    /// across all stores, so that the per-thread snapshot cache tells which store
    /// and which version it holds by this one number.
    pub(super) stamp: AtomicU64,
    pub(super) current: ArcSwap<Snapshot>,
    pub(super) history: Mutex<VecDeque<(u64, Arc<Compiled>)>>,
    pub(super) keep: usize,
    pub(super) killed: Mutex<BTreeSet<String>>,
    pub(super) opts: Options,
    pub(super) metrics: bool,
    pub(super) impressions: Box<[ImpressionHook]>,
    pub(super) pending: Mutex<Pending>,
    pub(super) hooks: Vec<Hook>,
    pub(super) next_version: AtomicU64,
    pub(super) update: Mutex<()>,
    pub(super) clock: C,
    pub(super) wall: WallAnchor,
}

/// The flag store. Cheap to clone (all clones share one state); evaluation is a
/// plain method that takes `&self`, reads the serving state through an atomic
/// pointer, and allocates nothing.
///
/// `C` is the clock that times metrics buckets (the real [`MonotonicClock`] by
/// default; tests use a [`ManualClock`](scalekit_core::ManualClock), see
/// [`FlagsBuilder::clock`](crate::FlagsBuilder::clock)). Evaluation never reads it.
///
/// ```
/// use scalekit_flags::{Context, Flags};
///
/// let flags = Flags::new();
/// flags.load_json(r#"{"version":2,"features":[
///   {"name":"checkout.v2","enabled":true,"strategies":[
///     {"name":"flexibleRollout","parameters":{"rollout":"100","stickiness":"userId","groupId":"checkout"}}]}
/// ]}"#, "inline").unwrap();
/// assert!(flags.is_enabled("checkout.v2", &Context::new().user_id("42")));
/// assert!(!flags.is_enabled("checkout.v2", &Context::new())); // no userId, no stickiness
/// assert!(!flags.is_enabled("unknown", &Context::new()));
/// ```
pub struct Flags<C: Clock = MonotonicClock> {
    pub(super) inner: Arc<Inner<C>>,
}

impl<C: Clock> Clone for Flags<C> {
    fn clone(&self) -> Self {
        Flags {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for Flags<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.inner.current.load();
        f.debug_struct("Flags")
            .field("version", &s.version)
            .field("toggles", &s.compiled.toggles.len())
            .finish()
    }
}

/// The last stamp handed out (see `Inner::stamp`).
static LAST_STAMP: AtomicU64 = AtomicU64::new(0);

/// A stamp no store has had.
pub(super) fn next_stamp() -> u64 {
    LAST_STAMP.fetch_add(1, Ordering::Relaxed) + 1
}

impl<C: Clock> Flags<C> {
    fn emit(&self, e: Event) {
        for h in &self.inner.hooks {
            h(&e);
        }
    }

    /// Reports an update that failed before it reached the store (used by sources).
    pub(crate) fn reject(&self, origin: &str, error: FlagsError) -> FlagsError {
        if !self.inner.hooks.is_empty() {
            self.emit(Event::Rejected {
                origin: origin.to_owned(),
                error: Arc::new(error.duplicate()),
            });
        }
        error
    }

    #[cfg_attr(
        not(any(feature = "http", feature = "redis", feature = "watch")),
        allow(dead_code)
    )]
    pub(crate) fn source_failed(&self, origin: &str, error: FlagsError) {
        self.emit(Event::SourceFailed {
            origin: origin.to_owned(),
            error: Arc::new(error),
        });
    }

    fn killed_for(&self, c: &Compiled) -> Box<[bool]> {
        let k = self.inner.killed.lock();
        if k.is_empty() {
            return Box::new([]);
        }
        c.toggles.iter().map(|t| k.contains(&*t.name)).collect()
    }

    /// Drains a retired state's counters into the pending bucket.
    fn retire(&self, old: &Compiled) {
        if !self.inner.metrics {
            return;
        }
        let mut p = self.inner.pending.lock();
        for (t, c) in old.toggles.iter().zip(old.counters.iter()) {
            let e = p.toggles.entry(t.name.to_string()).or_default();
            c.drain(&t.variant_names, e);
        }
        p.toggles
            .retain(|_, m| m.yes + m.no > 0 || !m.variants.is_empty());
    }

    fn install(&self, compiled: Compiled, version: u64, origin: &str) -> LoadReport {
        let compiled = Arc::new(compiled);
        let killed = self.killed_for(&compiled);
        let old = self.inner.current.swap(Arc::new(Snapshot {
            compiled: compiled.clone(),
            killed,
            version,
        }));
        self.inner.stamp.store(next_stamp(), Ordering::Release);
        if old.version != 0 {
            let mut h = self.inner.history.lock();
            h.push_back((old.version, old.compiled.clone()));
            while h.len() > self.inner.keep {
                h.pop_front();
            }
        }
        self.retire(&old.compiled);
        let report = LoadReport {
            version,
            toggles: compiled.toggles.len(),
            warnings: compiled.warnings.clone(),
        };
        self.emit(Event::Applied {
            version,
            origin: origin.to_owned(),
            toggles: report.toggles,
            warnings: report.warnings.clone(),
        });
        report
    }

    fn apply(&self, model: ClientFeatures, origin: &str) -> Result<LoadReport, FlagsError> {
        match compile(Arc::new(model), &self.inner.opts) {
            Ok(c) => {
                let version = self.inner.next_version.fetch_add(1, Ordering::Relaxed);
                Ok(self.install(c, version, origin))
            }
            Err(e) => Err(self.reject(origin, e)),
        }
    }

    /// Replaces the state with `state`, compiled and validated first. On error the
    /// serving state is unchanged and an [`Event::Rejected`] is emitted.
    pub fn load(&self, state: ClientFeatures, origin: &str) -> Result<LoadReport, FlagsError> {
        let _g = self.inner.update.lock();
        self.apply(state, origin)
    }

    /// Applies delta events to the serving state (all of them, or none).
    pub fn apply_delta(&self, delta: &Delta, origin: &str) -> Result<LoadReport, FlagsError> {
        let _g = self.inner.update.lock();
        let mut model = (*self.inner.current.load().compiled.model).clone();
        model.apply_delta(delta);
        self.apply(model, origin)
    }

    /// Loads Unleash JSON: a client API state (`{"version", "features", "segments"}`)
    /// replaces the state; a delta body (`{"events": [...]}`) is applied to it.
    ///
    /// ```
    /// use scalekit_flags::{Context, Flags, FlagsError};
    /// let flags = Flags::new();
    /// flags.load_json(r#"{"features":[{"name":"a","enabled":true}]}"#, "v1").unwrap();
    /// let err = flags.load_json(r#"{"features":[{"name":"a","enabled":"yes"}]}"#, "v2").unwrap_err();
    /// assert!(matches!(err, FlagsError::Parse { line: 1, .. }));
    /// assert!(flags.is_enabled("a", &Context::new())); // v1 still serving
    /// ```
    pub fn load_json(&self, text: &str, origin: &str) -> Result<LoadReport, FlagsError> {
        match parse_json(text, Some(origin)) {
            Ok(Update::Full(s)) => self.load(s, origin),
            Ok(Update::Delta(d)) => self.apply_delta(&d, origin),
            Err(e) => Err(self.reject(origin, e)),
        }
    }

    /// Loads a file: `.toml` in our TOML form (feature `toml`), anything else as Unleash JSON.
    pub fn load_file(&self, path: impl AsRef<std::path::Path>) -> Result<LoadReport, FlagsError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(source) => {
                return Err(self.reject(
                    &origin,
                    FlagsError::Io {
                        path: path.to_owned(),
                        source,
                    },
                ))
            }
        };
        self.load_text(
            &text,
            &origin,
            path.extension().is_some_and(|e| e == "toml"),
        )
    }

    pub(crate) fn load_text(
        &self,
        text: &str,
        origin: &str,
        toml: bool,
    ) -> Result<LoadReport, FlagsError> {
        if toml {
            #[cfg(feature = "toml")]
            {
                return match crate::toml_form::parse(text) {
                    Ok(state) => self.load(state, origin),
                    Err(e) => Err(self.reject(origin, e.with_origin(origin))),
                };
            }
            #[cfg(not(feature = "toml"))]
            return Err(self.reject(
                origin,
                FlagsError::invalid("TOML flag files need the `toml` feature of scalekit-flags"),
            ));
        }
        self.load_json(text, origin)
    }

    /// Restores the previous version. The version that was serving is dropped.
    ///
    /// ```
    /// use scalekit_flags::{Context, Flags};
    /// let flags = Flags::new();
    /// flags.load_json(r#"{"features":[{"name":"a","enabled":true}]}"#, "good").unwrap();
    /// flags.load_json(r#"{"features":[{"name":"a","enabled":false}]}"#, "bad").unwrap();
    /// assert!(!flags.is_enabled("a", &Context::new()));
    /// assert_eq!(flags.rollback().unwrap(), 1);
    /// assert!(flags.is_enabled("a", &Context::new()));
    /// ```
    pub fn rollback(&self) -> Result<u64, FlagsError> {
        let _g = self.inner.update.lock();
        let Some((version, compiled)) = self.inner.history.lock().pop_back() else {
            return Err(FlagsError::NoHistory);
        };
        let killed = self.killed_for(&compiled);
        let old = self.inner.current.swap(Arc::new(Snapshot {
            compiled,
            killed,
            version,
        }));
        self.inner.stamp.store(next_stamp(), Ordering::Release);
        self.retire(&old.compiled);
        self.emit(Event::RolledBack { version });
        Ok(version)
    }

    /// Versions kept for rollback, oldest first.
    pub fn history(&self) -> Vec<u64> {
        self.inner.history.lock().iter().map(|(v, _)| *v).collect()
    }

    /// The version serving now (0 before the first load).
    pub fn version(&self) -> u64 {
        self.inner.current.load().version
    }

    fn rekill(&self) {
        let _g = self.inner.update.lock();
        let cur = self.inner.current.load_full();
        let killed = self.killed_for(&cur.compiled);
        self.inner.current.store(Arc::new(Snapshot {
            compiled: cur.compiled.clone(),
            killed,
            version: cur.version,
        }));
        self.inner.stamp.store(next_stamp(), Ordering::Release);
    }

    /// Forces a toggle off, whatever its strategies say, until [`revive`](Self::revive).
    /// The switch survives updates and rollbacks, and may name a toggle that does not
    /// exist yet.
    ///
    /// ```
    /// use scalekit_flags::{Context, Flags};
    /// let flags = Flags::new();
    /// flags.load_json(r#"{"features":[{"name":"a","enabled":true}]}"#, "v1").unwrap();
    /// flags.kill("a");
    /// assert!(!flags.is_enabled("a", &Context::new()));
    /// flags.revive("a");
    /// assert!(flags.is_enabled("a", &Context::new()));
    /// ```
    pub fn kill(&self, toggle: &str) {
        self.inner.killed.lock().insert(toggle.to_owned());
        self.rekill();
        self.emit(Event::Killed {
            toggle: toggle.to_owned(),
        });
    }

    /// Clears a kill switch.
    pub fn revive(&self, toggle: &str) {
        self.inner.killed.lock().remove(toggle);
        self.rekill();
        self.emit(Event::Revived {
            toggle: toggle.to_owned(),
        });
    }

    /// Toggles whose kill switch is set.
    pub fn killed(&self) -> Vec<String> {
        self.inner.killed.lock().iter().cloned().collect()
    }

    /// Whether the toggle exists in the serving state.
    pub fn contains(&self, toggle: &str) -> bool {
        self.inner.current.load().compiled.lookup(toggle).is_some()
    }

    /// The serving state's toggle names, in state order.
    pub fn toggle_names(&self) -> Vec<String> {
        self.inner
            .current
            .load()
            .compiled
            .toggles
            .iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    /// Whether impression events are requested for the toggle.
    pub fn impression_data(&self, toggle: &str) -> bool {
        let s = self.inner.current.load();
        s.compiled
            .lookup(toggle)
            .is_some_and(|i| s.compiled.toggles[i].impression_data)
    }

    /// The serving state as Unleash JSON's model (for backups and inspection).
    pub fn state(&self) -> Arc<ClientFeatures> {
        self.inner.current.load().compiled.model.clone()
    }

    /// The names of the custom strategies registered (announced when an HTTP
    /// source registers with the server).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn custom_strategy_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.opts.strategies.keys().cloned().collect();
        names.sort();
        names
    }

    /// The clock that times metrics buckets.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }

    /// The clock's reading `nanos` as RFC 3339 wall time (see [`crate::metrics`]).
    pub(crate) fn wall_time(&self, nanos: u64) -> String {
        self.inner.wall.rfc3339(nanos)
    }

    /// Drains the counts gathered since the last call into a bucket that starts
    /// where the last one stopped.
    ///
    /// ```
    /// use scalekit_core::ManualClock;
    /// use scalekit_flags::{Context, Flags};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let flags = Flags::builder().clock(clock.clone()).build();
    /// flags.load_json(r#"{"features":[{"name":"a","enabled":true}]}"#, "inline").unwrap();
    /// flags.is_enabled("a", &Context::new());
    /// clock.advance(Duration::from_secs(60));
    /// let bucket = flags.take_metrics();
    /// assert_eq!(bucket.toggles["a"].yes, 1);
    /// let (start, stop) = (bucket.start.parse::<chrono::DateTime<chrono::Utc>>().unwrap(),
    ///                      bucket.stop.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
    /// assert_eq!((stop - start).num_seconds(), 60);
    /// assert!(flags.take_metrics().is_empty());
    /// ```
    pub fn take_metrics(&self) -> MetricsBucket {
        let cur = self.inner.current.load_full();
        let mut p = self.inner.pending.lock();
        let mut toggles = std::mem::take(&mut p.toggles);
        for (t, c) in cur
            .compiled
            .toggles
            .iter()
            .zip(cur.compiled.counters.iter())
        {
            let e = toggles.entry(t.name.to_string()).or_default();
            c.drain(&t.variant_names, e);
        }
        toggles.retain(|_, m| m.yes + m.no > 0 || !m.variants.is_empty());
        let stop = self.inner.clock.now_nanos();
        let start = std::mem::replace(&mut p.start, stop);
        MetricsBucket {
            start: self.wall_time(start),
            stop: self.wall_time(stop),
            toggles,
        }
    }
}
