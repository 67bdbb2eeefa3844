//! The cache throughput workloads of `benches/cache.rs`, run in interleaved
//! rounds: scalekit, then the peer, then the peer, then scalekit, and so on;
//! `--rounds` counts pairs of rounds.
//! Each round runs both caches on the same keys at nearly the same moment, so
//! the ratio of their times holds when the machine's load drifts during a run
//! (criterion measures one cache after the other, seconds apart).
//!
//! ```text
//! cargo run --release -p scalekit-benches --bin cache-ab -- [--threads 2] [--pattern mix] [--rounds 11] [--ops 500000] [--peer quick_cache]
//! ```
//!
//! `--pattern` is `reads`, `mix` (75% reads, 25% inserts of present or new
//! keys) or `cache-aside` (insert after each miss); see
//! `scalekit_benches::cache_workload::Pattern`. Both caches walk
//! the same stretch of the streams in a round, and no stretch is walked twice
//! (`2 * rounds * ops` must fit in the streams). Prints the median time per
//! operation (per concurrent pair at two threads) of each cache and the median
//! and quartiles of the per-pair ratio scalekit / peer.

use std::process::ExitCode;

use scalekit_benches::cache_workload::{build, run, streams, Cursor, Pattern, STREAM};

struct Args {
    threads: usize,
    pattern: Pattern,
    rounds: usize,
    ops: u64,
    peer: String,
}

fn parse(args: Vec<String>) -> Result<Args, String> {
    let mut out = Args {
        threads: 2,
        pattern: Pattern::Mix,
        rounds: 11,
        ops: 500_000,
        peer: "quick_cache".to_owned(),
    };
    let mut iter = args.into_iter();
    while let Some(flag) = iter.next() {
        let value = iter.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--threads" => out.threads = (number()? as usize).clamp(1, 2),
            "--pattern" => out.pattern = Pattern::parse(&value)?,
            "--rounds" => out.rounds = (number()? as usize).max(1),
            "--ops" => out.ops = number()?.max(1),
            "--peer" => match value.as_str() {
                "quick_cache" | "moka" => out.peer = value,
                _ => return Err(format!("--peer: quick_cache or moka, not {value}")),
            },
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if 2 * out.rounds as u64 * out.ops > STREAM as u64 {
        return Err(format!(
            "2 x --rounds {} x --ops {} is more than the {STREAM} keys of a stream: a round would replay keys",
            out.rounds, out.ops
        ));
    }
    Ok(out)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("cache-ab: {e}");
            eprintln!("usage: cache-ab [--threads 1|2] [--pattern reads|mix|cache-aside] [--rounds N] [--ops N] [--peer quick_cache|moka]");
            return ExitCode::from(2);
        }
    };
    let (streams, warmup) = streams(args.threads);
    let caches = [build("scalekit", &warmup), build(&args.peer, &warmup)];
    let mut cursors = [Cursor::default(), Cursor::default()];
    // Who goes first alternates, so each cache runs twice in a row (A B, B A,
    // A B, ...): the second of those runs finds its structures still in the
    // CPU's caches and is faster (by about 20% at one thread). A pair of
    // rounds gives each cache one run of each kind, so the ratio is taken
    // per pair: its sum of times over the peer's.
    let mut pairs: Vec<[f64; 2]> = Vec::new();
    for round in 0..args.rounds * 2 {
        // A new stretch of the streams each round, the same for both caches.
        let mut per_op = [0.0; 2];
        for turn in 0..2 {
            let which = (round + turn) % 2;
            let time = run(
                caches[which].as_ref(),
                &streams,
                args.threads,
                args.ops,
                args.pattern,
                &mut cursors[which],
            );
            per_op[which] = time.as_nanos() as f64 / args.ops as f64;
        }
        if round % 2 == 0 {
            pairs.push([0.0; 2]);
        }
        if let Some(pair) = pairs.last_mut() {
            pair[0] += per_op[0] / 2.0;
            pair[1] += per_op[1] / 2.0;
        }
    }
    let mut ours: Vec<f64> = pairs.iter().map(|p| p[0]).collect();
    let mut theirs: Vec<f64> = pairs.iter().map(|p| p[1]).collect();
    let mut ratios: Vec<f64> = pairs.iter().map(|p| p[0] / p[1]).collect();
    let (ours, theirs, ratio) = (median(&mut ours), median(&mut theirs), median(&mut ratios));
    let (q1, q3) = (ratios[ratios.len() / 4], ratios[3 * ratios.len() / 4]);
    println!(
        "threads={} pattern={} pairs={}: scalekit {ours:.1} ns, {} {theirs:.1} ns; time ratio median {ratio:.3} (quartiles {q1:.3}-{q3:.3})",
        args.threads,
        args.pattern.name(),
        args.rounds,
        args.peer,
    );
    ExitCode::SUCCESS
}
