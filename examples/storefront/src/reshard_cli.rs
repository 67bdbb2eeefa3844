//! `storefront reshard`: the command line over [`storefront_storage::sharded::reshard`].

use scalekit_shard::Phase;
use storefront_storage::sharded::reshard::{Resharder, ShardStatus};
use storefront_storage::sharded::ShardedOrders;

/// `storefront reshard`: moves the orders of a stage's `[sharding]` section to
/// its `reshard_to` databases, printing each phase, or rolls back at a phase (a
/// drill), or prints the layout and progress.
#[derive(Debug, clap::Args)]
pub(crate) struct ReshardArgs {
    /// The stage whose `[sharding]` section to use.
    #[arg(long, default_value_t = 7)]
    pub stage: u32,
    /// A stage file to use instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Only print the layout, the phase and the rows per database.
    #[arg(long)]
    pub status: bool,
    /// Roll back on reaching this phase (copy, dual-write, verify, switch-reads,
    /// switch-writes) instead of finishing.
    #[arg(long, value_name = "PHASE")]
    pub rollback_at: Option<String>,
    /// First move the orders of past months to the monthly archive tables.
    #[arg(long)]
    pub archive: bool,
}

/// Runs `storefront reshard`.
pub(crate) async fn run(args: ReshardArgs) -> Result<(), storefront_stage::compose::BoxError> {
    let config = match &args.config {
        Some(path) => storefront_stage::config::StageConfig::load(path)?,
        None => storefront_stage::config::StageConfig::builtin(args.stage)?,
    };
    let sharding = config
        .sharding
        .ok_or("this stage has no [sharding] section (stage 7 has)")?;
    let orders = ShardedOrders::connect(&sharding).await?;
    let show = |s: &ShardStatus| {
        println!(
            "epoch {}, phase {}, databases {}, rows copied {}",
            s.epoch,
            s.phase,
            s.databases.join(", "),
            s.rows_copied
        );
        for (db, n) in &s.rows_per_database {
            println!("  {db}: {n} orders");
        }
    };
    if args.status {
        show(&orders.status().await?);
        return Ok(());
    }
    if args.archive {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let report = orders.archive(now).await?;
        println!(
            "archived {} orders into {} tables",
            report.orders,
            report.tables.len()
        );
    }
    let stop_at = match args.rollback_at.as_deref() {
        None => None,
        Some(p) => Some(
            [
                Phase::Copy,
                Phase::DualWrite,
                Phase::Verify,
                Phase::SwitchReads,
                Phase::SwitchWrites,
            ]
            .into_iter()
            .find(|x| x.to_string().replace(' ', "-") == p)
            .ok_or_else(|| format!("--rollback-at {p}: use copy, dual-write, verify, switch-reads or switch-writes"))?,
        ),
    };
    let mover = Resharder::start(&orders, &sharding.reshard_to).await?;
    println!("{} slots move:", mover.moves().len());
    for m in mover.moves() {
        println!("  slot {:2}: {} -> {}", m.slot, m.from, m.to);
    }
    loop {
        let phase = mover.phase();
        println!("phase {phase} (rows copied {})", mover.rows_copied());
        if Some(phase) == stop_at {
            mover.rollback().await?;
            println!("rolled back");
            break;
        }
        if phase == Phase::Done {
            break;
        }
        if let Err(e) = mover.step().await {
            // A step that failed halfway must not leave slots without a writable
            // database: roll back while the old place still has every write.
            if mover.phase().can_roll_back() {
                eprintln!("step from {phase} failed ({e}): rolling back");
                mover.rollback().await.map_err(|r| {
                    format!("step from {phase} failed ({e}), and so did the rollback ({r}): rerun `storefront reshard --status` and finish by hand")
                })?;
                show(&orders.status().await?);
            }
            return Err(e.into());
        }
    }
    show(&orders.status().await?);
    Ok(())
}
