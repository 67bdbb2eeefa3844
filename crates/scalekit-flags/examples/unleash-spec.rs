//! Runs Unleash's client specification against scalekit-flags.
//!
//! ```text
//! cargo run --release -p scalekit-flags --example unleash-spec -- PATH
//! ```
//!
//! `PATH` is a spec file, or a folder with an `index.json` listing spec files. Prints
//! one line per file, the failing cases under it, and a last line `N passed, M failed`
//! counting files. Exits non-zero when a file fails.

use scalekit_flags::conformance::{run_file, spec_files};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: unleash-spec PATH   (a spec file, or a folder with index.json)");
        return ExitCode::from(2);
    };
    let files = match spec_files(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in files {
        match run_file(&file) {
            Ok(r) if r.ok() => {
                passed += 1;
                println!("ok    {} ({} cases)", r.name, r.passed);
            }
            Ok(r) => {
                failed += 1;
                println!(
                    "FAIL  {} ({} passed, {} failed)",
                    r.name,
                    r.passed,
                    r.failures.len()
                );
                for f in &r.failures {
                    println!("      - {f}");
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {}: {e}", file.display());
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
