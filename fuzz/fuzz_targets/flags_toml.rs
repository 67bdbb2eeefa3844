//! The TOML form: parsing never panics, errors carry a position inside the text, and
//! every state it accepts compiles and round-trips through Unleash JSON unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scalekit_flags::{toml_form, Context, Flags, FlagsError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match toml_form::parse(text) {
        Ok(state) => {
            let json = serde_json::to_string(&state).unwrap();
            let back: scalekit_flags::model::ClientFeatures = serde_json::from_str(&json).unwrap();
            assert_eq!(back, state, "the model round-trips through JSON");
            let flags = Flags::new();
            if flags.load(state, "fuzz").is_ok() {
                for name in flags.toggle_names() {
                    let _ = flags.variant(&name, &Context::new().user_id("u"));
                }
            }
        }
        Err(FlagsError::Parse { format: "TOML", line, column, .. }) => {
            assert!(line >= 1 && column >= 1);
            assert!(line <= text.split('\n').count(), "line {line} outside the text");
        }
        Err(other) => panic!("unexpected error: {other:?}"),
    }
});
