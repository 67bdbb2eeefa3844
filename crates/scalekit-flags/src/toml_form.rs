//! Our concise TOML form of the model (feature `toml`).
//!
//! A file has `[flags.<name>]` tables and optional `[segments.<name>]` tables. The
//! common strategies have shorthands; anything else is written in Unleash's own
//! terms under `[[flags.<name>.strategies]]`. Both compile to the same
//! [`ClientFeatures`] as Unleash JSON, so evaluation is identical.
//!
//! ```toml
//! [segments.nordics]
//! constraints = [{ field = "country", op = "IN", values = ["NO", "SE", "DK", "FI"] }]
//!
//! [flags.new-checkout]
//! description = "The one-page checkout"
//! rollout = 25                  # flexibleRollout at 25 % ...
//! stickiness = "userId"         # ... sticky on userId (default: userId, sessionId, random)
//! group = "checkout"            # groupId (default: the flag's name)
//! segments = ["nordics"]        # and only in the Nordics
//! when = [{ field = "appVersion", op = "SEMVER_GTE", value = "2.4.0" }]
//! variants = [
//!   { name = "blue", weight = 1, payload = { type = "string", value = "#00f" } },
//!   { name = "green", weight = 1, overrides = { userId = ["alice"] } },
//! ]
//!
//! [flags.beta-banner]
//! users = ["alice", "bob"]      # userWithId
//!
//! [flags.new-search]
//! enabled = false               # everything else stays, the flag is off
//!
//! [flags.search-ranking]
//! depends = ["new-search", { flag = "new-checkout", variants = ["blue"] }]
//!
//! [[flags.ops-window.strategies]]  # any strategy, in Unleash's terms
//! name = "gradualRolloutSessionId"
//! parameters = { percentage = 10, groupId = "ops" }
//! constraints = [{ field = "currentTime", op = "DATE_AFTER", value = "2030-01-01T00:00:00Z" }]
//! ```
//!
//! A flag is `enabled` unless it says otherwise. Its strategies are the ones under
//! `strategies`, then `users` (a `userWithId` strategy), then `rollout` (a
//! `flexibleRollout`); `when` and `segments` constrain the shorthand strategies; when
//! a flag has `when` or `segments` but neither shorthand, they constrain a `default`
//! strategy. A flag with no strategy at all is on for everyone. Unknown keys are
//! errors, so a typo is reported, with its line and column, rather than ignored.

