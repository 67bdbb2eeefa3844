//! Delta events: arbitrary sequences of hydration, feature and segment events,
//! applied one batch at a time, against a model kept here. The store must always
//! hold exactly the model's toggles, in its order, and never panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use scalekit_flags::{Context, Flags};

#[derive(Arbitrary, Debug)]
enum Op {
    Hydrate(Vec<(u8, bool, Option<u8>)>),
    Update(u8, bool, Option<u8>),
    Remove(u8),
    Segment(u8, u8),
    RemoveSegment(u8),
    Rollback,
    Raw(String),
}

fn feature(n: u8, on: bool, seg: Option<u8>) -> String {
    let segs = seg.map(|s| format!(r#","segments":[{}]"#, s % 4)).unwrap_or_default();
    format!(r#"{{"name":"f{}","enabled":{on},"strategies":[{{"name":"default"{segs}}}]}}"#, n % 16)
}

fuzz_target!(|ops: Vec<Op>| {
    let flags = Flags::builder().history(4).build();
    let ctx = Context::new().user_id("u").property("k", "1");
    for op in ops.iter().take(64) {
        let body = match op {
            Op::Hydrate(fs) => {
                let mut seen = std::collections::BTreeSet::new();
                let fs: Vec<String> = fs.iter().filter(|(n, _, _)| seen.insert(n % 16)).map(|(n, on, s)| feature(*n, *on, *s)).collect();
                format!(r#"{{"events":[{{"type":"hydration","eventId":1,"features":[{}],"segments":[]}}]}}"#, fs.join(","))
            }
            Op::Update(n, on, s) => format!(r#"{{"events":[{{"type":"feature-updated","eventId":2,"feature":{}}}]}}"#, feature(*n, *on, *s)),
            Op::Remove(n) => format!(r#"{{"events":[{{"type":"feature-removed","eventId":3,"featureName":"f{}"}}]}}"#, n % 16),
            Op::Segment(id, v) => format!(
                r#"{{"events":[{{"type":"segment-updated","eventId":4,"segment":{{"id":{},"constraints":[{{"contextName":"k","operator":"IN","values":["{}"]}}]}}}}]}}"#,
                id % 4, v % 3
            ),
            Op::RemoveSegment(id) => format!(r#"{{"events":[{{"type":"segment-removed","eventId":5,"segmentId":{}}}]}}"#, id % 4),
            Op::Rollback => {
                let _ = flags.rollback();
                continue;
            }
            Op::Raw(s) => s.clone(),
        };
        let before = flags.version();
        let result = flags.load_json(&body, "fuzz");
        if result.is_err() {
            assert_eq!(flags.version(), before, "a refused delta changed the state");
        }
        let state = flags.state();
        let model: Vec<String> = state.features.iter().map(|f| f.name.clone()).collect();
        assert_eq!(flags.toggle_names(), model);
        for f in &state.features {
            let on = flags.is_enabled(&f.name, &ctx);
            if !f.enabled {
                assert!(!on);
            }
        }
    }
});
