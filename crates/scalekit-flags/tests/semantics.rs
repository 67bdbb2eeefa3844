//! The three areas of Unleash's specification that the shared suite does not carry
//! (semantic-version operators, dependent toggles, IN_CIDR), as spec-format files in
//! `tests/spec/` (also runnable with the `unleash-spec` example), and properties of
//! the evaluation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use scalekit_flags::conformance::{run_file, spec_files};
use scalekit_flags::hash::{normalized_hash, VARIANT_SEED};
use scalekit_flags::{Context, Flags};
use std::path::Path;

#[test]
fn semver_dependent_and_cidr_spec_files_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spec");
    let files = spec_files(&dir).unwrap();
    assert_eq!(files.len(), 3);
    for f in files {
        let r = run_file(&f).unwrap();
        assert!(r.passed > 15, "{}: only {} cases", r.name, r.passed);
        assert!(r.ok(), "{}: {:#?}", r.name, r.failures);
    }
}

fn one(json: &str) -> Flags {
    let flags = Flags::builder().metrics(false).build();
    flags.load_json(json, "test").unwrap();
    flags
}

fn rollout(pct: u32, stickiness: &str) -> Flags {
    one(&format!(
        r#"{{"features":[{{"name":"t","enabled":true,"strategies":[{{"name":"flexibleRollout",
        "parameters":{{"rollout":"{pct}","stickiness":"{stickiness}","groupId":"g"}}}}]}}]}}"#
    ))
}

fn semver_flag(op: &str, value: &str) -> Flags {
    one(&format!(
        r#"{{"features":[{{"name":"t","enabled":true,"strategies":[{{"name":"default",
        "constraints":[{{"contextName":"v","operator":"{op}","value":"{value}"}}]}}]}}]}}"#
    ))
}

