//! `storefront evolve`: each stage in turn as a child process, the same load against
//! each, and the comparison written to `docs/evolution.md` (table, chart, and what
//! each stage changed).
//!
//! Over 800 lines: the runner (starting a stage's processes, measuring it) and the
//! page it writes live together, with their tests; each stage's prose is in its
//! `about.md` and the figures are the contract's. The runner and the page part
//! when the tools become a crate of their own (issue 16).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use super::http::HttpClient;
use super::stats::{ms, Report};
use super::svg::{chart, Panel};
use super::{LoadOptions, Loadgen};
use crate::config::{self, BuiltinStage, StageConfig};
use storefront_contract::ops::{Snapshot, TierTotals, Totals};

/// How long a stage may take to answer `/readyz` (it may seed its catalog first).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A stage's server running as a child process, in a temporary data dir, with a
/// PostgreSQL schema and Redis namespace of its own. Killed when dropped.
#[derive(Debug)]
pub struct StageServer {
    child: Child,
    /// Where it answers, like `http://127.0.0.1:41234`.
    pub url: String,
    /// The stage.
    pub config: StageConfig,
    dir: tempfile::TempDir,
    /// The databases (URLs) holding a schema of this run's, and its name.
    schema: Option<(Vec<String>, String)>,
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

    /// The last lines the server logged.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("server.log"))
    }

    /// Stops the server (SIGTERM, so a stage-4 gateway stops its instances too;
    /// SIGKILL after 15 s) and drops its PostgreSQL schema.
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
        if let Some((urls, schema)) = self.schema.take() {
            for url in urls {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let _ = conn
                        .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                        .await;
                }
            }
        }
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

