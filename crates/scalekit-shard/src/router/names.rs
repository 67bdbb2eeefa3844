//! Physical names: a shard's table, a time interval's table, a key as text.

use std::fmt;
use std::sync::Arc;

use crate::error::RouteError;
use crate::interval::Interval;
use crate::query::{decimal, Cond, Key, Query};
use crate::router::rule::{Dim, Pick, Strategy, TableRule};

#[inline]
pub(crate) fn pick_shard(p: Pick) -> u32 {
    match p {
        Pick::Shard(s) => s,
        // A database dimension never splits by time (the loader refuses it).
        Pick::Interval(_) => 0,
    }
}

#[inline]
pub(crate) fn broadcast_read(databases: &[u32], rule: &TableRule, query: &Query<'_>) -> u32 {
    // Spread reads over the copies by the key when there is one.
    let _ = rule;
    let n = databases.len().max(1) as u64;
    let i = match query.get_first_key() {
        Some(k) => (k.stable_hash() % n) as usize,
        None => 0,
    };
    databases.get(i).copied().unwrap_or(0)
}

impl Query<'_> {
    pub(crate) fn get_first_key(&self) -> Option<Key<'_>> {
        match self.first_cond() {
            Some(Cond::Eq(k)) => Some(*k),
            _ => None,
        }
    }
}

#[inline]
pub(crate) fn physical_name(
    rule: &TableRule,
    tdim: &Dim,
    physical: &[Arc<str>],
    pick: Pick,
) -> Result<Arc<str>, RouteError> {
    match (pick, &tdim.strategy) {
        (Pick::Interval(i), Strategy::Time { interval, .. }) => {
            match time_name(&rule.name, *interval, i) {
                Some(name) => Ok(name),
                None => Err(RouteError::TimeOutOfRange {
                    table: rule.name.clone(),
                    column: tdim.key.clone().unwrap_or_else(|| Arc::from("")),
                    value: i,
                }),
            }
        }
        (Pick::Shard(s), _) => Ok(physical
            .get(s as usize)
            .cloned()
            .unwrap_or_else(|| rule.name.clone())),
        (Pick::Interval(_), _) => Ok(rule.name.clone()),
    }
}

/// `{logical}_{label}`, built on the stack and copied once into the `Arc`.
pub(crate) fn time_name(logical: &str, interval: Interval, index: i64) -> Option<Arc<str>> {
    with_time_name(logical, interval, index, |s: &str| Arc::from(s))
}

/// Calls `f` with `{logical}_{label}`, built on the stack when it fits.
pub(crate) fn with_time_name<R>(
    logical: &str,
    interval: Interval,
    index: i64,
    f: impl FnOnce(&str) -> R,
) -> Option<R> {
    struct Buf {
        bytes: [u8; 96],
        len: usize,
    }
    impl fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            let dst = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut buf = Buf {
        bytes: [0; 96],
        len: 0,
    };
    let fits = fmt::Write::write_str(&mut buf, logical).is_ok()
        && fmt::Write::write_str(&mut buf, "_").is_ok()
        && interval.write_label(index, &mut buf).is_some();
    if fits {
        if let Ok(s) = std::str::from_utf8(&buf.bytes[..buf.len]) {
            return Some(f(s));
        }
    }
    // A long logical name: the slow way.
    let label = interval.label(index)?;
    Some(f(&format!("{logical}_{label}")))
}

#[inline]
pub(crate) fn key_text<R>(key: Key<'_>, f: impl FnOnce(Option<&str>) -> R) -> R {
    match key {
        Key::Int(i) => {
            let mut buf = [0u8; 20];
            let n = decimal(i, &mut buf);
            f(std::str::from_utf8(&buf[..n]).ok())
        }
        Key::Str(s) => f(Some(s)),
        Key::Bytes(b) => f(std::str::from_utf8(b).ok()),
    }
}
