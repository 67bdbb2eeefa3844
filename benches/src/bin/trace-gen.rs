//! Writes the generated trace families (`scalekit_benches::trace_families`) as
//! gzip-compressed text traces, one key a line, with a manifest of the rows
//! (trace, capacity, family, set) for the reference step.
//!
//! ```text
//! trace-gen --out DIR [--set tuning|held-out] [--only NAME[,NAME...]]
//! trace-gen --list
//! ```
//!
//! Then `benches/hit-ratio/reference.py --manifest DIR/manifest.json --out
//! FILE.json` computes libCacheSim's reference hit ratios, and `hit-ratio
//! --reference --file FILE.json` compares the caches with them.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use flate2::write::GzEncoder;
use flate2::Compression;
use scalekit_benches::trace_families::{all, TraceSpec};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("trace-gen: {message}");
            eprintln!("usage: trace-gen --out DIR [--set tuning|held-out] [--only NAME[,NAME...]]");
            eprintln!("       trace-gen --list");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut out = None;
    let mut set = None;
    let mut only: Option<Vec<String>> = None;
    let mut list = false;
    let mut iter = args.into_iter();
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--set" => set = Some(value()?),
            "--only" => only = Some(value()?.split(',').map(String::from).collect()),
            "--list" => list = true,
            _ => return Err(format!("unexpected argument {flag:?}")),
        }
    }
    let specs: Vec<TraceSpec> = all()
        .into_iter()
        .filter(|s| set.as_deref().is_none_or(|set| s.set.name() == set))
        .filter(|s| only.as_ref().is_none_or(|only| only.contains(&s.name)))
        .collect();
    if list {
        println!("| trace | set | capacities | requests | setting |");
        println!("|---|---|---|---:|---|");
        for s in &specs {
            let caps: Vec<String> = s.capacities.iter().map(u64::to_string).collect();
            println!(
                "| {} | {} | {} | {} | {} |",
                s.name,
                s.set.name(),
                caps.join(", "),
                s.requests,
                s.about
            );
        }
        return Ok(());
    }
    let out = out.ok_or("--out DIR is required")?;
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut manifest = Vec::new();
    for spec in &specs {
        let keys = spec.keys();
        let path = out.join(format!("{}.trace.gz", spec.name));
        let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut writer = BufWriter::new(GzEncoder::new(file, Compression::fast()));
        for key in &keys {
            writeln!(writer, "{key}").map_err(|e| format!("{}: {e}", path.display()))?;
        }
        writer
            .into_inner()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .finish()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let distinct = {
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            sorted.dedup();
            sorted.len()
        };
        eprintln!(
            "{}: {} requests, {distinct} distinct keys",
            spec.name,
            keys.len()
        );
        for &capacity in &spec.capacities {
            manifest.push(serde_json::json!({
                "trace": spec.name,
                "capacity": capacity,
                "family": spec.family,
                "set": spec.set.name(),
            }));
        }
    }
    let path = out.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("{}: {} rows", path.display(), manifest.len());
    Ok(())
}
