//! Constraints: `<context field> <operator> <values>`, compiled once (values parsed,
//! lists turned into sets, regexes built) and evaluated against a context.

use crate::cidr::Cidr;
use crate::compile::compiler::Compiler;
use crate::compile::text::{lowered, number, StrList, StrSet};
use crate::context::{bytes_eq, Context, Field};
use crate::model::Constraint;
use crate::semver::{OwnedVersion, Version};
use std::cmp::Ordering;
use std::net::IpAddr;

pub(super) struct CConstraint {
    field: Field,
    inverted: bool,
    op: Op,
}

#[derive(Clone, Copy)]
enum Cmp {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    #[inline]
    fn holds(self, o: Ordering) -> bool {
        match self {
            Cmp::Eq => o == Ordering::Equal,
            Cmp::Gt => o == Ordering::Greater,
            Cmp::Gte => o != Ordering::Less,
            Cmp::Lt => o == Ordering::Less,
            Cmp::Lte => o != Ordering::Greater,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum StrOp {
    Starts,
    Ends,
    Contains,
}

enum Op {
    /// A constraint that can never hold (unknown operator, unparseable value).
    Never,
    In(StrSet),
    NotIn(StrSet),
    Str {
        op: StrOp,
        ci: bool,
        values: StrList,
    },
    Num(Cmp, f64),
    Date(Cmp, i64),
    Semver(Cmp, OwnedVersion),
    Regex(regex::Regex),
    Cidr(Box<[Cidr]>),
}

fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| s.parse::<chrono::DateTime<chrono::FixedOffset>>().ok())
        .and_then(|d| d.timestamp_nanos_opt())
}

fn now_nanos() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn cmp_of(suffix: &str) -> Cmp {
    match suffix {
        "GT" => Cmp::Gt,
        "GTE" => Cmp::Gte,
        "LT" => Cmp::Lt,
        "LTE" => Cmp::Lte,
        _ => Cmp::Eq,
    }
}

impl Compiler<'_> {
    pub(super) fn constraint(&mut self, toggle: &str, c: &Constraint) -> CConstraint {
        let field = Field::parse(&c.context_name);
        let op = match c.operator.as_str() {
            "IN" => Op::In(StrSet::new(c.values.iter().map(String::as_str))),
            "NOT_IN" => Op::NotIn(StrSet::new(c.values.iter().map(String::as_str))),
            "STR_STARTS_WITH" | "STR_ENDS_WITH" | "STR_CONTAINS" => {
                let op = match c.operator.as_str() {
                    "STR_STARTS_WITH" => StrOp::Starts,
                    "STR_ENDS_WITH" => StrOp::Ends,
                    _ => StrOp::Contains,
                };
                let values = StrList::new(c.values.iter().map(|v| {
                    if c.case_insensitive {
                        v.to_lowercase()
                    } else {
                        v.clone()
                    }
                }));
                Op::Str {
                    op,
                    ci: c.case_insensitive,
                    values,
                }
            }
            "NUM_EQ" | "NUM_GT" | "NUM_GTE" | "NUM_LT" | "NUM_LTE" | "DATE_AFTER"
            | "DATE_BEFORE" | "SEMVER_EQ" | "SEMVER_GT" | "SEMVER_GTE" | "SEMVER_LT"
            | "SEMVER_LTE" => self.ordered(toggle, c),
            "REGEX" => {
                let pattern = c.value.as_deref().unwrap_or_default();
                match regex::RegexBuilder::new(pattern)
                    .case_insensitive(c.case_insensitive)
                    .build()
                {
                    Ok(r) => Op::Regex(r),
                    Err(e) => {
                        self.warn(toggle, format!("REGEX: {pattern:?} does not compile: {e}"));
                        Op::Never
                    }
                }
            }
            "IN_CIDR" => {
                let mut nets = Vec::new();
                for v in &c.values {
                    match Cidr::parse(v) {
                        Some(n) => nets.push(n),
                        None => self.warn(
                            toggle,
                            format!("IN_CIDR: {v:?} is not an address or network; ignored"),
                        ),
                    }
                }
                Op::Cidr(nets.into_boxed_slice())
            }
            other => {
                self.warn(
                    toggle,
                    format!("unknown constraint operator {other:?}: the constraint never holds"),
                );
                Op::Never
            }
        };
        CConstraint {
            field,
            inverted: c.inverted,
            op,
        }
    }

