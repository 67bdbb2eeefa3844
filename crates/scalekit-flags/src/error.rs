use std::error::Error;
use std::fmt;
use std::path::PathBuf;

/// Why an update, a rollback or a source was refused. The state that was serving
/// keeps serving.
#[derive(Debug)]
#[non_exhaustive]
pub enum FlagsError {
    /// The text is not valid JSON or TOML of the expected shape.
    Parse {
        /// `"JSON"` or `"TOML"`.
        format: &'static str,
        /// Where the text came from (a path, a URL, a Redis key), if known.
        origin: Option<String>,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The state parses but is not a valid state (for example a toggle defined twice).
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// [`rollback`](crate::Flags::rollback) was asked for but no earlier version is kept.
    NoHistory,
    /// A file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A remote source failed (HTTP status, connection, Redis).
    Source {
        /// Which source and what it was doing.
        what: String,
        /// The underlying error, if any.
        source: Option<Box<dyn Error + Send + Sync>>,
    },
}

impl FlagsError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        FlagsError::Invalid {
            message: message.into(),
        }
    }

    pub(crate) fn json(origin: Option<&str>, e: &serde_json::Error) -> Self {
        FlagsError::Parse {
            format: "JSON",
            origin: origin.map(str::to_owned),
            // serde_json says column 0 for an empty input; positions here are 1-based.
            line: e.line().max(1),
            column: e.column().max(1),
            message: e.to_string(),
        }
    }

    /// A copy for an event (I/O and source errors keep their message, not their type).
    pub(crate) fn duplicate(&self) -> FlagsError {
        match self {
            FlagsError::Parse {
                format,
                origin,
                line,
                column,
                message,
            } => FlagsError::Parse {
                format,
                origin: origin.clone(),
                line: *line,
                column: *column,
                message: message.clone(),
            },
            FlagsError::Invalid { message } => FlagsError::Invalid {
                message: message.clone(),
            },
            FlagsError::NoHistory => FlagsError::NoHistory,
            FlagsError::Io { path, source } => FlagsError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            FlagsError::Source { what, source } => FlagsError::Source {
                what: what.clone(),
                source: source
                    .as_ref()
                    .map(|s| Box::<dyn Error + Send + Sync>::from(s.to_string())),
            },
        }
    }

    /// Attaches an origin (file, URL, key) to a parse error that has none.
    #[cfg_attr(not(feature = "toml"), allow(dead_code))]
    pub(crate) fn with_origin(mut self, o: &str) -> Self {
        if let FlagsError::Parse { origin, .. } = &mut self {
            if origin.is_none() {
                *origin = Some(o.to_owned());
            }
        }
        self
    }
}

impl fmt::Display for FlagsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagsError::Parse {
                format,
                origin,
                line,
                column,
                message,
            } => {
                if let Some(o) = origin {
                    write!(f, "{o}:{line}:{column}: ")?;
                } else {
                    write!(f, "line {line}, column {column}: ")?;
                }
                write!(f, "invalid {format} flag state: {message}")
            }
            FlagsError::Invalid { message } => write!(f, "invalid flag state: {message}"),
            FlagsError::NoHistory => f.write_str("no earlier flag state to roll back to"),
            FlagsError::Io { path, .. } => {
                write!(f, "cannot read flag state from {}", path.display())
            }
            FlagsError::Source { what, source } => match source {
                Some(s) => write!(f, "{what}: {s}"),
                None => f.write_str(what),
            },
        }
    }
}

impl Error for FlagsError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            FlagsError::Io { source, .. } => Some(source),
            FlagsError::Source {
                source: Some(s), ..
            } => Some(&**s as &(dyn Error + 'static)),
            _ => None,
        }
    }
}

/// Something in a state that compiles to a condition that never holds: an unknown
/// operator or strategy, a value that does not parse, a missing segment or parent.
/// Unleash SDKs tolerate these the same way; they are reported, not refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The toggle concerned.
    pub toggle: String,
    /// What was found.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "toggle {:?}: {}", self.toggle, self.message)
    }
}
