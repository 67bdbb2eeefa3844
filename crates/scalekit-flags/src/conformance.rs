//! Runs Unleash's client specification (the JSON conformance suite every Unleash SDK
//! runs) against this crate. Used by the crate's tests and by the `unleash-spec`
//! example:
//!
//! ```text
//! cargo run --release -p scalekit-flags --example unleash-spec -- PATH
//! ```
//!
//! where `PATH` is one spec file or a folder with an `index.json` listing them.

use crate::context::Context;
use crate::error::FlagsError;
use crate::flags::Flags;
use crate::model::Payload;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The version of Unleash's client specification this crate implements: every
/// file of that version's suite passes (22 files, 279 cases, run with the
/// `unleash-spec` example), including the regular-expression (6.0.0),
/// `SEMVER_GTE`/`SEMVER_LTE` and `IN_CIDR` (6.1.0) operators. The HTTP source
/// announces it in the `Unleash-Client-Spec` header, which tells the server that
/// we resolve segments ourselves (4.2.0 and later) and read delta events (5.2.0
/// and later).
pub const CLIENT_SPEC_VERSION: &str = "6.1.0";

/// The result of one spec file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileResult {
    /// The file's `name`.
    pub name: String,
    /// Cases that passed.
    pub passed: usize,
    /// Descriptions of the cases that failed, with what we answered.
    pub failures: Vec<String>,
}

impl FileResult {
    /// Whether every case passed (and the state loaded).
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Deserialize)]
struct SpecFile {
    name: String,
    state: serde_json::Value,
    #[serde(default)]
    tests: Vec<Case<bool>>,
    #[serde(default, rename = "variantTests")]
    variant_tests: Vec<Case<ExpectedVariant>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case<T> {
    #[serde(default)]
    description: String,
    #[serde(default)]
    context: serde_json::Map<String, serde_json::Value>,
    toggle_name: String,
    expected_result: T,
}

#[derive(Deserialize, Debug)]
struct ExpectedVariant {
    name: String,
    #[serde(default)]
    payload: Option<Payload>,
    enabled: bool,
    #[serde(default)]
    feature_enabled: Option<bool>,
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Builds a [`Context`] from the spec's JSON form of Unleash's context.
pub fn context_from_json(map: &serde_json::Map<String, serde_json::Value>) -> Context {
    let mut ctx = Context::new();
    for (k, v) in map {
        if k == "properties" {
            if let Some(props) = v.as_object() {
                for (pk, pv) in props {
                    if let Some(s) = scalar(pv) {
                        ctx.set(pk, &s);
                    }
                }
            }
        } else if let Some(s) = scalar(v) {
            ctx.set(k, &s);
        }
    }
    ctx
}

/// Runs one spec file.
pub fn run_file(path: &Path) -> Result<FileResult, FlagsError> {
    let text = std::fs::read_to_string(path).map_err(|source| FlagsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let spec: SpecFile = serde_json::from_str(&text)
        .map_err(|e| FlagsError::json(Some(&path.display().to_string()), &e))?;
    let flags = Flags::builder().metrics(false).history(0).build();
    let mut result = FileResult {
        name: spec.name.clone(),
        passed: 0,
        failures: Vec::new(),
    };
    if let Err(e) = flags.load_json(&spec.state.to_string(), &spec.name) {
        result.failures.push(format!("state did not load: {e}"));
        return Ok(result);
    }
    for case in &spec.tests {
        let ctx = context_from_json(&case.context);
        let got = flags.is_enabled(&case.toggle_name, &ctx);
        if got == case.expected_result {
            result.passed += 1;
        } else {
            result.failures.push(format!(
                "{}: expected {}, got {got}",
                case.description, case.expected_result
            ));
        }
    }
    for case in &spec.variant_tests {
        let ctx = context_from_json(&case.context);
        let got = flags.variant(&case.toggle_name, &ctx);
        let want = &case.expected_result;
        let ok = *got.name == *want.name
            && got.enabled == want.enabled
            && want
                .feature_enabled
                .is_none_or(|f| f == got.feature_enabled)
            && got.payload.as_deref() == want.payload.as_ref();
        if ok {
            result.passed += 1;
        } else {
            result.failures.push(format!(
                "{}: expected {want:?}, got {got:?}",
                case.description
            ));
        }
    }
    Ok(result)
}

/// The spec files at `path`: the file itself, or those listed by `path/index.json`.
pub fn spec_files(path: &Path) -> Result<Vec<PathBuf>, FlagsError> {
    if path.is_dir() {
        let index = path.join("index.json");
        let text = std::fs::read_to_string(&index).map_err(|source| FlagsError::Io {
            path: index.clone(),
            source,
        })?;
        let names: Vec<String> = serde_json::from_str(&text)
            .map_err(|e| FlagsError::json(Some(&index.display().to_string()), &e))?;
        Ok(names.into_iter().map(|n| path.join(n)).collect())
    } else {
        Ok(vec![path.to_owned()])
    }
}
