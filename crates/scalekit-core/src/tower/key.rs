use std::fmt;

use crate::{Admission, KeyedAdmission, Rejected};

/// How an [`AdmissionService`](super::AdmissionService) asks its policy about one
/// request.
///
/// Two implementations: [`Unkeyed`] (the default; one decision for every request,
/// [`Admission::try_acquire`]) and [`KeyBy`] (made by
/// [`AdmissionLayer::key_by`](super::AdmissionLayer::key_by); extracts a key from
/// each request and calls [`KeyedAdmission::try_acquire_key`]).
pub trait Admit<P: Admission, Req> {
    /// Asks `policy` whether `req` may go ahead.
    fn admit(&self, policy: &P, req: &Req) -> Result<P::Permit, Rejected>;
}

/// Every request is asked about the same way: [`Admission::try_acquire`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Unkeyed;

impl<P: Admission, Req> Admit<P, Req> for Unkeyed {
    #[inline]
    fn admit(&self, policy: &P, _req: &Req) -> Result<P::Permit, Rejected> {
        policy.try_acquire()
    }
}

/// Extracts a key from each request with a closure and asks the policy about
/// that key ([`KeyedAdmission::try_acquire_key`]).
///
/// Made by [`AdmissionLayer::key_by`](super::AdmissionLayer::key_by). The closure
/// receives the request by reference and returns the key by value (an IP
/// address, a user id, an `Option` of one).
#[derive(Clone, Copy)]
pub struct KeyBy<G>(pub(super) G);

impl<G> fmt::Debug for KeyBy<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyBy").finish_non_exhaustive()
    }
}

impl<P, Req, G, K> Admit<P, Req> for KeyBy<G>
where
    P: KeyedAdmission<K>,
    G: Fn(&Req) -> K,
{
    #[inline]
    fn admit(&self, policy: &P, req: &Req) -> Result<P::Permit, Rejected> {
        let key = (self.0)(req);
        policy.try_acquire_key(&key)
    }
}
