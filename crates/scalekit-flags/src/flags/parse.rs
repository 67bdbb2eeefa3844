//! Unleash JSON as the store reads it: a full state or a delta body.

use crate::error::FlagsError;
use crate::model::{ClientFeatures, Delta};

/// A parsed update.
pub(crate) enum Update {
    Full(ClientFeatures),
    Delta(Delta),
}

/// Parses Unleash JSON: a full state or a delta body.
pub(crate) fn parse_json(text: &str, origin: Option<&str>) -> Result<Update, FlagsError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| FlagsError::json(origin, &e))?;
    let is_delta = value.get("events").is_some() && value.get("features").is_none();
    // Re-parse from text so that errors carry line and column.
    if is_delta {
        serde_json::from_str::<Delta>(text)
            .map(Update::Delta)
            .map_err(|e| FlagsError::json(origin, &e))
    } else if value.is_object() {
        serde_json::from_str::<ClientFeatures>(text)
            .map(Update::Full)
            .map_err(|e| FlagsError::json(origin, &e))
    } else {
        Err(FlagsError::Parse {
            format: "JSON",
            origin: origin.map(str::to_owned),
            line: 1,
            column: 1,
            message: "expected an object with `features` (a state) or `events` (a delta)".into(),
        })
    }
}
