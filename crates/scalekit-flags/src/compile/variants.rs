//! Variants: weights, overrides and payloads, compiled with a metrics slot each, and
//! the weighted pick.

use crate::compile::compiler::Compiler;
use crate::compile::stickiness::{random_in, Stickiness};
use crate::compile::text::StrSet;
use crate::context::{Context, Field};
use crate::hash::{Prefix, VARIANT_SEED};
use crate::model::{Payload, Variant as ModelVariant};
use std::sync::Arc;

pub(crate) struct Variants {
    list: Box<[CVariant]>,
    total: u32,
    stick: Stickiness,
    /// The bucketing hash's state after `{groupId}:`.
    group: Prefix,
    has_overrides: bool,
}

pub(crate) struct CVariant {
    pub(crate) name: Arc<str>,
    pub(crate) payload: Option<Arc<Payload>>,
    weight: u32,
    overrides: Box<[(Field, StrSet)]>,
    pub(crate) slot: u32,
}

impl Compiler<'_> {
    pub(super) fn variants(
        &mut self,
        list: &[ModelVariant],
        stick: Stickiness,
        group: &str,
    ) -> Option<Variants> {
        if list.is_empty() {
            return None;
        }
        let mut total: u32 = 0;
        let mut out = Vec::with_capacity(list.len());
        let mut has_overrides = false;
        for v in list {
            total = total.saturating_add(v.weight);
            let name: Arc<str> = Arc::from(v.name.as_str());
            let slot = self.slot;
            self.slot += 1;
            self.names.push(name.clone());
            let overrides: Box<[(Field, StrSet)]> = v
                .overrides
                .iter()
                .map(|o| {
                    (
                        Field::parse(&o.context_name),
                        StrSet::new(o.values.iter().map(String::as_str)),
                    )
                })
                .collect();
            has_overrides |= !overrides.is_empty();
            out.push(CVariant {
                name,
                payload: v.payload.clone().map(Arc::new),
                weight: v.weight,
                overrides,
                slot,
            });
        }
        Some(Variants {
            list: out.into_boxed_slice(),
            total,
            stick,
            group: Prefix::new(group, VARIANT_SEED),
            has_overrides,
        })
    }
}

impl Variants {
    #[inline]
    pub(super) fn pick(&self, ctx: &Context) -> Option<&CVariant> {
        if self.has_overrides {
            for v in self.list.iter() {
                for (field, values) in v.overrides.iter() {
                    if ctx.field(field).is_some_and(|x| values.contains(x)) {
                        return Some(v);
                    }
                }
            }
        }
        if self.total == 0 {
            return None;
        }
        let seed = match &self.stick {
            Stickiness::Default => ctx.builtin(0).or(ctx.builtin(1)).or(ctx.builtin(2)),
            Stickiness::Random => None,
            Stickiness::Field(f) => ctx.field(f),
        };
        let target = match seed {
            Some(s) => self.group.normalized(s, self.total),
            None => random_in(self.total),
        };
        let mut acc = 0u32;
        for v in self.list.iter() {
            acc = acc.saturating_add(v.weight);
            if acc >= target {
                return Some(v);
            }
        }
        None
    }
}
