use crate::error::SelectError;
use std::error::Error;
use std::fmt;

/// The error of a [`ReplicaService`](super::ReplicaService): no endpoint could
/// take the call, or the chosen endpoint's service failed (becoming ready, or
/// answering).
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplicaServiceError<E> {
    /// No endpoint could take the call; no service was called.
    Unavailable(SelectError),
    /// The chosen endpoint's service returned an error.
    Inner(E),
}

impl<E> ReplicaServiceError<E> {
    /// The selection error, if no endpoint could take the call.
    pub fn unavailable(&self) -> Option<&SelectError> {
        match self {
            ReplicaServiceError::Unavailable(e) => Some(e),
            ReplicaServiceError::Inner(_) => None,
        }
    }

    /// The endpoint service's error, if it failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            ReplicaServiceError::Inner(e) => Some(e),
            ReplicaServiceError::Unavailable(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for ReplicaServiceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaServiceError::Unavailable(e) => fmt::Display::fmt(e, f),
            ReplicaServiceError::Inner(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// Transparent for the endpoint's error: it displays as itself and passes on
/// its own source.
impl<E: Error + 'static> Error for ReplicaServiceError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ReplicaServiceError::Unavailable(e) => Some(e),
            ReplicaServiceError::Inner(e) => e.source(),
        }
    }
}
