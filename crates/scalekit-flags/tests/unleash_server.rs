//! Against Unleash's own server (`deploy/unleash.sh start` runs it and prints the
//! variables): toggles with strategies, constraints, segments, variants and
//! dependencies made through its admin API; our HTTP source fetches them (the
//! delta API when the server offers it); our client registers and its metrics
//! arrive; and our evaluation answers as the server's own playground does for many
//! contexts.
//!
//! Reads `SCALEKIT_UNLEASH_URL`, `SCALEKIT_UNLEASH_ADMIN_TOKEN` and
//! `SCALEKIT_UNLEASH_CLIENT_TOKEN` (a client token of the `development`
//! environment); skipped with a message when unset, a failure under `CI`. Every
//! name it creates carries a unique prefix, and it archives and deletes them at
//! the end.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_flags::sources::{FetchOutcome, HttpPoller, MetricsOutcome};
use scalekit_flags::{Context, Flags};
use scalekit_test_support::services::required;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const TEST: &str = "our_client_agrees_with_a_real_unleash_server";
const ENV: &str = "development";

struct Admin {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut req = match method {
            "POST" => self.http.post(&url),
            "PUT" => self.http.put(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.get(&url),
        }
        .header("Authorization", &self.token)
        .timeout(Duration::from_secs(20));
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A call that must succeed.
    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status}: {v}"
        );
        v
    }

    async fn toggle(&self, name: &str, impression_data: bool) {
        self.ok(
            "POST",
            "/api/admin/projects/default/features",
            Some(json!({"name": name, "type": "release", "impressionData": impression_data})),
        )
        .await;
    }

    async fn strategy(&self, toggle: &str, strategy: Value) {
        self.ok(
            "POST",
            &format!("/api/admin/projects/default/features/{toggle}/environments/{ENV}/strategies"),
            Some(strategy),
        )
        .await;
    }

    async fn enable(&self, toggle: &str) {
        self.ok(
            "POST",
            &format!("/api/admin/projects/default/features/{toggle}/environments/{ENV}/on"),
            None,
        )
        .await;
    }
}

fn rollout(pct: u32, stickiness: &str, group: &str) -> Value {
    json!({"name": "flexibleRollout",
           "parameters": {"rollout": pct.to_string(), "stickiness": stickiness, "groupId": group}})
}

/// The toggles under `p`, each with its strategies in order.
fn plan(p: &str, segment: i64) -> Vec<(String, Vec<Value>)> {
    let t = |s: &str| format!("{p}.{s}");
    // A rollout on userId, only for versions above 1.2.0.
    let mut gated = rollout(40, "userId", &t("rollout"));
    gated["constraints"] =
        json!([{"contextName": "appVersion", "operator": "SEMVER_GT", "value": "1.2.0"}]);
    // A segment and a case-insensitive prefix, at 100 %.
    let mut seg = rollout(100, "default", &t("segmented"));
    seg["segments"] = json!([segment]);
    seg["constraints"] = json!([{"contextName": "plan", "operator": "STR_STARTS_WITH",
                                  "values": ["pro"], "caseInsensitive": true}]);
    // Many operators at once, one inverted.
    let mut many = rollout(100, "default", &t("constraints"));
    many["constraints"] = json!([
        {"contextName": "age", "operator": "NUM_GTE", "value": "18"},
        {"contextName": "currentTime", "operator": "DATE_AFTER", "value": "2020-01-01T00:00:00.000Z"},
        {"contextName": "email", "operator": "REGEX", "value": "^[a-z]+@example\\.(com|org)$"},
        {"contextName": "country", "operator": "IN", "values": ["DK"], "inverted": true},
        {"contextName": "email", "operator": "STR_ENDS_WITH", "values": [".com", ".org"]},
        {"contextName": "appVersion", "operator": "SEMVER_LT", "value": "3.0.0"}
    ]);
    // Strategy variants with payloads on a rollout.
    let mut sv = rollout(60, "userId", &t("strategy-variants"));
    sv["variants"] = json!([
        {"name": "red", "weight": 300, "weightType": "variable", "stickiness": "userId",
         "payload": {"type": "string", "value": "#f00"}},
        {"name": "green", "weight": 700, "weightType": "variable", "stickiness": "userId",
         "payload": {"type": "json", "value": "{\"g\":1}"}}
    ]);
    // Addresses, or a country whatever the address.
    let addresses =
        json!({"name": "remoteAddress", "parameters": {"IPs": "10.0.0.0/8, 192.168.1.7"}});
    let mut by_country = json!({"name": "default", "parameters": {}});
    by_country["constraints"] =
        json!([{"contextName": "country", "operator": "IN", "values": ["SE"]}]);
    vec![
        (t("rollout"), vec![gated]),
        (t("segmented"), vec![seg]),
        (t("constraints"), vec![many]),
        (t("strategy-variants"), vec![sv]),
        (t("session"), vec![rollout(30, "sessionId", &t("session"))]),
        (t("address"), vec![addresses, by_country]),
        // Feature-level variants with an override, set below.
        (t("variants"), vec![rollout(100, "default", &t("variants"))]),
        // Dependent toggles, on a parent being on and on a parent's variant.
        (t("child"), vec![rollout(100, "default", &t("child"))]),
        (
            t("child-of-variant"),
            vec![rollout(100, "default", &t("child-of-variant"))],
        ),
        // Never enabled in the environment.
        (t("off"), vec![rollout(100, "default", &t("off"))]),
    ]
}

