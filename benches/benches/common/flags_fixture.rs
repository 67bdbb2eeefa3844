//! The state, contexts and engines shared by the `flags` and `flags_ab` benches,
//! so both measure exactly the same work. Each bench uses part of it.

#![allow(dead_code)]

use std::collections::HashMap;

use unleash_yggdrasil::{Context as YContext, EngineState, UpdateMessage};

/// The measured toggles, in report order.
pub(crate) const SCENARIOS: [&str; 6] = [
    "no_strategy",
    "one_constraint",
    "rollout_50",
    "four_variants",
    "dependent",
    "rollout_5_constraints",
];

pub(crate) const CONTEXTS: usize = 256;

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

/// Both engines loaded with the same state, and the contexts in each one's form.
pub(crate) struct Engines {
    pub(crate) flags: scalekit_flags::Flags,
    pub(crate) engine: EngineState,
    /// How many warnings yggdrasil gave on loading (`None`: none).
    pub(crate) warnings: Option<usize>,
    pub(crate) ours: Vec<scalekit_flags::Context>,
    pub(crate) theirs: Vec<YContext>,
}

pub(crate) fn engines() -> Engines {
    let json = state_json();
    let flags = scalekit_flags::Flags::new();
    flags.load_json(&json, "bench").unwrap();
    let engine = EngineState::default();
    let state: unleash_yggdrasil::ClientFeatures = serde_json::from_str(&json).unwrap();
    let warnings = engine
        .take_state(UpdateMessage::FullResponse(state))
        .map(|w| w.len());
    let raw = contexts();
    Engines {
        flags,
        engine,
        warnings,
        ours: raw.iter().map(ours).collect(),
        theirs: raw.iter().map(theirs).collect(),
    }
}
