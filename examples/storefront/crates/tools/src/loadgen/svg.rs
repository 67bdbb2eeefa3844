//! Charts as SVG text: grouped horizontal bars and a line over time, stacked in
//! panels. Written by hand: a few dozen elements do not need a plotting crate.

use std::fmt::Write as _;

use super::stats::{ms, Report};

const WIDTH: f64 = 760.0;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 70.0;
const COLORS: [&str; 4] = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2"];

/// One panel of a chart.
#[derive(Clone, Debug)]
pub enum Panel {
    /// Groups of bars: a label per group, one bar per series.
    Bars {
        /// Panel title.
        title: String,
        /// Name of each series (legend).
        series: Vec<String>,
        /// (group label, a value per series).
        groups: Vec<(String, Vec<f64>)>,
        /// How to print a value.
        unit: String,
    },
    /// Groups of bars on a log scale (decades marked), for values that span
    /// several orders of magnitude; a value of 0 or less draws no bar.
    LogBars {
        /// Panel title.
        title: String,
        /// Name of each series (legend).
        series: Vec<String>,
        /// (group label, a value per series).
        groups: Vec<(String, Vec<f64>)>,
        /// How to print a value.
        unit: String,
    },
    /// A line: one value per second.
    Line {
        /// Panel title.
        title: String,
        /// The values.
        values: Vec<f64>,
        /// The y axis label.
        unit: String,
    },
}

pub use storefront_contract::markup::escape;

fn number(v: f64) -> String {
    if v >= 1_000.0 {
        format!("{v:.0}")
    } else {
        ms(v)
    }
}

fn panel_height(panel: &Panel) -> f64 {
    match panel {
        Panel::Bars { series, groups, .. } => {
            50.0 + groups.len() as f64 * (series.len() as f64 * 12.0 + 10.0)
        }
        Panel::LogBars { series, groups, .. } => {
            70.0 + groups.len() as f64 * (series.len() as f64 * 12.0 + 10.0)
        }
        Panel::Line { .. } => 170.0,
    }
}

/// The chart: a title over the panels, stacked.
pub fn chart(title: &str, panels: &[Panel]) -> String {
    let height = 40.0 + panels.iter().map(panel_height).sum::<f64>();
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="10" y="24" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let mut y = 40.0;
    for panel in panels {
        match panel {
            Panel::Bars {
                title,
                series,
                groups,
                unit,
            } => bars(&mut out, y, title, series, groups, unit),
            Panel::LogBars {
                title,
                series,
                groups,
                unit,
            } => log_bars(&mut out, y, title, series, groups, unit),
            Panel::Line {
                title,
                values,
                unit,
            } => line(&mut out, y, title, values, unit),
        }
        y += panel_height(panel);
    }
    out.push_str("</svg>\n");
    out
}

fn bars(
    out: &mut String,
    top: f64,
    title: &str,
    series: &[String],
    groups: &[(String, Vec<f64>)],
    unit: &str,
) {
    let _ = writeln!(
        out,
        r#"<text x="10" y="{}" font-weight="bold">{}</text>"#,
        top + 16.0,
        escape(title)
    );
    // Legend, right of the title.
    let mut x = LEFT + 160.0;
    for (i, name) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            top + 7.0,
            x + 14.0,
            top + 16.0,
            escape(name)
        );
        x += 24.0 + name.chars().count() as f64 * 7.0;
    }
    let max = groups
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let span = WIDTH - LEFT - RIGHT;
    let mut y = top + 30.0;
    for (label, values) in groups {
        let group_h = values.len() as f64 * 12.0;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + group_h / 2.0 + 4.0,
            escape(label)
        );
        for (i, v) in values.iter().enumerate() {
            let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
            let w = (v / max * span).max(0.5);
            let color = COLORS[i % COLORS.len()];
            let by = y + i as f64 * 12.0;
            let _ = writeln!(
                out,
                r#"<rect x="{LEFT}" y="{by}" width="{w:.1}" height="10" fill="{color}"/><text x="{:.1}" y="{}" font-size="10">{} {}</text>"#,
                LEFT + w + 4.0,
                by + 9.0,
                number(v),
                escape(unit)
            );
        }
        y += group_h + 10.0;
    }
}

/// `1234567` → `1.2M`, `15000` → `15k`, `950` → `950`.
pub fn compact(v: f64) -> String {
    let (scaled, suffix) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if scaled >= 10.0 || scaled.fract() == 0.0 {
        format!("{scaled:.0}{suffix}")
    } else {
        format!("{scaled:.1}{suffix}")
    }
}

