//! The one shape of a configuration error in the kit: which setting, the value
//! given, and what to write instead.
//!
//! Every builder in scalekit (`CacheBuilder`, `CircuitBreakerBuilder`,
//! `ReplicaSetBuilder`, ...) refuses a setting that cannot work with a
//! [`ConfigError`] at `build()` time, never later and never with a panic. Crates
//! whose configuration comes from a file (the shard router's TOML) add the line
//! and path around it.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

/// A setting a builder refused: the component, the setting's name (as the builder
/// method or file key that takes it), the value given and what is accepted.
///
/// ```
/// use scalekit_core::ConfigError;
///
/// let err = ConfigError::new("replica set", "zone_spill_factor", 0.5, "a finite number >= 1");
/// assert_eq!(err.field(), "zone_spill_factor");
/// assert_eq!(err.value(), "0.5");
/// assert_eq!(
///     err.to_string(),
///     "invalid replica set setting `zone_spill_factor` = 0.5: expected a finite number >= 1"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    component: &'static str,
    field: Cow<'static, str>,
    value: String,
    expected: Cow<'static, str>,
}

impl ConfigError {
    /// A refused setting of `component` (`"circuit breaker"`, `"cache"`, ...):
    /// `field` was given `value`; `expected` says what to write instead.
    pub fn new(
        component: &'static str,
        field: impl Into<Cow<'static, str>>,
        value: impl fmt::Display,
        expected: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            component,
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// The component whose setting this is.
    pub fn component(&self) -> &'static str {
        self.component
    }

    /// The setting's name, as the builder method (or file key) that takes it.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The value given, as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the setting accepts: what to write instead.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} setting `{}` = {}: expected {}",
            self.component, self.field, self.value, self.expected
        )
    }
}

impl Error for ConfigError {}
