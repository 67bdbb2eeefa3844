//! The crate's errors.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// Why a statement could not be routed. Cheap to build: names are shared, not
/// copied.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// No logical table of that name.
    UnknownTable {
        /// The name asked for.
        table: Arc<str>,
    },
    /// The key has the wrong type for the strategy (text for a range or time).
    KeyType {
        /// The logical table.
        table: Arc<str>,
        /// The shard key column.
        column: Arc<str>,
        /// What the strategy reads.
        expected: &'static str,
    },
    /// The key falls outside every configured range.
    NoRange {
        /// The logical table.
        table: Arc<str>,
        /// The shard key column.
        column: Arc<str>,
        /// The key.
        key: i64,
    },
    /// A time outside years 1 to 9999.
    TimeOutOfRange {
        /// The logical table.
        table: Arc<str>,
        /// The time column.
        column: Arc<str>,
        /// The value (Unix seconds, or an interval number).
        value: i64,
    },
    /// [`locate`](crate::Router::locate) was asked for one target, but the query
    /// does not name this shard key, so it reaches several.
    NotSingle {
        /// The logical table.
        table: Arc<str>,
        /// The shard key column the query lacks.
        column: Arc<str>,
    },
    /// A scan of a time-split table with an open end, and no retention to bound it.
    UnboundedTime {
        /// The logical table.
        table: Arc<str>,
        /// The time column.
        column: Arc<str>,
    },
    /// A time range that spans more tables than
    /// [`MAX_TIME_TARGETS`](crate::MAX_TIME_TARGETS).
    TooManyTargets {
        /// The logical table.
        table: Arc<str>,
        /// How many tables it spans.
        count: u64,
    },
    /// The table is not split by time.
    NotTimeSplit {
        /// The logical table.
        table: Arc<str>,
    },
    /// A write of one time-split key whose table is not in place at "now": past
    /// the retention, or beyond the tables made `ahead` (see
    /// [`time_tables`](crate::Router::time_tables)).
    OutsideTimeWindow {
        /// The logical table.
        table: Arc<str>,
        /// The time column.
        column: Arc<str>,
        /// The time (Unix seconds).
        value: i64,
        /// The oldest table kept, `None` without a retention.
        oldest: Option<Box<str>>,
        /// The newest table made ahead.
        newest: Box<str>,
    },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::UnknownTable { table } => {
                write!(f, "no logical table {table:?} in the routing configuration")
            }
            RouteError::KeyType {
                table,
                column,
                expected,
            } => write!(f, "{table}.{column}: the key must be {expected}"),
            RouteError::NoRange { table, column, key } => write!(
                f,
                "{table}.{column} = {key} is outside every configured range; add a range that holds it"
            ),
            RouteError::TimeOutOfRange {
                table,
                column,
                value,
            } => write!(f, "{table}.{column}: {value} is outside years 1 to 9999"),
            RouteError::NotSingle { table, column } => write!(
                f,
                "{table}: the query does not give one value of {column}, so it reaches several shards; use route()"
            ),
            RouteError::UnboundedTime { table, column } => write!(
                f,
                "{table}.{column}: a scan with an open end needs a retention, or give both ends"
            ),
            RouteError::TooManyTargets { table, count } => write!(
                f,
                "{table}: the time range spans {count} tables; narrow it"
            ),
            RouteError::NotTimeSplit { table } => {
                write!(f, "{table} is not split by time")
            }
            RouteError::OutsideTimeWindow {
                table,
                column,
                value,
                oldest,
                newest,
            } => {
                write!(f, "{table}.{column} = {value} falls in no table in place: tables ")?;
                match oldest {
                    Some(o) => write!(f, "{o} to {newest}")?,
                    None => write!(f, "up to {newest}")?,
                }
                write!(f, " exist now (retention back, `ahead` forward); raise `ahead` or `retention`, or fix the time")
            }
        }
    }
}

impl Error for RouteError {}

/// What kind of configuration problem [`ConfigError`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// Not TOML, or not of the expected shape (unknown key, wrong type).
    Syntax,
    /// A name that is not in `databases`.
    UnknownDatabase,
    /// A table bound to a table that does not exist or is not sharded.
    UnknownTable,
    /// Two ranges overlap.
    Overlap,
    /// Ranges leave a gap, or do not start where they must.
    Gap,
    /// A strategy with no shards.
    EmptyShards,
    /// A name given twice.
    Duplicate,
    /// An engine name that no engine was registered under, or an engine that failed.
    UnknownEngine,
    /// Anything else that cannot work (two strategies at once, a bad interval).
    Invalid,
}

