//! The TOML form compiles to the same model as Unleash JSON, and its errors point at
//! the line and column.
#![cfg(feature = "toml")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use scalekit_flags::{toml_form, Context, Flags, FlagsError};

const EXAMPLE: &str = r##"
[segments.nordics]
constraints = [{ field = "country", op = "IN", values = ["NO", "SE", "DK", "FI"] }]

[flags.new-checkout]
description = "The one-page checkout"
rollout = 100
stickiness = "userId"
group = "checkout"
segments = ["nordics"]
when = [{ field = "appVersion", op = "SEMVER_GTE", value = "2.4.0" }]
variants = [
  { name = "blue", weight = 1, payload = { type = "string", value = "#00f" } },
  { name = "green", weight = 1, overrides = { userId = ["alice"] } },
]

[flags.beta-banner]
users = ["alice", "bob"]

[flags.new-search]
enabled = false

[flags.search-ranking]
depends = ["beta-banner", { flag = "new-checkout", variants = ["green"] }]

[[flags.ops-window.strategies]]
name = "gradualRolloutSessionId"
parameters = { percentage = 100, groupId = "ops" }
constraints = [{ field = "currentTime", op = "DATE_AFTER", value = "2020-01-01T00:00:00Z" }]
"##;

#[test]
fn the_documented_example_evaluates_as_written() {
    let flags = Flags::new();
    flags
        .load(toml_form::parse(EXAMPLE).unwrap(), "example.toml")
        .unwrap();
    let alice = Context::new()
        .user_id("alice")
        .property("country", "NO")
        .property("appVersion", "2.5.0");
    assert!(flags.is_enabled("new-checkout", &alice));
    assert_eq!(&*flags.variant("new-checkout", &alice).name, "green");
    assert!(!flags.is_enabled(
        "new-checkout",
        &Context::new()
            .user_id("alice")
            .property("country", "US")
            .property("appVersion", "2.5.0")
    ));
    assert!(!flags.is_enabled(
        "new-checkout",
        &Context::new()
            .user_id("alice")
            .property("country", "NO")
            .property("appVersion", "2.3.9")
    ));
    assert!(flags.is_enabled("beta-banner", &alice));
    assert!(!flags.is_enabled("beta-banner", &Context::new().user_id("carol")));
    assert!(!flags.is_enabled("new-search", &alice));
    assert!(flags.is_enabled("search-ranking", &alice));
    // The child follows its parent's variant: on for bob exactly when bob gets green.
    let bob = Context::new()
        .user_id("bob")
        .property("country", "SE")
        .property("appVersion", "3.0.0");
    let green = &*flags.variant("new-checkout", &bob).name == "green";
    assert_eq!(flags.is_enabled("search-ranking", &bob), green);
    assert!(!flags.is_enabled("search-ranking", &Context::new().user_id("carol")));
    assert!(flags.is_enabled("ops-window", &Context::new().session_id("s")));
}

#[test]
fn toml_and_json_compile_to_the_same_model() {
    let from_toml = toml_form::parse("[flags.a]\nrollout = 50\nstickiness = \"userId\"\n").unwrap();
    let json = r#"{"version":2,"features":[{"name":"a","enabled":true,"strategies":[
        {"name":"flexibleRollout","parameters":{"rollout":"50","stickiness":"userId","groupId":"a"}}]}]}"#;
    let from_json: scalekit_flags::model::ClientFeatures = serde_json::from_str(json).unwrap();
    assert_eq!(from_toml, from_json);
}

fn err(text: &str) -> (usize, usize, String) {
    match toml_form::parse(text).unwrap_err() {
        FlagsError::Parse {
            format: "TOML",
            line,
            column,
            message,
            ..
        } => (line, column, message),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_name_the_line_and_column() {
    let (l, c, m) = err("[flags.a]\nrolout = 50\n");
    assert_eq!((l, c), (2, 1), "{m}");
    assert!(m.contains("rolout"), "{m}");
    let (l, _, m) = err("[flags.a]\nrollout = 150\n");
    assert_eq!(l, 2);
    assert!(m.contains("150"), "{m}");
    let (l, c, m) =
        err("[flags.a]\nwhen = [\n  { field = \"x\", op = \"EQUALS\", values = [\"1\"] },\n]\n");
    assert_eq!((l, c), (3, 3), "{m}");
    assert!(m.contains("EQUALS") && m.contains("STR_CONTAINS"), "{m}");
    let (l, _, m) = err("[flags.a]\nsegments = [\"nowhere\"]\n");
    assert_eq!(l, 2);
    assert!(m.contains("nowhere"), "{m}");
    let (l, _, _) = err("[flags.a]\nenabled = \"yes\"\n");
    assert_eq!(l, 2);
    let (_, _, m) = err("[flags.a]\nwhen = [{ field = \"v\", op = \"NUM_GT\" }]\n");
    assert!(m.contains("value"), "{m}");
    let (l, _, _) = err("[flags.a\n");
    assert_eq!(l, 1);
}

#[test]
fn a_bad_toml_file_is_rejected_with_its_path() {
    let dir = std::env::temp_dir().join(format!("scalekit-flags-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("flags.toml");
    std::fs::write(&path, "[flags.a]\n").unwrap();
    let flags = Flags::new();
    flags.load_file(&path).unwrap();
    std::fs::write(&path, "[flags.a]\n\nrollout = \"half\"\n").unwrap();
    let e = flags.load_file(&path).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("{}:3:", path.display())),
        "{e}"
    );
    assert!(flags.is_enabled("a", &Context::new()));
    std::fs::remove_dir_all(&dir).ok();
}
