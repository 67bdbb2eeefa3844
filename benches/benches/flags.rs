//! Feature toggles: one evaluation of `scalekit-flags` against `unleash-yggdrasil`
//! (Unleash's own Rust engine, from crates.io) on the same state and contexts.
//!
//! Group `flags/eval`, one benchmark per scenario (`flags/eval/<scenario>`), ids
//! `scalekit` and `unleash-yggdrasil`:
//! * `no_strategy`: an enabled toggle with no strategies (`is_enabled`).
//! * `one_constraint`: `default` strategy with one `IN` constraint (`is_enabled`).
//! * `rollout_50`: `flexibleRollout` at 50 % with default stickiness (`is_enabled`).
//! * `four_variants`: four equal variants on a `default` strategy (`get_variant`).
//! * `dependent`: a child toggle whose parent is a 50 % rollout (`is_enabled`).
//! * `rollout_5_constraints`: `flexibleRollout` at 50 % with five constraints
//!   (IN, STR_STARTS_WITH, NUM_GT, SEMVER_GTE, NOT_IN) (`is_enabled`).
//!
//! The state has 200 other toggles beside the six measured, so lookups are by name in
//! a realistic map. Each iteration takes the next of 256 pre-built contexts (user id,
//! session id, country, plan, version, age), the same for both engines. Ours counts
//! metrics on every evaluation (its default); yggdrasil's `is_enabled` and
//! `get_variant` do not count (its SDKs call `count_toggle` separately), so ours does
//! strictly more work.
//!
//! Run: `cargo bench -p scalekit-benches --bench flags`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use unleash_yggdrasil::{Context as YContext, EngineState, UpdateMessage};

const CONTEXTS: usize = 256;

fn state_json() -> String {
    let mut features = vec![
        serde_json::json!({"name": "no_strategy", "enabled": true, "strategies": []}),
        serde_json::json!({"name": "one_constraint", "enabled": true, "strategies": [
            {"name": "default", "parameters": {}, "constraints": [
                {"contextName": "country", "operator": "IN", "values": ["NO", "SE", "DK", "FI"]}]}]}),
        serde_json::json!({"name": "rollout_50", "enabled": true, "strategies": [
            {"name": "flexibleRollout", "parameters": {"rollout": "50", "stickiness": "default", "groupId": "rollout_50"}}]}),
        serde_json::json!({"name": "four_variants", "enabled": true, "strategies": [{"name": "default", "parameters": {}}],
            "variants": [
                {"name": "a", "weight": 250, "stickiness": "default", "payload": {"type": "string", "value": "A"}},
                {"name": "b", "weight": 250, "stickiness": "default", "payload": {"type": "string", "value": "B"}},
                {"name": "c", "weight": 250, "stickiness": "default", "payload": {"type": "string", "value": "C"}},
                {"name": "d", "weight": 250, "stickiness": "default", "payload": {"type": "string", "value": "D"}}]}),
        serde_json::json!({"name": "parent", "enabled": true, "strategies": [
            {"name": "flexibleRollout", "parameters": {"rollout": "50", "stickiness": "default", "groupId": "parent"}}]}),
        serde_json::json!({"name": "dependent", "enabled": true, "strategies": [{"name": "default", "parameters": {}}],
            "dependencies": [{"feature": "parent", "enabled": true}]}),
        serde_json::json!({"name": "rollout_5_constraints", "enabled": true, "strategies": [
            {"name": "flexibleRollout", "parameters": {"rollout": "50", "stickiness": "default", "groupId": "r5"},
             "constraints": [
                {"contextName": "country", "operator": "IN", "values": ["NO", "SE", "DK", "FI"]},
                {"contextName": "plan", "operator": "STR_STARTS_WITH", "values": ["pro", "ent"]},
                {"contextName": "age", "operator": "NUM_GT", "value": "17"},
                {"contextName": "version", "operator": "SEMVER_GTE", "value": "2.0.0-beta.1"},
                {"contextName": "userId", "operator": "NOT_IN", "values": ["blocked-1", "blocked-2"]}]}]}),
    ];
    for i in 0..200 {
        features.push(serde_json::json!({"name": format!("filler.{i}"), "enabled": i % 2 == 0, "strategies": [
            {"name": "flexibleRollout", "parameters": {"rollout": "30", "stickiness": "userId", "groupId": format!("filler.{i}")}}]}));
    }
    serde_json::json!({"version": 2, "features": features}).to_string()
}

