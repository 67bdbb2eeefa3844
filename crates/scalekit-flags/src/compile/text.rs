//! Strings as evaluation reads them: short lists in one buffer, sets, numbers and
//! ASCII lowering on the stack.

use crate::context::{bytes_eq, same_key, short_key};
use ahash::AHashSet;

/// Parses a context value as a number: a fast path for plain integers, else Rust's
/// float parser (which, like Unleash's SDKs, accepts `12`, `12.0`, `-1e3`).
#[inline]
pub(super) fn number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if !b.is_empty() && b.len() <= 15 && b.iter().all(u8::is_ascii_digit) {
        let mut n: u64 = 0;
        for &d in b {
            n = n * 10 + u64::from(d - b'0');
        }
        return Some(n as f64);
    }
    s.trim().parse::<f64>().ok()
}

/// A short list of strings kept in one buffer, so that scanning it touches one or
/// two cache lines instead of one allocation per value.
pub(crate) struct StrList {
    pub(super) text: Box<str>,
    pub(super) spans: Box<[(u32, u32)]>,
}

impl StrList {
    pub(super) fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(values: I) -> Self {
        let mut text = String::new();
        let mut spans = Vec::new();
        for v in values {
            let v = v.as_ref();
            spans.push((text.len() as u32, v.len() as u32));
            text.push_str(v);
        }
        StrList {
            text: text.into_boxed_str(),
            spans: spans.into_boxed_slice(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.spans.len()
    }

    #[inline]
    pub(super) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans
            .iter()
            .filter_map(|&(a, l)| self.text.get(a as usize..(a + l) as usize))
    }
}

/// A short list of strings with each one's [`short_key`], so that looking a value
/// up compares integers (and bytes only for values over 16 bytes).
pub(crate) struct KeyedList {
    list: StrList,
    keys: Box<[(u64, u64)]>,
}

impl KeyedList {
    fn new(list: StrList) -> Self {
        let keys = list.iter().map(|v| short_key(v.as_bytes())).collect();
        KeyedList { list, keys }
    }

    /// Whether `s` is one of the values.
    #[inline]
    fn contains(&self, s: &str) -> bool {
        let b = s.as_bytes();
        let k = short_key(b);
        self.list
            .spans
            .iter()
            .zip(self.keys.iter())
            .any(|(&(a, l), &key)| {
                l as usize == b.len()
                    && same_key(k, key)
                    && (b.len() <= 16
                        || self
                            .list
                            .text
                            .as_bytes()
                            .get(a as usize..(a + l) as usize)
                            .is_some_and(|x| bytes_eq(x, b)))
            })
    }
}

/// A set of strings: a short list compared in order, or a hash set.
pub(crate) enum StrSet {
    Small(KeyedList),
    Hashed(AHashSet<Box<str>>),
}

impl StrSet {
    pub(super) fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(values: I) -> Self {
        let list = StrList::new(values);
        if list.len() <= 8 {
            StrSet::Small(KeyedList::new(list))
        } else {
            StrSet::Hashed(list.iter().map(Box::from).collect())
        }
    }

    #[inline]
    pub(super) fn contains(&self, s: &str) -> bool {
        match self {
            StrSet::Small(v) => v.contains(s),
            StrSet::Hashed(h) => h.contains(s),
        }
    }
}

/// Runs `test` on `v` lowercased: in a stack buffer when it is short ASCII, else in
/// an allocated string (the uncommon path). Kept out of line so that the common
/// evaluation path keeps a small stack frame.
#[inline(never)]
pub(super) fn lowered(v: &str, test: impl Fn(&str) -> bool) -> bool {
    let mut buf = [0u8; 128];
    match ascii_lower(v, &mut buf) {
        Some(lower) => test(lower),
        None => test(&v.to_lowercase()),
    }
}

/// Lowercases `s` into `buf` when it is ASCII; `None` otherwise.
#[inline]
fn ascii_lower<'b>(s: &str, buf: &'b mut [u8; 128]) -> Option<&'b str> {
    if s.len() > buf.len() || !s.is_ascii() {
        return None;
    }
    let out = &mut buf[..s.len()];
    out.copy_from_slice(s.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn sets_contain_exactly_their_values(
            values in proptest::collection::vec("[ab\u{e9}]{0,20}", 0..12),
            probe in "[ab\u{e9}]{0,20}",
        ) {
            let set = StrSet::new(&values);
            proptest::prop_assert_eq!(set.contains(&probe), values.contains(&probe));
            for v in &values {
                proptest::prop_assert!(set.contains(v));
            }
        }
    }
}
