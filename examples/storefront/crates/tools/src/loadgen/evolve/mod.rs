//! `storefront evolve`: each stage in turn as a child process, the same load against
//! each, and the comparison written to `docs/evolution.md` (table, chart, and what
//! each stage changed).
//!
//! The runner is here; the page it writes is in [`page`]. What it knows of the
//! stages (which exist, their prose, a stage file ready for one run) comes
//! through a [`StageCatalog`].

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::HttpClient;
use super::stats::Report;
use super::{LoadOptions, Loadgen};
use crate::stages::{About, Prepared, StageCatalog};
use storefront_contract::ops::shards::ShardsView;
use storefront_contract::ops::{Snapshot, TierTotals, Totals};

pub mod calibrate;
pub mod demand;
pub mod miniature;
mod page;
pub mod page_machines;
pub use page::{evolution_chart, page, write_page, MachinesPage};

/// How long a stage may take to answer `/readyz` (it may seed its catalog first).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A stage's server running as a child process, in a temporary data dir, with a
/// PostgreSQL schema and Redis namespace of its own. Killed when dropped.
#[derive(Debug)]
pub struct StageServer {
    child: Child,
    /// Where it answers, like `http://127.0.0.1:41234`.
    pub url: String,
    /// The stage's title.
    pub title: String,
    dir: tempfile::TempDir,
    /// The stage file as prepared for this run, and who undoes it.
    prepared: Prepared,
    catalog: Arc<dyn StageCatalog>,
    /// The token of its ops routes, when the stage protects them.
    ops_token: Option<String>,
}

impl Drop for StageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StageServer {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client for the server's ops routes (`/ops/data.json`), with this run's
    /// token when the stage protects them; `timeout` bounds each request.
    pub fn ops_client(&self, timeout: Duration) -> Result<HttpClient, String> {
        let http = HttpClient::new(&self.url, timeout)?;
        Ok(match &self.ops_token {
            Some(token) => http.with_authorization(format!("Bearer {token}")),
            None => http,
        })
    }

    /// The stage file it runs with.
    pub fn stage_text(&self) -> &str {
        &self.prepared.text
    }

