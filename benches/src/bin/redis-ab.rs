//! The kit's Redis calls on one server against the same calls on a Redis Cluster,
//! in interleaved rounds (server, cluster, cluster, server, ...) so that the ratio
//! holds while the machine's load drifts:
//!
//! - `tier get`: [`RedisTier::get`] of one present key (one round trip);
//! - `tier get_many 100`: [`Tier::get_many`] of 100 present keys (on the server
//!   one pipelined `MGET`; on the cluster split by slot, sent to the three
//!   masters side by side);
//! - `limit check`: [`RedisRateLimiter::check_key`] (one `EVALSHA`).
//!
//! Each call is timed alone, one at a time (latency, not throughput); a round is
//! `--calls` calls of each operation. Prints the medians and 99th percentiles of
//! each target and the median of the per-round ratio cluster / server.
//!
//! ```text
//! SCALEKIT_REDIS_URL=redis://127.0.0.1:6379 \
//! SCALEKIT_REDIS_CLUSTER_URLS=redis://127.0.0.1:7000,...,redis://127.0.0.1:7005 \
//! cargo run --release -p scalekit-benches --bin redis-ab -- [--rounds 9] [--calls 2000]
//! ```

use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use scalekit_cache::{RedisTier, Tier};
use scalekit_core::redis::RedisTarget;
use scalekit_limit::{Quota, RedisRateLimiter};

const KEYS: u64 = 10_000;

struct Target {
    name: &'static str,
    tier: RedisTier<u64, String>,
    limiter: RedisRateLimiter,
}

async fn target(name: &'static str, url: &str, run: u64) -> Result<Target, String> {
    let parsed: RedisTarget = url.parse().map_err(|e| format!("{name}: {e}"))?;
    let tier = RedisTier::builder(parsed, format!("scalekit-bench:{run:x}"))
        .timeout(Duration::from_secs(2))
        .build()
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    for k in 0..KEYS {
        tier.set(&k, &format!("value {k:>40}"), Duration::from_secs(600))
            .await
            .map_err(|e| format!("{name}: filling: {e}"))?;
    }
    let quota = Quota::per_second(NonZeroU32::new(1_000_000).ok_or("quota")?);
    let limiter = RedisRateLimiter::builder(quota)
        .prefix(format!("scalekit-bench:{run:x}:limit:"))
        .timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(Target {
        name,
        tier,
        limiter,
    })
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    GetMany,
    Check,
}

const OPS: [(Op, &str); 3] = [
    (Op::Get, "tier get"),
    (Op::GetMany, "tier get_many 100"),
    (Op::Check, "limit check"),
];

/// `calls` calls of `op`, each timed; nanoseconds, sorted.
async fn round(t: &Target, op: Op, calls: u64, offset: u64) -> Result<Vec<u64>, String> {
    let mut times = Vec::with_capacity(calls as usize);
    for i in 0..calls {
        let k = (offset + i * 7919) % KEYS;
        let started = Instant::now();
        match op {
            Op::Get => {
                t.tier.get(&k).await.map_err(|e| e.to_string())?;
            }
            Op::GetMany => {
                let keys: Vec<u64> = (0..100).map(|j| (k + j * 97) % KEYS).collect();
                let got = t.tier.get_many(&keys).await.map_err(|e| e.to_string())?;
                if got.iter().any(Option::is_none) {
                    return Err(format!("{}: a key is missing", t.name));
                }
            }
            Op::Check => {
                let key = format!("k{}", k % 100);
                t.limiter
                    .try_check_key_n(&key, 1)
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|d| format!("denied: {d:?}"))?;
            }
        }
        times.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    times.sort_unstable();
    Ok(times)
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1_000.0)
}

fn parse() -> Result<(usize, u64), String> {
    let (mut rounds, mut calls) = (9usize, 2_000u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rounds" => rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--calls" => calls = value.parse().map_err(|e| format!("--calls: {e}"))?,
            _ => return Err(format!("unknown flag {flag} (--rounds N, --calls N)")),
        }
    }
    if rounds == 0 || calls == 0 || rounds > 1_000 || calls > 1_000_000 {
        return Err("--rounds 1..1000 and --calls 1..1000000".into());
    }
    Ok((rounds, calls))
}

async fn main_async() -> Result<(), String> {
    let (rounds, calls) = parse()?;
    let env = |var: &str| {
        std::env::var(var)
            .map_err(|_| format!("{var} is not set (deploy/services.sh up starts both)"))
    };
    let run =
        u64::from(std::process::id()) << 20 ^ u64::from(Instant::now().elapsed().subsec_nanos());
    let server = target("server", &env("SCALEKIT_REDIS_URL")?, run).await?;
    let cluster = target("cluster", &env("SCALEKIT_REDIS_CLUSTER_URLS")?, run + 1).await?;
    println!("{rounds} rounds of {calls} calls per operation and target, one call at a time\n");
    println!(
        "| operation | server p50 | server p99 | cluster p50 | cluster p99 | cluster / server (median of round p50 ratios) |"
    );
    println!("|---|---|---|---|---|---|");
    for (op, name) in OPS {
        let (mut all_s, mut all_c, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            let offset = r as u64 * calls;
            let (s, c) = if r % 2 == 0 {
                let s = round(&server, op, calls, offset).await?;
                (s, round(&cluster, op, calls, offset).await?)
            } else {
                let c = round(&cluster, op, calls, offset).await?;
                (round(&server, op, calls, offset).await?, c)
            };
            ratios.push(pct(&c, 0.5) as f64 / pct(&s, 0.5).max(1) as f64);
            all_s.extend(s);
            all_c.extend(c);
        }
        all_s.sort_unstable();
        all_c.sort_unstable();
        ratios.sort_by(f64::total_cmp);
        println!(
            "| {name} | {} | {} | {} | {} | {:.2}x ({:.2}-{:.2}) |",
            us(pct(&all_s, 0.5)),
            us(pct(&all_s, 0.99)),
            us(pct(&all_c, 0.5)),
            us(pct(&all_c, 0.99)),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redis-ab: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis-ab: {e}");
            ExitCode::FAILURE
        }
    }
}
