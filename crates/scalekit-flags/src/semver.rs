//! Semantic versions as the SEMVER_* constraint operators read them.
//!
//! A version is `MAJOR.MINOR.PATCH`, optionally `-PRERELEASE` and `+BUILD`, as in
//! SemVer 2.0.0: numeric parts without leading zeros, pre-release identifiers of
//! `[0-9A-Za-z-]`, build metadata ignored for ordering. Precedence follows the
//! specification: a pre-release sorts before its release, identifiers compare left to
//! right, numeric identifiers numerically and below alphanumeric ones, and a shorter
//! list of identifiers sorts first when it is a prefix of the longer. A leading `v` is
//! not a version (Unleash rejects it). Parsing borrows the input and never allocates.

use std::cmp::Ordering;

/// A parsed version borrowing its pre-release text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Version<'a> {
    major: u64,
    minor: u64,
    patch: u64,
    pre: &'a str,
}

/// Parses `MAJOR.MINOR.PATCH` digits at the start of `b`: the value and the bytes used.
#[inline]
fn number(b: &[u8]) -> Option<(u64, usize)> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || (n > 1 && b[0] == b'0') || n > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in &b[..n] {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((v, n))
}

/// Dot-separated identifiers of `[0-9A-Za-z-]`, none empty; with `numeric_rule`,
/// numeric identifiers must not have leading zeros.
#[inline]
fn identifiers_ok(s: &[u8], numeric_rule: bool) -> bool {
    s.split(|&b| b == b'.').all(|id| {
        !id.is_empty()
            && id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && !(numeric_rule && id.len() > 1 && id[0] == b'0' && id.iter().all(u8::is_ascii_digit))
    })
}

impl<'a> Version<'a> {
    /// Parses a strict SemVer 2.0.0 version.
    pub(crate) fn parse(s: &'a str) -> Option<Self> {
        let b = s.as_bytes();
        let (major, n1) = number(b)?;
        let b = b[n1..].strip_prefix(b".")?;
        let (minor, n2) = number(b)?;
        let b = b[n2..].strip_prefix(b".")?;
        let (patch, n3) = number(b)?;
        let rest = &b[n3..];
        let core_len = s.len() - rest.len();
        let (pre, build) = match rest.first() {
            None => ("", None),
            Some(b'-') => {
                let end = rest.iter().position(|&c| c == b'+').unwrap_or(rest.len());
                (s.get(core_len + 1..core_len + end)?, rest.get(end..))
            }
            Some(b'+') => ("", Some(rest)),
            Some(_) => return None,
        };
        if rest.first() == Some(&b'-') && !identifiers_ok(pre.as_bytes(), true) {
            return None;
        }
        if let Some(build) = build {
            if !build.is_empty() && !identifiers_ok(&build[1..], false) {
                return None;
            }
        }
        Some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }

    /// SemVer precedence.
    pub(crate) fn precedence(&self, other: &Version<'_>) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(self.pre, other.pre),
            })
    }
}

/// A version owned by a compiled constraint, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnedVersion {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Box<str>,
}

impl OwnedVersion {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Version::parse(s).map(|v| OwnedVersion {
            major: v.major,
            minor: v.minor,
            patch: v.patch,
            pre: v.pre.into(),
        })
    }

    #[inline]
    pub(crate) fn get(&self) -> Version<'_> {
        Version {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: &self.pre,
        }
    }
}

fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut ia = a.as_bytes().split(|&c| c == b'.');
    let mut ib = b.as_bytes().split(|&c| c == b'.');
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let xn = x.iter().all(u8::is_ascii_digit);
                let yn = y.iter().all(u8::is_ascii_digit);
                let ord = match (xn, yn) {
                    // Numeric identifiers have no leading zeros: longer is larger.
                    (true, true) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt(a: &str, b: &str) -> bool {
        Version::parse(a)
            .unwrap()
            .precedence(&Version::parse(b).unwrap())
            == Ordering::Less
    }

    #[test]
    fn specification_order() {
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ];
        for w in chain.windows(2) {
            assert!(lt(w[0], w[1]), "{} < {}", w[0], w[1]);
            assert!(!lt(w[1], w[0]));
        }
        assert_eq!(
            Version::parse("1.2.3+b1")
                .unwrap()
                .precedence(&Version::parse("1.2.3+b2").unwrap()),
            Ordering::Equal
        );
    }

    #[test]
    fn rejects_what_is_not_semver() {
        for bad in [
            "v1.2.3",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3-a..b",
            "",
            "a.b.c",
            "1.2.3+",
            " 1.2.3",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
        for good in ["0.0.0", "1.2.3-0", "1.2.3-alpha-1.x", "10.20.30+build.007"] {
            assert!(Version::parse(good).is_some(), "{good}");
        }
    }
}
