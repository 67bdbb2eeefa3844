//! The flag store: the serving state behind an atomic pointer, its history, the
//! kill switches, metrics and events.

use crate::compile::{compile, Compiled, Options, DISABLED};
use crate::metrics::{now_rfc3339, MetricsBucket, ToggleMetrics};
use crate::model::{ClientFeatures, Delta, Payload};
use crate::{Context, CustomStrategy, FlagsError, Warning};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why an evaluation came out as it did (the OpenFeature reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// On for everyone: no strategies, or an unconstrained `default` strategy.
    Static,
    /// On because a strategy's targeting (constraints, user lists, addresses) matched.
    TargetingMatch,
    /// On through a percentage rollout or a weighted variant split.
    Split,
    /// Off because no strategy matched or a parent was not satisfied.
    Default,
    /// Off because the toggle is disabled or killed.
    Disabled,
    /// The toggle does not exist.
    Error,
}

/// The variant a toggle hands out. Cloning it copies two reference counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// The variant's name (`disabled` when there is none).
    pub name: Arc<str>,
    /// Its payload.
    pub payload: Option<Arc<Payload>>,
    /// Whether a variant was chosen.
    pub enabled: bool,
    /// Whether the toggle itself is on.
    pub feature_enabled: bool,
}

impl Variant {
    fn disabled(feature_enabled: bool) -> Self {
        Variant {
            name: DISABLED.clone(),
            payload: None,
            enabled: false,
            feature_enabled,
        }
    }
}

/// A full evaluation: on/off, the variant and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// Whether the toggle is on.
    pub enabled: bool,
    /// The variant handed out.
    pub variant: Variant,
    /// Why.
    pub reason: Reason,
}

/// A state change, given to the hooks registered with [`FlagsBuilder::on_event`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new state is serving.
    Applied {
        /// Its version number.
        version: u64,
        /// Where it came from.
        origin: String,
        /// How many toggles it has.
        toggles: usize,
        /// What compiled to never-matching conditions.
        warnings: Vec<Warning>,
    },
    /// An update was refused; the previous state keeps serving.
    Rejected {
        /// Where it came from.
        origin: String,
        /// Why.
        error: Arc<FlagsError>,
    },
    /// A source could not fetch (network, HTTP status); the state is unchanged.
    SourceFailed {
        /// Which source.
        origin: String,
        /// Why.
        error: Arc<FlagsError>,
    },
    /// [`Flags::rollback`] restored an earlier version.
    RolledBack {
        /// The version now serving.
        version: u64,
    },
    /// A kill switch was set.
    Killed {
        /// The toggle.
        toggle: String,
    },
    /// A kill switch was cleared.
    Revived {
        /// The toggle.
        toggle: String,
    },
}

/// What a successful update did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadReport {
    /// The new state's version number (1 for the first state).
    pub version: u64,
    /// Toggles in the new state.
    pub toggles: usize,
    /// Conditions that compiled to never-matching ones.
    pub warnings: Vec<Warning>,
}

type Hook = Arc<dyn Fn(&Event) + Send + Sync>;

pub(crate) struct Snapshot {
    pub(crate) compiled: Arc<Compiled>,
    pub(crate) killed: Box<[bool]>,
    pub(crate) version: u64,
}

/// Each store's id, for the per-thread snapshot cache.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Cached {
    id: u64,
    generation: u64,
    snapshot: Arc<Snapshot>,
}

thread_local! {
    /// The snapshot this thread last evaluated against. Evaluation checks the store's
    /// generation (a plain load) and reuses it while it is current, which saves the
    /// two read-modify-write operations of an `ArcSwap` load and guard drop.
    static CACHE: Cell<Option<Cached>> = const { Cell::new(None) };
}

struct Inner {
    id: u64,
    generation: AtomicU64,
    current: ArcSwap<Snapshot>,
    history: Mutex<VecDeque<(u64, Arc<Compiled>)>>,
    keep: usize,
    killed: Mutex<BTreeSet<String>>,
    opts: Options,
    metrics: bool,
    pending: Mutex<(String, BTreeMap<String, ToggleMetrics>)>,
    hooks: Vec<Hook>,
    next_version: AtomicU64,
    update: Mutex<()>,
}

