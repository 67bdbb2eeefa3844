//! The model against textbook answers, and its invariants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use storefront_capacity::{mva, open, Network};

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}

/// M/M/1 in the open model: utilization, response and queue length.
#[test]
fn a_single_mm1_queue() {
    let net = Network::new(0.0).unwrap().queue("cpu", 0.1, 1).unwrap();
    for (rate, want) in [(1.0, 0.1 / 0.9), (5.0, 0.2), (9.0, 1.0)] {
        let (r, _) = open::response(&net, rate).unwrap();
        assert!(close(r, want, 1e-12), "rate {rate}: {r} against {want}");
        // Little's law: customers in the system = rate x response = U / (1 - U).
        let u = rate * 0.1;
        assert!(close(rate * r, u / (1.0 - u), 1e-12));
    }
    assert!(open::response(&net, 10.0).is_none(), "saturated");
}

/// M/M/c: Erlang C against values computed by hand.
#[test]
fn mmc_queues_wait_as_erlang_c_says() {
    // c = 2, service 1 s, 1 request a second: C = 1/3, wait = C / (c - a) = 1/3 s.
    let net = Network::new(0.0).unwrap().queue("pair", 1.0, 2).unwrap();
    let (r, _) = open::response(&net, 1.0).unwrap();
    assert!(close(r, 1.0 + 1.0 / 3.0, 1e-12), "{r}");
    // c = 3, a = 2: C = (8/6 * 3) / (1 + 2 + 2 + 8/6 * 3) = 4 / 9.
    assert!(close(open::erlang_c(3, 2.0), 4.0 / 9.0, 1e-12));
    // Many servers lightly loaded almost never wait.
    assert!(open::erlang_c(200, 100.0) < 1e-9);
}

/// K balanced single-core stations, no think time: X(N) = N / ((N + K - 1) D).
#[test]
fn a_balanced_closed_network_matches_its_closed_form() {
    for k in 1..=4u32 {
        let mut net = Network::new(0.0).unwrap();
        for i in 0..k {
            net = net.queue(format!("s{i}"), 0.5, 1).unwrap();
        }
        for n in 1..=30u64 {
            let s = mva::exact(&net, n);
            let want = n as f64 / ((n as f64 + f64::from(k) - 1.0) * 0.5);
            assert!(
                close(s.throughput, want, 1e-12),
                "K {k} N {n}: {} against {want}",
                s.throughput
            );
            // Little: N = X (R + Z).
            assert!(close(n as f64, s.throughput * s.response, 1e-12));
        }
    }
}

/// The machine-repairman model (one single-core station, N customers who think
/// Z): X = (1 - p0) / D with p0 = 1 / sum_n N! / (N - n)! (D / Z)^n.
#[test]
fn a_machine_repairman_matches_its_closed_form() {
    let (d, z) = (0.2, 1.0);
    let net = Network::new(z).unwrap().queue("repairman", d, 1).unwrap();
    for n in 1..=40u64 {
        let mut sum = 0.0;
        let mut term = 1.0;
        for j in 0..=n {
            sum += term;
            term *= (n - j) as f64 * d / z;
        }
        let want = (1.0 - 1.0 / sum) / d;
        let got = mva::exact(&net, n).throughput;
        assert!(close(got, want, 1e-10), "N {n}: {got} against {want}");
    }
}

/// Schweitzer's approximation: exact for one user, close in between, and both
/// reach the bottleneck's limit.
#[test]
fn the_approximation_stays_near_the_exact_answer() {
    let net = Network::new(2.0)
        .unwrap()
        .queue("app", 0.01, 2)
        .unwrap()
        .queue("db", 0.008, 1)
        .unwrap()
        .delay("network", 0.001)
        .unwrap();
    assert!(close(
        mva::approximate(&net, 1.0).throughput,
        mva::exact(&net, 1).throughput,
        1e-9
    ));
    for n in [10u64, 100, 250, 400, 1_000, 5_000] {
        let (a, e) = (mva::approximate(&net, n as f64), mva::exact(&net, n));
        assert!(
            close(a.throughput, e.throughput, 0.05),
            "N {n}: {} against {}",
            a.throughput,
            e.throughput
        );
    }
    let far = mva::approximate(&net, 1e7).throughput;
    assert!(close(far, net.max_throughput(), 1e-3), "{far}");
}

