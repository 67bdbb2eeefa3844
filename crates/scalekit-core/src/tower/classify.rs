use crate::Outcome;

/// Decides how a call's result counts for the admission policy.
///
/// Implemented for closures `Fn(&Result<R, E>) -> Outcome`:
///
/// ```
/// use scalekit_core::Outcome;
/// use scalekit_core::tower::Classify;
///
/// // A 404 is the caller's problem, not the callee's: ignore it.
/// let classify = |r: &Result<u16, ()>| match r {
///     Ok(404) => Outcome::Ignored,
///     Ok(s) if *s >= 500 => Outcome::Failure,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::Failure,
/// };
/// assert_eq!(classify.classify(&Ok(503)), Outcome::Failure);
/// assert_eq!(classify.classify(&Ok(404)), Outcome::Ignored);
/// ```
pub trait Classify<R, E> {
    /// The outcome of a finished call.
    fn classify(&self, result: &Result<R, E>) -> Outcome;
}

impl<R, E, F> Classify<R, E> for F
where
    F: Fn(&Result<R, E>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<R, E>) -> Outcome {
        self(result)
    }
}

/// `Ok` is a success, `Err` a failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl<R, E> Classify<R, E> for DefaultClassifier {
    #[inline]
    fn classify(&self, result: &Result<R, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}