/// The flag store. Cheap to clone (all clones share one state); evaluation is a
/// plain method that takes `&self`, reads the serving state through an atomic
/// pointer, and allocates nothing.
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
#[derive(Clone)]
pub struct Flags {
    inner: Arc<Inner>,
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.inner.current.load();
        f.debug_struct("Flags")
            .field("version", &s.version)
            .field("toggles", &s.compiled.toggles.len())
            .finish()
    }
}

/// Builds a [`Flags`] store.
///
/// ```
/// use scalekit_flags::{Context, Flags};
/// use std::collections::BTreeMap;
///
/// let flags = Flags::builder()
///     .history(4)
///     .strategy("betaTesters", |params: &BTreeMap<String, String>, ctx: &Context| {
///         ctx.get("plan") == params.get("plan").map(String::as_str)
///     })
///     .on_event(|e| eprintln!("flags: {e:?}"))
///     .build();
/// flags.load_json(r#"{"features":[{"name":"x","enabled":true,
///   "strategies":[{"name":"betaTesters","parameters":{"plan":"pro"}}]}]}"#, "inline").unwrap();
/// assert!(flags.is_enabled("x", &Context::new().property("plan", "pro")));
/// ```
pub struct FlagsBuilder {
    keep: usize,
    opts: Options,
    metrics: bool,
    hooks: Vec<Hook>,
}

impl fmt::Debug for FlagsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagsBuilder")
            .field("keep", &self.keep)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl FlagsBuilder {
    /// How many earlier versions to keep for [`Flags::rollback`] (default 8).
    pub fn history(mut self, versions: usize) -> Self {
        self.keep = versions;
        self
    }

    /// Registers a custom strategy under its Unleash name.
    pub fn strategy(
        mut self,
        name: impl Into<String>,
        strategy: impl CustomStrategy + 'static,
    ) -> Self {
        self.opts.strategies.insert(name.into(), Arc::new(strategy));
        self
    }

    /// The host name the `applicationHostname` strategy compares with (default: the
    /// `HOSTNAME` variable, else the kernel's host name).
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.opts.hostname = Some(name.into());
        self
    }

    /// Whether evaluations are counted (default on).
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Adds a hook called for every [`Event`], on the thread that caused it.
    pub fn on_event(mut self, hook: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Builds an empty store (every toggle off until a state is loaded).
    pub fn build(self) -> Flags {
        let empty = match compile(Arc::new(ClientFeatures::default()), &self.opts) {
            Ok(c) => c,
            Err(_) => unreachable_empty(),
        };
        Flags {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                generation: AtomicU64::new(0),
                current: ArcSwap::from_pointee(Snapshot {
                    compiled: Arc::new(empty),
                    killed: Box::new([]),
                    version: 0,
                }),
                history: Mutex::new(VecDeque::new()),
                keep: self.keep,
                killed: Mutex::new(BTreeSet::new()),
                opts: self.opts,
                metrics: self.metrics,
                pending: Mutex::new((now_rfc3339(), BTreeMap::new())),
                hooks: self.hooks,
                next_version: AtomicU64::new(1),
                update: Mutex::new(()),
            }),
        }
    }
}

#[allow(clippy::panic)]
fn unreachable_empty() -> Compiled {
    // An empty state has no names to collide.
    panic!("empty state failed to compile")
}

impl Default for Flags {
    fn default() -> Self {
        Flags::new()
    }
}

impl Flags {
    /// An empty store with default settings.
    pub fn new() -> Self {
        Flags::builder().build()
    }

