//! A tour of the consistent-hashing engines: where keys go, how many move when a
//! node leaves or joins, and how evenly they spread.
//!
//! ```text
//! cargo run --release -p scalekit-ring --example tour
//! ```
//!
//! The figures in the guide (`GUIDE.md`) come from this program.

use std::num::NonZeroU32;
use std::time::Instant;

use scalekit_core::Placement;
use scalekit_ring::analysis::{balance, movement, sample_hashes};
use scalekit_ring::{
    BoundedLoad, Jump, Maglev, Memento, Rendezvous, Ring, RingError, MAGLEV_TABLE_SIZES,
};

const KEYS: u64 = 1_000_000;
const MOVE_KEYS: u64 = 200_000;

fn main() -> Result<(), RingError> {
    println!("# scalekit-ring tour\n");
    placing_keys()?;
    moving_keys()?;
    balancing_keys()?;
    ring_virtual_nodes()?;
    maglev_table_sizes()?;
    bounded_loads()?;
    memory_and_build()?;
    Ok(())
}

fn names(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("node-{i:03}")).collect()
}

fn ring_of(nodes: &[String]) -> Result<Ring<String>, RingError> {
    Ring::with_nodes(nodes.iter().cloned())
}

fn hrw_of(nodes: &[String]) -> Result<Rendezvous<String>, RingError> {
    let mut hrw = Rendezvous::new();
    for n in nodes {
        hrw.add(n.clone())?;
    }
    Ok(hrw)
}

fn placing_keys() -> Result<(), RingError> {
    println!("## 1. Placing keys on 5 nodes\n");
    let nodes = names(5);
    let ring = ring_of(&nodes)?;
    let jump = Jump::with_nodes(nodes.iter().cloned())?;
    let memento = Memento::with_nodes(nodes.iter().cloned())?;
    let hrw = hrw_of(&nodes)?;
    let maglev = Maglev::with_nodes(nodes.iter().cloned())?;
    println!("| key | ring | jump | memento | rendezvous | maglev |");
    println!("|---|---|---|---|---|---|");
    for user in ["user:1", "user:2", "user:3", "cart:77", "order:2026-11-981"] {
        let at = |p: &dyn Placement<Node = String>| {
            p.locate_hash(scalekit_core::stable_hash(user.as_bytes()))
                .cloned()
                .unwrap_or_default()
        };
        println!(
            "| {user} | {} | {} | {} | {} | {} |",
            at(&ring),
            at(&jump),
            at(&memento),
            at(&hrw),
            at(&maglev)
        );
    }
    println!(
        "\nEvery process computes the same table: the hash is pinned (SipHash-1-3, fixed key).\n"
    );
    Ok(())
}

fn moving_keys() -> Result<(), RingError> {
    println!("## 2. Moving the minimum: 100 nodes, {MOVE_KEYS} keys\n");
    println!("A node leaves (the minimum is its share, 1%), then a node joins (the minimum is the");
    println!("newcomer's share, 1/101 = 0.99%).\n");
    println!("| engine | node leaves: moved | of which not on the leaving node | node joins: moved | of which not to the new node |");
    println!("|---|---|---|---|---|");
    let nodes = names(100);
    let leaving = &nodes[42];
    let last = &nodes[99];
    let joining = "node-new".to_string();
    let new = || joining.clone();

    row(
        "ring (160 points a node)",
        ring_of(&nodes)?,
        (leaving, |e| e.remove(leaving).map(drop)),
        (&joining, |e| e.add(new())),
    )?;
    // Jump removes only its last node.
    row(
        "jump (last node leaves)",
        Jump::with_nodes(nodes.iter().cloned())?,
        (last, |e| e.remove(last).map(drop)),
        (&joining, |e| e.add(new())),
    )?;
    row(
        "memento",
        Memento::with_nodes(nodes.iter().cloned())?,
        (leaving, |e| e.remove(leaving).map(drop)),
        (&joining, |e| e.add(new()).map(drop)),
    )?;
    row(
        "rendezvous",
        hrw_of(&nodes)?,
        (leaving, |e| e.remove(leaving).map(drop)),
        (&joining, |e| e.add(new())),
    )?;
    row(
        "maglev (M = 65,537)",
        Maglev::with_nodes(nodes.iter().cloned())?,
        (leaving, |e| e.remove(leaving).map(drop)),
        (&joining, |e| e.add(new())),
    )?;
    println!();
    Ok(())
}