fn version() -> impl Strategy<Value = String> {
    let num = prop_oneof![Just(0u64), Just(1), Just(2), 0u64..20];
    let ident = prop_oneof![
        Just("alpha".to_owned()),
        Just("beta".to_owned()),
        Just("rc".to_owned()),
        (0u64..12).prop_map(|n| n.to_string())
    ];
    (
        num.clone(),
        num.clone(),
        num,
        proptest::collection::vec(ident, 0..3),
    )
        .prop_map(|(a, b, c, pre)| {
            if pre.is_empty() {
                format!("{a}.{b}.{c}")
            } else {
                format!("{a}.{b}.{c}-{}", pre.join("."))
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The rollout decision is Unleash's: normalized_hash(group, user) <= percentage.
    #[test]
    fn rollout_matches_unleash_bucketing(user in "[a-z0-9]{1,12}", pct in 0u32..=100) {
        let flags = rollout(pct, "userId");
        let bucket = normalized_hash("g", &user, 100, 0);
        prop_assert_eq!(flags.is_enabled("t", &Context::new().user_id(&user)), pct > 0 && bucket <= pct);
    }

    /// Raising a rollout never turns a user off.
    #[test]
    fn rollout_is_monotonic(user in "[a-z0-9]{1,12}", a in 0u32..=100, b in 0u32..=100) {
        let (lo, hi) = (a.min(b), a.max(b));
        let ctx = Context::new().user_id(&user);
        if rollout(lo, "userId").is_enabled("t", &ctx) {
            prop_assert!(rollout(hi, "userId").is_enabled("t", &ctx));
        }
    }

    /// Variants follow Unleash's variant bucketing (seed 86028157, group = toggle name).
    #[test]
    fn variant_matches_unleash_bucketing(user in "[a-z0-9]{1,12}", w in proptest::collection::vec(1u32..100, 1..5)) {
        let variants: Vec<String> = w.iter().enumerate()
            .map(|(i, w)| format!(r#"{{"name":"v{i}","weight":{w},"stickiness":"userId"}}"#)).collect();
        let flags = one(&format!(r#"{{"features":[{{"name":"t","enabled":true,"strategies":[],"variants":[{}]}}]}}"#, variants.join(",")));
        let total: u32 = w.iter().sum();
        let target = normalized_hash("t", &user, total, VARIANT_SEED);
        let mut acc = 0;
        let expected = w.iter().position(|w| { acc += w; acc >= target }).unwrap();
        let got = flags.variant("t", &Context::new().user_id(&user));
        prop_assert_eq!(&*got.name, format!("v{expected}"));
    }

    /// SEMVER_* agree with SemVer 2.0.0 precedence (the `semver` crate's).
    #[test]
    fn semver_operators_follow_precedence(have in version(), want in version()) {
        let h = semver::Version::parse(&have).unwrap();
        let w = semver::Version::parse(&want).unwrap();
        let ord = h.cmp_precedence(&w);
        let ctx = Context::new().property("v", &have);
        for (op, expected) in [("SEMVER_EQ", ord.is_eq()), ("SEMVER_GT", ord.is_gt()), ("SEMVER_GTE", ord.is_ge()), ("SEMVER_LT", ord.is_lt()), ("SEMVER_LTE", ord.is_le())] {
            prop_assert_eq!(semver_flag(op, &want).is_enabled("t", &ctx), expected, "{} {} {}", have, op, want);
        }
    }

    /// `inverted` negates an operator whenever the value is present and valid.
    #[test]
    fn inverted_negates(value in "[a-z]{0,6}", list in proptest::collection::vec("[a-z]{0,6}", 0..4), op in prop_oneof![Just("IN"), Just("NOT_IN"), Just("STR_CONTAINS"), Just("STR_STARTS_WITH"), Just("STR_ENDS_WITH")]) {
        let values = serde_json::to_string(&list).unwrap();
        let make = |inv: bool| one(&format!(r#"{{"features":[{{"name":"t","enabled":true,"strategies":[{{"name":"default",
            "constraints":[{{"contextName":"f","operator":"{op}","values":{values},"inverted":{inv}}}]}}]}}]}}"#));
        let ctx = Context::new().property("f", &value);
        prop_assert_eq!(make(true).is_enabled("t", &ctx), !make(false).is_enabled("t", &ctx));
    }

    /// caseInsensitive compares lowercased values, for ASCII and beyond.
    #[test]
    fn case_insensitive_string_operators(value in "[a-zA-ZæøåÆØÅ]{0,8}", needle in "[a-zA-ZæøåÆØÅ]{0,3}") {
        let flags = one(&format!(r#"{{"features":[{{"name":"t","enabled":true,"strategies":[{{"name":"default",
            "constraints":[{{"contextName":"f","operator":"STR_CONTAINS","values":["{needle}"],"caseInsensitive":true}}]}}]}}]}}"#));
        let expected = value.to_lowercase().contains(&needle.to_lowercase());
        prop_assert_eq!(flags.is_enabled("t", &Context::new().property("f", &value)), expected);
    }

    /// A strategy is on exactly when its rollout and each of its constraints are,
    /// whatever order the compiler checks them in.
    #[test]
    fn strategy_is_the_conjunction_of_its_parts(user in "[a-z0-9]{1,8}", pct in 0u32..=100, country in prop_oneof![Just("NO"), Just("SE"), Just("US")], age in 0u32..40, version in version()) {
        let constraints = r#"[{"contextName":"country","operator":"IN","values":["NO","SE"]},
            {"contextName":"version","operator":"SEMVER_GTE","value":"1.0.0"},
            {"contextName":"age","operator":"NUM_GT","value":"17"},
            {"contextName":"email","operator":"REGEX","value":"^x","inverted":true}]"#;
        let both = one(&format!(r#"{{"features":[{{"name":"t","enabled":true,"strategies":[{{"name":"flexibleRollout",
            "parameters":{{"rollout":"{pct}","stickiness":"userId","groupId":"g"}},"constraints":{constraints}}}]}}]}}"#));
        let only_constraints = one(&format!(r#"{{"features":[{{"name":"t","enabled":true,"strategies":[{{"name":"default","constraints":{constraints}}}]}}]}}"#));
        let ctx = Context::new().user_id(&user).property("country", country).property("age", age.to_string()).property("version", &version);
        let expected = rollout(pct, "userId").is_enabled("t", &ctx) && only_constraints.is_enabled("t", &ctx);
        prop_assert_eq!(both.is_enabled("t", &ctx), expected);
    }

    /// Any percentage gives about that share of users (within 5 points over 2000 users).
    #[test]
    fn rollout_share_is_close_to_the_percentage(pct in 0u32..=100) {
        let flags = rollout(pct, "userId");
        let on = (0..2000).filter(|i| flags.is_enabled("t", &Context::new().user_id(format!("user-{i}")))).count();
        let share = on as f64 / 20.0;
        prop_assert!((share - f64::from(pct)).abs() <= 5.0, "{pct}% gave {share}%");
    }
}

