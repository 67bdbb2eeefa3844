//! The compiled state: toggles with their strategies, variants, parents and
//! counters, and the compilation of a whole model into it.

use crate::compile::compiler::{local_hostname, Compiler, Options};
use crate::compile::index::{NameIndex, EMPTY};
use crate::compile::stickiness::stickiness;
use crate::compile::strategy::CStrategy;
use crate::compile::variants::Variants;
use crate::error::{FlagsError, Warning};
use crate::metrics::Counters;
use crate::model::ClientFeatures;
use crate::outcome::DISABLED;
use ahash::AHashMap;
use std::sync::Arc;

pub(crate) struct Compiled {
    pub(crate) model: Arc<ClientFeatures>,
    pub(crate) index: NameIndex,
    pub(crate) toggles: Box<[Toggle]>,
    pub(crate) counters: Box<[Counters]>,
    pub(crate) warnings: Vec<Warning>,
}

pub(crate) struct Toggle {
    pub(crate) name: Arc<str>,
    pub(crate) enabled: bool,
    pub(crate) strategies: Box<[CStrategy]>,
    pub(crate) variants: Option<Variants>,
    pub(crate) deps: Box<[Dep]>,
    pub(crate) variant_names: Box<[Arc<str>]>,
    pub(crate) impression_data: bool,
}

pub(crate) struct Dep {
    /// Index of the parent, or `None` when it does not exist or itself has parents.
    pub(super) parent: Option<u32>,
    pub(super) want_enabled: bool,
    pub(super) variants: Box<[Box<str>]>,
}

/// Compiles a state. Structural problems (duplicate toggle names) are errors; problems
/// a server could send and SDKs tolerate (unknown operators, values that do not parse,
/// missing segments) compile to conditions that never hold and are listed as warnings.
pub(crate) fn compile(model: Arc<ClientFeatures>, opts: &Options) -> Result<Compiled, FlagsError> {
    let (index, toggles, warnings) = compile_parts(&model, opts)?;
    let counters = toggles
        .iter()
        .map(|t| Counters::new(t.variant_names.len()))
        .collect();
    Ok(Compiled {
        model,
        index,
        toggles: toggles.into_boxed_slice(),
        counters,
        warnings,
    })
}

type Parts = (NameIndex, Vec<Toggle>, Vec<Warning>);

fn compile_parts(model: &ClientFeatures, opts: &Options) -> Result<Parts, FlagsError> {
    if model.features.len() >= EMPTY as usize / 4 {
        return Err(FlagsError::invalid("too many toggles"));
    }
    let names: Vec<&str> = model.features.iter().map(|f| f.name.as_str()).collect();
    let mut index = NameIndex::new(&names);
    let mut by_name: AHashMap<&str, u32> = AHashMap::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if !index.insert(name, i as u32) {
            return Err(FlagsError::invalid(format!(
                "toggle {name:?} is defined twice"
            )));
        }
        by_name.insert(name, i as u32);
    }
    let mut c = Compiler {
        opts,
        warnings: Vec::new(),
        segments: model
            .segments
            .iter()
            .map(|s| (s.id, s.constraints.as_slice()))
            .collect(),
        slot: 0,
        names: Vec::new(),
        hostname: opts.hostname.clone().or_else(local_hostname),
    };
    let mut toggles = Vec::with_capacity(model.features.len());
    for f in &model.features {
        c.slot = 1;
        c.names.clear();
        c.names.push(DISABLED.clone());
        let name: Arc<str> = Arc::from(f.name.as_str());
        let strategies: Box<[CStrategy]> = f
            .strategies
            .iter()
            .map(|s| c.strategy(f, &name, s))
            .collect();
        let vstick = stickiness(f.variants.first().and_then(|v| v.stickiness.as_deref()));
        let variants = c.variants(&f.variants, vstick, &name);
        let deps = f
            .dependencies
            .iter()
            .map(|d| {
                let parent = by_name.get(d.feature.as_str()).copied();
                let parent = match parent {
                    None => {
                        c.warn(&f.name, format!("depends on {:?}, which does not exist: the toggle is off", d.feature));
                        None
                    }
                    Some(p) if !model.features[p as usize].dependencies.is_empty() => {
                        c.warn(&f.name, format!("depends on {:?}, which has parents itself (only one level is allowed): the toggle is off", d.feature));
                        None
                    }
                    Some(p) => Some(p),
                };
                Dep {
                    parent,
                    want_enabled: d.enabled.unwrap_or(true),
                    variants: d.variants.iter().map(|v| v.as_str().into()).collect(),
                }
            })
            .collect();
        toggles.push(Toggle {
            name,
            enabled: f.enabled,
            strategies,
            variants,
            deps,
            variant_names: std::mem::take(&mut c.names).into_boxed_slice(),
            impression_data: f.impression_data,
        });
    }
    Ok((index, toggles, c.warnings))
}