    /// A builder.
    pub fn builder() -> FlagsBuilder {
        FlagsBuilder {
            keep: 8,
            opts: Options::default(),
            metrics: true,
            hooks: Vec::new(),
        }
    }

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
            let e = p.1.entry(t.name.to_string()).or_default();
            c.drain(&t.variant_names, e);
        }
        p.1.retain(|_, m| m.yes + m.no > 0 || !m.variants.is_empty());
    }

    fn install(&self, compiled: Compiled, version: u64, origin: &str) -> LoadReport {
        let compiled = Arc::new(compiled);
        let killed = self.killed_for(&compiled);
        let old = self.inner.current.swap(Arc::new(Snapshot {
            compiled: compiled.clone(),
            killed,
            version,
        }));
        self.inner.generation.fetch_add(1, Ordering::Release);
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
        self.inner.generation.fetch_add(1, Ordering::Release);
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
        self.inner.generation.fetch_add(1, Ordering::Release);
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

    /// Runs `f` on the serving snapshot, through this thread's cache.
    #[inline]
    fn with_snapshot<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        let generation = self.inner.generation.load(Ordering::Acquire);
        // Taken out (not borrowed) so that a custom strategy that evaluates a toggle
        // re-entrantly finds an empty cache instead of a borrowed one.
        let cached = CACHE.with(Cell::take);
        let cached = match cached {
            Some(c) if c.id == self.inner.id && c.generation == generation => c,
            _ => Cached {
                id: self.inner.id,
                generation,
                snapshot: self.inner.current.load_full(),
            },
        };
        let r = f(&cached.snapshot);
        CACHE.with(|c| c.set(Some(cached)));
        r
    }

    /// Whether the toggle is on for this context (off when it does not exist).
    #[inline]
    pub fn is_enabled(&self, toggle: &str, ctx: &Context) -> bool {
        self.with_snapshot(|s| self.is_enabled_in(s, toggle, ctx))
    }

    #[inline]
    fn is_enabled_in(&self, s: &Snapshot, toggle: &str, ctx: &Context) -> bool {
        let c = &s.compiled;
        let Some(i) = c.lookup(toggle) else {
            return false;
        };
        let on = c.is_enabled(i, ctx, &s.killed);
        if self.inner.metrics {
            c.counters[i].count(on);
        }
        on
    }

    /// The variant for this context (Unleash's `getVariant`).
    ///
    /// ```
    /// use scalekit_flags::{Context, Flags};
    /// let flags = Flags::new();
    /// flags.load_json(r##"{"features":[{"name":"color","enabled":true,"strategies":[],
    ///   "variants":[{"name":"blue","weight":1,"payload":{"type":"string","value":"#00f"}}]}]}"##, "inline").unwrap();
    /// let v = flags.variant("color", &Context::new().user_id("7"));
    /// assert_eq!(&*v.name, "blue");
    /// assert_eq!(v.payload.unwrap().value, "#00f");
    /// assert_eq!(&*flags.variant("nope", &Context::new()).name, "disabled");
    /// ```
    #[inline]
    pub fn variant(&self, toggle: &str, ctx: &Context) -> Variant {
        self.evaluate(toggle, ctx).variant
    }

    /// On/off, variant and reason in one evaluation.
    #[inline]
    pub fn evaluate(&self, toggle: &str, ctx: &Context) -> Evaluation {
        self.with_snapshot(|s| self.evaluate_in(s, toggle, ctx))
    }

    #[inline]
    fn evaluate_in(&self, s: &Snapshot, toggle: &str, ctx: &Context) -> Evaluation {
        let c = &s.compiled;
        let Some(i) = c.lookup(toggle) else {
            return Evaluation {
                enabled: false,
                variant: Variant::disabled(false),
                reason: Reason::Error,
            };
        };
        let o = c.evaluate(i, ctx, &s.killed);
        if self.inner.metrics {
            let counters = &c.counters[i];
            counters.count(o.enabled);
            counters.count_variant(o.variant.map_or(0, |v| v.slot));
        }
        let variant = match o.variant {
            Some(v) => Variant {
                name: v.name.clone(),
                payload: v.payload.clone(),
                enabled: true,
                feature_enabled: o.enabled,
            },
            None => Variant::disabled(o.enabled),
        };
        Evaluation {
            enabled: o.enabled,
            variant,
            reason: o.reason,
        }
    }

    /// The serving state, pinned: every evaluation through it sees the same version,
    /// whatever updates happen meanwhile. Evaluations through a snapshot are not
    /// counted in metrics.
    ///
    /// ```
    /// use scalekit_flags::{Context, Flags};
    /// let flags = Flags::new();
    /// flags.load_json(r#"{"features":[{"name":"a","enabled":true},{"name":"b","enabled":true}]}"#, "v1").unwrap();
    /// let snap = flags.snapshot();
    /// flags.load_json(r#"{"features":[]}"#, "v2").unwrap();
    /// assert!(snap.is_enabled("a", &Context::new()) && snap.is_enabled("b", &Context::new()));
    /// assert_eq!(snap.version(), 1);
    /// ```
    pub fn snapshot(&self) -> FlagsSnapshot {
        FlagsSnapshot {
            inner: self.inner.current.load_full(),
        }
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

    /// Drains the counts gathered since the last call into a bucket.
    pub fn take_metrics(&self) -> MetricsBucket {
        let cur = self.inner.current.load_full();
        let mut p = self.inner.pending.lock();
        let mut toggles = std::mem::take(&mut p.1);
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
        let stop = now_rfc3339();
        let start = std::mem::replace(&mut p.0, stop.clone());
        MetricsBucket {
            start,
            stop,
            toggles,
        }
    }
}

