use std::error::Error;
use std::fmt;
use std::time::Duration;

/// A limiter configuration that cannot work; the message names the setting, the
/// value and what would be accepted.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A quota interval of zero or longer than a day.
    Interval {
        /// The value given.
        value: Duration,
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
    /// A number outside its range.
    Factor {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: f64,
        /// What is accepted.
        expected: &'static str,
    },
    /// A duration outside its range.
    Duration {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: Duration,
        /// What is accepted.
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Interval { value } => write!(
                f,
                "quota interval {value:?} is out of range: give more than zero and at most a day"
            ),
            ConfigError::Count {
                field,
                value,
                min,
                max,
            } => write!(f, "{field} = {value} is out of range: give {min} to {max}"),
            ConfigError::Factor {
                field,
                value,
                expected,
            } => write!(f, "{field} = {value} is out of range: {expected}"),
            ConfigError::Duration {
                field,
                value,
                expected,
            } => write!(f, "{field} = {value:?} is out of range: {expected}"),
        }
    }
}

impl Error for ConfigError {}