/// The built-in stage `number`, or an error that lists the stages.
pub fn builtin_stage(number: u32) -> Result<&'static BuiltinStage, String> {
    BuiltinStage::find(number).ok_or_else(|| {
        format!(
            "stage {number} is not built into this storefront: it has stages 1 to {} (`storefront stages` lists them)",
            config::BUILTIN.len()
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

/// The gateway's per-client rate and burst under evolve (one address plays every
/// customer).
const UNLIMITED: i64 = 1_000_000_000;

/// Starts stage `number` with `current_exe() serve` on a free port, with a fresh
/// data dir, PostgreSQL schema and Redis namespace, and waits until `/readyz`
/// answers.
pub async fn launch_stage(number: u32) -> Result<StageServer, String> {
    let builtin = builtin_stage(number)?;
    let (origin, text) = (builtin.origin(), builtin.file);
    let config = StageConfig::parse(&origin, text).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary dir: {e}"))?;
    let tag = format!(
        "evolve_{}_{}_{number}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000)
            .unwrap_or(0)
    );
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    // Every PostgreSQL database the stage names (its `[database]`, and from stage 6
    // on its domain and shard databases) gets a fresh schema, dropped at the end.
    // Replica servers are left as they are: the schema replicates to them.
    if let Some(url) = config.database.postgres_url() {
        if let Some(db) = doc.get_mut("database").and_then(toml::Value::as_table_mut) {
            db.insert("url".into(), toml::Value::String(url));
            db.remove("url_env");
        }
    }
    if let Some(sharding) = &config.sharding {
        if let Some(table) = doc.get_mut("sharding").and_then(toml::Value::as_table_mut) {
            table.insert("url".into(), toml::Value::String(sharding.server_url()));
            table.remove("url_env");
        }
    }
    let mut schemas = Vec::new();
    for (key, value) in doc.iter_mut() {
        if key != "replicas" {
            isolate_postgres(value, &tag, &mut schemas);
        }
    }
    for url in &schemas {
        conn_create_schema(url, &tag, number).await?;
    }
    // The shard databases are named, not given as URLs: each gets the schema too
    // (the server URL above carries the search_path to all of them).
    if let Some(sharding) = &config.sharding {
        let server = sharding.server_url();
        for name in sharding.all_databases() {
            let url = with_database(&server, &name);
            if !schemas.contains(&url) {
                conn_create_schema(&url, &tag, number).await?;
                schemas.push(url);
            }
        }
    }
    let schema = (!schemas.is_empty()).then(|| (schemas, tag.clone()));
    if let Some(cache) = &config.cache {
        if let Some(table) = doc.get_mut("cache").and_then(toml::Value::as_table_mut) {
            table.insert("namespace".into(), toml::Value::String(tag.clone()));
            table.insert("redis_url".into(), toml::Value::String(cache.redis_url()));
            table.remove("redis_url_env");
        }
    }
    // Every customer evolve plays comes from one address: a per-client limit would
    // refuse nearly all of them (429), so it is lifted; the page says so.
    if let Some(table) = doc.get_mut("gateway").and_then(toml::Value::as_table_mut) {
        table.insert("rate_per_sec".into(), toml::Value::Integer(UNLIMITED));
        table.insert("burst".into(), toml::Value::Integer(UNLIMITED));
    }
    // The same for the sign-in attempts per address (the customers log in and sign
    // up from that one address); the per-account limits stay.
    if let Some(table) = doc
        .entry("auth")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
    {
        table.insert(
            "attempts_per_address".into(),
            toml::Value::Integer(UNLIMITED),
        );
        table.insert("attempt_refill_ms".into(), toml::Value::Integer(1));
    }
    let text = toml::to_string(&doc).map_err(|e| format!("{origin}: {e}"))?;
    StageConfig::parse(&origin, &text).map_err(|e| e.to_string())?;
    let config_file = dir.path().join("stage.toml");
    std::fs::write(&config_file, text)
        .map_err(|e| format!("cannot write {}: {e}", config_file.display()))?;
    let port = free_port()?;
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    // A stage that protects its ops routes gets a token of this run's (a gateway
    // passes it on to its instances).
    let ops_token = config
        .ops
        .as_ref()
        .and_then(|o| o.token_env.clone())
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
    let mut server = StageServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
        config,
        dir,
        schema,
        ops_token: ops_token.map(|(_, token)| token),
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

async fn conn_create_schema(url: &str, tag: &str, number: u32) -> Result<(), String> {
    let mut conn = PgConnection::connect(url).await.map_err(|e| {
        format!("stage {number} needs PostgreSQL: cannot connect to {url} (storefront services up starts it): {e}")
    })?;
    conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {tag}").as_str())
        .await
        .map_err(|e| format!("cannot create schema {tag} in {url}: {e}"))?;
    let _ = conn.close().await;
    Ok(())
}

/// `url` with its database replaced by `database` (the query string is kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

/// Points every PostgreSQL database URL in a stage file (a string starting with
/// `postgres://` and naming a database) at schema `tag` through `search_path`,
/// collecting the URLs (without the option) in `urls`. The caller skips the
/// `replicas` table: replica servers are read-only and get the schema by
/// replication.
fn isolate_postgres(value: &mut toml::Value, tag: &str, urls: &mut Vec<String>) {
    match value {
        toml::Value::String(s) if is_database_url(s) => {
            if !urls.contains(s) {
                urls.push(s.clone());
            }
            let sep = if s.contains('?') { '&' } else { '?' };
            *s = format!("{s}{sep}options=-c%20search_path%3D{tag}");
        }
        toml::Value::Array(items) => {
            for item in items {
                isolate_postgres(item, tag, urls);
            }
        }
        toml::Value::Table(table) => {
            for (_, item) in table.iter_mut() {
                isolate_postgres(item, tag, urls);
            }
        }
        _ => {}
    }
}

fn is_database_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
    else {
        return false;
    };
    let path = rest.split('?').next().unwrap_or("");
    path.split_once('/').is_some_and(|(_, db)| !db.is_empty())
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
        Self {
            db_per_request: (requests > 0).then(|| db as f64 / requests as f64),
            hit_ratio,
            l1_ratio,
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
}

/// Orders per shard database (stage 7), empty when the stage is not sharded.
pub fn shard_rows(snapshot: &Snapshot) -> Vec<(String, u64)> {
    snapshot
        .shards
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
    number: u32,
    options: &LoadOptions,
    warmup: Duration,
    duration: Duration,
) -> Result<(StageResult, String), String> {
    let server = launch_stage(number).await?;
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
                title: server.config.stage.title.clone(),
                report,
                ops,
                primary_qps: ops
                    .primary_ops
                    .filter(|_| seconds > 0.0)
                    .map(|n| n as f64 / seconds),
                shard_rows,
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

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_owned(), f)
}

/// The page: how it was measured, the table, the chart and a paragraph per stage.
pub fn page(
    info: &RunInfo,
    machine: &str,
    date: &str,
    results: &[StageResult],
    svg_name: &str,
) -> String {
    let mut out = String::new();
    header(&mut out, info, machine, date);
    summary_table(&mut out, results);
    let _ = writeln!(
        out,
        "\nLatency counts from when a request was meant to be sent. DB queries per request and the cache hit ratio come from the server's `/ops/data.json` counters before and after the measured window (n/a: the stage does not publish them); the hit ratio is the share of cache lookups answered by L1, or by Redis after an L1 miss. Primary statements a second count every read and write the PostgreSQL primary ran for the shop over the measured window (stage 1's SQLite is not counted); reads on replicas is the share of PostgreSQL reads that streaming replicas answered (stage 5 on). Checkouts refused because an item sold out (Zipf demand empties the popular products' stock) are answers, not errors.\n"
    );
    let _ = writeln!(
        out,
        "![Requests per second and latency by stage]({svg_name})\n"
    );
    route_table(&mut out, results);
    let mut previous: Option<&StageResult> = None;
    for r in results {
        let _ = writeln!(out, "## {}. {}\n", r.number, r.title);
        let _ = writeln!(out, "{}\n", stage_paragraph(r, previous));
        previous = Some(r);
    }
    out
}

/// The title and how the run was made.
fn header(out: &mut String, info: &RunInfo, machine: &str, date: &str) {
    let _ = writeln!(out, "# The evolution, measured\n");
    let _ = writeln!(
        out,
        "Each stage of the storefront started in turn and put under the same load. This page is written by the command below; do not edit it by hand, run it again.\n"
    );
    let _ = writeln!(out, "- Command: `{}`", info.command);
    let _ = writeln!(out, "- Machine: {machine}");
    let _ = writeln!(out, "- Date: {date}");
    let _ = writeln!(
        out,
        "- Load: {}; {} s warm-up, then {} s measured. Each stage starts empty (its own SQLite file, PostgreSQL schema and Redis namespace) and seeds its demo catalog and accounts itself.\n",
        info.load,
        info.warmup.as_secs_f64(),
        info.duration.as_secs_f64()
    );
}

/// One row per stage: throughput, latency, errors and the ops figures.
fn summary_table(out: &mut String, results: &[StageResult]) {
    let _ = writeln!(
        out,
        "| stage | requests/s | p50 ms | p99 ms | errors | DB queries/request | cache hit ratio | primary statements/s | reads on replicas |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in results {
        let t = &r.report.total;
        let _ = writeln!(
            out,
            "| {}. {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            r.number,
            r.title,
            t.rps,
            ms(t.p50_ms),
            ms(t.p99_ms),
            t.errors,
            opt(r.ops.db_per_request, |v| format!("{v:.2}")),
            opt(r.ops.hit_ratio, |v| format!("{:.1}%", v * 100.0)),
            opt(r.primary_qps, |v| format!("{v:.0}")),
            opt(r.ops.replica_share, |v| format!("{:.1}%", v * 100.0)),
        );
    }
}

/// p50 / p99 per route (rows) and stage (columns).
fn route_table(out: &mut String, results: &[StageResult]) {
    let _ = writeln!(out, "## Latency by route (p50 / p99 ms)\n");
    let mut names: Vec<String> = Vec::new();
    for r in results {
        for row in &r.report.steps {
            if !names.contains(&row.name) {
                names.push(row.name.clone());
            }
        }
    }
    let _ = write!(out, "| route |");
    for r in results {
        let _ = write!(out, " stage {} |", r.number);
    }
    let _ = write!(out, "\n| --- |");
    for _ in results {
        let _ = write!(out, " ---: |");
    }
    out.push('\n');
    for name in &names {
        let _ = write!(out, "| `{name}` |");
        for r in results {
            match r.report.steps.iter().find(|s| &s.name == name) {
                Some(s) => {
                    let _ = write!(out, " {} / {} |", ms(s.p50_ms), ms(s.p99_ms));
                }
                None => out.push_str(" |"),
            }
        }
        out.push('\n');
    }
    out.push('\n');
}

/// A stage's paragraph: what it adds (its about.md), what was measured, the
/// change against the stage before, and why it may not help here when it did
/// not.
fn stage_paragraph(r: &StageResult, previous: Option<&StageResult>) -> String {
    let (mut para, why) = BuiltinStage::find(r.number)
        .map(BuiltinStage::about)
        .unwrap_or_default();
    let t = &r.report.total;
    let _ = write!(
        para,
        "{}Measured: {:.0} requests/s, p50 {} ms, p99 {} ms, {} errors",
        if para.is_empty() { "" } else { " " },
        t.rps,
        ms(t.p50_ms),
        ms(t.p99_ms),
        t.errors
    );
    if let Some(db) = r.ops.db_per_request {
        let _ = write!(para, ", {db:.2} database queries per request");
    }
    if let Some(h) = r.ops.hit_ratio {
        let _ = write!(para, ", {:.1}% of cache lookups hit", h * 100.0);
    }
    if let Some(q) = r.primary_qps {
        let _ = write!(
            para,
            ", {q:.0} statements a second on the PostgreSQL primary"
        );
    }
    if let Some(share) = r.ops.replica_share.filter(|&s| s > 0.0) {
        let _ = write!(para, ", {:.1}% of reads on replicas", share * 100.0);
    }
    if !r.shard_rows.is_empty() {
        let rows: Vec<String> = r
            .shard_rows
            .iter()
            .map(|(db, n)| format!("{db} {n}"))
            .collect();
        let _ = write!(
            para,
            ", orders per shard database at the end: {}",
            rows.join(", ")
        );
    }
    let Some(p) = previous else {
        para.push('.');
        return para;
    };
    let before = p.report.total.rps.max(f64::MIN_POSITIVE);
    let change = (t.rps / before - 1.0) * 100.0;
    let _ = write!(
        para,
        " ({change:+.0}% requests/s against stage {}",
        p.number
    );
    if let (Some(a), Some(b)) = (r.ops.db_per_request, p.ops.db_per_request) {
        let _ = write!(para, "; DB queries per request {b:.2} → {a:.2}");
    }
    if let (Some(a), Some(b)) = (r.primary_qps, p.primary_qps) {
        let _ = write!(para, "; primary statements a second {b:.0} → {a:.0}");
    }
    para.push_str(").");
    if t.rps < before * 1.05 && !why.is_empty() {
        let _ = write!(para, "\n\nWhy it does not help here: {why}");
    }
    para
}

/// The chart: requests per second, and p50 / p99, per stage.
pub fn evolution_chart(results: &[StageResult]) -> String {
    let label = |r: &StageResult| format!("{}. {}", r.number, r.title);
    chart(
        "The storefront, stage by stage",
        &[
            Panel::Bars {
                title: "Requests per second".into(),
                series: vec!["req/s".into()],
                groups: results
                    .iter()
                    .map(|r| (label(r), vec![r.report.total.rps]))
                    .collect(),
                unit: "req/s".into(),
            },
            Panel::Bars {
                title: "Latency".into(),
                series: vec!["p50".into(), "p99".into()],
                groups: results
                    .iter()
                    .map(|r| (label(r), vec![r.report.total.p50_ms, r.report.total.p99_ms]))
                    .collect(),
                unit: "ms".into(),
            },
        ],
    )
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

/// Writes the page and its chart; the chart goes next to the page, `svg` names it.
pub fn write_page(
    out: &Path,
    svg: Option<PathBuf>,
    info: &RunInfo,
    results: &[StageResult],
) -> Result<PathBuf, String> {
    let svg = svg.unwrap_or_else(|| out.with_extension("svg"));
    let svg_name = svg
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "evolution.svg".into());
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&svg, evolution_chart(results))
        .map_err(|e| format!("cannot write {}: {e}", svg.display()))?;
    std::fs::write(out, page(info, &info.machine, &today(), results, &svg_name))
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::super::stats::Row;
    use super::*;

    fn result(number: u32, rps: f64, db: Option<f64>, shards: bool) -> StageResult {
        let row = |name: &str, p50_ms| Row {
            name: name.to_owned(),
            count: 100,
            errors: 0,
            sold_out: 0,
            p50_ms,
            p90_ms: p50_ms * 2.0,
            p99_ms: p50_ms * 4.0,
            max_ms: p50_ms * 8.0,
            rps,
        };
        StageResult {
            number,
            title: format!("Stage {number}"),
            report: Report {
                steps: vec![row("home", 1.5), row(&format!("only-{number}"), 2.0)],
                total: row("all", 1.7),
                seconds: 10.0,
                timeline: Vec::new(),
                error_kinds: Vec::new(),
            },
            ops: OpsDelta {
                db_per_request: db,
                ..OpsDelta::default()
            },
            primary_qps: db.map(|d| d * rps),
            shard_rows: if shards {
                vec![("orders_0".into(), 4), ("orders_1".into(), 6)]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn the_page_has_the_tables_and_a_paragraph_per_stage() {
        let info = RunInfo {
            command: "storefront evolve".into(),
            load: "closed loop".into(),
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            machine: "m".into(),
        };
        let results = [
            result(1, 1000.0, None, false),
            result(2, 600.0, Some(2.5), false),
            result(7, 900.0, Some(1.5), true),
        ];
        let page = page(&info, "2 cores", "2026-12-07", &results, "evolution.svg");
        assert!(page.starts_with("# The evolution, measured\n"));
        assert!(page.contains("| 2. Stage 2 | 600 | 1.70 | 6.80 | 0 | 2.50 | n/a | 1500 | n/a |"));
        assert!(page.contains("| route | stage 1 | stage 2 | stage 7 |"));
        assert!(page.contains("| `only-2` | | 2.00 / 8.00 | |"));
        // Stage 2's about.md, its figures, the change, and why it did not help.
        let two = &page[page.find("## 2. Stage 2").unwrap_or_default()..];
        assert!(two.contains("The data moves to PostgreSQL over TCP."));
        assert!(two.contains("(-40% requests/s against stage 1)."));
        assert!(two.contains("Why it does not help here: Here PostgreSQL runs"));
        let seven = &page[page.find("## 7. Stage 7").unwrap_or_default()..];
        assert!(seven.contains("orders per shard database at the end: orders_0 4, orders_1 6"));
        assert!(seven.contains("DB queries per request 2.50 → 1.50"));
        assert!(
            !seven.contains("Why it does not help here"),
            "stage 7 gained 50%"
        );
    }

    use storefront_contract::ops::replicas::ReadSplit;
    use storefront_contract::ops::CacheTotals;

    #[test]
    fn every_database_url_gets_the_run_schema_and_replicas_are_left_alone() {
        let mut doc: toml::Table = toml::from_str(
            r#"
            [database]
            url = "postgres://postgres@127.0.0.1:5434/storefront"
            [domains]
            users = "postgres://postgres@127.0.0.1:5434/u?sslmode=disable"
            [sharding]
            databases = ["postgres://p@h:1/s0", "postgres://p@h:1/s0"]
            [replicas]
            servers = ["postgres://postgres@127.0.0.1:5433/x"]
            [cache]
            redis_url = "redis://127.0.0.1:6379"
            other = "postgres://postgres@127.0.0.1:5434"
            "#,
        )
        .unwrap();
        let mut urls = Vec::new();
        for (key, value) in doc.iter_mut() {
            if key != "replicas" {
                isolate_postgres(value, "t1", &mut urls);
            }
        }
        assert_eq!(
            urls,
            [
                "postgres://postgres@127.0.0.1:5434/storefront",
                "postgres://postgres@127.0.0.1:5434/u?sslmode=disable",
                "postgres://p@h:1/s0",
            ]
        );
        let text = toml::to_string(&doc).unwrap();
        assert!(
            text.contains("5434/storefront?options=-c%20search_path%3Dt1"),
            "{text}"
        );
        assert!(
            text.contains("/u?sslmode=disable&options=-c%20search_path%3Dt1"),
            "{text}"
        );
        assert!(
            text.contains("\"postgres://postgres@127.0.0.1:5433/x\""),
            "{text}"
        );
        assert!(
            text.contains("\"postgres://postgres@127.0.0.1:5434\""),
            "server URL kept: {text}"
        );
    }

    #[test]
    fn stage_lists_parse() {
        assert_eq!(parse_stages("1-4"), Ok(vec![1, 2, 3, 4]));
        assert_eq!(parse_stages("3"), Ok(vec![3]));
        assert_eq!(parse_stages("1, 3-4"), Ok(vec![1, 3, 4]));
        for bad in ["", "0-2", "4-1", "a", "1-", "1-1000"] {
            assert!(parse_stages(bad).is_err(), "{bad}");
        }
        let err = builtin_stage(99).err().unwrap_or_default();
        assert!(
            err.contains("stage 99 is not built into this storefront"),
            "{err}"
        );
        assert!(builtin_stage(1).is_ok());
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
