//! Evaluation of a compiled toggle: kill switch, parents, strategies, variant and
//! the reason.

use crate::compile::state::{Compiled, Toggle};
use crate::compile::strategy::Kind;
use crate::compile::variants::CVariant;
use crate::context::Context;
use crate::outcome::Reason;

/// The outcome of evaluating one toggle.
pub(crate) struct Outcome<'a> {
    pub(crate) enabled: bool,
    pub(crate) variant: Option<&'a CVariant>,
    pub(crate) reason: Reason,
}

impl Compiled {
    #[inline]
    pub(crate) fn lookup(&self, name: &str) -> Option<usize> {
        self.index.get(name)
    }

    /// Whether the toggle is on; `Some(index of the strategy that matched)` or
    /// `Some(usize::MAX)` when it has no strategies.
    #[inline]
    fn matched(&self, i: usize, ctx: &Context, killed: &[bool]) -> Result<usize, Reason> {
        let t = &self.toggles[i];
        if !t.enabled || killed.get(i).copied().unwrap_or(false) {
            return Err(Reason::Disabled);
        }
        if !t.deps.is_empty() && !self.deps_ok(t, ctx, killed) {
            return Err(Reason::Default);
        }
        if t.strategies.is_empty() {
            return Ok(usize::MAX);
        }
        t.strategies
            .iter()
            .position(|s| s.matches(ctx))
            .ok_or(Reason::Default)
    }

    fn deps_ok(&self, t: &Toggle, ctx: &Context, killed: &[bool]) -> bool {
        t.deps.iter().all(|d| {
            let Some(p) = d.parent else { return false };
            let p = p as usize;
            let parent = self.matched(p, ctx, killed);
            if !d.want_enabled {
                return parent.is_err();
            }
            match parent {
                Err(_) => false,
                Ok(_) if d.variants.is_empty() => true,
                Ok(m) => {
                    let o = self.variant_for(p, m, ctx);
                    let name: &str = o.map(|v| &*v.name).unwrap_or("disabled");
                    d.variants.iter().any(|w| &**w == name)
                }
            }
        })
    }

    #[inline]
    fn variant_for(&self, i: usize, matched: usize, ctx: &Context) -> Option<&CVariant> {
        let t = &self.toggles[i];
        if let Some(s) = t.strategies.get(matched) {
            if let Some(vs) = &s.variants {
                return vs.pick(ctx);
            }
        }
        t.variants.as_ref().and_then(|vs| vs.pick(ctx))
    }

    #[inline]
    pub(crate) fn is_enabled(&self, i: usize, ctx: &Context, killed: &[bool]) -> bool {
        if let Some(t) = self.toggles.get(i) {
            if t.strategies.is_empty() && t.deps.is_empty() {
                // No strategy and no parent: on unless disabled or killed (what
                // `matched` decides), without the call.
                return t.enabled && !killed.get(i).copied().unwrap_or(false);
            }
        }
        self.matched(i, ctx, killed).is_ok()
    }

    #[inline]
    pub(crate) fn evaluate(&self, i: usize, ctx: &Context, killed: &[bool]) -> Outcome<'_> {
        match self.matched(i, ctx, killed) {
            Err(reason) => Outcome {
                enabled: false,
                variant: None,
                reason,
            },
            Ok(m) => {
                let t = &self.toggles[i];
                let variant = self.variant_for(i, m, ctx);
                let split = variant.is_some()
                    || m != usize::MAX
                        && t.strategies.get(m).is_some_and(|s| {
                            matches!(s.kind, Kind::Rollout { .. } | Kind::Random(_))
                        });
                let reason = if variant.is_some() || split {
                    Reason::Split
                } else if m == usize::MAX
                    || t.strategies
                        .get(m)
                        .is_some_and(|s| matches!(s.kind, Kind::Always) && s.constraints.is_empty())
                {
                    Reason::Static
                } else {
                    Reason::TargetingMatch
                };
                Outcome {
                    enabled: true,
                    variant,
                    reason,
                }
            }
        }
    }
}
