//! The kernel's map equals the Maglev table: a balancer namespace's
//! nftables map, after any sequence of gateways joining and leaving (each
//! change one transaction of only the slots that differ), holds exactly
//! the table scalekit-ring computes for the gateways left.
//!
//! Needs root and network namespaces; skipped without them, except under
//! `CI`, where that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use proptest::prelude::*;
use scalekit_ring::Maglev;
use scalekit_test_support::services::runnable;
use storefront_l4::net::{self, Network};
use storefront_l4::nft::{self, Balancer};

/// A network with one balancer host, its ruleset loaded (an empty map), or
/// `None` when the test is skipped.
fn balancer(test: &str) -> Option<Network> {
    if !runnable(test, net::available_with(&["nft"])) {
        return None;
    }
    let net = Network::build(&["lb"]).expect("a network");
    let lb = net.host("lb").expect("lb").clone();
    let balancer = Balancer {
        vip: net.vip(),
        port: 8080,
        own: lb.addr,
        dev: "eth0".into(),
    };
    nft::apply(net.command("lb", "nft"), &balancer.ruleset()).expect("the ruleset loads");
    Some(net)
}

fn gateway(i: u8) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 88, 1, 20 + i), 8080))
}

#[test]
fn the_kernels_map_follows_maglev_through_joins_and_leaves() {
    let Some(net) = balancer("the_kernels_map_follows_maglev_through_joins_and_leaves") else {
        return;
    };
    assert_eq!(nft::read_map(net.command("lb", "nft")), Ok(vec![]));

    // Each case: up to six changes to a set of up to eight gateways, the map
    // read back from the kernel after each. Every change costs a transaction of
    // up to 65,537 elements: a few cases.
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let changes = prop::collection::vec((0u8..8, any::<bool>()), 1..6);
    runner
        .run(&changes, |changes| {
            let mut maglev: Maglev<SocketAddr> = Maglev::new();
            // The kernel's map as left by the case before.
            let mut current: Vec<SocketAddrV4> = {
                let read = nft::read_map(net.command("lb", "nft")).map_err(TestCaseError::fail)?;
                read.into_iter().map(|(_, gw)| gw).collect()
            };
            for (i, join) in changes {
                let gw = gateway(i);
                let _ = if join {
                    maglev.add(gw).map(|_| ())
                } else {
                    maglev.remove(&gw).map(|_| ())
                };
                let wanted = nft::slots(&maglev);
                nft::apply(net.command("lb", "nft"), &nft::change(&current, &wanted))
                    .map_err(TestCaseError::fail)?;
                let read = nft::read_map(net.command("lb", "nft")).map_err(TestCaseError::fail)?;
                prop_assert_eq!(read.len(), wanted.len());
                for (slot, gw) in &read {
                    prop_assert_eq!(Some(gw), wanted.get(*slot as usize), "slot {}", slot);
                }
                current = wanted;
            }
            Ok(())
        })
        .expect("the map equals the Maglev table");
}

#[test]
fn a_transaction_that_fails_changes_nothing() {
    let Some(net) = balancer("a_transaction_that_fails_changes_nothing") else {
        return;
    };
    let table = nft::slots(&Maglev::with_nodes([gateway(0), gateway(1)]).expect("maglev"));
    nft::apply(net.command("lb", "nft"), &nft::fill(&table)).expect("filled");
    // Another fill whose last statement the kernel refuses (slot 0 exists by
    // then, and `create` insists it must not): refused whole, the flush too.
    let other = nft::slots(&Maglev::with_nodes([gateway(2)]).expect("maglev"));
    let mut bad = nft::fill(&other);
    bad.push_str("create element ip storefront_l4 gateways { 0 : 10.88.1.99 . 8080 }\n");
    let refused = nft::apply(net.command("lb", "nft"), &bad);
    assert!(refused.is_err(), "{refused:?}");
    let read = nft::read_map(net.command("lb", "nft")).expect("read back");
    assert_eq!(read.len(), table.len());
    assert!(read
        .iter()
        .all(|(slot, gw)| table.get(*slot as usize) == Some(gw)));
}
