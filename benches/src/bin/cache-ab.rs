//! The cache throughput workloads of `benches/cache.rs`, run in interleaved
//! rounds: scalekit, then the peer, then the peer, then scalekit, and so on.
//! Each round runs both caches on the same keys at nearly the same moment, so
//! the ratio of their times holds when the machine's load drifts during a run
//! (criterion measures one cache after the other, seconds apart).
//!
//! ```text
//! cargo run --release -p scalekit-benches --bin cache-ab -- [--threads 2] [--insert-every 4] [--rounds 21] [--ops 2000000] [--peer quick_cache]
//! ```
//!
//! `--insert-every 0` is read-only; 4 is the 75% read / 25% insert mix. Prints
//! the median time per operation (per concurrent pair at two threads) of each
//! cache and the median and quartiles of the per-round ratio scalekit / peer.

use std::process::ExitCode;

use scalekit_benches::cache_workload::{build, run, zipf_stream};

struct Args {
    threads: usize,
    insert_every: Option<usize>,
    rounds: usize,
    ops: u64,
    peer: String,
}

fn parse(args: Vec<String>) -> Result<Args, String> {
    let mut out = Args {
        threads: 2,
        insert_every: Some(4),
        rounds: 21,
        ops: 2_000_000,
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
            "--insert-every" => out.insert_every = Some(number()? as usize).filter(|&n| n > 0),
            "--rounds" => out.rounds = (number()? as usize).max(1),
            "--ops" => out.ops = number()?.max(1),
            "--peer" => match value.as_str() {
                "quick_cache" | "moka" => out.peer = value,
                _ => return Err(format!("--peer: quick_cache or moka, not {value}")),
            },
            _ => return Err(format!("unknown flag {flag}")),
        }
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
            eprintln!("usage: cache-ab [--threads 1|2] [--insert-every N] [--rounds N] [--ops N] [--peer quick_cache|moka]");
            return ExitCode::from(2);
        }
    };
    let streams: Vec<Vec<u64>> = (0..2).map(|t| zipf_stream(7 + t)).collect();
    let warmup = zipf_stream(99);
    let caches = [build("scalekit", &warmup), build(&args.peer, &warmup)];
    let mut times = [Vec::new(), Vec::new()];
    let mut ratios = Vec::new();
    for round in 0..args.rounds {
        // A new stretch of the streams each round; who goes first alternates.
        let offset = round * 77_777;
        let mut per_op = [0.0; 2];
        for turn in 0..2 {
            let which = (round + turn) % 2;
            let time = run(
                caches[which].as_ref(),
                &streams,
                args.threads,
                args.ops,
                args.insert_every,
                offset,
            );
            per_op[which] = time.as_nanos() as f64 / args.ops as f64;
        }
        times[0].push(per_op[0]);
        times[1].push(per_op[1]);
        ratios.push(per_op[0] / per_op[1]);
    }
    let ours = median(&mut times[0]);
    let theirs = median(&mut times[1]);
    let ratio = median(&mut ratios);
    let (q1, q3) = (ratios[ratios.len() / 4], ratios[3 * ratios.len() / 4]);
    println!(
        "threads={} insert_every={} rounds={}: scalekit {ours:.1} ns, {} {theirs:.1} ns; time ratio median {ratio:.3} (quartiles {q1:.3}-{q3:.3})",
        args.threads,
        args.insert_every.unwrap_or(0),
        args.rounds,
        args.peer,
    );
    ExitCode::SUCCESS
}
