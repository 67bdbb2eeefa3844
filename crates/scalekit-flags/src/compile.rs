//! Compilation of the model into the evaluation form, and evaluation itself.
//!
//! Everything that can be decided when a state is loaded is decided then: context
//! field names become an enum, list values become sets, numbers, dates, versions,
//! networks and regexes are parsed, segments are inlined into their strategies,
//! parents are resolved to indices, and each variant gets a metrics slot. Evaluation
//! then only reads the context and this form, and allocates nothing.

use crate::cidr::Cidr;
use crate::context::{bytes_eq, Context, Field};
use crate::hash::{normalized_hash, VARIANT_SEED};
use crate::metrics::Counters;
use crate::model::{
    ClientFeatures, Constraint, Feature, Payload, Strategy, Variant as ModelVariant,
};
use crate::semver::{OwnedVersion, Version};
use crate::{CustomStrategy, FlagsError, Reason, Warning};
use ahash::{AHashMap, AHashSet};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

/// What the compiler needs besides the state.
#[derive(Clone, Default)]
pub(crate) struct Options {
    pub(crate) strategies: AHashMap<String, Arc<dyn CustomStrategy>>,
    pub(crate) hostname: Option<String>,
}

/// Toggle name -> index: open addressing with linear probing over a power-of-two
/// table at most half full. Each slot holds the index and the name's hash, so a
/// probe compares names only when the hashes agree.
pub(crate) struct NameIndex {
    hasher: ahash::RandomState,
    slots: Box<[(u64, u32)]>,
    mask: usize,
    /// The names, by toggle index, in one buffer (compared without touching the
    /// toggles themselves).
    names: StrList,
}

const EMPTY: u32 = u32::MAX;

impl NameIndex {
    fn new(names: &[&str]) -> Self {
        let cap = (names.len() * 2).next_power_of_two().max(8);
        NameIndex {
            hasher: ahash::RandomState::new(),
            slots: vec![(0, EMPTY); cap].into_boxed_slice(),
            mask: cap - 1,
            names: StrList::new(names),
        }
    }

