//! The breaker's state machine, driven by hand on a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use scalekit_breaker::{AdaptiveThrottle, CircuitBreaker, ConfigError, State, Transition, Window};
use scalekit_core::{Admission, ManualClock, Outcome, RejectReason};

const MS: Duration = Duration::from_millis(1);

fn run<C: scalekit_core::Clock>(b: &CircuitBreaker<C>, outcome: Outcome, latency: Duration) {
    let p = b.try_acquire().expect("admitted");
    b.record(p, outcome, latency);
}

#[test]
fn count_window_opens_at_the_failure_rate_once_minimum_calls_are_seen() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .window(Window::Count(10))
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .clock(clock.clone())
        .build()
        .unwrap();
    // Three failures: 100% but below the minimum of four calls.
    for _ in 0..3 {
        run(&b, Outcome::Failure, MS);
    }
    assert_eq!(b.state(), State::Closed);
    // Fourth call a success: 3/4 = 75% >= 50%, four calls: open.
    run(&b, Outcome::Success, MS);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.generation(), 1);
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.reason(), RejectReason::CircuitOpen);
    assert_eq!(r.retry_after_hint(), Some(Duration::from_secs(60)));
    assert_eq!(b.stats().rejected, 1);
}

#[test]
fn successes_below_the_threshold_keep_it_closed_and_the_window_slides() {
    let b = CircuitBreaker::builder()
        .window(Window::Count(4))
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap();
    for outcome in [
        Outcome::Failure,
        Outcome::Success,
        Outcome::Success,
        Outcome::Success,
    ] {
        run(&b, outcome, MS);
    }
    // 1/4: closed. The first failure slides out; one more failure: 1/4 again.
    run(&b, Outcome::Failure, MS);
    assert_eq!(b.state(), State::Closed);
    let s = b.stats();
    assert_eq!((s.calls, s.failures), (4, 1));
    assert_eq!(s.failure_rate(), 25.0);
    // Ignored and cancelled outcomes do not enter the window.
    run(&b, Outcome::Ignored, MS);
    run(&b, Outcome::Cancelled, MS);
    assert_eq!(b.stats().calls, 4);
    run(&b, Outcome::Failure, MS);
    assert_eq!(b.state(), State::Open, "2/4 failures");
}

#[test]
fn slow_calls_open_it_at_their_own_rate() {
    let b = CircuitBreaker::builder()
        .window(Window::Count(5))
        .minimum_calls(5)
        .slow_call_rate_threshold(60.0)
        .slow_call_duration(Duration::from_millis(200))
        .build()
        .unwrap();
    run(&b, Outcome::Success, Duration::from_millis(199));
    run(&b, Outcome::Success, Duration::from_millis(200));
    run(&b, Outcome::Success, Duration::from_millis(500));
    run(&b, Outcome::Success, MS);
    assert_eq!(b.stats().slow_calls, 2);
    run(&b, Outcome::Success, Duration::from_secs(1));
    assert_eq!(b.state(), State::Open, "3/5 slow = 60%");
}

#[test]
fn time_window_counts_the_last_seconds_only() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .window(Window::Time(Duration::from_secs(10)))
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .clock(clock.clone())
        .build()
        .unwrap();
    run(&b, Outcome::Failure, MS);
    run(&b, Outcome::Failure, MS);
    run(&b, Outcome::Failure, MS);
    // Those three age out before the fourth call arrives.
    clock.advance(Duration::from_secs(11));
    run(&b, Outcome::Failure, MS);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().calls, 1);
    for _ in 0..3 {
        run(&b, Outcome::Failure, MS);
    }
    assert_eq!(b.state(), State::Open);
}

