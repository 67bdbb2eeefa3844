use std::error::Error;
use std::fmt;

use scalekit_core::Rejected;

/// A breaker or throttle configuration that cannot work. Returned by
/// [`BreakerBuilder::build`](crate::BreakerBuilder::build) and
/// [`ThrottleBuilder::build`](crate::ThrottleBuilder::build); the message names
/// the setting, the value given and what would be accepted.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A percentage outside `(0, 100]`.
    Percentage {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// A count outside its range.
    Count {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// A duration outside its range.
    Duration {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: std::time::Duration,
        /// What is accepted.
        expected: &'static str,
    },
    /// A factor outside its range.
    Factor {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: f64,
        /// What is accepted.
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Percentage { field, value } => write!(
                f,
                "{field} = {value} is not a percentage: give a number above 0 and at most 100"
            ),
            ConfigError::Count {
                field,
                value,
                min,
                max,
            } => write!(f, "{field} = {value} is out of range: give {min} to {max}"),
            ConfigError::Duration {
                field,
                value,
                expected,
            } => write!(f, "{field} = {value:?} is out of range: {expected}"),
            ConfigError::Factor {
                field,
                value,
                expected,
            } => write!(f, "{field} = {value} is out of range: {expected}"),
        }
    }
}

impl Error for ConfigError {}

/// The error of [`CircuitBreaker::call`](crate::CircuitBreaker::call): the
/// breaker rejected the call, or the call itself failed.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerError<E> {
    /// The breaker did not let the call through; the function was not called.
    Rejected(Rejected),
    /// The function ran and returned this error.
    Inner(E),
}

impl<E> BreakerError<E> {
    /// The rejection, if the breaker rejected the call.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            BreakerError::Rejected(r) => Some(r),
            BreakerError::Inner(_) => None,
        }
    }

    /// The call's own error, if it ran and failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            BreakerError::Inner(e) => Some(e),
            BreakerError::Rejected(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerError::Rejected(r) => fmt::Display::fmt(r, f),
            BreakerError::Inner(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// Transparent: the call's error displays as itself and passes on its source.
impl<E: Error + 'static> Error for BreakerError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            BreakerError::Rejected(_) => None,
            BreakerError::Inner(e) => e.source(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalekit_core::RejectReason;

    #[test]
    fn errors_read_well() {
        let e = ConfigError::Percentage {
            field: "failure_rate_threshold",
            value: 120.0,
        };
        assert_eq!(
            e.to_string(),
            "failure_rate_threshold = 120 is not a percentage: give a number above 0 and at most 100"
        );
        let e: BreakerError<std::io::Error> =
            BreakerError::Rejected(Rejected::new(RejectReason::CircuitOpen));
        assert_eq!(e.to_string(), "call rejected: circuit breaker is open");
        assert!(e.source().is_none());
        let inner = std::io::Error::other("boom");
        let e = BreakerError::Inner(inner);
        assert_eq!(e.to_string(), "boom");
    }
}
