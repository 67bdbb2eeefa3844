//! `storefront project`: what one stage's topology carries on real machines,
//! from the demands `evolve` measured on miniature ones.
//!
//! ```text
//! storefront project --stage 4                      # apps scaled until a fixed machine limits
//! storefront project --stage 4 --machines app=40    # what 40 app machines of 16 cores carry
//! storefront project --stage 7 --cores 32 --think 10 --objective-ms 300 --hit-ratio 0.98
//! ```

use std::path::{Path, PathBuf};

use super::{Assumptions, Calibration, Projection, StageCalibration, Topology};

/// `storefront project`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProjectArgs {
    /// The stage.
    #[arg(long)]
    pub stage: u32,
    /// Machines per role, like app=40,db=1 (roles not named: as measured;
    /// default: every role that scales gets enough machines that a fixed one
    /// limits).
    #[arg(long)]
    pub machines: Option<String>,
    /// Cores of each real machine (the per-core demand is this host's).
    #[arg(long, default_value_t = 16.0)]
    pub cores: f64,
    /// Seconds a customer thinks between requests, on average.
    #[arg(long, default_value_t = 5.0)]
    pub think: f64,
    /// p99 objective, in milliseconds.
    #[arg(long, default_value_t = 200.0)]
    pub objective_ms: f64,
    /// Cache hit ratio at scale, 0 to 1 (default: as measured).
    #[arg(long)]
    pub hit_ratio: Option<f64>,
    /// The demands `evolve` measured.
    #[arg(long, default_value = "docs/evolution.json")]
    pub calibration: PathBuf,
}

impl ProjectArgs {
    /// The assumptions, checked.
    pub fn assumptions(&self) -> Result<Assumptions, String> {
        assumptions(self.think, self.objective_ms, self.hit_ratio)
    }
}

/// Checked assumptions: think time in seconds (0 to an hour), objective in
/// milliseconds (above 0, at most a minute), hit ratio 0 to 1 (below 1).
pub fn assumptions(
    think: f64,
    objective_ms: f64,
    hit_ratio: Option<f64>,
) -> Result<Assumptions, String> {
    if !(think.is_finite() && (0.0..=3_600.0).contains(&think)) {
        return Err(format!("--think {think}: give seconds, 0 to 3600"));
    }
    if !(objective_ms.is_finite() && objective_ms > 0.0 && objective_ms <= 60_000.0) {
        return Err(format!(
            "--objective-ms {objective_ms}: give milliseconds, above 0 and at most 60000"
        ));
    }
    if let Some(h) = hit_ratio {
        if !(h.is_finite() && (0.0..1.0).contains(&h)) {
            return Err(format!("--hit-ratio {h}: give a share from 0 to below 1"));
        }
    }
    Ok(Assumptions {
        think,
        objective: objective_ms / 1_000.0,
        hit_ratio,
    })
}

/// Checked machine size.
pub fn cores(cores: f64) -> Result<f64, String> {
    if cores.is_finite() && (1.0..=1_024.0).contains(&cores) && cores.fract() == 0.0 {
        Ok(cores)
    } else {
        Err(format!("--cores {cores}: give whole cores, 1 to 1024"))
    }
}

/// Reads a calibration file.
pub fn read_calibration(path: &Path) -> Result<Calibration, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (run `storefront evolve` on miniature machines first, or give --calibration)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a calibration: {e}", path.display()))
}

/// What `project` prints for one stage.
pub fn describe(stage: &StageCalibration, p: &Projection, a: &Assumptions) -> String {
    let utilization = p
        .utilization
        .iter()
        .map(|(role, u)| format!("{role} {:.0}%", u * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "Stage {}. {}\n  machines: {}\n  carries {} customers (think {} s, p99 under {} ms taken as a mean under {:.1} ms)\n  at {:.0} requests/s of at most {:.0}; limited by {}\n  utilisation: {utilization}",
        stage.number,
        stage.title,
        p.topology.describe(),
        group(p.users),
        a.think,
        a.objective * 1_000.0,
        a.objective * 1_000.0 / super::TAIL,
        p.throughput,
        p.max_throughput,
        p.limit,
    )
}

/// `12345678` → `12,345,678`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs `storefront project`.
pub fn project(args: &ProjectArgs) -> Result<String, String> {
    let assumptions = args.assumptions()?;
    let cores = cores(args.cores)?;
    let calibration = read_calibration(&args.calibration)?;
    let stage = calibration
        .stages
        .iter()
        .find(|s| s.number == args.stage)
        .ok_or_else(|| {
            let have: Vec<String> = calibration
                .stages
                .iter()
                .map(|s| s.number.to_string())
                .collect();
            format!(
                "{} has no stage {}: it has {}",
                args.calibration.display(),
                args.stage,
                if have.is_empty() {
                    "none".into()
                } else {
                    have.join(", ")
                }
            )
        })?;
    let topology = match &args.machines {
        Some(text) => Topology::parse(text, stage, cores)?,
        None => Topology::scaled(stage, cores),
    };
    let p = stage.project(&topology, &assumptions)?;
    Ok(describe(stage, &p, &assumptions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(12_345_678), "12,345,678");
    }

    #[test]
    fn bad_assumptions_say_what_to_write() {
        assert!(assumptions(5.0, 200.0, Some(0.9)).is_ok());
        for (think, objective, hit) in [
            (-1.0, 200.0, None),
            (f64::NAN, 200.0, None),
            (5.0, 0.0, None),
            (5.0, 200.0, Some(1.0)),
            (5.0, 200.0, Some(-0.1)),
        ] {
            let e = assumptions(think, objective, hit).err().unwrap_or_default();
            assert!(e.starts_with("--"), "{e}");
        }
        assert!(cores(16.0).is_ok());
        assert!(cores(0.5).is_err() && cores(2.5).is_err());
    }

    #[test]
    fn a_missing_calibration_says_how_to_make_one() {
        let e = read_calibration(Path::new("/nonexistent/evolution.json"))
            .err()
            .unwrap_or_default();
        assert!(e.contains("run `storefront evolve`"), "{e}");
    }
}