#[test]
fn half_open_admits_exactly_its_probes_and_closes_on_success() {
    let clock = ManualClock::new();
    let events = Arc::new(Mutex::new(Vec::<Transition>::new()));
    let seen = Arc::clone(&events);
    let b = CircuitBreaker::builder()
        .window(Window::ConsecutiveFailures(2))
        .wait_in_open(Duration::from_secs(5))
        .half_open_probes(3)
        .on_transition(move |t| seen.lock().unwrap().push(*t))
        .clock(clock.clone())
        .build()
        .unwrap();
    run(&b, Outcome::Failure, MS);
    run(&b, Outcome::Success, MS); // resets the run
    run(&b, Outcome::Failure, MS);
    assert_eq!(b.state(), State::Closed);
    run(&b, Outcome::Failure, MS);
    assert_eq!(b.state(), State::Open);

    clock.advance(Duration::from_millis(4999));
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after_hint(),
        Some(Duration::from_millis(1))
    );
    clock.advance(MS);
    let probes: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    assert_eq!(b.state(), State::HalfOpen);
    assert!(b.try_acquire().is_err());
    for p in probes {
        b.record(p, Outcome::Success, MS);
    }
    assert_eq!(b.state(), State::Closed);
    let states: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.from, t.to, t.generation))
        .collect();
    assert_eq!(
        states,
        [
            (State::Closed, State::Open, 1),
            (State::Open, State::HalfOpen, 2),
            (State::HalfOpen, State::Closed, 3)
        ]
    );
}

#[test]
fn a_failed_probe_reopens_with_exponential_backoff_and_closing_resets_it() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .window(Window::ConsecutiveFailures(1))
        .wait_in_open(Duration::from_secs(1))
        .backoff(2.0, Duration::from_secs(5))
        .half_open_probes(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    run(&b, Outcome::Failure, MS);
    let mut waits = vec![];
    for _ in 0..5 {
        let wait = b.try_acquire().unwrap_err().retry_after_hint().unwrap();
        waits.push(wait.as_secs());
        clock.advance(wait);
        run(&b, Outcome::Failure, MS); // the probe fails: reopen
        assert_eq!(b.state(), State::Open);
    }
    assert_eq!(waits, [1, 2, 4, 5, 5]);
    clock.advance(Duration::from_secs(5));
    run(&b, Outcome::Success, MS);
    assert_eq!(b.state(), State::Closed);
    run(&b, Outcome::Failure, MS);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after_hint(),
        Some(Duration::from_secs(1))
    );
}

#[test]
fn jitter_spreads_the_wait_within_its_bounds() {
    let mut waits = vec![];
    for seed in 0..200 {
        let b = CircuitBreaker::builder()
            .window(Window::ConsecutiveFailures(1))
            .wait_in_open(Duration::from_secs(10))
            .jitter(0.25)
            .seed(seed)
            .clock(ManualClock::new())
            .build()
            .unwrap();
        run(&b, Outcome::Failure, MS);
        let w = b.try_acquire().unwrap_err().retry_after_hint().unwrap();
        assert!(
            w >= Duration::from_millis(7500) && w <= Duration::from_millis(12500),
            "{w:?}"
        );
        waits.push(w);
    }
    let below = waits
        .iter()
        .filter(|w| **w < Duration::from_secs(10))
        .count();
    assert!(
        (50..150).contains(&below),
        "jitter goes both ways: {below}/200 below"
    );
}

#[test]
fn results_from_an_older_generation_are_ignored() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .window(Window::ConsecutiveFailures(1))
        .wait_in_open(Duration::from_secs(1))
        .half_open_probes(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    let slow_call = b.try_acquire().unwrap(); // generation 0
    let slower_call = b.try_acquire().unwrap(); // generation 0
    run(&b, Outcome::Failure, MS); // opens: generation 1
    clock.advance(Duration::from_secs(1));
    let probe = b.try_acquire().unwrap(); // half-open: generation 2
                                          // The call from generation 0 fails late: it must not decide the probe.
    b.record(slow_call, Outcome::Failure, MS);
    assert_eq!(b.state(), State::HalfOpen);
    b.record(probe, Outcome::Success, MS);
    assert_eq!(b.state(), State::Closed);
    // And a stale success in closed changes nothing either.
    b.record(slower_call, Outcome::Success, MS);
    assert_eq!(b.stats().calls, 0);
}

