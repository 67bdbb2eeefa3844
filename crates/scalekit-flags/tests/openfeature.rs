//! The OpenFeature provider: values, reasons, variants and error codes.
#![cfg(feature = "openfeature")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use open_feature::provider::{FeatureProvider, ProviderStatus};
use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason, Value};
use scalekit_flags::openfeature::UnleashProvider;
use scalekit_flags::Flags;

const STATE: &str = r#"{"features":[
  {"name":"static","enabled":true,"strategies":[]},
  {"name":"targeted","enabled":true,"strategies":[{"name":"default","constraints":[
     {"contextName":"plan","operator":"IN","values":["pro"]}]}]},
  {"name":"split","enabled":true,"strategies":[{"name":"flexibleRollout","parameters":{"rollout":"100"}}]},
  {"name":"off","enabled":false,"strategies":[]},
  {"name":"nomatch","enabled":true,"strategies":[{"name":"userWithId","parameters":{"userIds":"1"}}]},
  {"name":"limits","enabled":true,"strategies":[],"variants":[
     {"name":"big","weight":1,"payload":{"type":"number","value":"250"}}]},
  {"name":"ratio","enabled":true,"strategies":[],"variants":[
     {"name":"r","weight":1,"payload":{"type":"number","value":"0.25"}}]},
  {"name":"banner","enabled":true,"strategies":[],"variants":[
     {"name":"hello","weight":1,"payload":{"type":"string","value":"Hello!"}}]},
  {"name":"theme","enabled":true,"strategies":[],"variants":[
     {"name":"dark","weight":1,"payload":{"type":"json","value":"{\"bg\":\"black\",\"size\":3}"}}]},
  {"name":"badjson","enabled":true,"strategies":[],"variants":[
     {"name":"x","weight":1,"payload":{"type":"json","value":"{nope"}}]}
]}"#;

fn provider() -> UnleashProvider {
    let flags = Flags::new();
    flags.load_json(STATE, "test").unwrap();
    UnleashProvider::new(flags)
}

#[tokio::test]
async fn booleans_carry_the_reason() {
    let p = provider();
    let ctx = EvaluationContext::default()
        .with_targeting_key("7")
        .with_custom_field("plan", "pro");
    for (key, value, reason) in [
        ("static", true, EvaluationReason::Static),
        ("targeted", true, EvaluationReason::TargetingMatch),
        ("split", true, EvaluationReason::Split),
        ("off", false, EvaluationReason::Disabled),
        ("nomatch", false, EvaluationReason::Default),
    ] {
        let r = p.resolve_bool_value(key, &ctx).await.unwrap();
        assert_eq!((r.value, r.reason), (value, Some(reason)), "{key}");
    }
    let free = EvaluationContext::default().with_custom_field("plan", "free");
    assert!(!p.resolve_bool_value("targeted", &free).await.unwrap().value);
    let err = p.resolve_bool_value("missing", &ctx).await.unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::FlagNotFound);
    assert_eq!(p.status(), ProviderStatus::Ready);
}

#[tokio::test]
async fn typed_values_come_from_variant_payloads() {
    let p = provider();
    let ctx = EvaluationContext::default().with_targeting_key("7");
    let i = p.resolve_int_value("limits", &ctx).await.unwrap();
    assert_eq!(
        (i.value, i.variant.as_deref(), i.reason),
        (250, Some("big"), Some(EvaluationReason::Split))
    );
    assert_eq!(
        p.resolve_float_value("ratio", &ctx).await.unwrap().value,
        0.25
    );
    assert_eq!(
        p.resolve_string_value("banner", &ctx).await.unwrap().value,
        "Hello!"
    );
    let s = p.resolve_struct_value("theme", &ctx).await.unwrap().value;
    assert_eq!(s.fields.get("bg"), Some(&Value::String("black".into())));
    assert_eq!(s.fields.get("size"), Some(&Value::Int(3)));

    assert_eq!(
        p.resolve_int_value("banner", &ctx).await.unwrap_err().code,
        EvaluationErrorCode::TypeMismatch
    );
    assert_eq!(
        p.resolve_struct_value("banner", &ctx)
            .await
            .unwrap_err()
            .code,
        EvaluationErrorCode::TypeMismatch
    );
    assert_eq!(
        p.resolve_struct_value("badjson", &ctx)
            .await
            .unwrap_err()
            .code,
        EvaluationErrorCode::ParseError
    );
    assert!(matches!(
        p.resolve_string_value("off", &ctx).await.unwrap_err().code,
        EvaluationErrorCode::General(_)
    ));
    assert!(matches!(
        p.resolve_string_value("static", &ctx)
            .await
            .unwrap_err()
            .code,
        EvaluationErrorCode::General(_)
    ));
    assert_eq!(
        p.resolve_string_value("missing", &ctx)
            .await
            .unwrap_err()
            .code,
        EvaluationErrorCode::FlagNotFound
    );
}

#[tokio::test]
async fn not_ready_before_the_first_state_and_context_mapping() {
    let empty = UnleashProvider::new(Flags::new());
    assert_eq!(empty.status(), ProviderStatus::NotReady);
    let err = empty
        .resolve_bool_value("x", &EvaluationContext::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, EvaluationErrorCode::ProviderNotReady);

    let ctx = EvaluationContext::default()
        .with_targeting_key("u1")
        .with_custom_field("sessionId", "s1")
        .with_custom_field("age", 42)
        .with_custom_field("beta", true);
    let c = scalekit_flags::openfeature::context(&ctx);
    assert_eq!(
        (
            c.get("userId"),
            c.get("sessionId"),
            c.get("age"),
            c.get("beta")
        ),
        (Some("u1"), Some("s1"), Some("42"), Some("true"))
    );
}
