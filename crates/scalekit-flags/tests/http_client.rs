//! The HTTP source as an Unleash client, against a scripted loopback server:
//! registration, metrics (kept when refused, up to a bound; backoff), the headers
//! current Unleash SDKs send, the client specification version it announces, and
//! the delta API found by detection.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::server::{reply, with_etag, Server};
use scalekit_core::ManualClock;
use scalekit_flags::conformance::CLIENT_SPEC_VERSION;
use scalekit_flags::sources::{FeaturesApi, FetchOutcome, HttpPoller, MetricsOutcome};
use scalekit_flags::{Context, Event, Flags};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const STATE: &str = r#"{"version":2,"features":[
  {"name":"on","enabled":true,"strategies":[]},
  {"name":"split","enabled":true,"strategies":[],"variants":[
    {"name":"a","weight":1,"stickiness":"userId"},{"name":"b","weight":1,"stickiness":"userId"}]}]}"#;

fn flags_with_clock() -> (Flags<ManualClock>, ManualClock, Arc<Mutex<Vec<Event>>>) {
    let clock = ManualClock::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let flags = Flags::builder()
        .clock(clock.clone())
        .strategy(
            "beta",
            |_: &std::collections::BTreeMap<String, String>, _: &Context| true,
        )
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build();
    flags.load_json(STATE, "test").unwrap();
    (flags, clock, events)
}

fn poller(url: &str) -> HttpPoller {
    HttpPoller::builder(url)
        .token("default:development.secret")
        .app_name("shop")
        .instance_id("shop-1")
        .metrics_interval(Duration::from_secs(60))
        .keep_unsent_metrics(Duration::from_secs(600))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("the HTTP test is bounded")
}

