//! [`FlagsBuilder`]: the settings of a store, and [`Flags::new`] / [`Flags::builder`].

use crate::compile::{compile, Compiled, Options};
use crate::custom::CustomStrategy;
use crate::event::{Event, Hook};
use crate::flags::store::{next_stamp, Flags, Inner, Pending, Snapshot};
use crate::impression::{ImpressionEvent, ImpressionHook};
use crate::metrics::WallAnchor;
use crate::model::ClientFeatures;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use scalekit_core::{Clock, MonotonicClock};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Builds a [`Flags`] store. Every setting has a working default and none can be
/// wrong, so [`build`](Self::build) returns the store itself.
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
pub struct FlagsBuilder<C: Clock = MonotonicClock> {
    keep: usize,
    opts: Options,
    metrics: bool,
    hooks: Vec<Hook>,
    impressions: Vec<ImpressionHook>,
    clock: C,
}

impl<C: Clock> fmt::Debug for FlagsBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagsBuilder")
            .field("keep", &self.keep)
            .field("metrics", &self.metrics)
            .field("hooks", &self.hooks.len())
            .field("impression_listeners", &self.impressions.len())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> FlagsBuilder<C> {
    /// How many earlier versions to keep for [`Flags::rollback`] (default 8; 0
    /// keeps none).
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

    /// Adds a listener for impression events: called on the evaluating thread, for
    /// each evaluation of a toggle whose `impressionData` is on (see
    /// [`ImpressionEvent`]). Keep it short, it runs inside `is_enabled`. Without a
    /// listener, evaluation only tests one length for it.
    pub fn on_impression(
        mut self,
        listener: impl Fn(&ImpressionEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.impressions.push(Arc::new(listener));
        self
    }

    /// The clock that times metrics buckets (default [`MonotonicClock`]); tests
    /// pass a [`ManualClock`](scalekit_core::ManualClock).
    pub fn clock<C2: Clock>(self, clock: C2) -> FlagsBuilder<C2> {
        FlagsBuilder {
            keep: self.keep,
            opts: self.opts,
            metrics: self.metrics,
            hooks: self.hooks,
            impressions: self.impressions,
            clock,
        }
    }

    /// Builds an empty store (every toggle off until a state is loaded).
    pub fn build(self) -> Flags<C> {
        let empty = match compile(Arc::new(ClientFeatures::default()), &self.opts) {
            Ok(c) => c,
            Err(_) => unreachable_empty(),
        };
        let now = self.clock.now_nanos();
        Flags {
            inner: Arc::new(Inner {
                stamp: AtomicU64::new(next_stamp()),
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
                impressions: self.impressions.into_boxed_slice(),
                pending: Mutex::new(Pending {
                    start: now,
                    toggles: BTreeMap::new(),
                }),
                hooks: self.hooks,
                next_version: AtomicU64::new(1),
                update: Mutex::new(()),
                wall: WallAnchor::new(now),
                clock: self.clock,
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
            impressions: Vec::new(),
            clock: MonotonicClock,
        }
    }
}
