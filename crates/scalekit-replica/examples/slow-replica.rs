//! Linkerd's slow-replica experiment ("Beyond Round Robin: Load Balancing for
//! Latency"), replayed in simulated time: 11 backends, one stuck at 2 s, a 1 s
//! timeout, 1,000 requests a second for 60 seconds. The real `ReplicaSet` does
//! the choosing; tokio's paused clock stands in for the wall clock, so the run
//! takes about a second. Latencies are a fixed function of the request; the
//! two choices are random, so the last digits move a little between runs.
//!
//! ```sh
//! cargo run --release -p scalekit-replica --example slow-replica
//! ```
//!
//! One line per policy: `policy=NAME success=PERCENT p999_ms=MS extra=PERCENT`
//! (success within the 1 s timeout, p99.9 latency with timeouts counted as
//! 1,000 ms, extra requests sent by hedging). Outlier ejection is off so the
//! balancers alone are compared, as in the original experiment.
//! `-- --hedge-ms N` changes the hedge delay (default 150 ms).

use scalekit_core::{mix64, Clock};
use scalekit_replica::{Balance, Budget, Hedge, Member, OutlierDetection, ReplicaSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant};

const BACKENDS: usize = 11;
const STUCK: usize = 10;
const RATE_PER_SEC: u64 = 1_000;
const SECONDS: u64 = 60;
const TIMEOUT: Duration = Duration::from_secs(1);
/// The hedge delay: `--hedge-ms N` (default 150 ms, twice the healthy
/// backends' p99.9: a hedge only for calls far in the tail).
fn hedge_delay() -> Duration {
    let args: Vec<String> = std::env::args().collect();
    let ms = args
        .iter()
        .position(|a| a == "--hedge-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    Duration::from_millis(ms)
}

/// The replica set's clock follows tokio's (paused) clock.
#[derive(Debug)]
struct TokioClock(Instant);

impl Clock for TokioClock {
    fn now_nanos(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// A backend's latency for one attempt: 2 s for the stuck one; otherwise 5 ms
/// plus an exponential tail with a 10 ms mean (p99.9 about 74 ms).
fn latency(backend: usize, request: u64, attempt: u64) -> Duration {
    if backend == STUCK {
        return Duration::from_secs(2);
    }
    let bits =
        mix64(request.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (attempt << 48) ^ backend as u64);
    let u = (bits >> 11) as f64 / (1u64 << 53) as f64;
    Duration::from_secs_f64(0.005 + -(1.0 - u).ln() * 0.010)
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    RoundRobin,
    LeastLoaded,
    PeakEwma,
    PeakEwmaHedged,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::LeastLoaded => "least-loaded-p2c",
            Policy::PeakEwma => "peak-ewma-p2c",
            Policy::PeakEwmaHedged => "peak-ewma-p2c-hedged",
        }
    }
}

struct Figures {
    success: f64,
    p999_ms: f64,
    extra: f64,
}

async fn run(policy: Policy) -> Result<Figures, Box<dyn std::error::Error>> {
    let balance = match policy {
        Policy::RoundRobin => Balance::RoundRobin,
        Policy::LeastLoaded => Balance::LeastLoaded,
        Policy::PeakEwma | Policy::PeakEwmaHedged => Balance::PeakEwma,
    };
    let mut no_ejection = OutlierDetection::default();
    no_ejection.consecutive_failures = None;
    no_ejection.max_ejection_percent = 0;
    let mut builder = ReplicaSet::builder()
        .clock(TokioClock(Instant::now()))
        .balance(balance)
        .outlier_detection(no_ejection);
    for i in 0..BACKENDS {
        builder = builder.member(Member::replica(format!("backend-{i}"), i));
    }
    let set = builder.build()?;
    let hedge = Hedge::new(
        hedge_delay(),
        // The default budget: 10% extra at most, 10 a second floor.
        Arc::new(
            Budget::builder()
                .clock(TokioClock(Instant::now()))
                .build()?,
        ),
    );
    let sent = Arc::new(AtomicU64::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(
        (RATE_PER_SEC * SECONDS) as usize,
    )));
    let mut tasks = Vec::new();
    let total = RATE_PER_SEC * SECONDS;
    for request in 0..total {
        let (set, hedge, sent, results) = (
            set.clone(),
            hedge.clone(),
            Arc::clone(&sent),
            Arc::clone(&results),
        );
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let ok = if policy == Policy::PeakEwmaHedged {
                let mut attempt = 0;
                let call = set.hedged(&hedge, |backend| {
                    attempt += 1;
                    sent.fetch_add(1, Ordering::Relaxed);
                    let wait = latency(backend, request, attempt);
                    async move {
                        sleep(wait).await;
                        Ok::<(), ()>(())
                    }
                });
                matches!(timeout(TIMEOUT, call).await, Ok(Ok(())))
            } else {
                match set.select() {
                    Ok(s) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                        let wait = latency(*s, request, 0);
                        if timeout(TIMEOUT, sleep(wait)).await.is_ok() {
                            s.success();
                            true
                        } else {
                            s.failure();
                            false
                        }
                    }
                    Err(_) => false,
                }
            };
            let elapsed = if ok { start.elapsed() } else { TIMEOUT };
            if let Ok(mut r) = results.lock() {
                r.push((ok, elapsed));
            }
        }));
        sleep(Duration::from_micros(1_000_000 / RATE_PER_SEC)).await;
    }
    for t in tasks {
        t.await?;
    }
    let mut results = std::mem::take(&mut *results.lock().map_err(|_| "a request task panicked")?);
    let n = results.len().max(1);
    let ok = results.iter().filter(|(ok, _)| *ok).count();
    results.sort_by_key(|(_, d)| *d);
    let idx = ((n as f64 * 0.999).ceil() as usize).clamp(1, n) - 1;
    let p999 = results
        .get(idx)
        .map_or(0.0, |(_, d)| d.as_secs_f64() * 1_000.0);
    let sent = sent.load(Ordering::Relaxed);
    Ok(Figures {
        success: ok as f64 * 100.0 / n as f64,
        p999_ms: p999,
        extra: sent.saturating_sub(total) as f64 * 100.0 / total as f64,
    })
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "# {BACKENDS} backends, one stuck at 2 s; 1 s timeout; {RATE_PER_SEC} req/s for {SECONDS} s (simulated); hedge after {} ms within a 10% budget",
        hedge_delay().as_millis()
    );
    for policy in [
        Policy::RoundRobin,
        Policy::LeastLoaded,
        Policy::PeakEwma,
        Policy::PeakEwmaHedged,
    ] {
        let f = run(policy).await?;
        println!(
            "policy={} success={:.3}% p999_ms={:.0} extra={:.3}%",
            policy.name(),
            f.success,
            f.p999_ms,
            f.extra
        );
    }
    Ok(())
}