fn rfc3339(s: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    s.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn registration_and_metrics_carry_what_unleash_expects() {
    bounded(async {
        let server = Server::start().await;
        server.script("POST /api/client/register", [reply(202, "")]);
        server.script("POST /api/client/metrics", [reply(202, "")]);
        let (flags, clock, _) = flags_with_clock();
        let mut p = poller(&server.url);

        p.register(&flags).await.unwrap();
        assert!(p.registered());
        let ctx = Context::new().user_id("7");
        for _ in 0..3 {
            assert!(flags.is_enabled("on", &ctx));
        }
        flags.variant("split", &ctx);
        assert!(!flags.is_enabled("missing", &ctx));
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            p.send_metrics(&flags).await.unwrap(),
            MetricsOutcome::Sent { toggles: 2 }
        );
        assert_eq!(p.send_metrics(&flags).await.unwrap(), MetricsOutcome::Empty);

        let reg = &server.to("POST /api/client/register")[0];
        let met = &server.to("POST /api/client/metrics")[0];
        for r in [reg, met] {
            assert_eq!(
                r.header("authorization"),
                Some("default:development.secret")
            );
            assert_eq!(r.header("unleash-appname"), Some("shop"));
            assert_eq!(r.header("unleash-instanceid"), Some("shop-1"));
            assert_eq!(r.header("unleash-connection-id"), Some(p.connection_id()));
            assert_eq!(
                r.header("unleash-sdk"),
                Some(concat!("scalekit-flags:", env!("CARGO_PKG_VERSION")))
            );
            assert_eq!(r.header("unleash-interval"), Some("60000"));
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
        assert_eq!(p.connection_id().len(), 36);

        let body = reg.json();
        assert_eq!(body["appName"], "shop");
        assert_eq!(body["instanceId"], "shop-1");
        assert_eq!(body["connectionId"], p.connection_id());
        assert_eq!(
            body["sdkVersion"],
            concat!("scalekit-flags:", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(body["interval"], 60000);
        assert_eq!(body["specVersion"], CLIENT_SPEC_VERSION);
        let strategies: Vec<&str> = body["strategies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(strategies.contains(&"flexibleRollout") && strategies.contains(&"beta"));
        rfc3339(&body["started"]);

        let body = met.json();
        assert_eq!(body["appName"], "shop");
        assert_eq!(body["instanceId"], "shop-1");
        assert_eq!(body["connectionId"], p.connection_id());
        let bucket = &body["bucket"];
        assert_eq!(
            (rfc3339(&bucket["stop"]) - rfc3339(&bucket["start"])).num_seconds(),
            60,
            "the bucket spans the clock's time"
        );
        assert_eq!(bucket["toggles"]["on"]["yes"], 3);
        assert_eq!(bucket["toggles"]["on"]["no"], 0);
        assert_eq!(bucket["toggles"]["split"]["yes"], 1);
        let variants = bucket["toggles"]["split"]["variants"].as_object().unwrap();
        assert_eq!(
            variants.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
            1
        );
        assert!(bucket["toggles"].get("missing").is_none());
    })
    .await;
}

#[tokio::test]
async fn a_refused_bucket_is_kept_merged_and_sent_later_up_to_a_bound() {
    bounded(async {
        let server = Server::start().await;
        server.script(
            "POST /api/client/metrics",
            [reply(503, ""), reply(202, ""), reply(500, ""), reply(202, "")],
        );
        let (flags, clock, events) = flags_with_clock();
        let mut p = poller(&server.url);
        let ctx = Context::new();

        // Refused: kept.
        flags.is_enabled("on", &ctx);
        clock.advance(Duration::from_secs(60));
        assert!(p.send_metrics(&flags).await.is_err());
        assert_eq!(p.unsent_metrics().unwrap().toggles["on"].yes, 1);
        // Sent with the next counts, as one bucket from the first start.
        flags.is_enabled("on", &ctx);
        flags.is_enabled("on", &ctx);
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            p.send_metrics(&flags).await.unwrap(),
            MetricsOutcome::Sent { toggles: 1 }
        );
        assert!(p.unsent_metrics().is_none());
        let sent = server.to("POST /api/client/metrics");
        let (first, second) = (sent[0].json(), sent[1].json());
        assert_eq!(second["bucket"]["toggles"]["on"]["yes"], 3);
        assert_eq!(second["bucket"]["start"], first["bucket"]["start"]);
        assert_eq!(
            (rfc3339(&second["bucket"]["stop"]) - rfc3339(&second["bucket"]["start"])).num_seconds(),
            120
        );

        // Refused for longer than the bound: the old counts are dropped, and said so.
        flags.is_enabled("on", &ctx);
        assert!(p.send_metrics(&flags).await.is_err());
        clock.advance(Duration::from_secs(601));
        flags.is_enabled("on", &ctx);
        flags.is_enabled("on", &ctx);
        assert_eq!(
            p.send_metrics(&flags).await.unwrap(),
            MetricsOutcome::Sent { toggles: 1 }
        );
        let last = server.to("POST /api/client/metrics")[3].json();
        assert_eq!(last["bucket"]["toggles"]["on"]["yes"], 2, "only the fresh counts");
        let dropped = events.lock().unwrap().iter().any(|e| {
            matches!(e, Event::SourceFailed { error, .. } if error.to_string().contains("dropped the unsent metrics of 1 toggles"))
        });
        assert!(dropped, "dropping counts is reported");
    })
    .await;
}

#[tokio::test]
async fn a_refused_token_stops_metrics() {
    bounded(async {
        let server = Server::start().await;
        server.script("POST /api/client/metrics", [reply(401, "")]);
        let (flags, _, events) = flags_with_clock();
        let mut p = poller(&server.url);
        flags.is_enabled("on", &Context::new());
        let err = p.send_metrics(&flags).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        assert!(err.to_string().contains("client token"), "{err}");
        flags.is_enabled("on", &Context::new());
        assert_eq!(p.send_metrics(&flags).await.unwrap(), MetricsOutcome::Off);
        assert_eq!(server.to("POST /api/client/metrics").len(), 1);
        assert!(events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::SourceFailed { .. })));
    })
    .await;
}

#[tokio::test]
async fn state_requests_announce_the_client_specification_the_crate_implements() {
    bounded(async {
        let server = Server::start().await;
        server.script(
            "GET /api/client/features",
            [with_etag(200, "\"v1\"", STATE)],
        );
        let (flags, _, _) = flags_with_clock();
        let mut p = HttpPoller::builder(&server.url)
            .api(FeaturesApi::Full)
            .interval(Duration::from_secs(15))
            .build()
            .unwrap();
        p.fetch_once(&flags).await.unwrap();
        let get = &server.to("GET /api/client/features")[0];
        assert_eq!(get.header("unleash-client-spec"), Some(CLIENT_SPEC_VERSION));
        assert_eq!(get.header("unleash-interval"), Some("15000"));
        assert!(get.header("unleash-connection-id").is_some());
        assert!(get.header("authorization").is_none(), "no token, no header");
        // The version announced is the one of the suite every file of which passes,
        // and the one the documentation names.
        assert_eq!(CLIENT_SPEC_VERSION, "6.1.0");
        let guide = include_str!("../GUIDE.md");
        assert!(
            guide.contains(&format!("client specification {CLIENT_SPEC_VERSION}")),
            "GUIDE.md names the version announced"
        );
        assert!(!guide.contains("5.2.0 "));
    })
    .await;
}

#[tokio::test]
async fn the_delta_api_is_used_when_the_server_offers_it() {
    bounded(async {
        let server = Server::start().await;
        server.script(
            "GET /api/client/delta",
            [
                with_etag(
                    200,
                    "\"r1\"",
                    r#"{"events":[{"type":"hydration","eventId":1,"features":[
                        {"name":"a","enabled":true},{"name":"b","enabled":true}],"segments":[]}]}"#,
                ),
                with_etag(
                    200,
                    "\"r2\"",
                    r#"{"events":[{"type":"feature-updated","eventId":2,"feature":{"name":"c","enabled":true}},
                        {"type":"feature-removed","eventId":3,"featureName":"a","project":"default"}]}"#,
                ),
                with_etag(304, "\"r2\"", ""),
            ],
        );
        let dir = std::env::temp_dir().join(format!(
            "scalekit-flags-delta-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let boot = dir.join("boot.json");
        let (flags, _, _) = flags_with_clock();
        let mut p = HttpPoller::builder(&server.url)
            .bootstrap(&boot)
            .build()
            .unwrap();
        let ctx = Context::new();
        assert!(matches!(p.fetch_once(&flags).await.unwrap(), FetchOutcome::Updated(_)));
        assert_eq!(p.delta_detected(), Some(true));
        assert!(flags.is_enabled("a", &ctx) && flags.is_enabled("b", &ctx));
        assert!(matches!(p.fetch_once(&flags).await.unwrap(), FetchOutcome::Updated(_)));
        assert!(!flags.is_enabled("a", &ctx) && flags.is_enabled("b", &ctx) && flags.is_enabled("c", &ctx));
        assert_eq!(p.fetch_once(&flags).await.unwrap(), FetchOutcome::NotModified);

        let gets = server.to("GET /api/client/delta");
        assert_eq!(gets.len(), 3);
        assert_eq!(gets[0].header("if-none-match"), None);
        assert_eq!(gets[1].header("if-none-match"), Some("\"r1\""));
        assert_eq!(gets[2].header("if-none-match"), Some("\"r2\""));
        assert!(server.to("GET /api/client/features").is_empty());

        // The bootstrap file holds the state the deltas built, not the last delta.
        let fresh = Flags::new();
        fresh.load_file(&boot).unwrap();
        assert_eq!(fresh.toggle_names(), vec!["b", "c"]);
        std::fs::remove_dir_all(&dir).ok();
    })
    .await;
}