#[test]
fn ignored_probes_give_their_slot_back() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .window(Window::ConsecutiveFailures(1))
        .wait_in_open(Duration::from_secs(1))
        .half_open_probes(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    run(&b, Outcome::Failure, MS);
    clock.advance(Duration::from_secs(1));
    let p = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    b.record(p, Outcome::Cancelled, MS);
    assert_eq!(b.state(), State::HalfOpen);
    let p = b.try_acquire().unwrap();
    b.record(p, Outcome::Success, MS);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn operator_switches() {
    let b = CircuitBreaker::builder()
        .window(Window::ConsecutiveFailures(1))
        .build()
        .unwrap();
    b.force_open();
    assert_eq!(b.state(), State::ForcedOpen);
    assert_eq!(b.try_acquire().unwrap_err().retry_after_hint(), None);
    b.disable();
    for _ in 0..10 {
        run(&b, Outcome::Failure, MS);
    }
    assert_eq!(b.state(), State::Disabled, "disabled counts nothing");
    b.reset();
    assert_eq!(b.state(), State::Closed);
    run(&b, Outcome::Failure, MS);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.generation(), 4);
}

#[test]
fn a_panicking_call_counts_as_a_failure() {
    let b = CircuitBreaker::builder()
        .window(Window::ConsecutiveFailures(1))
        .build()
        .unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = b.call(|| -> Result<(), ()> { panic!("boom") });
    }));
    assert!(r.is_err());
    assert_eq!(b.state(), State::Open);
}

#[test]
fn bad_settings_are_refused_with_the_field_named() {
    let e: ConfigError = CircuitBreaker::builder()
        .failure_rate_threshold(0.0)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "failure_rate_threshold");
    assert_eq!(
        e.to_string(),
        "invalid circuit breaker setting `failure_rate_threshold` = 0: \
         expected a percentage above 0 and at most 100 (50 is the usual choice)"
    );
    let e = CircuitBreaker::builder()
        .half_open_probes(0)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("half_open_probes"));
    assert!(CircuitBreaker::builder()
        .window(Window::Count(0))
        .build()
        .is_err());
    assert!(CircuitBreaker::builder()
        .window(Window::Time(Duration::from_millis(10)))
        .build()
        .is_err());
    assert!(CircuitBreaker::builder()
        .backoff(0.5, Duration::from_secs(60))
        .build()
        .is_err());
    assert!(CircuitBreaker::builder()
        .window(Window::Time(Duration::from_millis(1500)))
        .build()
        .is_err());
    assert!(CircuitBreaker::builder().jitter(1.0).build().is_err());
    assert!(CircuitBreaker::builder().minimum_calls(0).build().is_err());
    let e = CircuitBreaker::builder()
        .max_wait_in_half_open(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_wait_in_half_open");
    let e = AdaptiveThrottle::builder().k(0.5).build().unwrap_err();
    assert_eq!(
        (e.component(), e.field(), e.value()),
        ("adaptive throttle", "k", "0.5")
    );
}

