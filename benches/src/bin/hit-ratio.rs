//! Hit ratios of scalekit's cache and its peers on real traces and Zipf workloads.
//!
//! ```text
//! hit-ratio --trace FILE --capacity N --policy P
//! hit-ratio --zipf ALPHA --keys N --requests R --seed S --capacity N --policy P
//! hit-ratio --reference [--policy P[,P...]] [--jobs J]
//! ```
//!
//! `P` is one of `scalekit`, `moka`, `quick_cache`, `lru`. A single run prints
//! `hit_ratio=NN.NN` as its last line. `--reference` replays every row of the
//! traces' `reference.json` (folder from `SCALEKIT_TRACES_DIR`, by default
//! `../shared/data/traces` beside the workspace) and prints, per policy, the gap
//! to each row's best reference policy, then the mean and worst gaps.
//!
//! Every request is a lookup; a miss inserts the key (size 1), as the
//! reference simulator does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use flate2::read::GzDecoder;
use scalekit_benches::cache_workload::zipf_keys;
use scalekit_cache::Cache;

const POLICIES: [&str; 4] = ["scalekit", "moka", "quick_cache", "lru"];
const ZIPF_KEYS: u64 = 1_000_000;
const ZIPF_REQUESTS: u64 = 10_000_000;
const ZIPF_SEED: u64 = 42;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hit-ratio: {message}");
            eprintln!("usage: hit-ratio --trace FILE | --zipf ALPHA [--keys N --requests R --seed S] --capacity N --policy P");
            eprintln!("       hit-ratio --reference [--policy P[,P...]] [--jobs J]");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut options = BTreeMap::new();
    let mut iter = args.into_iter();
    while let Some(flag) = iter.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag:?}"))?
            .to_string();
        if name == "reference" {
            options.insert(name, String::new());
            continue;
        }
        let value = iter
            .next()
            .ok_or_else(|| format!("--{name} needs a value"))?;
        options.insert(name, value);
    }
    let policies: Vec<String> = options.get("policy").map_or_else(
        || POLICIES.map(String::from).to_vec(),
        |p| p.split(',').map(String::from).collect(),
    );
    for policy in &policies {
        if !POLICIES.contains(&policy.as_str()) {
            return Err(format!(
                "unknown policy {policy:?} (one of {})",
                POLICIES.join(", ")
            ));
        }
    }
    let number = |name: &str| -> Result<Option<u64>, String> {
        options
            .get(name)
            .map(|v| v.parse::<u64>().map_err(|e| format!("--{name} {v:?}: {e}")))
            .transpose()
    };
    let jobs = number("jobs")?.map_or_else(
        || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        |j| j.max(1) as usize,
    );
    if options.contains_key("reference") {
        return reference(&policies, jobs);
    }
    let capacity = number("capacity")?.ok_or("--capacity is required")?;
    let trace = if let Some(file) = options.get("trace") {
        load_trace(Path::new(file))?
    } else if let Some(alpha) = options.get("zipf") {
        let alpha: f64 = alpha
            .parse()
            .map_err(|e| format!("--zipf {alpha:?}: {e}"))?;
        zipf_keys(
            alpha,
            number("keys")?.unwrap_or(ZIPF_KEYS),
            number("requests")?.unwrap_or(ZIPF_REQUESTS),
            number("seed")?.unwrap_or(ZIPF_SEED),
        )?
    } else {
        return Err("give --trace FILE, --zipf ALPHA or --reference".into());
    };
    let [policy] = policies.as_slice() else {
        return Err("a single run takes exactly one --policy".into());
    };
    let ratio = simulate(policy, &trace, capacity);
    println!("hit_ratio={ratio:.2}");
    Ok(())
}

fn traces_dir() -> PathBuf {
    std::env::var_os("SCALEKIT_TRACES_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/traces"),
        PathBuf::from,
    )
}

fn load_trace(path: &Path) -> Result<Vec<u64>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = BufReader::new(GzDecoder::new(file));
    let mut keys = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("{}: line {}: {e}", path.display(), n + 1))?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let key = line
            .parse::<u64>()
            .map_err(|e| format!("{}: line {}: {line:?}: {e}", path.display(), n + 1))?;
        keys.push(key);
    }
    Ok(keys)
}

