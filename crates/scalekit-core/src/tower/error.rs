use std::error::Error;
use std::fmt;

use crate::Rejected;

/// The error of an [`AdmissionService`](super::AdmissionService): the policy
/// rejected the call, or the inner service failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum AdmissionError<E> {
    /// The admission policy rejected the call; the inner service was not called.
    Rejected(Rejected),
    /// The inner service returned an error.
    Inner(E),
}

impl<E> AdmissionError<E> {
    /// The rejection, if the policy rejected the call.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            AdmissionError::Rejected(r) => Some(r),
            AdmissionError::Inner(_) => None,
        }
    }

    /// The inner service's error, if it failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            AdmissionError::Inner(e) => Some(e),
            AdmissionError::Rejected(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for AdmissionError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdmissionError::Rejected(r) => fmt::Display::fmt(r, f),
            AdmissionError::Inner(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: Error + 'static> Error for AdmissionError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            AdmissionError::Rejected(r) => Some(r),
            AdmissionError::Inner(e) => Some(e),
        }
    }
}
