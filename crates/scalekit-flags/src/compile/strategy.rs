//! Activation strategies: the built-in ones, custom ones, and the constraints and
//! segments that guard them.

use crate::cidr::Cidr;
use crate::compile::compiler::Compiler;
use crate::compile::constraint::CConstraint;
use crate::compile::stickiness::{random_in, rollout_hit, stickiness, Stickiness};
use crate::compile::text::StrSet;
use crate::compile::variants::Variants;
use crate::context::{Context, Field};
use crate::custom::CustomStrategy;
use crate::hash::Prefix;
use crate::model::{Feature, Strategy};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

pub(crate) struct CStrategy {
    pub(super) kind: Kind,
    /// Cheapest first (see [`CConstraint::cost`]).
    pub(super) constraints: Box<[CConstraint]>,
    /// Check the strategy itself before its constraints (when it is cheaper: both
    /// must hold and both are pure, so the order only changes the time taken).
    kind_first: bool,
    pub(super) variants: Option<Variants>,
}

pub(super) enum Kind {
    Always,
    Never,
    UserIds(StrSet),
    Rollout {
        pct: f64,
        stick: Stickiness,
        /// The bucketing hash's state after `{groupId}:`.
        group: Prefix,
    },
    Random(f64),
    Remote(Box<[Cidr]>),
    Custom(Arc<dyn CustomStrategy>, Arc<BTreeMap<String, String>>),
}

fn percent(params: &BTreeMap<String, String>, key: &str) -> Option<f64> {
    params
        .get(key)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|p| p.is_finite())
}

impl Compiler<'_> {
    /// What the strategy itself tests (without its constraints), from its name
    /// and parameters.
    fn kind(&mut self, f: &Feature, s: &Strategy, group: &str) -> Kind {
        let p = &s.parameters;
        let kind = match s.name.as_str() {
            "default" => Kind::Always,
            "userWithId" => Kind::UserIds(StrSet::new(
                p.get("userIds")
                    .map(String::as_str)
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty()),
            )),
            "gradualRolloutUserId" | "gradualRolloutSessionId" => match percent(p, "percentage") {
                Some(pct) => Kind::Rollout {
                    pct,
                    stick: Stickiness::Field(if s.name == "gradualRolloutUserId" {
                        Field::UserId
                    } else {
                        Field::SessionId
                    }),
                    group: Prefix::new(group, 0),
                },
                None => Kind::Never,
            },
            "gradualRolloutRandom" => match percent(p, "percentage") {
                Some(pct) => Kind::Random(pct),
                None => Kind::Never,
            },
            "flexibleRollout" => match percent(p, "rollout") {
                Some(pct) => Kind::Rollout {
                    pct,
                    stick: stickiness(p.get("stickiness").map(String::as_str)),
                    group: Prefix::new(group, 0),
                },
                None => Kind::Never,
            },
            "remoteAddress" => Kind::Remote(
                p.get("IPs")
                    .map(String::as_str)
                    .unwrap_or("")
                    .split(',')
                    .filter_map(Cidr::parse)
                    .collect(),
            ),
            "applicationHostname" => {
                let me = self.hostname.as_deref().map(str::to_lowercase);
                let hit = me.is_some_and(|me| {
                    p.get("hostNames")
                        .map(String::as_str)
                        .unwrap_or("")
                        .split(',')
                        .any(|h| h.trim().to_lowercase() == me)
                });
                if hit {
                    Kind::Always
                } else {
                    Kind::Never
                }
            }
            other => match self.opts.strategies.get(other) {
                Some(imp) => Kind::Custom(imp.clone(), Arc::new(p.clone())),
                None => {
                    self.warn(&f.name, format!("unknown strategy {other:?}: it never matches (register it with FlagsBuilder::strategy)"));
                    Kind::Never
                }
            },
        };
        let rollout_family = matches!(
            s.name.as_str(),
            "gradualRolloutUserId"
                | "gradualRolloutSessionId"
                | "gradualRolloutRandom"
                | "flexibleRollout"
        );
        if matches!(kind, Kind::Never) && rollout_family {
            self.warn(
                &f.name,
                format!(
                    "strategy {}: missing or invalid percentage; it never matches",
                    s.name
                ),
            );
        }
        kind
    }

    /// Compiles one strategy of toggle `f`: its kind, its constraints and those of
    /// its segments (cheapest first), and its variants.
    pub(super) fn strategy(
        &mut self,
        f: &Feature,
        toggle_name: &Arc<str>,
        s: &Strategy,
    ) -> CStrategy {
        let p = &s.parameters;
        let group: &str = match p.get("groupId") {
            Some(g) if !g.is_empty() => g,
            _ => toggle_name,
        };
        let mut kind = self.kind(f, s, group);
        let mut constraints: Vec<CConstraint> = s
            .constraints
            .iter()
            .map(|c| self.constraint(&f.name, c))
            .collect();
        for id in &s.segments {
            match self.segments.get(id).copied() {
                Some(cs) => {
                    for c in cs {
                        let cc = self.constraint(&f.name, c);
                        constraints.push(cc);
                    }
                }
                None => {
                    self.warn(&f.name, format!("strategy {} refers to segment {id}, which does not exist: it never matches", s.name));
                    kind = Kind::Never;
                }
            }
        }
        let variants = self.variants(
            &s.variants,
            stickiness(p.get("stickiness").map(String::as_str)),
            group,
        );
        // Cheapest constraints first, so that a failing one ends the check early.
        constraints.sort_by_key(CConstraint::cost);
        let constraint_cost: u32 = constraints.iter().map(CConstraint::cost).sum();
        let kind_cost = match &kind {
            Kind::Always | Kind::Never => 0,
            Kind::UserIds(_) | Kind::Remote(_) | Kind::Random(_) => 2,
            Kind::Rollout { .. } => 4,
            // A custom strategy is user code: call it only when the constraints hold,
            // as Unleash's SDKs do.
            Kind::Custom(..) => u32::MAX,
        };
        CStrategy {
            kind_first: kind_cost < constraint_cost,
            kind,
            constraints: constraints.into_boxed_slice(),
            variants,
        }
    }
}

impl CStrategy {
    #[inline]
    pub(super) fn matches(&self, ctx: &Context) -> bool {
        if matches!(self.kind, Kind::Always) {
            // `default`: only the constraints (none: it holds), without the call.
            self.constraints.iter().all(|c| c.holds(ctx))
        } else if self.kind_first {
            self.kind_holds(ctx) && self.constraints.iter().all(|c| c.holds(ctx))
        } else {
            self.constraints.iter().all(|c| c.holds(ctx)) && self.kind_holds(ctx)
        }
    }

    #[inline]
    fn kind_holds(&self, ctx: &Context) -> bool {
        match &self.kind {
            Kind::Always => true,
            Kind::Never => false,
            Kind::UserIds(set) => ctx.builtin(0).is_some_and(|u| set.contains(u)),
            Kind::Rollout { pct, stick, group } => rollout_hit(*pct, stick, group, ctx),
            Kind::Random(pct) => *pct > 0.0 && f64::from(random_in(100)) <= *pct,
            Kind::Remote(nets) => ctx
                .builtin(2)
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
            Kind::Custom(imp, params) => imp.is_enabled(params, ctx),
        }
    }
}