/// A pinned version of the state (see [`Flags::snapshot`]).
#[derive(Clone)]
pub struct FlagsSnapshot {
    inner: Arc<Snapshot>,
}

impl fmt::Debug for FlagsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagsSnapshot")
            .field("version", &self.inner.version)
            .finish_non_exhaustive()
    }
}

impl FlagsSnapshot {
    /// The version pinned.
    pub fn version(&self) -> u64 {
        self.inner.version
    }

    /// Whether the toggle is on for this context in this version.
    pub fn is_enabled(&self, toggle: &str, ctx: &Context) -> bool {
        let c = &self.inner.compiled;
        c.lookup(toggle)
            .is_some_and(|i| c.is_enabled(i, ctx, &self.inner.killed))
    }

    /// The variant for this context in this version.
    pub fn variant(&self, toggle: &str, ctx: &Context) -> Variant {
        let c = &self.inner.compiled;
        let Some(i) = c.lookup(toggle) else {
            return Variant::disabled(false);
        };
        let o = c.evaluate(i, ctx, &self.inner.killed);
        match o.variant {
            Some(v) => Variant {
                name: v.name.clone(),
                payload: v.payload.clone(),
                enabled: true,
                feature_enabled: o.enabled,
            },
            None => Variant::disabled(o.enabled),
        }
    }

    /// The toggle names of this version.
    pub fn toggle_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.inner.compiled.toggles.iter().map(|t| &*t.name)
    }
}

pub(crate) enum Update {
    Full(ClientFeatures),
    Delta(Delta),
}

/// Parses Unleash JSON: a full state or a delta body.
pub(crate) fn parse_json(text: &str, origin: Option<&str>) -> Result<Update, FlagsError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| FlagsError::json(origin, &e))?;
    let is_delta = value.get("events").is_some() && value.get("features").is_none();
    // Re-parse from text so that errors carry line and column.
    if is_delta {
        serde_json::from_str::<Delta>(text)
            .map(Update::Delta)
            .map_err(|e| FlagsError::json(origin, &e))
    } else if value.is_object() {
        serde_json::from_str::<ClientFeatures>(text)
            .map(Update::Full)
            .map_err(|e| FlagsError::json(origin, &e))
    } else {
        Err(FlagsError::Parse {
            format: "JSON",
            origin: origin.map(str::to_owned),
            line: 1,
            column: 1,
            message: "expected an object with `features` (a state) or `events` (a delta)".into(),
        })
    }
}
