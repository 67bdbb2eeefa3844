use std::error::Error;
use std::fmt;

use scalekit_core::Rejected;

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
        let e: BreakerError<std::io::Error> =
            BreakerError::Rejected(Rejected::new(RejectReason::CircuitOpen));
        assert_eq!(e.to_string(), "call rejected: circuit breaker is open");
        assert!(e.source().is_none());
        let inner = std::io::Error::other("boom");
        let e = BreakerError::Inner(inner);
        assert_eq!(e.to_string(), "boom");
    }
}
