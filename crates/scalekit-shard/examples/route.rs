//! Loads `examples/shards.toml`, routes a few statements, plans adding a fifth
//! orders database and walks the migration.
//!
//! Run: `cargo run -p scalekit-shard --example route`.

use scalekit_ring::Ring;
use scalekit_shard::{plan, Engines, Migration, Op, Query, RouterConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engines = Engines::new().register("ring", |nodes| {
        Ok(Box::new(Ring::with_nodes(nodes.iter().cloned())?))
    });
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shards.toml");
    let router = RouterConfig::from_path(path)?.build(&engines)?;
    let now = 1_795_482_000; // 2026-11-24

    let q = Query::key("user_id", 42).and_key("created_at", now);
    println!("order of user 42 now:     {}", router.locate("orders", &q)?);
    println!(
        "its items:                {}",
        router.locate("order_items", &q)?
    );
    println!(
        "user 1 (directory):       {}",
        router.locate(
            "orders",
            &Query::key("user_id", 1).and_key("created_at", now)
        )?
    );
    println!(
        "account 1,500,000:        {}",
        router.locate("accounts", &Query::key("account_id", 1_500_000))?
    );
    let scan = router.route_at("orders", &Query::key("user_id", 42), Op::Read, now)?;
    println!("user 42's orders, kept:   {} tables", scan.targets.len());
    let all = router.route_at("orders", &Query::all(), Op::Read, now)?;
    println!("every order:              {} tables", all.targets.len());
    let w = router.route("currencies", &Query::all(), Op::Write)?;
    println!("a currency write:         {} copies", w.targets.len());
    let m = router.time_tables("orders", now)?;
    println!(
        "tables to have:           {} (oldest kept {:?})",
        m.create.len(),
        m.oldest_kept
    );

    // Resharding: a fifth orders database.
    let text = std::fs::read_to_string(path)?
        .replace("epoch = 1", "epoch = 2")
        .replace(
            "\"orders_3\", \"orders_big\"]",
            "\"orders_3\", \"orders_4\", \"orders_big\"]",
        )
        .replace(
            "\"orders_3\"]\nengine",
            "\"orders_3\", \"orders_4\"]\nengine",
        );
    let new = RouterConfig::from_toml(&text)?.build(&engines)?;
    let p = plan(&router, &new)?;
    let orders = p.table("orders").ok_or("no orders plan")?;
    println!(
        "adding orders_4 moves {:.1} % of the orders in {} slot runs",
        100.0 * orders.fraction().unwrap_or(f64::NAN),
        orders.moves.len()
    );
    // A user whose orders move.
    let mover = (0..1000)
        .map(|u| Query::key("user_id", u).and_key("created_at", now))
        .find(|q| router.locate("orders", q).ok() != new.locate("orders", q).ok())
        .ok_or("no user moves")?;
    let migration = Migration::new(router, new)?;
    while let Some(next) = migration.phase().next() {
        if migration.phase() == scalekit_shard::Phase::Verify {
            migration.verified(0)?;
        }
        migration.advance()?;
        let w = migration.route("orders", &mover, Op::Write)?;
        println!(
            "{next:>13}: write {} mirror {:?}",
            w.targets[0],
            w.mirrors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}
