//! `serve --machine-cpu X`: the stage on miniature machines while it runs, as
//! `evolve` runs it (see `storefront_tools::loadgen::evolve::miniature`): this
//! process (the app, or the gateway), each instance it starts, and every
//! PostgreSQL and Redis server its stage file names on this host, each in a
//! cgroup holding it to `X` of a core. They are moved back when the shop stops.

use std::path::Path;
use std::time::{Duration, Instant};

use storefront_stage::config::BuiltinStage;
use storefront_tools::loadgen::evolve::miniature::{backing_servers, Placement};

/// The stage file's text: `--config FILE`, or the built-in stage's.
fn stage_text(stage: u32, config: Option<&Path>) -> Result<String, String> {
    match config {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        None => BuiltinStage::find(stage)
            .map(|s| s.file.to_owned())
            .ok_or_else(|| format!("stage {stage} is not built into this storefront")),
    }
}

/// Checks `--machine-cpu` before the shop starts.
pub(crate) fn check(cpu: f64) -> Result<(), String> {
    if cpu.is_finite() && (0.05..=16.0).contains(&cpu) {
        Ok(())
    } else {
        Err(format!(
            "--machine-cpu {cpu}: give a share of a core from 0.05 to 16"
        ))
    }
}

/// Waits until this process has started its `instances` (a gateway's; at most
/// 60 s), then puts the stage on machines of `cpu` cores. The placement lasts
/// as long as the returned value.
pub(crate) async fn place(
    stage: u32,
    config: Option<&Path>,
    instances: Option<u32>,
    cpu: f64,
) -> Result<Placement, String> {
    let text = stage_text(stage, config)?;
    let servers = backing_servers(&text)?;
    let pid = std::process::id();
    if let Some(n) = instances {
        let deadline = Instant::now() + Duration::from_secs(60);
        while storefront_machines::children(pid).len() < n as usize {
            if Instant::now() >= deadline {
                return Err(format!(
                    "the gateway has not started its {n} instances in 60 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let placement = Placement::place(&format!("serve-{stage}"), pid, &servers, cpu, None)?;
    let names: Vec<String> = placement
        .machines()
        .iter()
        .map(|m| m.machine.name().to_owned())
        .collect();
    tracing::info!(
        "on miniature machines of {cpu} core each: {} (moved back when the shop stops)",
        names.join(", ")
    );
    Ok(placement)
}
