//! Custom activation strategies.

use crate::context::Context;
use std::collections::BTreeMap;

/// A custom activation strategy, registered by name with
/// [`FlagsBuilder::strategy`](crate::FlagsBuilder::strategy).
///
/// Any `Fn(&BTreeMap<String, String>, &Context) -> bool` is one. A strategy the store
/// does not know never matches (and is reported as a [`Warning`](crate::Warning)).
pub trait CustomStrategy: Send + Sync {
    /// Whether the strategy is on for `ctx`, given the strategy's parameters.
    fn is_enabled(&self, parameters: &BTreeMap<String, String>, ctx: &Context) -> bool;
}

impl<F> CustomStrategy for F
where
    F: Fn(&BTreeMap<String, String>, &Context) -> bool + Send + Sync,
{
    fn is_enabled(&self, parameters: &BTreeMap<String, String>, ctx: &Context) -> bool {
        self(parameters, ctx)
    }
}