    /// The last lines the server logged.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("server.log"))
    }

    /// Stops the server (SIGTERM, so a stage-4 gateway stops its instances too;
    /// SIGKILL after 15 s) and undoes what [`StageCatalog::prepare`] made (its
    /// PostgreSQL schemas).
    pub async fn stop(mut self) {
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while std::time::Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.catalog.release(&self.prepared).await;
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// The prose of built-in stage `number`, or an error that lists the stages.
pub fn builtin_stage(catalog: &dyn StageCatalog, number: u32) -> Result<About, String> {
    catalog.about(number).ok_or_else(|| {
        let numbers = catalog.numbers();
        format!(
            "stage {number} is not built into this storefront: it has stages {} to {} (`storefront stages` lists them)",
            numbers.first().copied().unwrap_or(0),
            numbers.last().copied().unwrap_or(0),
        )
    })
}

/// A fresh token for the ops routes of a stage this run starts: 32 bytes from
/// the operating system, in hex.
fn ops_token() -> Result<String, String> {
    use rand::{rngs::OsRng, TryRngCore};
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| format!("cannot draw the ops token from the operating system: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Parses `1-4`, `3`, `1,3` or `1-2,4` into stage numbers, in order.
pub fn parse_stages(text: &str) -> Result<Vec<u32>, String> {
    let bad = || format!("--stages {text:?}: give stage numbers like 1-4, 3 or 1,3");
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: u32 = a.parse().map_err(|_| bad())?;
        let b: u32 = b.parse().map_err(|_| bad())?;
        if a == 0 || b < a || b - a > 100 {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// Starts stage `number` with `current_exe() serve` on a free port, with a fresh
/// data dir and the stage file `catalog` prepared for this run (PostgreSQL
/// schemas and a Redis namespace of its own), and waits until `/readyz` answers.
pub async fn launch_stage(
    catalog: &Arc<dyn StageCatalog>,
    number: u32,
) -> Result<StageServer, String> {
    launch_stage_edited(catalog, number, &|text| Ok(text.to_owned())).await
}

/// [`launch_stage`] with the prepared stage file passed through `edit` first
/// (another instance count, say).
pub async fn launch_stage_edited(
    catalog: &Arc<dyn StageCatalog>,
    number: u32,
    edit: &(dyn Fn(&str) -> Result<String, String> + Sync),
) -> Result<StageServer, String> {
    let about = builtin_stage(catalog.as_ref(), number)?;
    let tag = format!(
        "evolve_{}_{}_{number}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000)
            .unwrap_or(0)
    );
    let mut prepared = catalog.prepare(number, &tag).await?;
    match edit(&prepared.text) {
        Ok(text) => prepared.text = text,
        Err(e) => {
            catalog.release(&prepared).await;
            return Err(e);
        }
    }
    match spawn_stage(number, &prepared) {
        Ok((child, url, dir, ops_token)) => {
            let mut server = StageServer {
                child,
                url,
                title: about.title,
                dir,
                prepared,
                catalog: Arc::clone(catalog),
                ops_token,
            };
            match wait_ready(&mut server.child, &server.url, READY_TIMEOUT).await {
                Ok(()) => Ok(server),
                Err(e) => {
                    let tail = server.log_tail();
                    server.stop().await;
                    Err(format!("stage {number}: {e}; its log ends with:\n{tail}"))
                }
            }
        }
        Err(e) => {
            catalog.release(&prepared).await;
            Err(e)
        }
    }
}

/// The stage's process: its stage file written to a fresh data dir, its log
/// there too, a free port, and this run's ops token when the stage protects its
/// ops routes (a gateway passes it on to its instances).
#[allow(clippy::type_complexity)]
fn spawn_stage(
    number: u32,
    prepared: &Prepared,
) -> Result<(Child, String, tempfile::TempDir, Option<String>), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary dir: {e}"))?;
    let config_file = dir.path().join("stage.toml");
    std::fs::write(&config_file, &prepared.text)
        .map_err(|e| format!("cannot write {}: {e}", config_file.display()))?;
    let port = free_port()?;
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let ops_token = prepared
        .ops_token_env
        .clone()
        .map(|env| ops_token().map(|token| (env, token)))
        .transpose()?;
    let mut command = Command::new(exe);
    if let Some((env, token)) = &ops_token {
        command.env(env, token);
    }
    let child = command
        .arg("serve")
        .args(["--stage", &number.to_string()])
        .arg("--config")
        .arg(&config_file)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .map_err(|e| format!("cannot start stage {number}: {e}"))?;
    Ok((
        child,
        format!("http://127.0.0.1:{port}"),
        dir,
        ops_token.map(|(_, token)| token),
    ))
}

/// Waits until `url/readyz` answers 200, the child exits, or `timeout` passes.
pub async fn wait_ready(child: &mut Child, url: &str, timeout: Duration) -> Result<(), String> {
    let http = HttpClient::new(url, Duration::from_secs(2))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited ({status}) before it was ready"));
        }
        if let Ok(a) = http.get("/readyz", None).await {
            if a.status == 200 {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not ready after {} s ({url}/readyz)",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The target's figures, `GET /ops/data.json`, or `None` when it has no ops
/// page (or answers something that is not a [`Snapshot`]).
pub async fn fetch_snapshot(http: &HttpClient) -> Option<Snapshot> {
    let answer = http.get("/ops/data.json", None).await.ok()?;
    if answer.status != 200 {
        return None;
    }
    serde_json::from_slice(&answer.body).ok()
}

/// What changed between two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpsDelta {
    /// Database queries per request served.
    pub db_per_request: Option<f64>,
    /// Share of cache lookups answered by a tier (L1, or L2 after an L1 miss).
    pub hit_ratio: Option<f64>,
    /// Share of lookups answered by L1.
    pub l1_ratio: Option<f64>,
    /// Cache lookups per request that no tier answered (each one a database
    /// read).
    pub misses_per_request: Option<f64>,
    /// Statements on the PostgreSQL primary (reads and writes) in the window.
    pub primary_ops: Option<u64>,
    /// Share of PostgreSQL reads answered by replicas.
    pub replica_share: Option<f64>,
}

impl OpsDelta {
    /// The change from `before` to `after` (each `None` when the target has no
    /// ops page).
    pub fn between(before: Option<&Totals>, after: Option<&Totals>) -> Self {
        let (Some(b), Some(a)) = (before, after) else {
            return Self::default();
        };
        let requests = a.requests.saturating_sub(b.requests);
        let db = a.db_queries.saturating_sub(b.db_queries);
        let d = |x: Option<TierTotals>, y: Option<TierTotals>| match (x, y) {
            (Some(x), Some(y)) => Some((
                y.hits.saturating_sub(x.hits),
                y.misses.saturating_sub(x.misses),
            )),
            _ => None,
        };
        let (l1, l2) = (d(b.cache.l1, a.cache.l1), d(b.cache.l2, a.cache.l2));
        let ratio = |hits: u64, lookups: u64| (lookups > 0).then(|| hits as f64 / lookups as f64);
        let l1_ratio = l1.and_then(|(h, m)| ratio(h, h + m));
        let hit_ratio = match (l1, l2) {
            (Some((h1, m1)), Some((h2, _))) => ratio(h1 + h2, h1 + m1),
            (Some((h, m)), None) | (None, Some((h, m))) => ratio(h, h + m),
            (None, None) => None,
        };
        // A stage without PostgreSQL counts no reads: no split.
        let counted = |t: &Totals| (!t.reads.is_zero()).then_some(t.reads);
        let split = match (counted(b), counted(a)) {
            (Some(x), Some(y)) => Some(y.since(&x)),
            (None, Some(y)) => Some(y),
            _ => None,
        }
        .map(|s| (s.replica_reads, s.primary_reads, s.primary_writes));
        let misses = match (l1, l2) {
            (Some((_, m1)), Some((h2, _))) => Some(m1.saturating_sub(h2)),
            (Some((_, m)), None) | (None, Some((_, m))) => Some(m),
            (None, None) => None,
        };
        Self {
            db_per_request: (requests > 0).then(|| db as f64 / requests as f64),
            hit_ratio,
            l1_ratio,
            misses_per_request: misses
                .filter(|_| requests > 0)
                .map(|m| m as f64 / requests as f64),
            primary_ops: split.map(|(_, p, w)| p + w),
            replica_share: split.and_then(|(r, p, _)| ratio(r, r + p)),
        }
    }
}

/// One stage's figures.
#[derive(Clone, Debug)]
pub struct StageResult {
    /// The stage number.
    pub number: u32,
    /// Its title.
    pub title: String,
    /// The load's report.
    pub report: Report,
    /// From the ops counters.
    pub ops: OpsDelta,
    /// Statements a second on the PostgreSQL primary over the measured window.
    pub primary_qps: Option<f64>,
    /// Orders per shard database at the end (stage 7).
    pub shard_rows: Vec<(String, u64)>,
    /// What the stage adds, and why it may not pay here (its `about.md`).
    pub about: About,
}

/// Orders per shard database (stage 7), empty when the stage is not sharded.
pub fn shard_rows(snapshot: &Snapshot) -> Vec<(String, u64)> {
    snapshot
        .part::<ShardsView>()
        .iter()
        .flat_map(|s| &s.rows)
        .filter_map(|r| Some((r.database.clone(), u64::try_from(r.orders).ok()?)))
        .collect()
}

/// How the run was made, for the page.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// The command line.
    pub command: String,
    /// The load in words.
    pub load: String,
    /// Warm-up and measured seconds.
    pub warmup: Duration,
    /// Measured length.
    pub duration: Duration,
    /// The machine, from [`machine`] at the start of the run.
    pub machine: String,
}

/// Starts stage `number`, warms it up, measures it, stops it.
pub async fn measure_stage(
    catalog: &Arc<dyn StageCatalog>,
    number: u32,
    options: &LoadOptions,
    warmup: Duration,
    duration: Duration,
) -> Result<(StageResult, String), String> {
    let server = launch_stage(catalog, number).await?;
    let about = catalog.about(number).unwrap_or_default();
    let result = async {
        let mut opts = options.clone();
        opts.target = server.url.clone();
        let load = Loadgen::connect(opts).await?;
        if !warmup.is_zero() {
            load.run(warmup, Some(&format!("{number} warm-up"))).await;
        }
        let ops_http = server.ops_client(Duration::from_secs(5))?;
        let before = fetch_snapshot(&ops_http).await;
        let started = Instant::now();
        let report = load.run(duration, Some(&format!("stage {number}"))).await;
        let seconds = started.elapsed().as_secs_f64();
        let after = fetch_snapshot(&ops_http).await;
        let ops = OpsDelta::between(
            before.as_ref().map(|s| &s.totals),
            after.as_ref().map(|s| &s.totals),
        );
        let shard_rows = after.as_ref().map(shard_rows).unwrap_or_default();
        Ok::<_, String>((
            StageResult {
                number,
                title: server.title.clone(),
                report,
                ops,
                primary_qps: ops
                    .primary_ops
                    .filter(|_| seconds > 0.0)
                    .map(|n| n as f64 / seconds),
                shard_rows,
                about,
            },
            load.describe(),
        ))
    }
    .await;
    let result = match result {
        Ok(r) => Ok(r),
        Err(e) => Err(format!(
            "stage {number}: {e}; its log ends with:\n{}",
            server.log_tail()
        )),
    };
    server.stop().await;
    result
}

/// `nproc`, the CPU model and the load average, for reports.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .map(|l| format!("; load average {l} at the start (other processes share it)"))
        .unwrap_or_default();
    format!("{cpus} CPUs (nproc), {model}{load}")
}

/// Today, for reports.
pub fn today() -> String {
    storefront_contract::time::date(storefront_contract::time::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_contract::ops::replicas::ReadSplit;
    use storefront_contract::ops::CacheTotals;

    #[test]
    fn stage_lists_parse() {
        assert_eq!(parse_stages("1-4"), Ok(vec![1, 2, 3, 4]));
        assert_eq!(parse_stages("3"), Ok(vec![3]));
        assert_eq!(parse_stages("1, 3-4"), Ok(vec![1, 3, 4]));
        for bad in ["", "0-2", "4-1", "a", "1-", "1-1000"] {
            assert!(parse_stages(bad).is_err(), "{bad}");
        }
        let err = builtin_stage(&TwoStages, 99).err().unwrap_or_default();
        assert_eq!(
            err,
            "stage 99 is not built into this storefront: it has stages 1 to 2 (`storefront stages` lists them)"
        );
        assert_eq!(
            builtin_stage(&TwoStages, 1).map(|a| a.title),
            Ok("One".into())
        );
    }

    /// A catalog of two stages that cannot be run.
    #[derive(Debug)]
    struct TwoStages;

    #[async_trait::async_trait]
    impl StageCatalog for TwoStages {
        fn numbers(&self) -> Vec<u32> {
            vec![1, 2]
        }

        fn about(&self, number: u32) -> Option<About> {
            let title = match number {
                1 => "One",
                2 => "Two",
                _ => return None,
            };
            Some(About {
                title: title.into(),
                ..About::default()
            })
        }

        async fn prepare(&self, number: u32, _: &str) -> Result<Prepared, String> {
            Err(format!("stage {number} cannot run here"))
        }

        async fn release(&self, _: &Prepared) {}
    }

    #[test]
    fn ops_counters_give_queries_per_request_and_hit_ratio() {
        let tier = |hits, misses| Some(TierTotals { hits, misses });
        let totals = |requests, db_queries, l1, l2| Totals {
            requests,
            db_queries,
            cache: CacheTotals {
                l1,
                l2,
                l2_faults: None,
            },
            ..Totals::default()
        };
        let before = totals(100, 300, tier(10, 10), tier(5, 5));
        let after = totals(1100, 800, tier(810, 210), tier(105, 105));
        let d = OpsDelta::between(Some(&before), Some(&after));
        assert_eq!(d.db_per_request, Some(0.5));
        assert_eq!(d.l1_ratio, Some(0.8));
        // 800 L1 hits + 100 L2 hits of 1000 lookups.
        assert_eq!(d.hit_ratio, Some(0.9));
        // 200 L1 misses, of which Redis answered 100: 100 reads in 1000 requests.
        assert_eq!(d.misses_per_request, Some(0.1));
        assert_eq!((d.primary_ops, d.replica_share), (None, None));
        // No caches: no ratio; no ops page: nothing.
        let plain = |r, q| totals(r, q, None, None);
        let d = OpsDelta::between(Some(&plain(0, 0)), Some(&plain(10, 30)));
        assert_eq!((d.db_per_request, d.hit_ratio), (Some(3.0), None));
        assert_eq!(
            OpsDelta::between(None, Some(&plain(1, 1))),
            OpsDelta::default()
        );
        // Reads counted: the primary's statements and the replicas' share.
        let mut with_reads = plain(10, 30);
        with_reads.reads = ReadSplit {
            replica_reads: 30,
            primary_reads: 10,
            primary_writes: 5,
        };
        let d = OpsDelta::between(Some(&plain(0, 0)), Some(&with_reads));
        assert_eq!((d.primary_ops, d.replica_share), (Some(15), Some(0.75)));
    }
}
