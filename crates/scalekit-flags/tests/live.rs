//! Updates, rejection, history, rollback, kill switches, metrics and events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_flags::model::{ClientFeatures, Delta};
use scalekit_flags::{Context, Event, Flags, FlagsError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};

fn state(on: bool) -> String {
    format!(r#"{{"version":2,"features":[{{"name":"a","enabled":{on},"strategies":[]}}]}}"#)
}

fn recording() -> (Flags, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let flags = Flags::builder()
        .history(3)
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build();
    (flags, events)
}

#[test]
fn a_bad_update_is_rejected_with_its_position_and_the_last_good_state_serves() {
    let (flags, events) = recording();
    flags.load_json(&state(true), "v1.json").unwrap();
    let bad = "{\n  \"features\": [\n    {\"name\": \"a\", \"enabled\": 3}\n  ]\n}";
    let err = flags.load_json(bad, "v2.json").unwrap_err();
    match &err {
        FlagsError::Parse {
            format,
            origin,
            line,
            column,
            ..
        } => {
            assert_eq!(
                (*format, origin.as_deref(), *line),
                ("JSON", Some("v2.json"), 3)
            );
            assert!(*column > 20, "{column}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("v2.json:3:"), "{err}");
    assert!(flags.is_enabled("a", &Context::new()));
    assert_eq!(flags.version(), 1);
    let dup = r#"{"features":[{"name":"a","enabled":true},{"name":"a","enabled":false}]}"#;
    assert!(matches!(
        flags.load_json(dup, "dup"),
        Err(FlagsError::Invalid { .. })
    ));
    assert!(matches!(
        flags.load_json("[1,2]", "array"),
        Err(FlagsError::Parse { .. })
    ));
    // Positions are 1-based even for an empty input (found by fuzzing).
    assert!(matches!(
        flags.load_json("", "empty"),
        Err(FlagsError::Parse {
            line: 1,
            column: 1,
            ..
        })
    ));
    assert_eq!(flags.version(), 1);
    let ev = events.lock().unwrap();
    assert!(matches!(&ev[0], Event::Applied { version: 1, .. }));
    assert!(matches!(&ev[1], Event::Rejected { origin, .. } if origin == "v2.json"));
    assert_eq!(ev.len(), 5);
}

#[test]
fn history_is_bounded_and_rollback_walks_it_back() {
    let (flags, events) = recording();
    for i in 0..6 {
        flags
            .load_json(&state(i % 2 == 0), &format!("v{i}"))
            .unwrap();
    }
    assert_eq!(flags.version(), 6);
    assert_eq!(flags.history(), vec![3, 4, 5]);
    assert!(!flags.is_enabled("a", &Context::new())); // v6: i = 5, off
    assert_eq!(flags.rollback().unwrap(), 5);
    assert!(flags.is_enabled("a", &Context::new()));
    assert_eq!(flags.rollback().unwrap(), 4);
    assert_eq!(flags.rollback().unwrap(), 3);
    assert!(matches!(flags.rollback(), Err(FlagsError::NoHistory)));
    assert_eq!(flags.version(), 3);
    // A new load after rollbacks continues the numbering and is kept as usual.
    assert_eq!(flags.load_json(&state(true), "v7").unwrap().version, 7);
    assert_eq!(flags.history(), vec![3]);
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::RolledBack { version: 5 })));
}

#[test]
fn kill_switch_survives_updates_and_rollbacks() {
    let (flags, events) = recording();
    flags.kill("a"); // before the toggle exists
    flags.load_json(&state(true), "v1").unwrap();
    assert!(!flags.is_enabled("a", &Context::new()));
    flags.load_json(&state(true), "v2").unwrap();
    assert!(!flags.is_enabled("a", &Context::new()));
    flags.rollback().unwrap();
    assert!(!flags.is_enabled("a", &Context::new()));
    assert_eq!(flags.killed(), vec!["a".to_owned()]);
    let v = flags.evaluate("a", &Context::new());
    assert_eq!(v.reason, scalekit_flags::Reason::Disabled);
    flags.revive("a");
    assert!(flags.is_enabled("a", &Context::new()));
    let ev = events.lock().unwrap();
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Killed { toggle } if toggle == "a")));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Revived { toggle } if toggle == "a")));
}