struct Ctx {
    user: String,
    session: String,
    country: &'static str,
    plan: &'static str,
    age: String,
    version: &'static str,
}

fn contexts() -> Vec<Ctx> {
    let countries = ["NO", "SE", "DK", "FI"];
    let plans = ["pro", "enterprise", "pro-plus", "enterprise-x"];
    let versions = ["2.0.0", "2.1.3", "3.0.0-rc.1", "2.0.0-beta.2"];
    (0..CONTEXTS)
        .map(|i| Ctx {
            user: format!("user-{}", i * 7919 % 100_000),
            session: format!("session-{i}"),
            country: countries[i % 4],
            plan: plans[(i / 4) % 4],
            age: (18 + i % 50).to_string(),
            version: versions[(i / 16) % 4],
        })
        .collect()
}

fn ours(c: &Ctx) -> scalekit_flags::Context {
    scalekit_flags::Context::new()
        .user_id(&c.user)
        .session_id(&c.session)
        .property("country", c.country)
        .property("plan", c.plan)
        .property("age", &c.age)
        .property("version", c.version)
}

fn theirs(c: &Ctx) -> YContext {
    let mut props = HashMap::new();
    props.insert("country".to_string(), c.country.to_string());
    props.insert("plan".to_string(), c.plan.to_string());
    props.insert("age".to_string(), c.age.clone());
    props.insert("version".to_string(), c.version.to_string());
    YContext {
        user_id: Some(c.user.clone()),
        session_id: Some(c.session.clone()),
        properties: Some(props),
        ..YContext::default()
    }
}

fn eval(c: &mut Criterion) {
    let json = state_json();
    let flags = scalekit_flags::Flags::new();
    flags.load_json(&json, "bench").unwrap();
    let engine = EngineState::default();
    let state: unleash_yggdrasil::ClientFeatures = serde_json::from_str(&json).unwrap();
    let warnings = engine.take_state(UpdateMessage::FullResponse(state));
    assert!(
        warnings.is_none(),
        "yggdrasil warnings: {:?}",
        warnings.map(|w| w.len())
    );

    let raw = contexts();
    let ours_ctx: Vec<_> = raw.iter().map(ours).collect();
    let theirs_ctx: Vec<_> = raw.iter().map(theirs).collect();

    // Same answers before timing anything (the random fallback is never reached: every
    // context has a user id).
    for (o, t) in ours_ctx.iter().zip(&theirs_ctx) {
        for name in [
            "no_strategy",
            "one_constraint",
            "rollout_50",
            "dependent",
            "rollout_5_constraints",
        ] {
            assert_eq!(
                flags.is_enabled(name, o),
                engine.is_enabled(name, t, &None),
                "{name}"
            );
        }
        assert_eq!(
            &*flags.variant("four_variants", o).name,
            engine.get_variant("four_variants", t, &None).name
        );
    }

    let mut group = c.benchmark_group("flags/eval");
    for name in [
        "no_strategy",
        "one_constraint",
        "rollout_50",
        "four_variants",
        "dependent",
        "rollout_5_constraints",
    ] {
        let variant = name == "four_variants";
        let mut i = 0usize;
        group.bench_function(format!("{name}/scalekit"), |b| {
            b.iter(|| {
                i = (i + 1) % CONTEXTS;
                if variant {
                    black_box(flags.variant(black_box(name), &ours_ctx[i]).enabled)
                } else {
                    black_box(flags.is_enabled(black_box(name), &ours_ctx[i]))
                }
            })
        });
        let mut i = 0usize;
        group.bench_function(format!("{name}/unleash-yggdrasil"), |b| {
            b.iter(|| {
                i = (i + 1) % CONTEXTS;
                if variant {
                    black_box(
                        engine
                            .get_variant(black_box(name), &theirs_ctx[i], &None)
                            .enabled,
                    )
                } else {
                    black_box(engine.is_enabled(black_box(name), &theirs_ctx[i], &None))
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, eval);
criterion_main!(benches);
