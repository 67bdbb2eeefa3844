//! An [OpenFeature](https://openfeature.dev) provider for the `open-feature` crate
//! (feature `openfeature`).
//!
//! * Boolean flags are toggles: the value is whether the toggle is on, with the
//!   reason of the evaluation (`STATIC`, `TARGETING_MATCH`, `SPLIT`, `DEFAULT`,
//!   `DISABLED`) and the variant name when a variant was handed out.
//! * String, integer, float and struct flags read the payload of the toggle's
//!   variant (`string`/`csv`/`json` as text, `number` parsed, `json` parsed into a
//!   struct), with the variant's name and the reason.
//! * Errors carry OpenFeature's codes: `FLAG_NOT_FOUND` for an unknown toggle,
//!   `TYPE_MISMATCH` for a payload that is not of the asked type, `PARSE_ERROR` for a
//!   `json` payload that does not parse, `PROVIDER_NOT_READY` before the first
//!   state is loaded, and `GENERAL` when a typed flag has no variant (the toggle is
//!   off, or on without variants): the Rust provider API has no default value, so
//!   the client then falls back to the caller's default and reports `ERROR`.
//!
//! The OpenFeature context maps onto Unleash's: the targeting key is `userId`,
//! custom fields keep their names (`sessionId`, `remoteAddress`, `environment`,
//! `appName`, `currentTime` are Unleash's fields, anything else a property),
//! numbers and booleans are written as text, and date-times as RFC 3339.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use open_feature::provider::FeatureProvider;
//! use open_feature::{EvaluationContext, EvaluationReason};
//! use scalekit_flags::{openfeature::UnleashProvider, Flags};
//!
//! let flags = Flags::new();
//! flags.load_json(r#"{"features":[{"name":"beta","enabled":true,
//!   "strategies":[{"name":"userWithId","parameters":{"userIds":"42"}}]}]}"#, "inline").unwrap();
//! let provider = UnleashProvider::new(flags);
//! let ctx = EvaluationContext::default().with_targeting_key("42");
//! let r = provider.resolve_bool_value("beta", &ctx).await.unwrap();
//! assert!(r.value);
//! assert_eq!(r.reason, Some(EvaluationReason::TargetingMatch));
//! # }
//! ```

use crate::context::Context;
use crate::flags::Flags;
use crate::outcome::{Evaluation, Reason};
use async_trait::async_trait;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, StructValue, Value,
};
use scalekit_core::{Clock, MonotonicClock};

/// The provider: evaluates OpenFeature flags as Unleash toggles of a [`Flags`] store.
#[derive(Debug, Clone)]
pub struct UnleashProvider<C: Clock = MonotonicClock> {
    flags: Flags<C>,
    metadata: ProviderMetadata,
}

impl<C: Clock> UnleashProvider<C> {
    /// A provider over `flags` (share the store with your sources: it is a handle).
    pub fn new(flags: Flags<C>) -> Self {
        UnleashProvider {
            flags,
            metadata: ProviderMetadata::new("scalekit-flags"),
        }
    }

    fn evaluate(&self, key: &str, ctx: &EvaluationContext) -> EvaluationResult<Evaluation> {
        if self.flags.version() == 0 {
            return Err(error(
                EvaluationErrorCode::ProviderNotReady,
                "no flag state loaded yet",
            ));
        }
        let e = self.flags.evaluate(key, &context(ctx));
        if e.reason == Reason::Error {
            return Err(error(
                EvaluationErrorCode::FlagNotFound,
                format!("no toggle named {key:?}"),
            ));
        }
        Ok(e)
    }

    fn typed<T>(
        &self,
        key: &str,
        ctx: &EvaluationContext,
        convert: impl FnOnce(&str, &str) -> EvaluationResult<T>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let e = self.evaluate(key, ctx)?;
        let v = &e.variant;
        let payload = match (&v.payload, v.enabled) {
            (Some(p), true) => p,
            _ => {
                let why = if e.enabled {
                    "is on but hands out no variant with a payload"
                } else {
                    "is off"
                };
                return Err(error(
                    EvaluationErrorCode::General(format!("{:?}", reason(e.reason))),
                    format!("toggle {key:?} {why}; use the default value"),
                ));
            }
        };
        let value = convert(&payload.kind, &payload.value)?;
        Ok(ResolutionDetails {
            value,
            variant: Some(v.name.to_string()),
            reason: Some(reason(e.reason)),
            flag_metadata: None,
        })
    }
}

fn error(code: EvaluationErrorCode, message: impl Into<String>) -> EvaluationError {
    EvaluationError {
        code,
        message: Some(message.into()),
    }
}

fn reason(r: Reason) -> EvaluationReason {
    match r {
        Reason::Static => EvaluationReason::Static,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Split => EvaluationReason::Split,
        Reason::Default => EvaluationReason::Default,
        Reason::Disabled => EvaluationReason::Disabled,
        Reason::Error => EvaluationReason::Error,
    }
}

/// Unleash's context from OpenFeature's.
pub fn context(ctx: &EvaluationContext) -> Context {
    let mut c = Context::new();
    if let Some(k) = &ctx.targeting_key {
        c.set("userId", k);
    }
    for (name, value) in &ctx.custom_fields {
        let text = match value {
            EvaluationContextFieldValue::Bool(b) => b.to_string(),
            EvaluationContextFieldValue::Int(i) => i.to_string(),
            EvaluationContextFieldValue::Float(f) => f.to_string(),
            EvaluationContextFieldValue::String(s) => s.clone(),
            EvaluationContextFieldValue::DateTime(t) => {
                match chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()) {
                    Some(d) => d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    None => continue,
                }
            }
            EvaluationContextFieldValue::Struct(_) => continue,
        };
        c.set(name, &text);
    }
    c
}

fn mismatch(kind: &str, value: &str, want: &str) -> EvaluationError {
    error(
        EvaluationErrorCode::TypeMismatch,
        format!("payload {value:?} of type {kind} is not {want}"),
    )
}

#[async_trait]
impl<C: Clock + 'static> FeatureProvider for UnleashProvider<C> {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    fn status(&self) -> ProviderStatus {
        if self.flags.version() == 0 {
            ProviderStatus::NotReady
        } else {
            ProviderStatus::Ready
        }
    }

    async fn resolve_bool_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let e = self.evaluate(key, ctx)?;
        Ok(ResolutionDetails {
            value: e.enabled,
            variant: e.variant.enabled.then(|| e.variant.name.to_string()),
            reason: Some(reason(e.reason)),
            flag_metadata: None,
        })
    }

    async fn resolve_int_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.typed(key, ctx, |kind, v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| mismatch(kind, v, "an integer"))
        })
    }

    async fn resolve_float_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.typed(key, ctx, |kind, v| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| mismatch(kind, v, "a number"))
        })
    }

    async fn resolve_string_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.typed(key, ctx, |_, v| Ok(v.to_owned()))
    }

    async fn resolve_struct_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.typed(key, ctx, |kind, v| {
            if kind != "json" {
                return Err(mismatch(kind, v, "a json payload"));
            }
            let json: serde_json::Value = serde_json::from_str(v).map_err(|e| {
                error(
                    EvaluationErrorCode::ParseError,
                    format!("json payload does not parse: {e}"),
                )
            })?;
            match Value::try_from(json)? {
                Value::Struct(s) => Ok(s),
                _ => Err(mismatch(kind, v, "a JSON object")),
            }
        })
    }
}
