//! What a caller tells the router: shard key values, key ranges, or nothing.

use std::fmt;
use std::io::Write as _;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use scalekit_core::{stable_hash, stable_hash_u64};

/// A shard key value.
///
/// Integers hash as their 8 little-endian bytes (the core stable hash of an
/// `i64`), strings and byte strings as their bytes, so `Key::Int(42)` and
/// `Key::Str("42")` are different keys. Ranges and time intervals read integers
/// only (a time is seconds since the Unix epoch, UTC). A directory is keyed by
/// text: an integer key is looked up by its decimal form.
///
/// ```
/// use scalekit_shard::Key;
/// assert_eq!(Key::from(42), Key::Int(42));
/// assert_eq!(Key::from("acme"), Key::Str("acme"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    /// An integer id, or a time in seconds since the Unix epoch.
    Int(i64),
    /// A text id.
    Str(&'a str),
    /// A binary id.
    Bytes(&'a [u8]),
}

impl Key<'_> {
    /// The stable hash the hash strategies place this key by.
    ///
    /// ```
    /// use scalekit_core::StableHash;
    /// use scalekit_shard::Key;
    /// assert_eq!(Key::Int(7).stable_hash(), 7i64.stable_hash());
    /// assert_eq!(Key::Str("a").stable_hash(), "a".stable_hash());
    /// ```
    #[inline]
    pub fn stable_hash(&self) -> u64 {
        match *self {
            Key::Int(i) => stable_hash_u64(i as u64),
            Key::Str(s) => stable_hash(s.as_bytes()),
            Key::Bytes(b) => stable_hash(b),
        }
    }

    /// The key's bytes as Redis Cluster would hash them: an integer as its
    /// decimal text (how it is written in a Redis key).
    pub(crate) fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match *self {
            Key::Int(i) => {
                let mut buf = [0u8; 20];
                let len = decimal(i, &mut buf);
                f(&buf[..len])
            }
            Key::Str(s) => f(s.as_bytes()),
            Key::Bytes(b) => f(b),
        }
    }

    /// An owned copy, for statistics and plans.
    pub fn to_owned_key(&self) -> OwnedKey {
        match *self {
            Key::Int(i) => OwnedKey::Int(i),
            Key::Str(s) => OwnedKey::Str(Arc::from(s)),
            Key::Bytes(b) => OwnedKey::Bytes(Arc::from(b)),
        }
    }
}

/// Writes the decimal form of `i` into `buf`, returning its length.
pub(crate) fn decimal(i: i64, buf: &mut [u8; 20]) -> usize {
    let mut cursor = &mut buf[..];
    let before = cursor.len();
    // 20 bytes hold every i64 ("-9223372036854775808"), so this cannot fail.
    let _ = write!(cursor, "{i}");
    before - cursor.len()
}

impl From<i64> for Key<'_> {
    fn from(v: i64) -> Self {
        Key::Int(v)
    }
}
impl From<i32> for Key<'_> {
    fn from(v: i32) -> Self {
        Key::Int(i64::from(v))
    }
}
impl From<u32> for Key<'_> {
    fn from(v: u32) -> Self {
        Key::Int(i64::from(v))
    }
}
impl<'a> From<&'a str> for Key<'a> {
    fn from(v: &'a str) -> Self {
        Key::Str(v)
    }
}
impl<'a> From<&'a String> for Key<'a> {
    fn from(v: &'a String) -> Self {
        Key::Str(v)
    }
}
impl<'a> From<&'a [u8]> for Key<'a> {
    fn from(v: &'a [u8]) -> Self {
        Key::Bytes(v)
    }
}

/// An owned shard key: the form kept in statistics (hot keys) and plans.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnedKey {
    /// An integer key.
    Int(i64),
    /// A text key.
    Str(Arc<str>),
    /// A binary key.
    Bytes(Arc<[u8]>),
}

