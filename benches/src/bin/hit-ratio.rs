//! Hit ratios of scalekit's cache and its peers on real traces and Zipf workloads.
//!
//! ```text
//! hit-ratio --trace FILE --capacity N --policy P
//! hit-ratio --zipf ALPHA --keys N --requests R --seed S --capacity N --policy P
//! hit-ratio --family NAME --capacity N --policy P
//! hit-ratio --reference [--file FILE.json] [--set S] [--policy P[,P...]] [--jobs J]
//! ```
//!
//! `P` is one of `scalekit`, `moka`, `quick_cache`, `lru`. A single run prints
//! `hit_ratio=NN.NN` as its last line. `--reference` replays every row of the
//! traces' `reference.json` (folder from `SCALEKIT_TRACES_DIR`, by default
//! `../shared/data/traces` beside the workspace), or of `--file`, and prints,
//! per policy, the gap to each row's best reference policy, then the mean and
//! worst gaps (and, when rows name a `set` and a `family`, the same by set and
//! by family). `--set` keeps the rows of one set.
//!
//! A row's trace is a generated family trace when its name is one
//! (`scalekit_benches::trace_families`, e.g. `loop-3`: generated again here,
//! no file needed), a Zipf workload when it is `zipf<ALPHA>`, otherwise the
//! file `<trace>.trace.gz` beside the reference file. The families'
//! reference is `benches/hit-ratio/families.json` (see
//! `benches/hit-ratio/README.md`).
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
use scalekit_benches::trace_families;
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
            eprintln!("       hit-ratio --family NAME --capacity N --policy P");
            eprintln!("       hit-ratio --reference [--file FILE.json] [--set S] [--policy P[,P...]] [--jobs J]");
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
        let file = options
            .get("file")
            .map_or_else(|| traces_dir().join("reference.json"), PathBuf::from);
        return reference(
            &file,
            options.get("set").map(String::as_str),
            &policies,
            jobs,
        );
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
    } else if let Some(name) = options.get("family") {
        trace_families::by_name(name)
            .ok_or_else(|| format!("no generated trace {name:?} (trace-gen --list)"))?
            .keys()
    } else {
        return Err("give --trace FILE, --zipf ALPHA, --family NAME or --reference".into());
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
    /// The row's set and family (generated traces), for the summaries.
    set: Option<String>,
    family: Option<String>,
}

fn reference(
    path: &Path,
    set: Option<&str>,
    policies: &[String],
    jobs: usize,
) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let text_field = |row: &serde_json::Value, name: &str| {
        row.get(name).and_then(|v| v.as_str()).map(String::from)
    };
    let rows: Vec<Row> = json
        .as_array()
        .ok_or_else(|| format!("{}: expected an array of rows", path.display()))?
        .iter()
        .map(|row| {
            Some(Row {
                trace: row.get("trace")?.as_str()?.to_string(),
                capacity: row.get("capacity")?.as_u64()?,
                best: row.get("best")?.as_f64()?,
                set: text_field(row, "set"),
                family: text_field(row, "family"),
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("{}: a row lacks trace, capacity or best", path.display()))?
        .into_iter()
        .filter(|row| set.is_none_or(|set| row.set.as_deref() == Some(set)))
        .collect();

    // Load every workload once.
    let mut workloads: BTreeMap<String, Arc<Vec<u64>>> = BTreeMap::new();
    for row in &rows {
        if workloads.contains_key(&row.trace) {
            continue;
        }
        let keys = if let Some(spec) = trace_families::by_name(&row.trace) {
            spec.keys()
        } else if let Some(alpha) = row.trace.strip_prefix("zipf") {
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
        let (mean, worst) = mean_worst(gaps.iter().copied());
        println!(
            "{policy}: mean gap {mean:.2}, worst gap {worst:.2} over {} rows",
            gaps.len()
        );
    }
    // By set and by family, when the rows say.
    let mut groups: BTreeMap<(u8, String), Vec<usize>> = BTreeMap::new();
    for (r, row) in rows.iter().enumerate() {
        if let Some(set) = &row.set {
            groups.entry((0, format!("set {set}"))).or_default().push(r);
        }
        if let Some(family) = &row.family {
            groups
                .entry((1, format!("family {family}")))
                .or_default()
                .push(r);
        }
    }
    if !groups.is_empty() {
        println!();
        print!("| group | rows |");
        for policy in policies {
            print!(" {policy} mean | {policy} worst |");
        }
        println!();
        print!("|---|---:|");
        for _ in policies {
            print!("---:|---:|");
        }
        println!();
        for ((_, name), members) in &groups {
            print!("| {name} | {} |", members.len());
            for gaps in &gaps {
                let (mean, worst) = mean_worst(members.iter().map(|&r| gaps[r]));
                print!(" {mean:.2} | {worst:.2} |");
            }
            println!();
        }
    }
    Ok(())
}

/// The mean and the largest of some gaps.
fn mean_worst(gaps: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut sum, mut n, mut worst) = (0.0, 0usize, f64::NEG_INFINITY);
    for gap in gaps {
        sum += gap;
        n += 1;
        worst = worst.max(gap);
    }
    (sum / n.max(1) as f64, worst)
}
