//! Interleaved A/B check of the `flags/eval` ratios (a supplement to the criterion
//! bench `flags`, for shared, noisy machines).
//!
//! Criterion measures one function after the other, so on a machine shared with
//! other work the load can change between ours and theirs and move the ratio by
//! ±30%. This runs the same state, contexts and calls as `benches/flags.rs`, but
//! alternates: 15 rounds of 200,000 evaluations of ours, then of
//! `unleash-yggdrasil`, and prints the median and range of the per-round ratios.
//!
//! Run: `cargo bench -p scalekit-benches --bench flags_ab`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;

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

/// Runs the interleaved rounds and prints one line per scenario.
fn main() {
    let json = state_json();
    let flags = scalekit_flags::Flags::new();
    flags.load_json(&json, "bench").unwrap();
    let engine = EngineState::default();
    let state: unleash_yggdrasil::ClientFeatures = serde_json::from_str(&json).unwrap();
    engine.take_state(UpdateMessage::FullResponse(state));
    let raw = contexts();
    let oc: Vec<_> = raw.iter().map(ours).collect();
    let tc: Vec<_> = raw.iter().map(theirs).collect();
    for name in [
        "no_strategy",
        "one_constraint",
        "rollout_50",
        "four_variants",
        "dependent",
        "rollout_5_constraints",
    ] {
        let variant = name == "four_variants";
        let mut ratios = Vec::new();
        for _ in 0..15 {
            let n = 200_000;
            let t = std::time::Instant::now();
            for k in 0..n {
                if variant {
                    black_box(flags.variant(black_box(name), &oc[k & 255]).enabled);
                } else {
                    black_box(flags.is_enabled(black_box(name), &oc[k & 255]));
                }
            }
            let a = t.elapsed().as_nanos() as f64 / n as f64;
            let t = std::time::Instant::now();
            for k in 0..n {
                if variant {
                    black_box(
                        engine
                            .get_variant(black_box(name), &tc[k & 255], &None)
                            .enabled,
                    );
                } else {
                    black_box(engine.is_enabled(black_box(name), &tc[k & 255], &None));
                }
            }
            let b = t.elapsed().as_nanos() as f64 / n as f64;
            ratios.push((a / b, a, b));
        }
        ratios.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap());
        let m = ratios[ratios.len() / 2];
        println!(
            "{name}: median ratio {:.2} (ours {:.1} ns, theirs {:.1} ns), range {:.2}-{:.2}",
            m.0,
            m.1,
            m.2,
            ratios[0].0,
            ratios[ratios.len() - 1].0
        );
    }
}