#[test]
fn random_stickiness_is_about_right_and_default_falls_back_to_session() {
    let flags = rollout(30, "random");
    let on = (0..10_000)
        .filter(|_| flags.is_enabled("t", &Context::new()))
        .count();
    assert!((2_500..3_500).contains(&on), "{on}");
    let flags = rollout(50, "default");
    let bucket = normalized_hash("g", "s-1", 100, 0);
    assert_eq!(
        flags.is_enabled("t", &Context::new().session_id("s-1")),
        bucket <= 50
    );
}

#[test]
fn custom_strategies_and_hostnames() {
    let flags = Flags::builder()
        .hostname("Web-1")
        .strategy(
            "plan",
            |p: &std::collections::BTreeMap<String, String>, c: &Context| {
                c.get("plan") == p.get("plan").map(String::as_str)
            },
        )
        .build();
    let report = flags
        .load_json(
            r#"{"features":[
            {"name":"custom","enabled":true,"strategies":[{"name":"plan","parameters":{"plan":"pro"}}]},
            {"name":"unknown","enabled":true,"strategies":[{"name":"nobodyKnowsMe"}]},
            {"name":"host","enabled":true,"strategies":[{"name":"applicationHostname","parameters":{"hostNames":"db-1, web-1"}}]},
            {"name":"otherhost","enabled":true,"strategies":[{"name":"applicationHostname","parameters":{"hostNames":"db-1"}}]}]}"#,
            "t",
        )
        .unwrap();
    assert!(flags.is_enabled("custom", &Context::new().property("plan", "pro")));
    assert!(!flags.is_enabled("custom", &Context::new().property("plan", "free")));
    assert!(!flags.is_enabled("unknown", &Context::new()));
    assert!(flags.is_enabled("host", &Context::new()));
    assert!(!flags.is_enabled("otherhost", &Context::new()));
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].message.contains("nobodyKnowsMe"));
}

#[test]
fn reasons() {
    use scalekit_flags::Reason;
    let flags = one(r#"{"features":[
        {"name":"static","enabled":true,"strategies":[]},
        {"name":"targeted","enabled":true,"strategies":[{"name":"userWithId","parameters":{"userIds":"1,2"}}]},
        {"name":"split","enabled":true,"strategies":[{"name":"flexibleRollout","parameters":{"rollout":"100"}}]},
        {"name":"off","enabled":false,"strategies":[]},
        {"name":"nomatch","enabled":true,"strategies":[{"name":"userWithId","parameters":{"userIds":"1"}}]}]}"#);
    let ctx = Context::new().user_id("1");
    assert_eq!(flags.evaluate("static", &ctx).reason, Reason::Static);
    assert_eq!(
        flags.evaluate("targeted", &ctx).reason,
        Reason::TargetingMatch
    );
    assert_eq!(flags.evaluate("split", &ctx).reason, Reason::Split);
    assert_eq!(flags.evaluate("off", &ctx).reason, Reason::Disabled);
    assert_eq!(
        flags
            .evaluate("nomatch", &Context::new().user_id("2"))
            .reason,
        Reason::Default
    );
    assert_eq!(flags.evaluate("missing", &ctx).reason, Reason::Error);
}
