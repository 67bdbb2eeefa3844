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

/// Transparent: an inner error displays as itself and passes on its own source, so
/// error chains do not print it twice.
impl<E: Error + 'static> Error for AdmissionError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            AdmissionError::Rejected(_) => None,
            AdmissionError::Inner(e) => e.source(),
        }
    }
}

/// The error type of most tower stacks.
pub type BoxError = Box<dyn Error + Send + Sync>;

impl<E: Into<BoxError>> AdmissionError<E> {
    /// Converts into tower's usual boxed error, for stacks whose services return
    /// `BoxError` (a `Box<dyn Error + Send + Sync>` is not itself an `Error`, so
    /// `AdmissionError<BoxError>` cannot be one). A rejection becomes a boxed
    /// [`Rejected`] that callers can `downcast_ref`; boxing allocates, so do it at
    /// the edge of the stack, not on a hot path.
    ///
    /// ```
    /// use scalekit_core::tower::{AdmissionError, BoxError};
    /// use scalekit_core::{RejectReason, Rejected};
    ///
    /// let e: AdmissionError<BoxError> = AdmissionError::Rejected(Rejected::new(RejectReason::Overloaded));
    /// let boxed = e.into_box_error();
    /// assert!(boxed.downcast_ref::<Rejected>().is_some());
    /// ```
    pub fn into_box_error(self) -> BoxError {
        match self {
            AdmissionError::Rejected(r) => Box::new(r),
            AdmissionError::Inner(e) => e.into(),
        }
    }
}
