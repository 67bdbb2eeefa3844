//! Impression events, as Unleash's SDKs emit them: one per `is_enabled` /
//! `variant` of a toggle with `impressionData: true`, with the toggle's name, the
//! answer, the variant, the context and the call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_flags::{Context, Flags, ImpressionKind};
use std::sync::{Arc, Mutex};

#[derive(Debug, PartialEq)]
struct Seen {
    feature: String,
    enabled: bool,
    variant: Option<String>,
    user: Option<String>,
    kind: ImpressionKind,
}

fn recording() -> (Flags, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let flags = Flags::builder()
        .on_impression(move |e| {
            sink.lock().unwrap().push(Seen {
                feature: e.feature_name.to_owned(),
                enabled: e.enabled,
                variant: e.variant.map(str::to_owned),
                user: e.context.user_id_str().map(str::to_owned),
                kind: e.kind,
            });
        })
        .build();
    flags
        .load_json(
            r#"{"version":2,"features":[
  {"name":"tracked","enabled":true,"impressionData":true,"strategies":[
     {"name":"userWithId","parameters":{"userIds":"1"}}],
   "variants":[{"name":"blue","weight":1,"stickiness":"default"}]},
  {"name":"parent","enabled":true,"impressionData":true},
  {"name":"child","enabled":true,"impressionData":true,"dependencies":[{"feature":"parent"}]},
  {"name":"quiet","enabled":true}
]}"#,
            "test",
        )
        .unwrap();
    (flags, seen)
}

fn seen(
    feature: &str,
    enabled: bool,
    variant: Option<&str>,
    user: &str,
    kind: ImpressionKind,
) -> Seen {
    Seen {
        feature: feature.into(),
        enabled,
        variant: variant.map(str::to_owned),
        user: Some(user.into()),
        kind,
    }
}

#[test]
fn toggles_with_impression_data_emit_one_event_per_evaluation() {
    let (flags, events) = recording();
    let one = Context::new().user_id("1");
    let two = Context::new().user_id("2");
    assert!(flags.is_enabled("tracked", &one));
    assert!(!flags.is_enabled("tracked", &two));
    assert_eq!(&*flags.variant("tracked", &one).name, "blue");
    assert_eq!(&*flags.variant("tracked", &two).name, "disabled");
    let e = flags.evaluate("tracked", &one);
    assert!(e.enabled);
    use ImpressionKind::{GetVariant, IsEnabled};
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            seen("tracked", true, None, "1", IsEnabled),
            seen("tracked", false, None, "2", IsEnabled),
            seen("tracked", true, Some("blue"), "1", GetVariant),
            seen("tracked", false, Some("disabled"), "2", GetVariant),
            seen("tracked", true, Some("blue"), "1", GetVariant),
        ]
    );
    assert_eq!(IsEnabled.as_str(), "isEnabled");
    assert_eq!(GetVariant.as_str(), "getVariant");
}

#[test]
fn no_event_without_impression_data_for_unknown_toggles_parents_or_snapshots() {
    let (flags, events) = recording();
    let ctx = Context::new().user_id("1");
    assert!(flags.is_enabled("quiet", &ctx));
    assert!(!flags.is_enabled("missing", &ctx));
    assert_eq!(&*flags.variant("missing", &ctx).name, "disabled");
    // The parent is evaluated for the child, but only the child was asked for.
    assert!(flags.is_enabled("child", &ctx));
    let snap = flags.snapshot();
    assert!(snap.is_enabled("tracked", &ctx));
    snap.variant("tracked", &ctx);
    assert_eq!(
        *events.lock().unwrap(),
        vec![seen("child", true, None, "1", ImpressionKind::IsEnabled)]
    );
}

#[test]
fn a_killed_toggle_still_reports_its_impressions_as_off() {
    let (flags, events) = recording();
    let ctx = Context::new().user_id("1");
    flags.kill("tracked");
    assert!(!flags.is_enabled("tracked", &ctx));
    assert_eq!(
        *events.lock().unwrap(),
        vec![seen("tracked", false, None, "1", ImpressionKind::IsEnabled)]
    );
}

#[test]
fn every_listener_is_called_and_the_flag_is_still_readable() {
    let count = Arc::new(Mutex::new(0));
    let (a, b) = (count.clone(), count.clone());
    let flags = Flags::builder()
        .on_impression(move |_| *a.lock().unwrap() += 1)
        .on_impression(move |_| *b.lock().unwrap() += 10)
        .build();
    flags
        .load_json(
            r#"{"features":[{"name":"t","enabled":true,"impressionData":true}]}"#,
            "t",
        )
        .unwrap();
    flags.is_enabled("t", &Context::new());
    assert_eq!(*count.lock().unwrap(), 11);
    assert!(flags.impression_data("t"));
}