use crate::error::FlagsError;
use crate::model::{
    ClientFeatures, Constraint, Dependency, Feature, Override, Payload, Segment, Strategy, Variant,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    segments: BTreeMap<String, Spanned<TSegment>>,
    #[serde(default)]
    flags: BTreeMap<String, Spanned<TFlag>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TSegment {
    id: Option<i64>,
    #[serde(default)]
    constraints: Vec<Spanned<TConstraint>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TFlag {
    #[serde(default = "yes")]
    enabled: bool,
    description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    project: Option<String>,
    #[serde(default)]
    impression_data: bool,
    rollout: Option<Spanned<f64>>,
    stickiness: Option<String>,
    group: Option<String>,
    users: Option<Vec<String>>,
    #[serde(default)]
    when: Vec<Spanned<TConstraint>>,
    #[serde(default)]
    segments: Vec<Spanned<String>>,
    #[serde(default)]
    variants: Vec<TVariant>,
    #[serde(default)]
    depends: Vec<Spanned<TDep>>,
    #[serde(default)]
    strategies: Vec<TStrategy>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TConstraint {
    field: String,
    op: String,
    #[serde(default)]
    values: Vec<TScalar>,
    value: Option<TScalar>,
    #[serde(default)]
    inverted: bool,
    #[serde(default)]
    case_insensitive: bool,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum TScalar {
    S(String),
    I(i64),
    F(f64),
    B(bool),
}

impl TScalar {
    fn text(&self) -> String {
        match self {
            TScalar::S(s) => s.clone(),
            TScalar::I(i) => i.to_string(),
            TScalar::F(f) => f.to_string(),
            TScalar::B(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TVariant {
    name: String,
    #[serde(default = "one")]
    weight: u32,
    stickiness: Option<String>,
    payload: Option<Payload>,
    #[serde(default)]
    overrides: BTreeMap<String, Vec<String>>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TDep {
    Name(String),
    Full(TDepFull),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TDepFull {
    flag: String,
    enabled: Option<bool>,
    #[serde(default)]
    variants: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TStrategy {
    name: String,
    #[serde(default)]
    parameters: BTreeMap<String, TScalar>,
    #[serde(default)]
    constraints: Vec<Spanned<TConstraint>>,
    #[serde(default)]
    segments: Vec<Spanned<String>>,
    #[serde(default)]
    variants: Vec<TVariant>,
}

const OPERATORS: &[&str] = &[
    "IN",
    "NOT_IN",
    "STR_STARTS_WITH",
    "STR_ENDS_WITH",
    "STR_CONTAINS",
    "NUM_EQ",
    "NUM_GT",
    "NUM_GTE",
    "NUM_LT",
    "NUM_LTE",
    "DATE_AFTER",
    "DATE_BEFORE",
    "SEMVER_EQ",
    "SEMVER_GT",
    "SEMVER_GTE",
    "SEMVER_LT",
    "SEMVER_LTE",
    "REGEX",
    "IN_CIDR",
];

/// 1-based line and column of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn error(text: &str, span: Option<Range<usize>>, message: String) -> FlagsError {
    let (line, column) = span.map_or((1, 1), |s| line_col(text, s.start));
    FlagsError::Parse {
        format: "TOML",
        origin: None,
        line,
        column,
        message,
    }
}

struct Lower<'a> {
    text: &'a str,
    segment_ids: BTreeMap<String, i64>,
}

impl Lower<'_> {
    fn constraint(&self, c: &Spanned<TConstraint>) -> Result<Constraint, FlagsError> {
        let t = c.get_ref();
        let op = t.op.to_ascii_uppercase();
        if !OPERATORS.contains(&op.as_str()) {
            return Err(error(
                self.text,
                Some(c.span()),
                format!(
                    "unknown operator {:?}; use one of {}",
                    t.op,
                    OPERATORS.join(", ")
                ),
            ));
        }
        let list = matches!(
            op.as_str(),
            "IN" | "NOT_IN" | "STR_STARTS_WITH" | "STR_ENDS_WITH" | "STR_CONTAINS" | "IN_CIDR"
        );
        if list && t.values.is_empty() && t.value.is_some() {
            return Err(error(
                self.text,
                Some(c.span()),
                format!("{op} takes `values = [...]`, not `value`"),
            ));
        }
        if !list && t.value.is_none() {
            return Err(error(
                self.text,
                Some(c.span()),
                format!("{op} takes one `value = ...`"),
            ));
        }
        Ok(Constraint {
            context_name: t.field.clone(),
            operator: op,
            values: t.values.iter().map(TScalar::text).collect(),
            value: t.value.as_ref().map(TScalar::text),
            inverted: t.inverted,
            case_insensitive: t.case_insensitive,
        })
    }

    fn segments(&self, names: &[Spanned<String>]) -> Result<Vec<i64>, FlagsError> {
        names
            .iter()
            .map(|n| {
                self.segment_ids.get(n.get_ref()).copied().ok_or_else(|| {
                    error(
                        self.text,
                        Some(n.span()),
                        format!(
                            "unknown segment {:?}; define it under [segments.{}]",
                            n.get_ref(),
                            n.get_ref()
                        ),
                    )
                })
            })
            .collect()
    }

    fn variants(v: &[TVariant]) -> Vec<Variant> {
        v.iter()
            .map(|v| Variant {
                name: v.name.clone(),
                weight: v.weight,
                weight_type: None,
                stickiness: v.stickiness.clone(),
                payload: v.payload.clone(),
                overrides: v
                    .overrides
                    .iter()
                    .map(|(k, vals)| Override {
                        context_name: k.clone(),
                        values: vals.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    fn flag(&self, name: &str, f: &Spanned<TFlag>) -> Result<Feature, FlagsError> {
        let span = f.span();
        let t = f.get_ref();
        let mut strategies = Vec::new();
        for s in &t.strategies {
            strategies.push(Strategy {
                name: s.name.clone(),
                parameters: s
                    .parameters
                    .iter()
                    .map(|(k, v)| (k.clone(), v.text()))
                    .collect(),
                constraints: s
                    .constraints
                    .iter()
                    .map(|c| self.constraint(c))
                    .collect::<Result<_, _>>()?,
                segments: self.segments(&s.segments)?,
                variants: Self::variants(&s.variants),
            });
        }
        let when: Vec<Constraint> = t
            .when
            .iter()
            .map(|c| self.constraint(c))
            .collect::<Result<_, _>>()?;
        let segs = self.segments(&t.segments)?;
        let shorthand = |name: &str, parameters: BTreeMap<String, String>| Strategy {
            name: name.to_owned(),
            parameters,
            constraints: when.clone(),
            segments: segs.clone(),
            variants: Vec::new(),
        };
        if let Some(users) = &t.users {
            strategies.push(shorthand(
                "userWithId",
                [("userIds".to_owned(), users.join(","))].into(),
            ));
        }
        if let Some(r) = &t.rollout {
            let pct = *r.get_ref();
            if !(0.0..=100.0).contains(&pct) {
                return Err(error(
                    self.text,
                    Some(r.span()),
                    format!("rollout {pct} is not a percentage (0 to 100)"),
                ));
            }
            let mut p = BTreeMap::new();
            p.insert("rollout".to_owned(), pct.to_string());
            p.insert(
                "stickiness".to_owned(),
                t.stickiness.clone().unwrap_or_else(|| "default".to_owned()),
            );
            p.insert(
                "groupId".to_owned(),
                t.group.clone().unwrap_or_else(|| name.to_owned()),
            );
            strategies.push(shorthand("flexibleRollout", p));
        } else if t.stickiness.is_some() || t.group.is_some() {
            return Err(error(
                self.text,
                Some(span),
                "`stickiness` and `group` apply to `rollout`, which is not set".into(),
            ));
        }
        if t.users.is_none() && t.rollout.is_none() && (!when.is_empty() || !segs.is_empty()) {
            strategies.push(shorthand("default", BTreeMap::new()));
        }
        let dependencies = t
            .depends
            .iter()
            .map(|d| match d.get_ref() {
                TDep::Name(n) => Dependency {
                    feature: n.clone(),
                    enabled: None,
                    variants: Vec::new(),
                },
                TDep::Full(f) => Dependency {
                    feature: f.flag.clone(),
                    enabled: f.enabled,
                    variants: f.variants.clone(),
                },
            })
            .collect();
        Ok(Feature {
            name: name.to_owned(),
            enabled: t.enabled,
            strategies,
            variants: Self::variants(&t.variants),
            dependencies,
            impression_data: t.impression_data,
            project: t.project.clone(),
            kind: t.kind.clone(),
            description: t.description.clone(),
        })
    }
}

/// Parses the TOML form into the model. Errors carry the line and column.
///
/// ```
/// use scalekit_flags::{toml_form, FlagsError};
/// let state = toml_form::parse("[flags.a]\nrollout = 50\n").unwrap();
/// assert_eq!(state.features[0].strategies[0].name, "flexibleRollout");
///
/// let err = toml_form::parse("[flags.a]\nrolout = 50\n").unwrap_err();
/// assert!(matches!(err, FlagsError::Parse { line: 2, column: 1, .. }), "{err}");
/// ```
pub fn parse(text: &str) -> Result<ClientFeatures, FlagsError> {
    let file: File =
        toml::from_str(text).map_err(|e| error(text, e.span(), e.message().to_owned()))?;
    let mut segment_ids = BTreeMap::new();
    let mut used = std::collections::BTreeSet::new();
    for s in file.segments.values() {
        if let Some(id) = s.get_ref().id {
            if !used.insert(id) {
                return Err(error(
                    text,
                    Some(s.span()),
                    format!("segment id {id} is used twice"),
                ));
            }
        }
    }
    let mut next = 1;
    let mut segments = Vec::new();
    let lower = |ids: BTreeMap<String, i64>| Lower {
        text,
        segment_ids: ids,
    };
    for (name, s) in &file.segments {
        let id = match s.get_ref().id {
            Some(id) => id,
            None => {
                while used.contains(&next) {
                    next += 1;
                }
                used.insert(next);
                next
            }
        };
        segment_ids.insert(name.clone(), id);
        segments.push((name.clone(), id));
    }
    let l = lower(segment_ids);
    let mut out = ClientFeatures {
        version: 2,
        features: Vec::new(),
        segments: Vec::new(),
    };
    for (name, id) in segments {
        let s = &file.segments[&name];
        out.segments.push(Segment {
            id,
            name: Some(name),
            constraints: s
                .get_ref()
                .constraints
                .iter()
                .map(|c| l.constraint(c))
                .collect::<Result<_, _>>()?,
        });
    }
    for (name, f) in &file.flags {
        out.features.push(l.flag(name, f)?);
    }
    Ok(out)
}
