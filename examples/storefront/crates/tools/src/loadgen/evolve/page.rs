//! The evolution page `evolve` writes: a header, the summary table, latency by
//! route, and a paragraph per stage (its `about.md` and what was measured
//! against the stage before), with a chart.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::calibrate::OnMachines;
use super::page_machines::{projection_chart, sections, MachineSettings};
use super::{today, RunInfo, StageResult};
use crate::loadgen::stats::ms;
use crate::loadgen::svg::{chart, Panel};

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".to_owned(), f)
}

/// What the stages did on miniature machines, for the page.
#[derive(Clone, Debug)]
pub struct MachinesPage {
    /// Per stage, in the results' order.
    pub on: Vec<OnMachines>,
    /// The machines' size and the projection's assumptions.
    pub settings: MachineSettings,
}

/// The page: how it was measured, the table, the chart and a paragraph per
/// stage; with `machines`, the miniature machines, the model's checks and the
/// projection (its chart is `projection_svg`).
pub fn page(
    info: &RunInfo,
    machine: &str,
    date: &str,
    results: &[StageResult],
    svg_name: &str,
    machines: Option<(&MachinesPage, &str)>,
) -> String {
    let mut out = String::new();
    header(&mut out, info, machine, date);
    if let Some((m, _)) = machines {
        let _ = writeln!(
            out,
            "Every stage ran on miniature machines of {} of a core each (below); the table's figures are its saturating load on them.\n",
            m.settings.cpu
        );
    }
    summary_table(&mut out, results);
    let _ = writeln!(
        out,
        "\nLatency counts from when a request was meant to be sent. DB queries per request and the cache hit ratio come from the server's `/ops/data.json` counters before and after the measured window (n/a: the stage does not publish them); the hit ratio is the share of cache lookups answered by L1, or by Redis after an L1 miss. Primary statements a second count every read and write the PostgreSQL primary ran for the shop over the measured window (stage 1's SQLite is not counted); reads on replicas is the share of PostgreSQL reads that streaming replicas answered (stage 5 on). Checkouts refused because an item sold out (Zipf demand empties the popular products' stock) are answers, not errors.\n"
    );
    let _ = writeln!(
        out,
        "![Requests per second and latency by stage]({svg_name})\n"
    );
    if let Some((m, projection_svg)) = machines {
        out.push_str(&sections(results, &m.on, &m.settings, projection_svg));
    }
    route_table(&mut out, results);
    let mut previous: Option<&StageResult> = None;
    for (i, r) in results.iter().enumerate() {
        let _ = writeln!(out, "## {}. {}\n", r.number, r.title);
        let on = machines.and_then(|(m, _)| m.on.get(i));
        let _ = writeln!(out, "{}\n", stage_paragraph(r, previous, on.is_some()));
        if let Some(on) = on {
            let before = i
                .checked_sub(1)
                .and_then(|j| machines.and_then(|(m, _)| m.on.get(j)));
            let _ = writeln!(out, "{}\n", machines_paragraph(on, before));
        }
        previous = Some(r);
    }
    out
}

/// What a stage carried on miniature machines, against the stage before.
fn machines_paragraph(on: &OnMachines, before: Option<&OnMachines>) -> String {
    let carried = |m: &OnMachines| m.ramp.carried().map(|s| s.customers);
    let mut para = format!("On miniature machines ({} of them): ", on.machines.len());
    match carried(on) {
        Some(n) => {
            let _ = write!(para, "carried {n} customers within the objective");
        }
        None => para.push_str("no population the ramp tried met the objective"),
    }
    if let (Some(now), Some(then)) = (carried(on), before.and_then(carried)) {
        let _ = write!(
            para,
            " ({:+.0}% against stage {})",
            (now as f64 / then.max(1) as f64 - 1.0) * 100.0,
            on.calibration.number.saturating_sub(1)
        );
    }
    if let Some(b) = on.bottleneck() {
        let _ = write!(
            para,
            "; the busiest machine under the saturating load was {} at {:.0}% of its quota; what lifts that limit: {}",
            b.name,
            b.utilization * 100.0,
            super::page_machines::lifted_by(
                on.calibration.number,
                super::calibrate::role_name(&b.name),
                b.kind
            )
        );
    }
    para.push('.');
    para
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
///
/// With `on_machines`, the shared-host caveat is left out: each machine had its
/// own share of the host, and what limits the stage is said from its machines.
fn stage_paragraph(r: &StageResult, previous: Option<&StageResult>, on_machines: bool) -> String {
    let mut para = r.about.adds.clone();
    let why = &r.about.caveat;
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
    if t.rps < before * 1.05 && !why.is_empty() && !on_machines {
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

/// Writes the page and its chart; the chart goes next to the page, `svg` names it.
pub fn write_page(
    out: &Path,
    svg: Option<PathBuf>,
    info: &RunInfo,
    results: &[StageResult],
    machines: Option<&MachinesPage>,
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
    let projection = svg.with_file_name(format!(
        "{}-projection.svg",
        svg.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "evolution".into())
    ));
    let projection_name = projection
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(m) = machines {
        std::fs::write(&projection, projection_chart(&m.on, &m.settings))
            .map_err(|e| format!("cannot write {}: {e}", projection.display()))?;
    }
    let text = page(
        info,
        &info.machine,
        &today(),
        results,
        &svg_name,
        machines.map(|m| (m, projection_name.as_str())),
    );
    std::fs::write(out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::super::OpsDelta;
    use super::*;
    use crate::loadgen::stats::{Report, Row};
    use crate::stages::About;
    use std::time::Duration;

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
            mean_ms: p50_ms * 1.2,
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
            about: About {
                title: format!("Stage {number}"),
                adds: format!("Stage {number} adds a part."),
                caveat: "It costs a hop on one machine.".into(),
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
        let page = page(
            &info,
            "2 cores",
            "2026-12-07",
            &results,
            "evolution.svg",
            None,
        );
        assert!(page.starts_with("# The evolution, measured\n"));
        assert!(page.contains("| 2. Stage 2 | 600 | 1.70 | 6.80 | 0 | 2.50 | n/a | 1500 | n/a |"));
        assert!(page.contains("| route | stage 1 | stage 2 | stage 7 |"));
        assert!(page.contains("| `only-2` | | 2.00 / 8.00 | |"));
        // Stage 2's about.md, its figures, the change, and why it did not help.
        let two = &page[page.find("## 2. Stage 2").unwrap_or_default()..];
        assert!(two.starts_with("## 2. Stage 2\n\nStage 2 adds a part. Measured: 600 requests/s"));
        assert!(two.contains("(-40% requests/s against stage 1)."));
        assert!(two.contains("Why it does not help here: It costs a hop on one machine."));
        let seven = &page[page.find("## 7. Stage 7").unwrap_or_default()..];
        assert!(seven.contains("orders per shard database at the end: orders_0 4, orders_1 6"));
        assert!(seven.contains("DB queries per request 2.50 → 1.50"));
        assert!(
            !seven.contains("Why it does not help here"),
            "stage 7 gained 50%"
        );
    }
}
