//! Time intervals: which day, week, month or year table a time belongs to.

use std::fmt;

use chrono::{Datelike, NaiveDate};

/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;
const SECS_PER_DAY: i64 = 86_400;

/// How long each physical table of a time-split table covers.
///
/// Table names end in the interval's label, in UTC:
///
/// | interval | label | example |
/// |---|---|---|
/// | `day` | `YYYYMMDD` | `orders_20261124` |
/// | `week` | `YYYYwWW` (ISO 8601 week, weeks start on Monday) | `orders_2026w48` |
/// | `month` | `YYYYMM` | `orders_202611` |
/// | `year` | `YYYY` | `orders_2026` |
///
/// ```
/// use scalekit_shard::Interval;
/// // 2026-11-24T01:00:00Z
/// let t = 1_795_482_000;
/// assert_eq!(Interval::Month.label_of(t).unwrap(), "202611");
/// assert_eq!(Interval::Week.label_of(t).unwrap(), "2026w48");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interval {
    /// One table a day.
    Day,
    /// One table an ISO week.
    Week,
    /// One table a month.
    Month,
    /// One table a year.
    Year,
}

impl Interval {
    /// Parses `day`, `week`, `month` or `year`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            "month" => Some(Interval::Month),
            "year" => Some(Interval::Year),
            _ => None,
        }
    }

    /// The number of the interval holding `unix_secs` (days, weeks, months or years
    /// counted from 1970, which is interval 0 for days, months and the week of
    /// Monday 1969-12-29), or `None` outside years 1 to 9999.
    ///
    /// ```
    /// use scalekit_shard::Interval;
    /// assert_eq!(Interval::Month.index_of(0), Some(0));
    /// assert_eq!(Interval::Month.index_of(31 * 86_400), Some(1));
    /// assert_eq!(Interval::Day.index_of(-1), Some(-1));
    /// ```
    pub fn index_of(self, unix_secs: i64) -> Option<i64> {
        let days = unix_secs.div_euclid(SECS_PER_DAY);
        let date = date_of_days(days)?;
        Some(match self {
            Interval::Day => days,
            Interval::Week => (days + 3).div_euclid(7),
            Interval::Month => (i64::from(date.year()) - 1970) * 12 + i64::from(date.month0()),
            Interval::Year => i64::from(date.year()) - 1970,
        })
    }

    /// The label of interval number `index` (see [`index_of`](Self::index_of)), or
    /// `None` outside years 1 to 9999.
    ///
    /// ```
    /// use scalekit_shard::Interval;
    /// assert_eq!(Interval::Month.label(0).unwrap(), "197001");
    /// assert_eq!(Interval::Day.label(1).unwrap(), "19700102");
    /// assert_eq!(Interval::Year.label(56).unwrap(), "2026");
    /// ```
    pub fn label(self, index: i64) -> Option<String> {
        let mut out = String::with_capacity(8);
        self.write_label(index, &mut out)?;
        Some(out)
    }

    /// Writes the label of interval `index` into `out`; `None` (nothing
    /// written) outside years 1 to 9999.
    pub(crate) fn write_label(self, index: i64, out: &mut impl fmt::Write) -> Option<()> {
        let ok = |y: i64| (1..=9999).contains(&y).then_some(());
        match self {
            Interval::Day => {
                let d = date_of_days(index)?;
                write!(out, "{:04}{:02}{:02}", d.year(), d.month(), d.day()).ok()
            }
            Interval::Week => {
                let monday = date_of_days(index.checked_mul(7)?.checked_sub(3)?)?;
                let w = monday.iso_week();
                ok(i64::from(w.year()))?;
                write!(out, "{:04}w{:02}", w.year(), w.week()).ok()
            }
            Interval::Month => {
                let y = index.div_euclid(12).checked_add(1970)?;
                ok(y)?;
                write!(out, "{y:04}{:02}", index.rem_euclid(12) + 1).ok()
            }
            Interval::Year => {
                let y = index.checked_add(1970)?;
                ok(y)?;
                write!(out, "{y:04}").ok()
            }
        }
    }

    /// Whether `s` is a label this interval writes (a table name's suffix), so
    /// a name like `orders_202611` can be recognised as generated.
    pub(crate) fn is_label(self, s: &str) -> bool {
        let num = |t: &str| -> Option<u32> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        };
        let year = |t: &str| num(t).filter(|y| t.len() == 4 && (1..=9999).contains(y));
        let ymd = |y: u32, m: u32, d: u32| NaiveDate::from_ymd_opt(y as i32, m, d).is_some();
        match self {
            Interval::Year => year(s).is_some(),
            Interval::Month => {
                s.len() == 6
                    && matches!(
                        (year(s.get(..4).unwrap_or("")), num(s.get(4..).unwrap_or(""))),
                        (Some(_), Some(m)) if (1..=12).contains(&m)
                    )
            }
            Interval::Day => {
                s.len() == 8
                    && matches!(
                        (
                            year(s.get(..4).unwrap_or("")),
                            num(s.get(4..6).unwrap_or("")),
                            num(s.get(6..).unwrap_or(""))
                        ),
                        (Some(y), Some(m), Some(d)) if ymd(y, m, d)
                    )
            }
            Interval::Week => {
                s.len() == 7
                    && s.as_bytes().get(4) == Some(&b'w')
                    && matches!(
                        (year(s.get(..4).unwrap_or("")), num(s.get(5..).unwrap_or(""))),
                        (Some(y), Some(w)) if NaiveDate::from_isoywd_opt(
                            y as i32,
                            w,
                            chrono::Weekday::Mon
                        ).is_some()
                    )
            }
        }
    }

    /// The label of the interval holding `unix_secs`.
    pub fn label_of(self, unix_secs: i64) -> Option<String> {
        self.label(self.index_of(unix_secs)?)
    }

    /// The config name: `day`, `week`, `month` or `year`.
    pub fn name(self) -> &'static str {
        match self {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn date_of_days(days: i64) -> Option<NaiveDate> {
    let ce = days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)?;
    let d = NaiveDate::from_num_days_from_ce_opt(i32::try_from(ce).ok()?)?;
    (1..=9999).contains(&d.year()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(y: i32, m: u32, d: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    }

    #[test]
    fn labels() {
        let t = secs(2026, 11, 24);
        assert_eq!(Interval::Day.label_of(t).unwrap(), "20261124");
        assert_eq!(Interval::Week.label_of(t).unwrap(), "2026w48");
        assert_eq!(Interval::Month.label_of(t).unwrap(), "202611");
        assert_eq!(Interval::Year.label_of(t).unwrap(), "2026");
        // ISO weeks: 2027-01-01 is a Friday in week 53 of 2026.
        assert_eq!(
            Interval::Week.label_of(secs(2027, 1, 1)).unwrap(),
            "2026w53"
        );
        assert_eq!(
            Interval::Week.label_of(secs(2027, 1, 4)).unwrap(),
            "2027w01"
        );
        assert_eq!(
            Interval::Month.label_of(secs(1969, 12, 31)).unwrap(),
            "196912"
        );
        assert_eq!(Interval::Month.label_of(i64::MAX), None);
        assert_eq!(Interval::Day.label_of(i64::MIN), None);
    }

    #[test]
    fn labels_are_recognised() {
        for i in [
            Interval::Day,
            Interval::Week,
            Interval::Month,
            Interval::Year,
        ] {
            for idx in [-1000, 0, 1, 56, 700, 20_000] {
                if let Some(l) = i.label(idx) {
                    assert!(i.is_label(&l), "{i} {l}");
                }
            }
        }
        assert!(Interval::Month.is_label("202611"));
        assert!(!Interval::Month.is_label("202613"));
        assert!(!Interval::Month.is_label("2026111"));
        assert!(!Interval::Month.is_label("+20261"));
        assert!(!Interval::Year.is_label("0000"));
        assert!(!Interval::Day.is_label("20260230"));
        assert!(Interval::Week.is_label("2026w48"));
        assert!(!Interval::Week.is_label("2026w54"));
        assert!(!Interval::Week.is_label("2026x48"));
        assert!(!Interval::Day.is_label("2026é11"));
    }

    #[test]
    fn indices_are_consecutive_and_round_trip() {
        for iv in [
            Interval::Day,
            Interval::Week,
            Interval::Month,
            Interval::Year,
        ] {
            let mut last = iv.index_of(secs(1999, 1, 1)).unwrap();
            let mut t = secs(1999, 1, 1);
            while t < secs(2031, 1, 1) {
                t += SECS_PER_DAY;
                let i = iv.index_of(t).unwrap();
                assert!(i == last || i == last + 1, "{iv}: {last} -> {i}");
                if i == last + 1 {
                    assert_ne!(iv.label(i), iv.label(last));
                }
                assert_eq!(iv.label(i), iv.label_of(t), "{iv} at {t}");
                last = i;
            }
        }
    }
}
