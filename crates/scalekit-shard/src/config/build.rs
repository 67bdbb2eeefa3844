//! From the checked configuration to the router's rules: slot tables filled
//! by the engines.

use std::sync::Arc;

use ahash::AHashMap;
use scalekit_core::stable_hash_u64;

use crate::config::engines::{Engines, CONTIGUOUS_ENGINE};
use crate::config::spec::{DimSpec, StrategySpec};
use crate::error::{ConfigError, ConfigErrorKind};
use crate::router::{Dim, ShardNode, Strategy};

/// The point a slot is placed by: the stable hash of its number.
#[inline]
pub(crate) fn slot_point(slot: u32) -> u64 {
    stable_hash_u64(u64::from(slot))
}

/// Over 100 lines on purpose: one arm per strategy, the hash arm asking the
/// engine for every slot and checking its answers.
pub(crate) fn build_dim(
    spec: &DimSpec,
    names: &[Arc<str>],
    engines: &Engines,
) -> Result<Dim, ConfigError> {
    let directory: AHashMap<Box<str>, u32> = spec.directory.iter().cloned().collect();
    let (strategy, mut all) = match &spec.strategy {
        StrategySpec::Fixed(s) => (Strategy::Fixed(*s), vec![*s]),
        StrategySpec::Modulo(shards) => (
            Strategy::Modulo {
                shards: shards.clone(),
            },
            shards.clone(),
        ),
        StrategySpec::Ranges {
            starts,
            end,
            shards,
        } => (
            Strategy::Ranges {
                starts: starts.clone(),
                end: *end,
                shards: shards.clone(),
            },
            shards.clone(),
        ),
        StrategySpec::Time {
            interval,
            retention,
            ahead,
        } => (
            Strategy::Time {
                interval: *interval,
                retention: *retention,
                ahead: *ahead,
            },
            Vec::new(),
        ),
        StrategySpec::Hash {
            shards,
            engine,
            at,
            slots,
            hash,
        } => {
            let fail = |value: String, expected: String| {
                ConfigError::new(
                    ConfigErrorKind::UnknownEngine,
                    at.line,
                    at.column,
                    at.path.clone(),
                    value,
                    expected,
                )
            };
            let owner: Vec<u32> = if let Some(factory) = engines.map.get(engine) {
                let nodes: Vec<ShardNode> = shards
                    .iter()
                    .map(|&i| ShardNode {
                        name: names
                            .get(i as usize)
                            .cloned()
                            .unwrap_or_else(|| Arc::from("")),
                        index: i,
                    })
                    .collect();
                let placement = factory(&nodes).map_err(|e| {
                    fail(
                        format!("{engine:?} (it failed: {e})"),
                        "an engine that builds over these shards".to_owned(),
                    )
                })?;
                let mut owner = Vec::with_capacity(*slots as usize);
                for s in 0..*slots {
                    match placement.locate_hash(slot_point(s)) {
                        Some(n) if shards.contains(&n.index) => owner.push(n.index),
                        _ => {
                            return Err(fail(
                                format!("{engine:?}"),
                                format!("an engine that places every slot on a listed shard (slot {s} was not)"),
                            ))
                        }
                    }
                }
                owner
            } else if engine == CONTIGUOUS_ENGINE {
                let n = shards.len() as u64;
                (0..u64::from(*slots))
                    .map(|s| shards[(s * n / u64::from(*slots)) as usize])
                    .collect()
            } else {
                return Err(fail(
                    format!("{engine:?}"),
                    format!(
                        "an engine registered with Engines::register, or one of {}",
                        engines.names().collect::<Vec<_>>().join(", ")
                    ),
                ));
            };
            (Strategy::Slots { owner, hash: *hash }, shards.clone())
        }
    };
    all.extend(directory.values().copied());
    all.sort_unstable();
    all.dedup();
    Ok(Dim {
        key: spec.key.clone(),
        all,
        directory,
        strategy,
    })
}