/// One row of the movement table: `base` against a copy that lost `left` and a
/// copy that gained `joined`.
fn row<P, L, J>(
    name: &str,
    base: P,
    (left, leave): (&str, L),
    (joined, join): (&str, J),
) -> Result<(), RingError>
where
    P: Placement<Node = String> + Clone,
    L: FnOnce(&mut P) -> Result<(), RingError>,
    J: FnOnce(&mut P) -> Result<(), RingError>,
{
    let mut less = base.clone();
    leave(&mut less)?;
    let mut more = base.clone();
    join(&mut more)?;
    let base = &base;
    let (less, more) = (&less, &more);
    let mut collateral_leave = 0u64;
    let mut collateral_join = 0u64;
    for h in sample_hashes(MOVE_KEYS) {
        let before = base.locate_hash(h).map(String::as_str);
        if before != Some(left) && less.locate_hash(h).map(String::as_str) != before {
            collateral_leave += 1;
        }
        let after = more.locate_hash(h).map(String::as_str);
        if after != before && after != Some(joined) {
            collateral_join += 1;
        }
    }
    let leave = movement(base, less, sample_hashes(MOVE_KEYS));
    let join = movement(base, more, sample_hashes(MOVE_KEYS));
    println!(
        "| {name} | {:.3}% | {:.3}% | {:.3}% | {:.3}% |",
        100.0 * leave.fraction(),
        100.0 * collateral_leave as f64 / MOVE_KEYS as f64,
        100.0 * join.fraction(),
        100.0 * collateral_join as f64 / MOVE_KEYS as f64
    );
    Ok(())
}

fn balancing_keys() -> Result<(), RingError> {
    println!("## 3. Balance: 100 nodes, {KEYS} keys (peak / average keys a node)\n");
    println!("Sampling alone gives about 1.03 at 10,000 keys a node.\n");
    println!("| engine | peak/average | fewest keys on a node |");
    println!("|---|---|---|");
    let nodes = names(100);
    let b = balance(&ring_of(&nodes)?, sample_hashes(KEYS));
    println!(
        "| ring (160 points a node) | {:.4} | {} |",
        b.peak_to_average, b.min
    );
    let b = balance(
        &Jump::with_nodes(nodes.iter().cloned())?,
        sample_hashes(KEYS),
    );
    println!("| jump | {:.4} | {} |", b.peak_to_average, b.min);
    let b = balance(
        &Memento::with_nodes(nodes.iter().cloned())?,
        sample_hashes(KEYS),
    );
    println!("| memento | {:.4} | {} |", b.peak_to_average, b.min);
    let mut churned = Memento::with_nodes(names(120))?;
    for n in names(120).iter().skip(3).step_by(6).take(20) {
        churned.remove(n)?;
    }
    let b = balance(&churned, sample_hashes(KEYS));
    println!(
        "| memento (120 nodes, 20 removed) | {:.4} | {} |",
        b.peak_to_average, b.min
    );
    let b = balance(&hrw_of(&nodes)?, sample_hashes(KEYS));
    println!("| rendezvous | {:.4} | {} |", b.peak_to_average, b.min);
    let b = balance(
        &Maglev::with_nodes(nodes.iter().cloned())?,
        sample_hashes(KEYS),
    );
    println!(
        "| maglev (M = 65,537) | {:.4} | {} |",
        b.peak_to_average, b.min
    );
    println!();
    Ok(())
}

fn ring_virtual_nodes() -> Result<(), RingError> {
    println!("## 4. The ring narrows with more points a node (100 nodes, {KEYS} keys)\n");
    println!("| points a node | peak/average | lookup memory |");
    println!("|---|---|---|");
    for vnodes in [40, 160, 640, 2560] {
        let mut ring = Ring::with_virtual_nodes(vnodes)?;
        for n in names(100) {
            ring.add(n)?;
        }
        let b = balance(&ring, sample_hashes(KEYS));
        println!(
            "| {vnodes} | {:.4} | {} KiB |",
            b.peak_to_average,
            ring.memory_bytes() / 1024
        );
    }
    println!();
    Ok(())
}

