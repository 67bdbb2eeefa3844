//! Evaluation through the store: the per-thread snapshot cache, metrics counts and
//! impression events; and pinned snapshots.

use crate::compile::Compiled;
use crate::context::Context;
use crate::flags::store::{Flags, Snapshot};
use crate::impression::{ImpressionEvent, ImpressionKind};
use crate::outcome::{Evaluation, Reason, Variant};
use scalekit_core::Clock;
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct Cached {
    /// The store's stamp when `snapshot` was serving (unique across stores).
    stamp: u64,
    snapshot: Arc<Snapshot>,
}

thread_local! {
    /// The snapshot this thread last evaluated against. Evaluation checks the store's
    /// stamp (a plain load) and reuses it while it is current, which saves the two
    /// read-modify-write operations of an `ArcSwap` load and guard drop.
    static CACHE: Cell<Option<Cached>> = const { Cell::new(None) };
}

impl<C: Clock> Flags<C> {
    /// Runs `f` on the serving snapshot, through this thread's cache.
    #[inline]
    fn with_snapshot<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        let stamp = self.inner.stamp.load(Ordering::Acquire);
        // Taken out (not borrowed) so that a custom strategy that evaluates a toggle
        // re-entrantly finds an empty cache instead of a borrowed one.
        let cached = match CACHE.take() {
            Some(c) if c.stamp == stamp => c,
            _ => Cached {
                stamp,
                snapshot: self.inner.current.load_full(),
            },
        };
        let r = f(&cached.snapshot);
        CACHE.set(Some(cached));
        r
    }

    /// Whether the toggle is on for this context (off when it does not exist).
    /// Counted in metrics; a toggle with `impressionData` emits an
    /// [`ImpressionKind::IsEnabled`] impression.
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
        if !self.inner.impressions.is_empty() && c.toggles[i].impression_data {
            self.impress(c, i, on, None, ctx, ImpressionKind::IsEnabled);
        }
        on
    }

    /// Hands an impression to the listeners. Out of line: the common path only
    /// tests two flags.
    #[cold]
    #[inline(never)]
    fn impress(
        &self,
        c: &Compiled,
        i: usize,
        enabled: bool,
        variant: Option<&str>,
        ctx: &Context,
        kind: ImpressionKind,
    ) {
        let event = ImpressionEvent {
            feature_name: &c.toggles[i].name,
            enabled,
            variant,
            context: ctx,
            kind,
        };
        for listener in self.inner.impressions.iter() {
            listener(&event);
        }
    }

    /// The variant for this context (Unleash's `getVariant`). Counted in metrics;
    /// a toggle with `impressionData` emits an [`ImpressionKind::GetVariant`]
    /// impression.
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

    /// On/off, variant and reason in one evaluation (counted and emitting an
    /// impression as [`variant`](Self::variant) does).
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
        if !self.inner.impressions.is_empty() && c.toggles[i].impression_data {
            let name = o.variant.map_or("disabled", |v| &*v.name);
            self.impress(c, i, o.enabled, Some(name), ctx, ImpressionKind::GetVariant);
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
    /// counted in metrics and emit no impression.
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