fn log_bars(
    out: &mut String,
    top: f64,
    title: &str,
    series: &[String],
    groups: &[(String, Vec<f64>)],
    unit: &str,
) {
    let _ = writeln!(
        out,
        r#"<text x="10" y="{}" font-weight="bold">{}</text>"#,
        top + 16.0,
        escape(title)
    );
    let mut x = LEFT;
    for (i, name) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            top + 25.0,
            x + 14.0,
            top + 34.0,
            escape(name)
        );
        x += 24.0 + name.chars().count() as f64 * 7.0;
    }
    let positive = || {
        groups
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let lo = positive().fold(f64::INFINITY, f64::min);
    let hi = positive().fold(0.0f64, f64::max);
    let (lo_exp, hi_exp) = if hi > 0.0 {
        let lo_exp = lo.log10().floor().min(hi.log10().floor());
        (lo_exp, hi.log10().ceil().max(lo_exp + 1.0))
    } else {
        (0.0, 1.0)
    };
    let span = WIDTH - LEFT - RIGHT;
    let scale = |v: f64| (v.log10() - lo_exp) / (hi_exp - lo_exp) * span;
    let body_top = top + 44.0;
    let body_h = groups.len() as f64 * (series.len() as f64 * 12.0 + 10.0);
    // Decades: a faint line and its value.
    let mut e = lo_exp;
    while e <= hi_exp {
        let gx = LEFT + scale(10f64.powf(e));
        let _ = writeln!(
            out,
            r##"<line x1="{gx:.1}" y1="{body_top}" x2="{gx:.1}" y2="{:.1}" stroke="#dddddd"/><text x="{gx:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
            body_top + body_h,
            body_top + body_h + 12.0,
            compact(10f64.powf(e))
        );
        e += 1.0;
    }
    let mut y = body_top;
    for (label, values) in groups {
        let group_h = values.len() as f64 * 12.0;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + group_h / 2.0 + 4.0,
            escape(label)
        );
        for (i, v) in values.iter().enumerate() {
            let by = y + i as f64 * 12.0;
            let color = COLORS[i % COLORS.len()];
            if !(v.is_finite() && *v > 0.0) {
                let _ = writeln!(
                    out,
                    r#"<text x="{:.1}" y="{}" font-size="10">none</text>"#,
                    LEFT + 4.0,
                    by + 9.0
                );
                continue;
            }
            let w = scale(*v).max(0.5);
            let _ = writeln!(
                out,
                r#"<rect x="{LEFT}" y="{by}" width="{w:.1}" height="10" fill="{color}"/><text x="{:.1}" y="{}" font-size="10">{} {}</text>"#,
                LEFT + w + 4.0,
                by + 9.0,
                compact(*v),
                escape(unit)
            );
        }
        y += group_h + 10.0;
    }
}

fn line(out: &mut String, top: f64, title: &str, values: &[f64], unit: &str) {
    let _ = writeln!(
        out,
        r#"<text x="10" y="{}" font-weight="bold">{}</text>"#,
        top + 16.0,
        escape(title)
    );
    let (x0, y0, w, h) = (LEFT, top + 30.0, WIDTH - LEFT - RIGHT, 110.0);
    let max = values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let _ = writeln!(
        out,
        r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#cccccc"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">{} {}</text><text x="{}" y="{}" text-anchor="end">0</text>"#,
        x0 - 8.0,
        y0 + 10.0,
        number(max),
        escape(unit),
        x0 - 8.0,
        y0 + h
    );
    let n = values.len().max(1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
            format!(
                "{:.1},{:.1}",
                x0 + (i as f64 + 0.5) / n * w,
                y0 + h - v / max * h
            )
        })
        .collect();
    let _ = writeln!(
        out,
        r##"<polyline fill="none" stroke="#4e79a7" stroke-width="2" points="{}"/>"##,
        points.join(" ")
    );
    let _ = writeln!(
        out,
        r#"<text x="{x0}" y="{}">0 s</text><text x="{}" y="{}" text-anchor="end">{} s</text>"#,
        y0 + h + 14.0,
        x0 + w,
        y0 + h + 14.0,
        values.len()
    );
}

/// The loadgen chart: latency percentiles per route, and requests per second over
/// the run.
pub fn report_chart(title: &str, report: &Report) -> String {
    let groups = report
        .steps
        .iter()
        .chain(std::iter::once(&report.total))
        .map(|r| (r.name.clone(), vec![r.p50_ms, r.p90_ms, r.p99_ms]))
        .collect();
    chart(
        title,
        &[
            Panel::Bars {
                title: "Latency by route".into(),
                series: vec!["p50".into(), "p90".into(), "p99".into()],
                groups,
                unit: "ms".into(),
            },
            Panel::Line {
                title: "Requests per second".into(),
                values: report.timeline.iter().map(|(n, _)| *n as f64).collect(),
                unit: "req/s".into(),
            },
        ],
    )
}

