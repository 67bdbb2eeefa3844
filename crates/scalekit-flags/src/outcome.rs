//! What an evaluation answers: on/off, the variant and why.

use crate::model::Payload;
use std::sync::{Arc, LazyLock};

/// The name of "no variant", shared so that handing it out copies a reference count.
pub(crate) static DISABLED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("disabled"));

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
    pub(crate) fn disabled(feature_enabled: bool) -> Self {
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