#[test]
fn delta_events_apply_in_order_or_not_at_all() {
    let flags = Flags::new();
    let hydrate = r#"{"events":[{"type":"hydration","eventId":1,"features":[
        {"name":"a","enabled":true,"strategies":[{"name":"default","segments":[1]}]},
        {"name":"b","enabled":true}],
        "segments":[{"id":1,"constraints":[{"contextName":"appName","operator":"IN","values":["shop"]}]}]}]}"#;
    flags.load_json(hydrate, "delta-1").unwrap();
    let shop = Context::new().app_name("shop");
    assert!(
        flags.is_enabled("a", &shop)
            && !flags.is_enabled("a", &Context::new())
            && flags.is_enabled("b", &shop)
    );
    let update = r#"{"events":[
        {"type":"segment-updated","eventId":2,"segment":{"id":1,"constraints":[{"contextName":"appName","operator":"IN","values":["admin"]}]}},
        {"type":"feature-removed","eventId":3,"featureName":"b","project":"default"},
        {"type":"feature-updated","eventId":4,"feature":{"name":"c","enabled":true}}]}"#;
    flags.load_json(update, "delta-2").unwrap();
    assert!(
        !flags.is_enabled("a", &shop) && flags.is_enabled("a", &Context::new().app_name("admin"))
    );
    assert!(!flags.contains("b") && flags.is_enabled("c", &shop));
    flags
        .load_json(
            r#"{"events":[{"type":"segment-removed","eventId":5,"segmentId":1}]}"#,
            "delta-3",
        )
        .unwrap();
    assert!(
        !flags.is_enabled("a", &Context::new().app_name("admin")),
        "a strategy on a missing segment never matches"
    );
    // A malformed delta changes nothing.
    let before = flags.version();
    assert!(flags
        .load_json(
            r#"{"events":[{"type":"feature-updated","eventId":6}]}"#,
            "bad"
        )
        .is_err());
    assert_eq!(flags.version(), before);
    // The model applies the same way.
    let mut m = ClientFeatures::default();
    m.apply_delta(&serde_json::from_str::<Delta>(hydrate).unwrap());
    assert_eq!(m.features.len(), 2);
}

#[test]
fn metrics_count_yes_no_and_variants_across_updates() {
    let flags = Flags::new();
    let json = r#"{"features":[{"name":"v","enabled":true,"strategies":[{"name":"userWithId","parameters":{"userIds":"1"}}],
        "variants":[{"name":"x","weight":1}]}]}"#;
    flags.load_json(json, "v1").unwrap();
    for u in ["1", "2", "1"] {
        flags.is_enabled("v", &Context::new().user_id(u));
    }
    flags.variant("v", &Context::new().user_id("1"));
    flags.variant("v", &Context::new().user_id("2"));
    flags.variant("missing", &Context::new());
    // Counts made before an update are kept.
    flags.load_json(json, "v2").unwrap();
    flags.is_enabled("v", &Context::new().user_id("1"));
    // Snapshots and dependency checks are not counted.
    flags
        .snapshot()
        .is_enabled("v", &Context::new().user_id("1"));
    let b = flags.take_metrics();
    let m = &b.toggles["v"];
    assert_eq!((m.yes, m.no), (4, 2));
    assert_eq!(m.variants.get("x"), Some(&1));
    assert_eq!(m.variants.get("disabled"), Some(&1));
    assert!(!b.toggles.contains_key("missing"));
    assert!(b.start <= b.stop);
    let again = flags.take_metrics();
    assert!(again.toggles.is_empty());
    assert_eq!(again.start, b.stop);
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["toggles"]["v"]["variants"]["x"], 1);
}