impl OwnedKey {
    /// Borrows it as a [`Key`].
    ///
    /// ```
    /// use scalekit_shard::{Key, OwnedKey};
    /// assert_eq!(OwnedKey::Int(3).as_key(), Key::Int(3));
    /// ```
    pub fn as_key(&self) -> Key<'_> {
        match self {
            OwnedKey::Int(i) => Key::Int(*i),
            OwnedKey::Str(s) => Key::Str(s),
            OwnedKey::Bytes(b) => Key::Bytes(b),
        }
    }
}

impl fmt::Display for OwnedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnedKey::Int(i) => write!(f, "{i}"),
            OwnedKey::Str(s) => write!(f, "{s:?}"),
            OwnedKey::Bytes(b) => write!(f, "{b:02x?}"),
        }
    }
}

/// A condition on one shard key column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond<'a> {
    /// `column = key`.
    Eq(Key<'a>),
    /// `column` in a range of integers (ids, or times in Unix seconds).
    Range(Bound<i64>, Bound<i64>),
}

/// What a statement says about the shard keys: one value, a range, or nothing
/// (then every shard is a target).
///
/// ```
/// use scalekit_shard::Query;
/// let by_user = Query::key("user_id", 42);
/// let by_user_and_month = Query::key("user_id", 42).and_range("created_at", 1_700_000_000..1_800_000_000);
/// let everything = Query::all();
/// # let _ = (by_user, by_user_and_month, everything);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Query<'a> {
    first: Option<(&'a str, Cond<'a>)>,
    more: Vec<(&'a str, Cond<'a>)>,
}

impl<'a> Query<'a> {
    /// No condition on any shard key: every shard.
    pub fn all() -> Self {
        Self::default()
    }

    /// `column = key`.
    pub fn key(column: &'a str, key: impl Into<Key<'a>>) -> Self {
        Self {
            first: Some((column, Cond::Eq(key.into()))),
            more: Vec::new(),
        }
    }

    /// `column` within `range` (integers: ids or Unix seconds).
    pub fn range(column: &'a str, range: impl RangeBounds<i64>) -> Self {
        Self::all().and_range(column, range)
    }

    /// Adds `column = key`.
    pub fn and_key(self, column: &'a str, key: impl Into<Key<'a>>) -> Self {
        self.push(column, Cond::Eq(key.into()))
    }

    /// Adds `column` within `range`.
    pub fn and_range(self, column: &'a str, range: impl RangeBounds<i64>) -> Self {
        let cond = Cond::Range(range.start_bound().cloned(), range.end_bound().cloned());
        self.push(column, cond)
    }

    fn push(mut self, column: &'a str, cond: Cond<'a>) -> Self {
        if self.first.is_none() {
            self.first = Some((column, cond));
        } else {
            self.more.push((column, cond));
        }
        self
    }

    pub(crate) fn first_cond(&self) -> Option<&Cond<'a>> {
        self.first.as_ref().map(|(_, c)| c)
    }

    /// The condition on `column`, if any (the first one given).
    #[inline]
    pub fn get(&self, column: &str) -> Option<&Cond<'a>> {
        match &self.first {
            Some((c, cond)) if *c == column => Some(cond),
            _ => self
                .more
                .iter()
                .find(|(c, _)| *c == column)
                .map(|(_, cond)| cond),
        }
    }
}

/// Whether a statement reads or writes: broadcast tables and migrations route
/// them differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A read.
    Read,
    /// A write (insert, update, delete).
    Write,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_forms() {
        let mut buf = [0u8; 20];
        for i in [0, 7, -1, i64::MIN, i64::MAX, 1234567] {
            let n = decimal(i, &mut buf);
            assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), i.to_string());
        }
    }

    #[test]
    fn query_finds_conditions() {
        let q = Query::key("a", 1).and_range("b", 3..5).and_key("c", "x");
        assert_eq!(q.get("a"), Some(&Cond::Eq(Key::Int(1))));
        assert_eq!(
            q.get("b"),
            Some(&Cond::Range(Bound::Included(3), Bound::Excluded(5)))
        );
        assert_eq!(q.get("c"), Some(&Cond::Eq(Key::Str("x"))));
        assert_eq!(q.get("d"), None);
        assert_eq!(Query::all().get("a"), None);
    }
}