fn maglev_table_sizes() -> Result<(), RingError> {
    println!("## 5. Maglev: keys moved when 1 of 100 nodes leaves (minimum 1%)\n");
    println!(
        "| table size M | moved | of which collateral | peak/average entries | table memory |"
    );
    println!("|---|---|---|---|---|");
    let nodes = names(100);
    let leaving = nodes[42].clone();
    for size in MAGLEV_TABLE_SIZES {
        let mut maglev = Maglev::with_table_size(size)?;
        maglev.extend(nodes.iter().cloned().map(|n| (n, NonZeroU32::MIN)))?;
        let counts = maglev.entry_counts();
        let max = counts.iter().copied().max().unwrap_or(0);
        let peak = f64::from(max) * counts.len() as f64 / f64::from(size);
        let mut less = maglev.clone();
        less.remove(&leaving)?;
        let m = movement(&maglev, &less, sample_hashes(MOVE_KEYS));
        let collateral = sample_hashes(MOVE_KEYS)
            .filter(|&h| {
                let before = maglev.locate_hash(h);
                before != Some(&leaving) && less.locate_hash(h) != before
            })
            .count();
        println!(
            "| {size} | {:.3}% | {:.3}% | {peak:.4} | {} KiB |",
            100.0 * m.fraction(),
            100.0 * collateral as f64 / MOVE_KEYS as f64,
            maglev.memory_bytes() / 1024
        );
    }
    println!();
    Ok(())
}

fn bounded_loads() -> Result<(), RingError> {
    println!("## 6. Bounded loads: 10 nodes, 10,000 sessions, half of them on 3 hot keys\n");
    let engine = Memento::with_nodes(names(10))?;
    let mut plain = [0u64; 10];
    let mut lb = BoundedLoad::new(engine.clone(), 0.25)?;
    for s in 0..10_000u64 {
        // Half of the sessions belong to three hot tenants.
        let key = if s % 2 == 0 { s % 3 } else { s };
        if let Some(n) = engine.locate(&key) {
            plain[index_of(n)] += 1;
        }
        lb.assign(&key);
    }
    let bounded: Vec<u64> = names(10).iter().map(|n| lb.load(n)).collect();
    println!("| | most loaded node | least loaded node | cap |");
    println!("|---|---|---|---|");
    println!(
        "| memento alone | {} | {} | - |",
        plain.iter().max().unwrap_or(&0),
        plain.iter().min().unwrap_or(&0)
    );
    println!(
        "| memento + bounded load (eps 0.25) | {} | {} | {} |",
        bounded.iter().max().unwrap_or(&0),
        bounded.iter().min().unwrap_or(&0),
        lb.cap_for(lb.total_load())
    );
    println!();
    Ok(())
}

fn index_of(name: &str) -> usize {
    name.trim_start_matches("node-").parse().unwrap_or(0)
}

fn memory_and_build() -> Result<(), RingError> {
    println!("## 7. Building 1,000 nodes\n");
    println!("| engine | build time | lookup memory |");
    println!("|---|---|---|");
    let nodes = names(1000);
    let t = Instant::now();
    let ring = ring_of(&nodes)?;
    println!(
        "| ring (160 points a node) | {:.1} ms | {} KiB |",
        ms(t),
        ring.memory_bytes() / 1024
    );
    let t = Instant::now();
    let maglev = Maglev::with_nodes(nodes.iter().cloned())?;
    println!(
        "| maglev (M = 65,537) | {:.1} ms | {} KiB |",
        ms(t),
        maglev.memory_bytes() / 1024
    );
    let t = Instant::now();
    let memento = Memento::with_nodes(nodes.iter().cloned())?;
    println!("| memento | {:.1} ms | node list |", ms(t));
    drop((ring, maglev, memento));
    println!();
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
