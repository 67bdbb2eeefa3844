//! The crate's errors: configuration, membership changes, selection and hedging.

use scalekit_core::Rejected;
use std::error::Error;
use std::fmt;

pub use scalekit_core::ConfigError;

/// A refused setting of the replica set: `field` was given `value`;
/// `expected` says what to write instead.
///
/// ```
/// use scalekit_replica::ReplicaSet;
///
/// let err = ReplicaSet::<&str>::builder().zone_spill_factor(0.5).build().unwrap_err();
/// assert_eq!(err.field(), "zone_spill_factor");
/// assert_eq!(
///     err.to_string(),
///     "invalid replica set setting `zone_spill_factor` = 0.5: expected a finite number >= 1"
/// );
/// ```
pub(crate) fn invalid(
    field: &'static str,
    value: impl fmt::Display,
    expected: &'static str,
) -> ConfigError {
    ConfigError::new("replica set", field, value, expected)
}

/// A membership change that could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipError {
    /// An endpoint of this name is already a member.
    Duplicate(String),
    /// No endpoint has this name.
    Unknown(String),
    /// A weight of zero: use [`remove`](crate::ReplicaSet::remove) to take an
    /// endpoint out of rotation.
    ZeroWeight(String),
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipError::Duplicate(name) => {
                write!(f, "endpoint `{name}` is already in the replica set")
            }
            MembershipError::Unknown(name) => write!(f, "no endpoint named `{name}` in the replica set"),
            MembershipError::ZeroWeight(name) => write!(
                f,
                "endpoint `{name}`: a weight must be at least 1 (remove the endpoint to stop its traffic)"
            ),
        }
    }
}

impl Error for MembershipError {}

/// Why no endpoint was selected. A small `Copy` value: failing to select
/// allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelectError {
    /// The set has no endpoint that could take this call (no primary for a
    /// write; no replica and no primary fallback for a read).
    NoEndpoint,
    /// Endpoints exist but none is available: ejected, failing health checks,
    /// lagging, refused by their admission policy, or excluded by the caller
    /// ([`select_excluding`](crate::ReplicaSet::select_excluding): every
    /// endpoint left was tried already). The refusal is kept: the
    /// last one met by this selection, or, when the endpoints were skipped
    /// because of earlier refusals, the one that may be tried again first (its
    /// retry hint is the time left). Excluded endpoints' refusals are not
    /// reported: when all the endpoints left are excluded, this is `None`.
    Unavailable(Option<Rejected>),
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::NoEndpoint => f.write_str("the replica set has no endpoint for this call"),
            SelectError::Unavailable(None) => {
                f.write_str(
                "no endpoint is available (all ejected, unhealthy, lagging, or excluded by the caller as tried already)",
            )
            }
            SelectError::Unavailable(Some(rejected)) => {
                write!(
                    f,
                    "no endpoint is available; the last one refused: {rejected}"
                )
            }
        }
    }
}

impl Error for SelectError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SelectError::Unavailable(Some(rejected)) => Some(rejected),
            _ => None,
        }
    }
}

/// How a hedged call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HedgeError<E> {
    /// No endpoint could be selected for the first attempt.
    Select(SelectError),
    /// Every attempt failed; this is the error of the last one to finish.
    Call(E),
}

impl<E: fmt::Display> fmt::Display for HedgeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HedgeError::Select(e) => write!(f, "hedged call not sent: {e}"),
            HedgeError::Call(e) => write!(f, "hedged call failed: {e}"),
        }
    }
}

impl<E: Error + 'static> Error for HedgeError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            HedgeError::Select(e) => Some(e),
            HedgeError::Call(e) => Some(e),
        }
    }
}