/// Creates the toggles of [`plan`], their feature variants and dependencies, and
/// enables them (but `{p}.off`). Returns their names.
async fn make_toggles(admin: &Admin, p: &str, segment: i64) -> Vec<String> {
    let plan = plan(p, segment);
    for (name, strategies) in &plan {
        admin.toggle(name, name.ends_with(".rollout")).await;
        for s in strategies {
            admin.strategy(name, s.clone()).await;
        }
    }
    // Unleash 7 keeps feature-level variants (with overrides) behind a flag that
    // deploy/unleash.sh turns on.
    admin
        .ok(
            "PUT",
            &format!(
                "/api/admin/projects/default/features/{p}.variants/environments/{ENV}/variants"
            ),
            Some(json!([
                {"name": "blue", "weight": 500, "weightType": "variable", "stickiness": "default",
                 "payload": {"type": "string", "value": "B"},
                 "overrides": [{"contextName": "userId", "values": ["3", "4"]}]},
                {"name": "yellow", "weight": 500, "weightType": "variable", "stickiness": "default"}
            ])),
        )
        .await;
    for (child, parent) in [
        (
            "child",
            json!({"feature": format!("{p}.rollout"), "enabled": true}),
        ),
        (
            "child-of-variant",
            json!({"feature": format!("{p}.variants"), "enabled": true, "variants": ["blue"]}),
        ),
    ] {
        admin
            .ok(
                "POST",
                &format!("/api/admin/projects/default/features/{p}.{child}/dependencies"),
                Some(parent),
            )
            .await;
    }
    for (name, _) in &plan {
        if !name.ends_with(".off") {
            admin.enable(name).await;
        }
    }
    plan.into_iter().map(|(n, _)| n).collect()
}

/// Contexts over every field: userId, sessionId, remoteAddress, properties. Each has
/// a userId or a sessionId, so that nothing falls back to random stickiness.
fn contexts(app: &str) -> Vec<Value> {
    let countries = ["NO", "SE", "DK", "FI"];
    let plans = ["pro", "PRO-plus", "free", "Professional"];
    let emails = [
        "ada@example.com",
        "bob@example.org",
        "Eve@example.com",
        "x@test.net",
    ];
    let versions = ["1.0.0", "1.2.0", "1.2.1", "2.5.0-beta.1", "3.0.0"];
    let addresses = ["10.1.2.3", "192.168.1.7", "172.16.0.1", "10.255.0.9", "::1"];
    (0..60u32)
        .map(|i| {
            let i = i as usize;
            let mut c = json!({"appName": app});
            if i % 5 != 4 {
                c["userId"] = json!(i.to_string());
            }
            if i % 3 != 0 || i % 5 == 4 {
                c["sessionId"] = json!(format!("s-{}", i * 7));
            }
            if i % 2 == 0 {
                c["remoteAddress"] = json!(addresses[i % addresses.len()]);
            }
            let mut props = serde_json::Map::new();
            props.insert("country".into(), json!(countries[i % countries.len()]));
            if i % 7 != 0 {
                props.insert("plan".into(), json!(plans[(i / 2) % plans.len()]));
            }
            props.insert(
                "appVersion".into(),
                json!(versions[(i / 3) % versions.len()]),
            );
            if i % 4 != 1 {
                props.insert("age".into(), json!(((i * 13) % 50 + 5).to_string()));
            }
            props.insert("email".into(), json!(emails[(i / 4) % emails.len()]));
            c["properties"] = Value::Object(props);
            c
        })
        .collect()
}