    /// Inserts; `false` when the name is already there.
    fn insert(&mut self, name: &str, idx: u32, names: &[&str]) -> bool {
        let h = self.hasher.hash_one(name);
        let mut i = h as usize & self.mask;
        loop {
            let (sh, si) = self.slots[i];
            if si == EMPTY {
                self.slots[i] = (h, idx);
                return true;
            }
            if sh == h && names[si as usize] == name {
                return false;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    fn get(&self, name: &str) -> Option<usize> {
        let h = self.hasher.hash_one(name);
        let mut i = h as usize & self.mask;
        loop {
            let (sh, si) = self.slots[i];
            if si == EMPTY {
                return None;
            }
            if sh == h {
                let (a, l) = self
                    .names
                    .spans
                    .get(si as usize)
                    .copied()
                    .unwrap_or((0, u32::MAX));
                if l as usize == name.len()
                    && self
                        .names
                        .text
                        .as_bytes()
                        .get(a as usize..(a + l) as usize)
                        .is_some_and(|x| bytes_eq(x, name.as_bytes()))
                {
                    return Some(si as usize);
                }
            }
            i = (i + 1) & self.mask;
        }
    }
}

pub(crate) struct Compiled {
    pub(crate) model: Arc<ClientFeatures>,
    pub(crate) index: NameIndex,
    pub(crate) toggles: Box<[Toggle]>,
    pub(crate) counters: Box<[Counters]>,
    pub(crate) warnings: Vec<Warning>,
}

pub(crate) struct Toggle {
    pub(crate) name: Arc<str>,
    pub(crate) enabled: bool,
    pub(crate) strategies: Box<[CStrategy]>,
    pub(crate) variants: Option<Variants>,
    pub(crate) deps: Box<[Dep]>,
    pub(crate) variant_names: Box<[Arc<str>]>,
    pub(crate) impression_data: bool,
}

pub(crate) struct Dep {
    /// Index of the parent, or `None` when it does not exist or itself has parents.
    parent: Option<u32>,
    want_enabled: bool,
    variants: Box<[Box<str>]>,
}

pub(crate) struct CStrategy {
    kind: Kind,
    /// Cheapest first (see [`CConstraint::cost`]).
    constraints: Box<[CConstraint]>,
    /// Check the strategy itself before its constraints (when it is cheaper: both
    /// must hold and both are pure, so the order only changes the time taken).
    kind_first: bool,
    variants: Option<Variants>,
}

enum Kind {
    Always,
    Never,
    UserIds(StrSet),
    Rollout {
        pct: f64,
        stick: Stickiness,
        group: Arc<str>,
    },
    Random(f64),
    Remote(Box<[Cidr]>),
    Custom(Arc<dyn CustomStrategy>, Arc<BTreeMap<String, String>>),
}

#[derive(Clone)]
enum Stickiness {
    Default,
    Random,
    Field(Field),
}

pub(crate) struct Variants {
    list: Box<[CVariant]>,
    total: u32,
    stick: Stickiness,
    group: Arc<str>,
    has_overrides: bool,
}

pub(crate) struct CVariant {
    pub(crate) name: Arc<str>,
    pub(crate) payload: Option<Arc<Payload>>,
    weight: u32,
    overrides: Box<[(Field, StrSet)]>,
    pub(crate) slot: u32,
}

struct CConstraint {
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

/// Parses a context value as a number: a fast path for plain integers, else Rust's
/// float parser (which, like Unleash's SDKs, accepts `12`, `12.0`, `-1e3`).
#[inline]
fn number(s: &str) -> Option<f64> {
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
    text: Box<str>,
    spans: Box<[(u32, u32)]>,
}

impl StrList {
    fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(values: I) -> Self {
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

    fn len(&self) -> usize {
        self.spans.len()
    }

    #[inline]
    fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans
            .iter()
            .filter_map(|&(a, l)| self.text.get(a as usize..(a + l) as usize))
    }

    /// Whether `s` is one of the values (length compared before any byte).
    #[inline]
    fn contains(&self, s: &str) -> bool {
        let b = self.text.as_bytes();
        self.spans.iter().any(|&(a, l)| {
            l as usize == s.len()
                && b.get(a as usize..(a + l) as usize)
                    .is_some_and(|x| bytes_eq(x, s.as_bytes()))
        })
    }
}

/// A set of strings: a short list compared in order, or a hash set.
pub(crate) enum StrSet {
    Small(StrList),
    Hashed(AHashSet<Box<str>>),
}

impl StrSet {
    fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(values: I) -> Self {
        let list = StrList::new(values);
        if list.len() <= 8 {
            StrSet::Small(list)
        } else {
            StrSet::Hashed(list.iter().map(Box::from).collect())
        }
    }

    #[inline]
    fn contains(&self, s: &str) -> bool {
        match self {
            StrSet::Small(v) => v.contains(s),
            StrSet::Hashed(h) => h.contains(s),
        }
    }
}

pub(crate) static DISABLED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("disabled"));

fn percent(params: &BTreeMap<String, String>, key: &str) -> Option<f64> {
    params
        .get(key)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|p| p.is_finite())
}

fn stickiness(s: Option<&str>) -> Stickiness {
    match s.map(str::trim) {
        None | Some("") | Some("default") => Stickiness::Default,
        Some("random") => Stickiness::Random,
        Some(f) => Stickiness::Field(Field::parse(f)),
    }
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

pub(crate) fn local_hostname() -> Option<String> {
    if let Ok(h) = std::env::var("HOSTNAME") {
        if !h.is_empty() {
            return Some(h);
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

struct Compiler<'a> {
    opts: &'a Options,
    warnings: Vec<Warning>,
    segments: AHashMap<i64, &'a [Constraint]>,
    slot: u32,
    names: Vec<Arc<str>>,
    hostname: Option<String>,
}

impl<'a> Compiler<'a> {
    fn warn(&mut self, toggle: &str, message: String) {
        self.warnings.push(Warning {
            toggle: toggle.to_owned(),
            message,
        });
    }

    fn constraint(&mut self, toggle: &str, c: &Constraint) -> CConstraint {
        let field = Field::parse(&c.context_name);
        let single = c.value.as_deref().map(str::trim);
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
            "NUM_EQ" | "NUM_GT" | "NUM_GTE" | "NUM_LT" | "NUM_LTE" => {
                let cmp = cmp_of(&c.operator[4..]);
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
            "SEMVER_EQ" | "SEMVER_GT" | "SEMVER_GTE" | "SEMVER_LT" | "SEMVER_LTE" => {
                let cmp = cmp_of(&c.operator[7..]);
                match single.and_then(OwnedVersion::parse) {
                    Some(v) => Op::Semver(cmp, v),
                    None => {
                        self.warn(toggle, format!("{}: value {:?} is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD], no leading v)", c.operator, c.value));
                        Op::Never
                    }
                }
            }
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

    fn variants(
        &mut self,
        list: &[ModelVariant],
        stick: Stickiness,
        group: Arc<str>,
    ) -> Option<Variants> {
        if list.is_empty() {
            return None;
        }
        let mut total: u32 = 0;
        let mut out = Vec::with_capacity(list.len());
        let mut has_overrides = false;
        for v in list {
            total = total.saturating_add(v.weight);
            let name: Arc<str> = Arc::from(v.name.as_str());
            let slot = self.slot;
            self.slot += 1;
            self.names.push(name.clone());
            let overrides: Box<[(Field, StrSet)]> = v
                .overrides
                .iter()
                .map(|o| {
                    (
                        Field::parse(&o.context_name),
                        StrSet::new(o.values.iter().map(String::as_str)),
                    )
                })
                .collect();
            has_overrides |= !overrides.is_empty();
            out.push(CVariant {
                name,
                payload: v.payload.clone().map(Arc::new),
                weight: v.weight,
                overrides,
                slot,
            });
        }
        Some(Variants {
            list: out.into_boxed_slice(),
            total,
            stick,
            group,
            has_overrides,
        })
    }

    fn strategy(&mut self, f: &Feature, toggle_name: &Arc<str>, s: &Strategy) -> CStrategy {
        let p = &s.parameters;
        let group = |key: &str| -> Arc<str> {
            match p.get(key) {
                Some(g) if !g.is_empty() => Arc::from(g.as_str()),
                _ => toggle_name.clone(),
            }
        };
        let mut kind = match s.name.as_str() {
            "default" => Kind::Always,
            "userWithId" => Kind::UserIds(StrSet::new(
                p.get("userIds")
                    .map(String::as_str)
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty()),
            )),
            "gradualRolloutUserId" | "gradualRolloutSessionId" => match percent(p, "percentage") {
                Some(pct) => Kind::Rollout {
                    pct,
                    stick: Stickiness::Field(if s.name == "gradualRolloutUserId" {
                        Field::UserId
                    } else {
                        Field::SessionId
                    }),
                    group: group("groupId"),
                },
                None => Kind::Never,
            },
            "gradualRolloutRandom" => match percent(p, "percentage") {
                Some(pct) => Kind::Random(pct),
                None => Kind::Never,
            },
            "flexibleRollout" => match percent(p, "rollout") {
                Some(pct) => Kind::Rollout {
                    pct,
                    stick: stickiness(p.get("stickiness").map(String::as_str)),
                    group: group("groupId"),
                },
                None => Kind::Never,
            },
            "remoteAddress" => Kind::Remote(
                p.get("IPs")
                    .map(String::as_str)
                    .unwrap_or("")
                    .split(',')
                    .filter_map(Cidr::parse)
                    .collect(),
            ),
            "applicationHostname" => {
                let me = self.hostname.as_deref().map(str::to_lowercase);
                let hit = me.is_some_and(|me| {
                    p.get("hostNames")
                        .map(String::as_str)
                        .unwrap_or("")
                        .split(',')
                        .any(|h| h.trim().to_lowercase() == me)
                });
                if hit {
                    Kind::Always
                } else {
                    Kind::Never
                }
            }
            other => match self.opts.strategies.get(other) {
                Some(imp) => Kind::Custom(imp.clone(), Arc::new(p.clone())),
                None => {
                    self.warn(&f.name, format!("unknown strategy {other:?}: it never matches (register it with FlagsBuilder::strategy)"));
                    Kind::Never
                }
            },
        };
        let rollout_family = matches!(
            s.name.as_str(),
            "gradualRolloutUserId"
                | "gradualRolloutSessionId"
                | "gradualRolloutRandom"
                | "flexibleRollout"
        );
        if matches!(kind, Kind::Never) && rollout_family {
            self.warn(
                &f.name,
                format!(
                    "strategy {}: missing or invalid percentage; it never matches",
                    s.name
                ),
            );
        }
        let mut constraints: Vec<CConstraint> = s
            .constraints
            .iter()
            .map(|c| self.constraint(&f.name, c))
            .collect();
        for id in &s.segments {
            match self.segments.get(id).copied() {
                Some(cs) => {
                    for c in cs {
                        let cc = self.constraint(&f.name, c);
                        constraints.push(cc);
                    }
                }
                None => {
                    self.warn(&f.name, format!("strategy {} refers to segment {id}, which does not exist: it never matches", s.name));
                    kind = Kind::Never;
                }
            }
        }
        let variants = self.variants(
            &s.variants,
            stickiness(p.get("stickiness").map(String::as_str)),
            group("groupId"),
        );
        // Cheapest constraints first, so that a failing one ends the check early.
        constraints.sort_by_key(CConstraint::cost);
        let constraint_cost: u32 = constraints.iter().map(CConstraint::cost).sum();
        let kind_cost = match &kind {
            Kind::Always | Kind::Never => 0,
            Kind::UserIds(_) | Kind::Remote(_) | Kind::Random(_) => 2,
            Kind::Rollout { .. } => 4,
            // A custom strategy is user code: call it only when the constraints hold,
            // as Unleash's SDKs do.
            Kind::Custom(..) => u32::MAX,
        };
        CStrategy {
            kind_first: kind_cost < constraint_cost,
            kind,
            constraints: constraints.into_boxed_slice(),
            variants,
        }
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

/// Compiles a state. Structural problems (duplicate toggle names) are errors; problems
/// a server could send and SDKs tolerate (unknown operators, values that do not parse,
/// missing segments) compile to conditions that never hold and are listed as warnings.
pub(crate) fn compile(model: Arc<ClientFeatures>, opts: &Options) -> Result<Compiled, FlagsError> {
    let (index, toggles, warnings) = compile_parts(&model, opts)?;
    let counters = toggles
        .iter()
        .map(|t| Counters::new(t.variant_names.len()))
        .collect();
    Ok(Compiled {
        model,
        index,
        toggles: toggles.into_boxed_slice(),
        counters,
        warnings,
    })
}

type Parts = (NameIndex, Vec<Toggle>, Vec<Warning>);

fn compile_parts(model: &ClientFeatures, opts: &Options) -> Result<Parts, FlagsError> {
    if model.features.len() >= EMPTY as usize / 4 {
        return Err(FlagsError::invalid("too many toggles"));
    }
    let names: Vec<&str> = model.features.iter().map(|f| f.name.as_str()).collect();
    let mut index = NameIndex::new(&names);
    let mut by_name: AHashMap<&str, u32> = AHashMap::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if !index.insert(name, i as u32, &names) {
            return Err(FlagsError::invalid(format!(
                "toggle {name:?} is defined twice"
            )));
        }
        by_name.insert(name, i as u32);
    }
    let mut c = Compiler {
        opts,
        warnings: Vec::new(),
        segments: model
            .segments
            .iter()
            .map(|s| (s.id, s.constraints.as_slice()))
            .collect(),
        slot: 0,
        names: Vec::new(),
        hostname: opts.hostname.clone().or_else(local_hostname),
    };
    let mut toggles = Vec::with_capacity(model.features.len());
    for f in &model.features {
        c.slot = 1;
        c.names.clear();
        c.names.push(DISABLED.clone());
        let name: Arc<str> = Arc::from(f.name.as_str());
        let strategies: Box<[CStrategy]> = f
            .strategies
            .iter()
            .map(|s| c.strategy(f, &name, s))
            .collect();
        let vstick = stickiness(f.variants.first().and_then(|v| v.stickiness.as_deref()));
        let variants = c.variants(&f.variants, vstick, name.clone());
        let deps = f
            .dependencies
            .iter()
            .map(|d| {
                let parent = by_name.get(d.feature.as_str()).copied();
                let parent = match parent {
                    None => {
                        c.warn(&f.name, format!("depends on {:?}, which does not exist: the toggle is off", d.feature));
                        None
                    }
                    Some(p) if !model.features[p as usize].dependencies.is_empty() => {
                        c.warn(&f.name, format!("depends on {:?}, which has parents itself (only one level is allowed): the toggle is off", d.feature));
                        None
                    }
                    Some(p) => Some(p),
                };
                Dep {
                    parent,
                    want_enabled: d.enabled.unwrap_or(true),
                    variants: d.variants.iter().map(|v| v.as_str().into()).collect(),
                }
            })
            .collect();
        toggles.push(Toggle {
            name,
            enabled: f.enabled,
            strategies,
            variants,
            deps,
            variant_names: std::mem::take(&mut c.names).into_boxed_slice(),
            impression_data: f.impression_data,
        });
    }
    Ok((index, toggles, c.warnings))
}

// ---------------------------------------------------------------- evaluation

thread_local! {
    static RNG: std::cell::Cell<u64> = std::cell::Cell::new({
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(&h as *const _ as usize);
        h.finish() | 1
    });
}

/// A uniform number in `1..=n` (n >= 1) from a per-thread xorshift generator.
#[inline]
fn random_in(n: u32) -> u32 {
    let x = RNG.with(|c| {
        let mut x = c.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        x
    });
    (((x >> 32) * u64::from(n)) >> 32) as u32 + 1
}

/// Runs `test` on `v` lowercased: in a stack buffer when it is short ASCII, else in
/// an allocated string (the uncommon path). Kept out of line so that the common
/// evaluation path keeps a small stack frame.
#[inline(never)]
fn lowered(v: &str, test: impl Fn(&str) -> bool) -> bool {
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
    fn cost(&self) -> u32 {
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
    fn holds(&self, ctx: &Context) -> bool {
        match self.op.eval(&self.field, ctx) {
            Some(r) => r != self.inverted,
            None => false,
        }
    }
}

#[inline]
fn rollout_hit(pct: f64, stick: &Stickiness, group: &str, ctx: &Context) -> bool {
    if pct <= 0.0 {
        return false;
    }
    let id = match stick {
        Stickiness::Default => match ctx.builtin(0).or(ctx.builtin(1)) {
            Some(id) => id,
            None => return f64::from(random_in(100)) <= pct,
        },
        Stickiness::Random => return f64::from(random_in(100)) <= pct,
        Stickiness::Field(f) => match ctx.field(f) {
            Some(id) => id,
            None => return false,
        },
    };
    f64::from(normalized_hash(group, id, 100, 0)) <= pct
}

impl CStrategy {
    #[inline]
    fn matches(&self, ctx: &Context) -> bool {
        if self.kind_first {
            self.kind_holds(ctx) && self.constraints.iter().all(|c| c.holds(ctx))
        } else {
            self.constraints.iter().all(|c| c.holds(ctx)) && self.kind_holds(ctx)
        }
    }

    #[inline]
    fn kind_holds(&self, ctx: &Context) -> bool {
        match &self.kind {
            Kind::Always => true,
            Kind::Never => false,
            Kind::UserIds(set) => ctx.builtin(0).is_some_and(|u| set.contains(u)),
            Kind::Rollout { pct, stick, group } => rollout_hit(*pct, stick, group, ctx),
            Kind::Random(pct) => *pct > 0.0 && f64::from(random_in(100)) <= *pct,
            Kind::Remote(nets) => ctx
                .builtin(2)
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
            Kind::Custom(imp, params) => imp.is_enabled(params, ctx),
        }
    }
}

impl Variants {
    #[inline]
    fn pick(&self, ctx: &Context) -> Option<&CVariant> {
        if self.has_overrides {
            for v in self.list.iter() {
                for (field, values) in v.overrides.iter() {
                    if ctx.field(field).is_some_and(|x| values.contains(x)) {
                        return Some(v);
                    }
                }
            }
        }
        if self.total == 0 {
            return None;
        }
        let seed = match &self.stick {
            Stickiness::Default => ctx.builtin(0).or(ctx.builtin(1)).or(ctx.builtin(2)),
            Stickiness::Random => None,
            Stickiness::Field(f) => ctx.field(f),
        };
        let target = match seed {
            Some(s) => normalized_hash(&self.group, s, self.total, VARIANT_SEED),
            None => random_in(self.total),
        };
        let mut acc = 0u32;
        for v in self.list.iter() {
            acc = acc.saturating_add(v.weight);
            if acc >= target {
                return Some(v);
            }
        }
        None
    }
}

/// The outcome of evaluating one toggle.
pub(crate) struct Outcome<'a> {
    pub(crate) enabled: bool,
    pub(crate) variant: Option<&'a CVariant>,
    pub(crate) reason: Reason,
}

impl Compiled {
    #[inline]
    pub(crate) fn lookup(&self, name: &str) -> Option<usize> {
        self.index.get(name)
    }

    /// Whether the toggle is on; `Some(index of the strategy that matched)` or
    /// `Some(usize::MAX)` when it has no strategies.
    #[inline]
    fn matched(&self, i: usize, ctx: &Context, killed: &[bool]) -> Result<usize, Reason> {
        let t = &self.toggles[i];
        if !t.enabled || killed.get(i).copied().unwrap_or(false) {
            return Err(Reason::Disabled);
        }
        if !t.deps.is_empty() && !self.deps_ok(t, ctx, killed) {
            return Err(Reason::Default);
        }
        if t.strategies.is_empty() {
            return Ok(usize::MAX);
        }
        t.strategies
            .iter()
            .position(|s| s.matches(ctx))
            .ok_or(Reason::Default)
    }

    fn deps_ok(&self, t: &Toggle, ctx: &Context, killed: &[bool]) -> bool {
        t.deps.iter().all(|d| {
            let Some(p) = d.parent else { return false };
            let p = p as usize;
            let parent = self.matched(p, ctx, killed);
            if !d.want_enabled {
                return parent.is_err();
            }
            match parent {
                Err(_) => false,
                Ok(_) if d.variants.is_empty() => true,
                Ok(m) => {
                    let o = self.variant_for(p, m, ctx);
                    let name: &str = o.map(|v| &*v.name).unwrap_or("disabled");
                    d.variants.iter().any(|w| &**w == name)
                }
            }
        })
    }

    #[inline]
    fn variant_for(&self, i: usize, matched: usize, ctx: &Context) -> Option<&CVariant> {
        let t = &self.toggles[i];
        if let Some(s) = t.strategies.get(matched) {
            if let Some(vs) = &s.variants {
                return vs.pick(ctx);
            }
        }
        t.variants.as_ref().and_then(|vs| vs.pick(ctx))
    }

    #[inline]
    pub(crate) fn is_enabled(&self, i: usize, ctx: &Context, killed: &[bool]) -> bool {
        self.matched(i, ctx, killed).is_ok()
    }

    #[inline]
    pub(crate) fn evaluate(&self, i: usize, ctx: &Context, killed: &[bool]) -> Outcome<'_> {
        match self.matched(i, ctx, killed) {
            Err(reason) => Outcome {
                enabled: false,
                variant: None,
                reason,
            },
            Ok(m) => {
                let t = &self.toggles[i];
                let variant = self.variant_for(i, m, ctx);
                let split = variant.is_some()
                    || m != usize::MAX
                        && t.strategies.get(m).is_some_and(|s| {
                            matches!(s.kind, Kind::Rollout { .. } | Kind::Random(_))
                        });
                let reason = if variant.is_some() || split {
                    Reason::Split
                } else if m == usize::MAX
                    || t.strategies
                        .get(m)
                        .is_some_and(|s| matches!(s.kind, Kind::Always) && s.constraints.is_empty())
                {
                    Reason::Static
                } else {
                    Reason::TargetingMatch
                };
                Outcome {
                    enabled: true,
                    variant,
                    reason,
                }
            }
        }
    }
}