/// Checks that `svg` is well-formed XML as far as these charts go: every tag closed
/// in order, attributes quoted, no bare `&` or `<` in text. Used by the tests.
pub fn well_formed(svg: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open])?;
        let after = &rest[open + 1..];
        let close = after
            .find('>')
            .ok_or_else(|| format!("unclosed tag at {:?}", &after[..after.len().min(30)]))?;
        let tag = &after[..close];
        if tag.contains('<') {
            return Err(format!("'<' inside tag {tag:?}"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        } else {
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body.split_whitespace().next().unwrap_or("");
            if name.is_empty() {
                return Err(format!("empty tag <{tag}>"));
            }
            if body.matches('"').count() % 2 != 0 {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            check_text(body)?;
            if !self_closing {
                stack.push(name.to_owned());
            }
        }
        rest = &after[close + 1..];
    }
    check_text(rest)?;
    match stack.as_slice() {
        [] => Ok(()),
        open => Err(format!("unclosed elements {open:?}")),
    }
}

fn check_text(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        let entity = &rest[i..];
        let end = entity.find(';').unwrap_or(usize::MAX);
        let ok = end < 8
            && matches!(
                &entity[1..end],
                "amp" | "lt" | "gt" | "quot" | "apos" | "#39"
            );
        if !ok {
            return Err(format!("bare '&' in {text:?}"));
        }
        rest = &entity[end + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::stats::{Outcome, Recorder, Step};
    use std::time::{Duration, Instant};

    fn sample() -> Report {
        let t0 = Instant::now();
        let rec = Recorder::new(t0, Duration::from_secs(3));
        for i in 0..300u64 {
            let at = t0 + Duration::from_millis(i * 10);
            let step = [Step::Catalog, Step::Product, Step::Checkout][(i % 3) as usize];
            let outcome = if i % 50 == 0 {
                Outcome::Error("status 500 on <&>".into())
            } else {
                Outcome::Ok
            };
            rec.record(step, at, at + Duration::from_micros(500 + i * 37), outcome);
        }
        rec.report(3.0)
    }

    #[test]
    fn the_table_has_a_row_per_route_and_a_total() {
        let report = sample();
        let table = report.table();
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), 2 + 3 + 1, "{table}");
        assert!(
            rows[0].starts_with("| route | requests | errors"),
            "{table}"
        );
        let cells = |row: &str| row.split('|').count();
        assert!(rows.iter().all(|r| cells(r) == cells(rows[0])), "{table}");
        assert!(rows[5].starts_with("| **all** | 300 | 6 | 0 |"), "{table}");
        assert!(table.contains("6 × status 500 on <&>"), "{table}");
    }

    #[test]
    fn the_chart_is_well_formed_and_escapes_labels() {
        let report = sample();
        let svg = report_chart("Run <1> & co", &report);
        well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(svg.contains("Run &lt;1&gt; &amp; co"));
        assert!(svg.contains("GET /products/{id}"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        // 4 groups (3 routes + all) of 3 bars, plus the 3 legend keys.
        assert_eq!(svg.matches("<rect x=").count(), 4 * 3 + 3 + 1);
        // An empty report still draws.
        let empty = Recorder::new(Instant::now(), Duration::from_secs(1)).report(1.0);
        well_formed(&report_chart("empty", &empty)).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn log_bars_span_decades_and_stay_well_formed() {
        let svg = chart(
            "Customers <all>",
            &[Panel::LogBars {
                title: "Projected".into(),
                series: vec!["model".into(), "measured".into()],
                groups: vec![
                    ("1. One".into(), vec![2_000.0, 900.0]),
                    ("8. Many".into(), vec![20_000_000.0, 0.0]),
                ],
                unit: "customers".into(),
            }],
        );
        assert_eq!(well_formed(&svg), Ok(()));
        // Decades from 100 to 100M, the values compact, no bar for 0.
        for text in [">100<", ">100M<", "2k customers", "20M customers", ">none<"] {
            assert!(svg.contains(text), "{text} in {svg}");
        }
        assert_eq!(compact(1_234_567.0), "1.2M");
        assert_eq!(compact(15_000.0), "15k");
        assert_eq!(compact(950.0), "950");
    }

    #[test]
    fn the_checker_finds_defects() {
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
        assert!(well_formed("<svg x=\"1></svg>").is_err());
        assert!(well_formed("<svg><text>ok &amp; fine</text></svg>").is_ok());
    }
}
