//! Unleash's client specification: every file listed in the suite's index.json.
//!
//! The folder is found through `SCALEKIT_UNLEASH_SPEC_DIR`, by default
//! `<workspace root>/../shared/data/unleash-client-spec`. Without it the test says it
//! was skipped; under CI (`CI` set) a missing folder is a failure.

use scalekit_flags::conformance::{run_file, spec_files};
use std::path::PathBuf;

fn spec_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("SCALEKIT_UNLEASH_SPEC_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/unleash-client-spec"),
    };
    if dir.join("index.json").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "Unleash client spec not found at {} (set SCALEKIT_UNLEASH_SPEC_DIR)",
        dir.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}; it is required under CI");
    }
    eprintln!("skipped: {msg}");
    None
}

#[test]
fn every_file_of_the_client_specification_passes() {
    let Some(dir) = spec_dir() else { return };
    let files = spec_files(&dir).unwrap();
    assert!(!files.is_empty(), "index.json lists no files");
    let mut failures = Vec::new();
    let mut cases = 0;
    for file in &files {
        let r = run_file(file).unwrap();
        cases += r.passed;
        for f in r.failures {
            failures.push(format!("{}: {f}", r.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{} files, {cases} cases passed", files.len());
}