#[test]
fn bad_settings_are_refused_with_what_is_wrong() {
    assert!(Network::new(-1.0)
        .unwrap_err()
        .to_string()
        .contains("think time"));
    let e = Network::new(1.0)
        .unwrap()
        .queue("db", f64::NAN, 1)
        .unwrap_err();
    assert!(e.to_string().contains("demand of db"), "{e}");
    let e = Network::new(1.0).unwrap().queue("db", 0.1, 0).unwrap_err();
    assert!(e.to_string().contains("at least one core"), "{e}");
    // Nothing to serve: no limit, and every user fits.
    let empty = Network::new(1.0).unwrap();
    assert_eq!(empty.max_throughput(), f64::INFINITY);
    assert_eq!(mva::max_users(&empty, 0.1), u64::MAX);
    // An objective below the bare service time: nobody.
    let net = Network::new(1.0).unwrap().queue("db", 0.5, 1).unwrap();
    assert_eq!(mva::max_users(&net, 0.4), 0);
    assert_eq!(mva::max_users(&net, f64::NAN), 0);
}

fn network() -> impl Strategy<Value = Network> {
    (
        0.0f64..10.0,
        prop::collection::vec((0.0001f64..0.05, 1u32..5, any::<bool>()), 1..6),
    )
        .prop_map(|(z, stations)| {
            let mut net = Network::new(z).unwrap();
            for (i, (d, c, delay)) in stations.into_iter().enumerate() {
                net = if delay && i > 0 {
                    net.delay(format!("d{i}"), d).unwrap()
                } else {
                    net.queue(format!("q{i}"), d, c).unwrap()
                };
            }
            net
        })
}

proptest! {
    /// Throughput never exceeds the bounds, and never falls as users come.
    #[test]
    fn throughput_keeps_to_the_bounds_and_grows_with_users(net in network(), n in 1u64..400) {
        let now = mva::exact(&net, n);
        let more = mva::exact(&net, n + 1);
        prop_assert!(now.throughput <= net.throughput_bound(n as f64) * (1.0 + 1e-9));
        prop_assert!(more.throughput >= now.throughput * (1.0 - 1e-9));
        prop_assert!(more.response >= now.response * (1.0 - 1e-9));
        let approx = mva::approximate(&net, n as f64);
        prop_assert!(approx.throughput <= net.throughput_bound(n as f64) * (1.0 + 1e-6));
        for s in &now.stations {
            prop_assert!((0.0..=1.0).contains(&s.utilization));
        }
    }

    /// Another machine of the bottleneck's kind (its demand split over one more
    /// machine) never lowers the prediction.
    #[test]
    fn another_bottleneck_machine_never_lowers_throughput(
        z in 0.0f64..5.0,
        app in 0.001f64..0.05,
        db in 0.001f64..0.05,
        apps in 1u32..6,
        n in 1u64..300,
    ) {
        let build = |machines: u32| {
            let mut net = Network::new(z).unwrap();
            for i in 0..machines {
                net = net.queue(format!("app {i}"), app / f64::from(machines), 1).unwrap();
            }
            net.queue("db", db, 1).unwrap()
        };
        let (fewer, more) = (build(apps), build(apps + 1));
        for users in [n, n * 10] {
            let (a, b) = (mva::solve(&fewer, users), mva::solve(&more, users));
            prop_assert!(b.throughput >= a.throughput * (1.0 - 1e-9), "{} then {}", a.throughput, b.throughput);
        }
        prop_assert!(mva::max_users(&more, 0.2) >= mva::max_users(&fewer, 0.2));
    }
}