#[test]
fn metrics_are_exact_under_concurrency() {
    let flags = Flags::new();
    flags.load_json(&state(true), "v1").unwrap();
    let threads = 4;
    let per = 10_000;
    let barrier = Arc::new(Barrier::new(threads));
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (flags, barrier) = (flags.clone(), barrier.clone());
            s.spawn(move || {
                barrier.wait();
                for _ in 0..per {
                    assert!(flags.is_enabled("a", &Context::new()));
                }
            });
        }
    });
    assert_eq!(
        flags.take_metrics().toggles["a"].yes,
        (threads * per) as u64
    );
}

/// Readers never see a half-applied state: in every version either all ten toggles
/// are on or all are off, and a pinned snapshot keeps answering for its version.
#[test]
fn swaps_are_atomic_for_concurrent_readers() {
    let all = |on: bool| {
        let fs: Vec<String> = (0..10)
            .map(|i| format!(r#"{{"name":"t{i}","enabled":{on}}}"#))
            .collect();
        format!(r#"{{"features":[{}]}}"#, fs.join(","))
    };
    let (on, off) = (all(true), all(false));
    let flags = Flags::builder().history(2).build();
    flags.load_json(&on, "on").unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(4));
    std::thread::scope(|s| {
        for _ in 0..3 {
            let (flags, done, barrier) = (flags.clone(), done.clone(), barrier.clone());
            s.spawn(move || {
                barrier.wait();
                let ctx = Context::new();
                let mut seen = [false; 2];
                while !done.load(Ordering::Relaxed) {
                    let snap = flags.snapshot();
                    let first = snap.is_enabled("t0", &ctx);
                    seen[usize::from(first)] = true;
                    for i in 1..10 {
                        assert_eq!(
                            snap.is_enabled(&format!("t{i}"), &ctx),
                            first,
                            "half-applied state"
                        );
                    }
                    let v = flags.variant("t3", &ctx);
                    assert!(!v.enabled);
                }
                seen
            });
        }
        barrier.wait();
        for i in 0..400 {
            flags
                .load_json(if i % 2 == 0 { &off } else { &on }, "flip")
                .unwrap();
            if i % 50 == 0 {
                flags.rollback().unwrap();
            }
        }
        done.store(true, Ordering::Relaxed);
    });
}

#[test]
fn the_thread_cache_follows_updates_and_separate_stores() {
    let a = Flags::new();
    let b = Flags::new();
    a.load_json(&state(true), "a").unwrap();
    b.load_json(&state(false), "b").unwrap();
    let ctx = Context::new();
    for _ in 0..3 {
        assert!(a.is_enabled("a", &ctx));
        assert!(!b.is_enabled("a", &ctx));
    }
    a.load_json(&state(false), "a2").unwrap();
    assert!(!a.is_enabled("a", &ctx));
    a.kill("x");
    a.rollback().unwrap();
    assert!(a.is_enabled("a", &ctx));
    // A custom strategy that evaluates another toggle re-entrantly.
    let inner = a.clone();
    let c = Flags::builder()
        .strategy(
            "nested",
            move |_: &std::collections::BTreeMap<String, String>, ctx: &Context| {
                inner.is_enabled("a", ctx)
            },
        )
        .build();
    c.load_json(
        r#"{"features":[{"name":"n","enabled":true,"strategies":[{"name":"nested"}]}]}"#,
        "c",
    )
    .unwrap();
    assert!(c.is_enabled("n", &ctx));
    assert!(c.is_enabled("n", &ctx));
}

#[test]
fn load_file_reports_io_errors_and_reads_json() {
    let dir = std::env::temp_dir().join(format!("scalekit-flags-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flags = Flags::new();
    let missing = dir.join("missing.json");
    let err = flags.load_file(&missing).unwrap_err();
    assert!(matches!(err, FlagsError::Io { .. }));
    assert!(std::error::Error::source(&err).is_some());
    let f = dir.join("flags.json");
    std::fs::write(&f, state(true)).unwrap();
    flags.load_file(&f).unwrap();
    assert!(flags.is_enabled("a", &Context::new()));
    std::fs::remove_dir_all(&dir).ok();
}
