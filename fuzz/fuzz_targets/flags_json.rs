//! Unleash JSON (a state or a delta body): parsing never panics, a refusal is a
//! `Parse` or `Invalid` error with a position inside the text, a refused update leaves
//! the store as it was, and whatever loads can be evaluated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scalekit_flags::{Context, Flags, FlagsError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let flags = Flags::new();
    flags.load_json(r#"{"features":[{"name":"keep","enabled":true}]}"#, "base").unwrap();
    match flags.load_json(text, "fuzz") {
        Ok(report) => {
            assert_eq!(report.version, flags.version());
            let ctx = Context::new().user_id("u").session_id("s").remote_address("10.0.0.1").property("p", "1.2.3");
            for name in flags.toggle_names() {
                let e = flags.evaluate(&name, &ctx);
                assert_eq!(e.enabled, e.variant.feature_enabled);
                assert_eq!(flags.is_enabled(&name, &ctx), flags.snapshot().is_enabled(&name, &ctx) || e.reason == scalekit_flags::Reason::Split);
            }
            let _ = flags.take_metrics();
            flags.rollback().unwrap();
        }
        Err(FlagsError::Parse { line, column, .. }) => {
            assert!(line >= 1 && column >= 1);
            assert!(line <= text.lines().count().max(1) + 1, "line {line} outside the text");
            assert_eq!(flags.version(), 1);
            assert!(flags.is_enabled("keep", &Context::new()));
        }
        Err(FlagsError::Invalid { .. }) => {
            assert_eq!(flags.version(), 1);
            assert!(flags.is_enabled("keep", &Context::new()));
        }
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
    let _ = scalekit_flags::validate_json(text);
});