/// The hit ratio in percent of `policy` with `capacity` entries over `trace`.
fn simulate(policy: &str, trace: &[u64], capacity: u64) -> f64 {
    let mut hits = 0u64;
    match policy {
        "scalekit" => {
            let Ok(cache): Result<Cache<u64, ()>, _> = Cache::builder()
                .max_capacity(capacity)
                .hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
                .build()
            else {
                unreachable!("a capacity and a hasher are always valid settings");
            };
            for &key in trace {
                if cache.get(&key).is_some() {
                    hits += 1;
                } else {
                    cache.insert(key, ());
                }
            }
        }
        "moka" => {
            let cache: moka::sync::Cache<u64, ()> = moka::sync::Cache::new(capacity);
            for &key in trace {
                if cache.get(&key).is_some() {
                    hits += 1;
                } else {
                    cache.insert(key, ());
                }
            }
        }
        "quick_cache" => {
            let cache: quick_cache::sync::Cache<u64, ()> =
                quick_cache::sync::Cache::new(capacity as usize);
            for &key in trace {
                if cache.get(&key).is_some() {
                    hits += 1;
                } else {
                    cache.insert(key, ());
                }
            }
        }
        _ => {
            let size = NonZeroUsize::new(capacity as usize).unwrap_or(NonZeroUsize::MIN);
            let mut cache = lru::LruCache::new(size);
            for &key in trace {
                if cache.get(&key).is_some() {
                    hits += 1;
                } else {
                    cache.put(key, ());
                }
            }
        }
    }
    100.0 * hits as f64 / trace.len().max(1) as f64
}

struct Row {
    trace: String,
    capacity: u64,
    best: f64,
}

fn reference(policies: &[String], jobs: usize) -> Result<(), String> {
    let dir = traces_dir();
    let path = dir.join("reference.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let rows: Vec<Row> = json
        .as_array()
        .ok_or("reference.json: expected an array of rows")?
        .iter()
        .map(|row| {
            Some(Row {
                trace: row.get("trace")?.as_str()?.to_string(),
                capacity: row.get("capacity")?.as_u64()?,
                best: row.get("best")?.as_f64()?,
            })
        })
        .collect::<Option<_>>()
        .ok_or("reference.json: a row lacks trace, capacity or best")?;

    // Load every workload once.
    let mut workloads: BTreeMap<String, Arc<Vec<u64>>> = BTreeMap::new();
    for row in &rows {
        if workloads.contains_key(&row.trace) {
            continue;
        }
        let keys = if let Some(alpha) = row.trace.strip_prefix("zipf") {
            let alpha: f64 = alpha.parse().map_err(|e| format!("{}: {e}", row.trace))?;
            zipf_keys(alpha, ZIPF_KEYS, ZIPF_REQUESTS, ZIPF_SEED)?
        } else {
            load_trace(&dir.join(format!("{}.trace.gz", row.trace)))?
        };
        workloads.insert(row.trace.clone(), Arc::new(keys));
    }

    let tasks: Vec<(usize, usize)> = (0..rows.len())
        .flat_map(|r| (0..policies.len()).map(move |p| (r, p)))
        .collect();
    let results = Mutex::new(vec![vec![0.0; policies.len()]; rows.len()]);
    let next = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let task = {
                    let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                    let task = tasks.get(*next).copied();
                    *next += 1;
                    task
                };
                let Some((r, p)) = task else { break };
                let row = &rows[r];
                let ratio = simulate(&policies[p], &workloads[&row.trace], row.capacity);
                results.lock().unwrap_or_else(|e| e.into_inner())[r][p] = ratio;
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());

    print!("| trace | capacity | best |");
    for policy in policies {
        print!(" {policy} | gap |");
    }
    println!();
    print!("|---|---:|---:|");
    for _ in policies {
        print!("---:|---:|");
    }
    println!();
    let mut gaps = vec![Vec::new(); policies.len()];
    for (row, ratios) in rows.iter().zip(&results) {
        print!("| {} | {} | {:.2} |", row.trace, row.capacity, row.best);
        for (p, ratio) in ratios.iter().enumerate() {
            let gap = row.best - ratio;
            gaps[p].push(gap);
            print!(" {ratio:.2} | {gap:.2} |");
        }
        println!();
    }
    println!();
    for (policy, gaps) in policies.iter().zip(&gaps) {
        let mean = gaps.iter().sum::<f64>() / gaps.len().max(1) as f64;
        let worst = gaps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{policy}: mean gap {mean:.2}, worst gap {worst:.2} over {} rows",
            gaps.len()
        );
    }
    Ok(())
}