#[test]
fn adaptive_throttle_follows_the_sre_formula() {
    let clock = ManualClock::new();
    let t = AdaptiveThrottle::builder()
        .window(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    // 10 requests, 3 accepted: p = (10 - 2*3) / 11.
    for i in 0..10 {
        if let Ok(p) = t.try_acquire() {
            t.record(
                p,
                if i < 3 {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
                MS,
            );
        }
    }
    assert_eq!(t.counts(), (10, 3));
    assert!((t.rejection_probability() - 4.0 / 11.0).abs() < 1e-12);
    // Rejections happen at about that rate (the counts move as we go, so only
    // check that some but not all are rejected over a short run).
    let rejected = (0..50).filter(|_| t.try_acquire().is_err()).count();
    assert!(rejected > 10 && rejected < 50, "{rejected}");
    // Once the window has passed, history is forgotten.
    clock.advance(Duration::from_secs(11));
    assert_eq!(t.counts(), (0, 0));
    assert_eq!(t.rejection_probability(), 0.0);
}

/// Opens a one-probe breaker (consecutive failures) and moves it to half-open.
fn half_open_with_one_probe(clock: &ManualClock) -> CircuitBreaker<ManualClock> {
    let b = CircuitBreaker::builder()
        .window(Window::ConsecutiveFailures(1))
        .wait_in_open(Duration::from_secs(1))
        .half_open_probes(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    run(&b, Outcome::Failure, MS);
    clock.advance(Duration::from_secs(1));
    b
}

#[test]
fn a_probe_dropped_without_a_report_gives_its_slot_back() {
    let clock = ManualClock::new();
    let b = half_open_with_one_probe(&clock);
    let probe = b.try_acquire().unwrap();
    assert_eq!(b.state(), State::HalfOpen);
    assert!(b.try_acquire().is_err(), "the only probe is out");
    // The caller returns early (an error path, a `?`) and never reports.
    drop(probe);
    let probe = b.try_acquire().expect("the dropped probe's slot came back");
    b.record(probe, Outcome::Success, MS);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_probe_that_never_reports_does_not_hold_half_open_for_ever() {
    let clock = ManualClock::new();
    // The default maximum wait in half-open: 60 s.
    let b = half_open_with_one_probe(&clock);
    // The probe is leaked: no report, no drop (a hung call behaves the same).
    std::mem::forget(b.try_acquire().unwrap());
    assert_eq!(b.state(), State::HalfOpen);
    let generation = b.generation();
    for _ in 0..59 {
        clock.advance(Duration::from_secs(1));
        assert!(b.try_acquire().is_err());
        assert_eq!(b.state(), State::HalfOpen);
    }
    // 60 s in half-open: the next call finds no probe left and reopens it, with
    // the wait in open (1 s, no backoff configured) as its hint.
    clock.advance(Duration::from_secs(1));
    let r = b.try_acquire().unwrap_err();
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.generation(), generation + 1);
    assert_eq!(r.retry_after_hint(), Some(Duration::from_secs(1)));
    // After the wait a fresh half-open admits its probe again.
    clock.advance(Duration::from_secs(1));
    let probe = b.try_acquire().expect("a fresh half-open");
    assert_eq!(b.state(), State::HalfOpen);
    b.record(probe, Outcome::Success, MS);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn the_maximum_wait_in_half_open_is_configurable_and_counts_as_a_reopening() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder()
        .window(Window::ConsecutiveFailures(1))
        .wait_in_open(Duration::from_secs(1))
        .backoff(2.0, Duration::from_secs(60))
        .half_open_probes(2)
        .max_wait_in_half_open(Duration::from_secs(5))
        .clock(clock.clone())
        .build()
        .unwrap();
    run(&b, Outcome::Failure, MS);
    clock.advance(Duration::from_secs(1));
    let reported = b.try_acquire().unwrap();
    std::mem::forget(b.try_acquire().unwrap());
    b.record(reported, Outcome::Success, MS);
    assert_eq!(b.state(), State::HalfOpen, "one of two probes reported");
    clock.advance(Duration::from_millis(4999));
    assert!(b.try_acquire().is_err());
    assert_eq!(b.state(), State::HalfOpen);
    clock.advance(MS);
    // Reopened with the backoff of a second opening in a row: 2 s.
    let r = b.try_acquire().unwrap_err();
    assert_eq!(b.state(), State::Open);
    assert_eq!(r.retry_after_hint(), Some(Duration::from_secs(2)));
}

#[test]
fn every_call_and_transition_is_an_event() {
    use scalekit_breaker::BreakerEvent;
    let clock = ManualClock::new();
    let events = Arc::new(Mutex::new(Vec::<BreakerEvent>::new()));
    let seen = Arc::clone(&events);
    let b = CircuitBreaker::builder()
        .window(Window::ConsecutiveFailures(2))
        .slow_call_duration(Duration::from_millis(100))
        .wait_in_open(Duration::from_secs(1))
        .half_open_probes(1)
        .on_event(move |e| seen.lock().unwrap().push(*e))
        .clock(clock.clone())
        .build()
        .unwrap();
    run(&b, Outcome::Success, MS);
    run(&b, Outcome::Success, Duration::from_millis(150));
    run(&b, Outcome::Ignored, MS);
    run(&b, Outcome::Cancelled, MS);
    drop(b.try_acquire().unwrap()); // dropped unreported: cancelled too
    run(&b, Outcome::Failure, Duration::from_millis(200));
    run(&b, Outcome::Failure, MS); // the second in a row: opens
    let _ = b.try_acquire(); // rejected, 1 s to wait
    clock.advance(Duration::from_secs(1));
    let probe = b.try_acquire().unwrap(); // open -> half-open
    let _ = b.try_acquire(); // rejected: the probe is out
    b.record(probe, Outcome::Success, MS); // half-open -> closed
    let got = events.lock().unwrap().clone();
    let t = |from, to, generation, at| {
        let mut tr = None;
        for e in &got {
            if let BreakerEvent::Transition(x) = e {
                if (x.from, x.to, x.generation) == (from, to, generation) {
                    tr = Some(*x);
                }
            }
        }
        let tr = tr.unwrap_or_else(|| panic!("no transition {from} -> {to}"));
        assert_eq!(tr.at_nanos, at);
        BreakerEvent::Transition(tr)
    };
    let want = vec![
        BreakerEvent::Success {
            latency: MS,
            slow: false,
        },
        BreakerEvent::Success {
            latency: Duration::from_millis(150),
            slow: true,
        },
        BreakerEvent::Ignored { latency: MS },
        BreakerEvent::Cancelled,
        BreakerEvent::Cancelled,
        BreakerEvent::Failure {
            latency: Duration::from_millis(200),
            slow: true,
        },
        BreakerEvent::Failure {
            latency: MS,
            slow: false,
        },
        t(State::Closed, State::Open, 1, 0),
        BreakerEvent::Rejected {
            state: State::Open,
            retry_after: Some(Duration::from_secs(1)),
        },
        t(State::Open, State::HalfOpen, 2, 1_000_000_000),
        BreakerEvent::Rejected {
            state: State::HalfOpen,
            retry_after: None,
        },
        BreakerEvent::Success {
            latency: MS,
            slow: false,
        },
        t(State::HalfOpen, State::Closed, 3, 1_000_000_000),
    ];
    assert_eq!(got, want);
    assert_eq!(got.iter().filter(|e| e.is_slow()).count(), 2);
}

#[test]
fn adaptive_throttle_does_not_count_cancelled_calls_as_accepts() {
    let clock = ManualClock::new();
    let t = AdaptiveThrottle::builder()
        .window(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    // Under overload the clients time out: every call is abandoned. Those are
    // not accepts, so the rejection probability rises as for refusals.
    for _ in 0..20 {
        if let Ok(p) = t.try_acquire() {
            t.record(p, Outcome::Cancelled, Duration::from_secs(1));
        }
    }
    assert_eq!(t.counts(), (20, 0));
    assert!((t.rejection_probability() - 20.0 / 21.0).abs() < 1e-12);
    // A success and an ignored outcome (the backend answered) are accepts.
    for outcome in [Outcome::Success, Outcome::Ignored] {
        // Retry until the throttle lets one through (it rejects at random).
        while t.try_acquire().is_err() {}
        t.record((), outcome, MS);
    }
    assert_eq!(t.counts().1, 2);
}
