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

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn identifiers_ok(s: &str, numeric_rule: bool) -> bool {
    s.split('.').all(|id| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !(numeric_rule && id.len() > 1 && id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()))
    })
}

impl<'a> Version<'a> {
    /// Parses a strict SemVer 2.0.0 version.
    pub(crate) fn parse(s: &'a str) -> Option<Self> {
        let (rest, build) = match s.split_once('+') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        if let Some(b) = build {
            if !identifiers_ok(b, false) {
                return None;
            }
        }
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) => {
                if !identifiers_ok(p, true) {
                    return None;
                }
                (c, p)
            }
            None => (rest, ""),
        };
        let mut it = core.split('.');
        let major = number(it.next()?)?;
        let minor = number(it.next()?)?;
        let patch = number(it.next()?)?;
        if it.next().is_some() {
            return None;
        }
        Some(Version { major, minor, patch, pre })
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

fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut ia = a.split('.');
    let mut ib = b.split('.');
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let xn = x.bytes().all(|c| c.is_ascii_digit());
                let yn = y.bytes().all(|c| c.is_ascii_digit());
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
        Version::parse(a).unwrap().precedence(&Version::parse(b).unwrap()) == Ordering::Less
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
            Version::parse("1.2.3+b1").unwrap().precedence(&Version::parse("1.2.3+b2").unwrap()),
            Ordering::Equal
        );
    }

    #[test]
    fn rejects_what_is_not_semver() {
        for bad in ["v1.2.3", "1.2", "1.2.3.4", "01.2.3", "1.2.3-", "1.2.3-01", "1.2.3-a..b", "", "a.b.c", "1.2.3+", " 1.2.3"] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
        for good in ["0.0.0", "1.2.3-0", "1.2.3-alpha-1.x", "10.20.30+build.007"] {
            assert!(Version::parse(good).is_some(), "{good}");
        }
    }
}