    /// The operators that compare one value in an order: numbers, dates, versions.
    fn ordered(&mut self, toggle: &str, c: &Constraint) -> Op {
        let single = c.value.as_deref().map(str::trim);
        match c.operator.as_str() {
            "NUM_EQ" | "NUM_GT" | "NUM_GTE" | "NUM_LT" | "NUM_LTE" => {
                let cmp = cmp_of(c.operator.get(4..).unwrap_or_default());
                match single
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| !v.is_nan())
                {
                    Some(v) => Op::Num(cmp, v),
                    None => {
                        self.warn(
                            toggle,
                            format!("{}: value {:?} is not a number", c.operator, c.value),
                        );
                        Op::Never
                    }
                }
            }
            "DATE_AFTER" | "DATE_BEFORE" => {
                let cmp = if c.operator == "DATE_AFTER" {
                    Cmp::Gt
                } else {
                    Cmp::Lt
                };
                match single.and_then(parse_date) {
                    Some(v) => Op::Date(cmp, v),
                    None => {
                        self.warn(
                            toggle,
                            format!(
                                "{}: value {:?} is not an RFC 3339 date",
                                c.operator, c.value
                            ),
                        );
                        Op::Never
                    }
                }
            }
            _ => {
                let cmp = cmp_of(c.operator.get(7..).unwrap_or_default());
                match single.and_then(OwnedVersion::parse) {
                    Some(v) => Op::Semver(cmp, v),
                    None => {
                        self.warn(toggle, format!("{}: value {:?} is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD], no leading v)", c.operator, c.value));
                        Op::Never
                    }
                }
            }
        }
    }
}

impl Op {
    #[inline]
    fn eval(&self, field: &Field, ctx: &Context) -> Option<bool> {
        let value = ctx.field(field);
        Some(match self {
            Op::Never => return None,
            Op::In(set) => value.is_some_and(|v| set.contains(v)),
            Op::NotIn(set) => !value.is_some_and(|v| set.contains(v)),
            Op::Str { op, ci, values } => {
                let Some(v) = value else { return Some(false) };
                let test = |v: &str| {
                    values.iter().any(|x| match op {
                        StrOp::Starts => {
                            v.len() >= x.len() && bytes_eq(&v.as_bytes()[..x.len()], x.as_bytes())
                        }
                        StrOp::Ends => {
                            v.len() >= x.len()
                                && bytes_eq(&v.as_bytes()[v.len() - x.len()..], x.as_bytes())
                        }
                        StrOp::Contains => v.contains(x),
                    })
                };
                if *ci {
                    lowered(v, test)
                } else {
                    test(v)
                }
            }
            Op::Num(cmp, n) => value
                .and_then(number)
                .and_then(|v| v.partial_cmp(n))
                .is_some_and(|o| cmp.holds(o)),
            Op::Date(cmp, d) => {
                let t = match value {
                    Some(v) => parse_date(v),
                    None if *field == Field::CurrentTime => Some(now_nanos()),
                    None => None,
                };
                t.is_some_and(|t| cmp.holds(t.cmp(d)))
            }
            Op::Semver(cmp, want) => value
                .and_then(|v| Version::parse(v.trim()))
                .is_some_and(|have| cmp.holds(have.precedence(&want.get()))),
            Op::Regex(r) => value.is_some_and(|v| r.is_match(v)),
            Op::Cidr(nets) => value
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
        })
    }
}

impl CConstraint {
    /// A rough relative cost of evaluating the constraint.
    pub(super) fn cost(&self) -> u32 {
        let field = match self.field {
            Field::Property(_) => 1,
            _ => 0,
        };
        field
            + match &self.op {
                Op::Never => 0,
                Op::In(_) | Op::NotIn(_) | Op::Num(..) => 2,
                Op::Str { ci, .. } => 2 + u32::from(*ci),
                Op::Cidr(_) => 3,
                Op::Date(..) | Op::Semver(..) => 5,
                Op::Regex(_) => 8,
            }
    }

    #[inline]
    pub(super) fn holds(&self, ctx: &Context) -> bool {
        match self.op.eval(&self.field, ctx) {
            Some(r) => r != self.inverted,
            None => false,
        }
    }
}