/// Our context from the playground's JSON form of it.
fn ours(c: &Value) -> Context {
    scalekit_flags::conformance::context_from_json(c.as_object().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_agrees_with_a_real_unleash_server() {
    let Some(url) = required(
        "SCALEKIT_UNLEASH_URL",
        TEST,
        "an Unleash server (deploy/unleash.sh start)",
    ) else {
        return;
    };
    let Some(admin_token) = required(
        "SCALEKIT_UNLEASH_ADMIN_TOKEN",
        TEST,
        "the Unleash server's admin token",
    ) else {
        return;
    };
    let Some(client_token) = required(
        "SCALEKIT_UNLEASH_CLIENT_TOKEN",
        TEST,
        "a client token of its development environment",
    ) else {
        return;
    };
    let admin = Arc::new(Admin {
        url: url.trim_end_matches('/').to_owned(),
        token: admin_token,
        http: reqwest::Client::new(),
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let p = format!("sk{}x{}", std::process::id(), nanos % 1_000_000_000);
    let app = format!("scalekit-test-{p}");

    let run = tokio::spawn(run(admin.clone(), p.clone(), app, client_token));
    let abort = run.abort_handle();
    let outcome = tokio::time::timeout(Duration::from_secs(240), run).await;
    abort.abort();
    // Leave nothing behind, whatever happened.
    cleanup(&admin, &p).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("the test task failed: {e}"),
        Err(_) => panic!("the Unleash server test is bounded (240 s)"),
    }
}

/// The test itself: creates, fetches, compares, registers and sends.
async fn run(admin: Arc<Admin>, p: String, app: String, client_token: String) {
    let admin = &*admin;
    let seg = admin
        .ok(
            "POST",
            "/api/admin/segments",
            Some(json!({"name": format!("{p}-nordics"),
                        "constraints": [{"contextName": "country", "operator": "IN",
                                         "values": ["NO", "SE", "FI"]}]})),
        )
        .await;
    let segment = seg["id"].as_i64().expect("a segment id");
    let names = make_toggles(admin, &p, segment).await;

    let flags = Flags::new();
    let mut poller = HttpPoller::builder(&admin.url)
        .token(&client_token)
        .app_name(&app)
        .instance_id(format!("{app}-1"))
        .build()
        .unwrap();
    fetch_and_check(&mut poller, &flags, &names, segment).await;
    let rollout_counts = compare_with_playground(admin, &flags, &p, &app, names.len()).await;

    poller.register(&flags).await.unwrap();
    let MetricsOutcome::Sent { toggles } = poller.send_metrics(&flags).await.unwrap() else {
        panic!("metrics were not sent");
    };
    assert_eq!(toggles, names.len());
    check_registration_and_metrics(admin, &p, &app, rollout_counts).await;
}

/// Our HTTP source sees the toggles and the segment; an unchanged state is a 304.
async fn fetch_and_check(poller: &mut HttpPoller, flags: &Flags, names: &[String], segment: i64) {
    assert!(matches!(
        poller.fetch_once(flags).await.unwrap(),
        FetchOutcome::Updated(_)
    ));
    eprintln!(
        "the server offers the delta API: {:?}; ETag {:?}",
        poller.delta_detected(),
        poller.etag()
    );
    assert!(poller.delta_detected().is_some(), "detection has an answer");
    for n in names {
        assert!(flags.contains(n), "{n} fetched");
    }
    let state = flags.state();
    assert!(
        state.segments.iter().any(|s| s.id == segment),
        "segments come separately (we announce a client spec of 4.2.0 or later)"
    );
    let rollout = state
        .features
        .iter()
        .find(|f| f.name.ends_with(".rollout"))
        .unwrap();
    assert!(rollout.impression_data);
    assert_eq!(rollout.strategies[0].constraints[0].operator, "SEMVER_GT");
    assert_eq!(
        poller.fetch_once(flags).await.unwrap(),
        FetchOutcome::NotModified
    );
}

/// Our evaluation answers as the server's playground does, for every toggle under
/// `p` in every context. Returns the (yes, no) counts of `{p}.rollout`.
async fn compare_with_playground(
    admin: &Admin,
    flags: &Flags,
    p: &str,
    app: &str,
    toggles: usize,
) -> (u64, u64) {
    let mut compared = 0;
    let mut on = 0;
    let (mut yes, mut no) = (0u64, 0u64);
    for c in contexts(app) {
        let answer = admin
            .ok(
                "POST",
                "/api/admin/playground",
                Some(json!({"environment": ENV, "projects": ["default"], "context": c})),
            )
            .await;
        let ctx = ours(&c);
        for f in answer["features"].as_array().unwrap() {
            let name = f["name"].as_str().unwrap();
            if !name.starts_with(&format!("{p}.")) {
                continue;
            }
            let enabled = flags.is_enabled(name, &ctx);
            assert_eq!(
                enabled,
                f["isEnabled"].as_bool().unwrap(),
                "{name} for {c}: ours {enabled}, playground {f}"
            );
            let v = flags.variant(name, &ctx);
            let tv = &f["variant"];
            assert_eq!(
                &*v.name,
                tv["name"].as_str().unwrap(),
                "{name} variant for {c}: {f}"
            );
            assert_eq!(
                v.enabled,
                tv["enabled"].as_bool().unwrap(),
                "{name} for {c}"
            );
            if let Some(payload) = tv.get("payload").filter(|p| !p.is_null()) {
                let ours = v.payload.as_ref().expect("a payload");
                assert_eq!(ours.kind, payload["type"].as_str().unwrap());
                assert_eq!(ours.value, payload["value"].as_str().unwrap());
            }
            if name.ends_with(".rollout") {
                // Both calls count, as in Unleash's SDKs.
                yes += u64::from(enabled) + u64::from(v.feature_enabled);
                no += u64::from(!enabled) + u64::from(!v.feature_enabled);
            }
            compared += 1;
            on += usize::from(enabled);
        }
    }
    eprintln!("{compared} evaluations compared with the playground, {on} on");
    assert_eq!(compared, 60 * toggles, "every toggle in every context");
    assert!(
        on > compared / 5 && on < compared * 4 / 5,
        "a mix of answers: {on} of {compared}"
    );
    (yes, no)
}

/// The server lists our application and instance, and counts what we sent for
/// `{p}.rollout`. It stores registrations every 20 s and metrics every 5 s, so
/// this asks once a second, for up to 90 s.
async fn check_registration_and_metrics(admin: &Admin, p: &str, app: &str, want: (u64, u64)) {
    let instance = format!("{app}-1");
    let mut registered = Value::Null;
    let mut counted = (0u64, 0u64);
    for _ in 0..90 {
        let (status, a) = admin
            .call(
                "GET",
                &format!("/api/admin/metrics/applications/{app}"),
                None,
            )
            .await;
        if status == 200 {
            registered = a;
        }
        let (_, m) = admin
            .call(
                "GET",
                &format!("/api/admin/client-metrics/features/{p}.rollout/raw?hoursBack=1"),
                None,
            )
            .await;
        counted = m["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["appName"] == app)
            .fold((0, 0), |(y, n), d| {
                (
                    y + d["yes"].as_u64().unwrap_or(0),
                    n + d["no"].as_u64().unwrap_or(0),
                )
            });
        let has_instance = registered["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["instanceId"] == instance.as_str());
        if has_instance && counted == want {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let inst = registered["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["instanceId"] == instance.as_str())
        .unwrap_or_else(|| panic!("instance {instance} registered: {registered}"));
    assert_eq!(
        inst["sdkVersion"],
        concat!("scalekit-flags:", env!("CARGO_PKG_VERSION")),
        "{inst}"
    );
    assert!(
        registered["strategies"]
            .to_string()
            .contains("flexibleRollout"),
        "{registered}"
    );
    assert_eq!(counted, want, "metrics of {p}.rollout arrived (yes, no)");
}

/// Archives and deletes every toggle named `{p}.*` (dependents first), then the
/// segments named `{p}-*`.
async fn cleanup(admin: &Admin, p: &str) {
    let (_, list) = admin
        .call("GET", "/api/admin/projects/default/features", None)
        .await;
    let mut ours: Vec<String> = list["features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .filter(|n| n.starts_with(&format!("{p}.")))
        .map(str::to_owned)
        .collect();
    // A parent cannot be archived while a child depends on it.
    ours.sort_by_key(|n| !n.contains(".child"));
    for name in &ours {
        admin
            .call(
                "DELETE",
                &format!("/api/admin/projects/default/features/{name}"),
                None,
            )
            .await;
        admin
            .call("DELETE", &format!("/api/admin/archive/{name}"), None)
            .await;
    }
    let (_, segs) = admin.call("GET", "/api/admin/segments", None).await;
    for s in segs["segments"].as_array().into_iter().flatten() {
        if s["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(&format!("{p}-")))
        {
            admin
                .call("DELETE", &format!("/api/admin/segments/{}", s["id"]), None)
                .await;
        }
    }
}