#[tokio::test]
async fn without_a_delta_api_detection_falls_back_to_the_full_state_for_good() {
    bounded(async {
        let server = Server::start().await;
        server.script(
            "GET /api/client/features",
            [with_etag(200, "\"f1\"", STATE)],
        );
        let (flags, _, events) = flags_with_clock();
        let mut p = poller(&server.url);
        assert!(matches!(
            p.fetch_once(&flags).await.unwrap(),
            FetchOutcome::Updated(_)
        ));
        assert_eq!(p.delta_detected(), Some(false));
        assert!(flags.is_enabled("on", &Context::new()));
        p.fetch_once(&flags).await.unwrap();
        assert_eq!(server.to("GET /api/client/delta").len(), 1, "asked once");
        let full = server.to("GET /api/client/features");
        assert_eq!(full.len(), 2);
        assert_eq!(full[1].header("if-none-match"), Some("\"f1\""));
        assert!(
            !events
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, Event::SourceFailed { .. })),
            "the 404 of detection is not a failure"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_task_registers_sends_every_interval_and_backs_off_on_errors() {
    let server = Server::start().await;
    server.script(
        "GET /api/client/features",
        [with_etag(200, "\"f1\"", STATE)],
    );
    server.script("POST /api/client/register", [reply(202, "")]);
    server.script(
        "POST /api/client/metrics",
        [reply(500, ""), reply(500, ""), reply(202, "")],
    );
    let (flags, _, _) = flags_with_clock();
    let task = HttpPoller::builder(&server.url)
        .api(FeaturesApi::Full)
        .interval(Duration::from_secs(15))
        .metrics_interval(Duration::from_secs(60))
        .max_backoff(Duration::from_secs(600))
        .build()
        .unwrap()
        .spawn(flags.clone());
    let start = tokio::time::Instant::now();
    let ctx = Context::new();
    // Evaluations every 10 s of (paused) time at 5, 15, ..., 595 s (never at the
    // instant of a metrics send), then quiet until 625 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for _ in 0..60 {
        flags.is_enabled("on", &ctx);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    task.abort();
    let secs = |route: &str| -> Vec<u64> {
        server
            .to(route)
            .iter()
            .map(|r| (r.at - start).as_secs())
            .collect()
    };
    assert_eq!(
        secs("POST /api/client/register"),
        vec![0],
        "registered once, at start"
    );
    // Metrics at 60 s; refused -> 120 s later (180); refused -> 240 s later (420);
    // accepted -> every 60 s again (480, 540, 600).
    assert_eq!(
        secs("POST /api/client/metrics"),
        vec![60, 180, 420, 480, 540, 600]
    );
    let fetches = secs("GET /api/client/features");
    assert_eq!(fetches.first(), Some(&0));
    assert_eq!(
        fetches,
        (0..=615).step_by(15).collect::<Vec<u64>>(),
        "every 15 s"
    );
    // Nothing counted was lost: the bucket accepted at 420 s holds the 42
    // evaluations made up to then, and the later ones the rest.
    let sent: Vec<u64> = server
        .to("POST /api/client/metrics")
        .iter()
        .map(|r| {
            r.json()["bucket"]["toggles"]["on"]["yes"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(sent[2], 42, "{sent:?}");
    assert_eq!(sent[2..].iter().sum::<u64>(), 60, "{sent:?}");
}