/// A routing configuration that cannot work: where (file, line, column), and
/// the kit's one shape of a refused setting: the field's path, the value
/// given and what to write instead ([`scalekit_core::ConfigError`], which
/// [`setting`](Self::setting) returns).
///
/// ```
/// use scalekit_shard::{ConfigErrorKind, RouterConfig};
/// let err = RouterConfig::from_toml("databases = [\"a\"]\n[tables.t]\ndatabase = \"b\"\n").unwrap_err();
/// assert_eq!(err.kind(), ConfigErrorKind::UnknownDatabase);
/// assert_eq!((err.line(), err.column()), (3, 12));
/// assert_eq!(err.field(), "tables.t.database");
/// assert_eq!(err.value(), "\"b\"");
/// assert_eq!(err.expected(), "a database listed in `databases` (a), or add it there");
/// assert_eq!(
///     err.to_string(),
///     "line 3, column 12: invalid shard routing setting `tables.t.database` = \"b\": \
///      expected a database listed in `databases` (a), or add it there"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    line: usize,
    column: usize,
    /// Boxed: errors are rare, and a small `Result` keeps the loader's
    /// happy path lean.
    setting: Box<scalekit_core::ConfigError>,
    origin: Option<String>,
}

impl ConfigError {
    pub(crate) fn new(
        kind: ConfigErrorKind,
        line: usize,
        column: usize,
        path: String,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            line,
            column,
            setting: Box::new(scalekit_core::ConfigError::new(
                "shard routing",
                path,
                value,
                expected.into(),
            )),
            origin: None,
        }
    }

    /// What kind of problem.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The 1-based line.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The 1-based column.
    pub fn column(&self) -> usize {
        self.column
    }

    /// The field's path, such as `tables.orders.databases.ranges[1]` (empty when
    /// the problem is the file's shape).
    pub fn path(&self) -> &str {
        self.setting.field()
    }

    /// The same as [`path`](Self::path): the setting's name, as in every
    /// kit's `ConfigError`.
    pub fn field(&self) -> &str {
        self.setting.field()
    }

    /// The value given (for a file that is not TOML of the right shape, what
    /// the parser found wrong).
    pub fn value(&self) -> &str {
        self.setting.value()
    }

    /// What the setting accepts: what to write instead.
    pub fn expected(&self) -> &str {
        self.setting.expected()
    }

    /// The refused setting in the kit's one shape, without the place.
    pub fn setting(&self) -> &scalekit_core::ConfigError {
        &self.setting
    }

    /// Names the file the text came from, for the message.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(o) => write!(f, "{o}:{}:{}: ", self.line, self.column)?,
            None => write!(f, "line {}, column {}: ", self.line, self.column)?,
        }
        if self.setting.field().is_empty() {
            // The file's shape: no one setting to name.
            write!(
                f,
                "{}: expected {}",
                self.setting.value(),
                self.setting.expected()
            )
        } else {
            fmt::Display::fmt(&self.setting, f)
        }
    }
}

impl Error for ConfigError {}

/// The refused setting without its place in the file.
impl From<ConfigError> for scalekit_core::ConfigError {
    fn from(e: ConfigError) -> Self {
        *e.setting
    }
}

/// Why a resharding plan could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    /// The new routing table's epoch is not greater than the old one's.
    Epoch {
        /// The old epoch.
        old: u64,
        /// The new epoch.
        new: u64,
    },
    /// A table whose strategy changed kind, or whose slot count changed: the
    /// moves cannot be listed exactly.
    Incomparable {
        /// The logical table.
        table: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Epoch { old, new } => write!(
                f,
                "the new routing table's epoch ({new}) must be greater than the old one's ({old})"
            ),
            PlanError::Incomparable { table, reason } => {
                write!(f, "cannot plan the move of {table}: {reason}")
            }
        }
    }
}

impl Error for PlanError {}

/// Merging shards' partial aggregates overflowed: the named aggregate does not
/// fit its type. The values come from shard responses, so a bad or hostile
/// shard must not panic the merge or wrap it silently; the aggregate merged
/// into is left as it was.
///
/// ```
/// use scalekit_shard::{Aggregate, MergeOverflow};
/// let mut a = Aggregate { count: u64::MAX, ..Aggregate::of([1]) };
/// assert_eq!(a.merge(&Aggregate::of([2])), Err(MergeOverflow::Count));
/// assert_eq!(a.count, u64::MAX);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MergeOverflow {
    /// COUNT went past `u64::MAX`.
    Count,
    /// SUM went outside `i128`.
    Sum,
}

impl fmt::Display for MergeOverflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, ty) = match self {
            MergeOverflow::Count => ("COUNT", "u64"),
            MergeOverflow::Sum => ("SUM", "i128"),
        };
        write!(
            f,
            "merging the shards' partial aggregates overflowed: {what} does not fit in {ty}"
        )
    }
}

impl Error for MergeOverflow {}
