//! No sequence of outcomes breaks the breaker's rules: the breaker agrees, step
//! by step, with a plain model of the state machine written from the rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use scalekit_breaker::{BreakerPermit, CircuitBreaker, State, Transition, Window};
use scalekit_core::{Admission, ManualClock, Outcome};

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    /// Report the permit at this index (modulo the held ones).
    Record(usize, Outcome, bool),
    Advance(u64),
    ForceOpen,
    Disable,
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Success),
        4 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
        1 => Just(Outcome::Cancelled),
    ];
    prop_oneof![
        10 => Just(Op::Acquire),
        10 => (any::<usize>(), outcome, any::<bool>()).prop_map(|(i, o, s)| Op::Record(i, o, s)),
        3 => (0u64..3000).prop_map(Op::Advance),
        1 => prop_oneof![Just(Op::ForceOpen), Just(Op::Disable), Just(Op::Reset)],
    ]
}

#[derive(Clone, Copy, Debug)]
struct Cfg {
    window: Option<u32>, // None: consecutive failures
    limit: u32,
    min_calls: u64,
    failure_rate: f64,
    slow_rate: f64,
    probes: u32,
}

const SLOW: Duration = Duration::from_millis(100);
const WAIT_MS: u64 = 1000;
const MAX_WAIT_MS: u64 = 4000;
const HALF_OPEN_MS: u64 = 5000;

fn cfg() -> impl Strategy<Value = Cfg> {
    (
        prop::option::of(1u32..8),
        1u32..5,
        1u64..8,
        prop_oneof![Just(25.0), Just(50.0), Just(100.0)],
        prop_oneof![Just(50.0), Just(100.0)],
        1u32..4,
    )
        .prop_map(
            |(window, limit, min_calls, failure_rate, slow_rate, probes)| Cfg {
                window,
                limit,
                min_calls,
                failure_rate,
                slow_rate,
                probes,
            },
        )
}

/// The rules, written as plainly as possible.
struct Model {
    cfg: Cfg,
    state: State,
    generation: u64,
    window: VecDeque<(bool, bool)>,
    consecutive: u32,
    open_until: u64,
    opens_in_row: u32,
    probes_left: u32,
    half_open_until: u64,
    probe_results: Vec<(bool, bool)>,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        Self {
            cfg,
            state: State::Closed,
            generation: 0,
            window: VecDeque::new(),
            consecutive: 0,
            open_until: 0,
            opens_in_row: 0,
            probes_left: 0,
            half_open_until: 0,
            probe_results: vec![],
        }
    }

    fn go(&mut self, to: State, now: u64) {
        self.generation += 1;
        self.state = to;
        match to {
            State::Closed => {
                self.window.clear();
                self.consecutive = 0;
                self.opens_in_row = 0;
            }
            State::Open => {
                let wait = (WAIT_MS << self.opens_in_row.min(10)).min(MAX_WAIT_MS);
                self.open_until = now + wait * 1_000_000;
                self.opens_in_row += 1;
            }
            State::HalfOpen => {
                self.probes_left = self.cfg.probes;
                self.half_open_until = now + HALF_OPEN_MS * 1_000_000;
                self.probe_results.clear();
            }
            _ => {}
        }
    }

    fn acquire(&mut self, now: u64) -> Result<u64, Option<u64>> {
        loop {
            match self.state {
                State::Closed | State::Disabled => return Ok(self.generation),
                State::ForcedOpen => return Err(None),
                State::Open if now < self.open_until => return Err(Some(self.open_until - now)),
                State::Open => self.go(State::HalfOpen, now),
                _ => {
                    if self.probes_left == 0 && now >= self.half_open_until {
                        // The probes had their time: reopen.
                        self.go(State::Open, now);
                        return Err(Some(self.open_until - now));
                    }
                    if self.probes_left == 0 {
                        return Err(None);
                    }
                    self.probes_left -= 1;
                    return Ok(self.generation);
                }
            }
        }
    }

    fn rates(&self, results: &[(bool, bool)]) -> bool {
        let n = results.len() as f64;
        let f = results.iter().filter(|r| r.0).count() as f64;
        let s = results.iter().filter(|r| r.1).count() as f64;
        f * 100.0 >= self.cfg.failure_rate * n || s * 100.0 >= self.cfg.slow_rate * n
    }

    fn record(&mut self, generation: u64, outcome: Outcome, slow: bool, now: u64) {
        if generation != self.generation {
            return;
        }
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            _ => {
                if self.state == State::HalfOpen {
                    self.probes_left += 1;
                }
                return;
            }
        };
        match (self.state, self.cfg.window) {
            (State::Closed, None) => {
                if failed {
                    self.consecutive += 1;
                    if self.consecutive >= self.cfg.limit {
                        self.go(State::Open, now);
                    }
                } else {
                    self.consecutive = 0;
                }
            }
            (State::Closed, Some(size)) => {
                self.window.push_back((failed, slow));
                if self.window.len() > size as usize {
                    self.window.pop_front();
                }
                let all: Vec<_> = self.window.iter().copied().collect();
                if all.len() as u64 >= self.cfg.min_calls && self.rates(&all) {
                    self.go(State::Open, now);
                }
            }
            (State::HalfOpen, window) => {
                let slow = slow && window.is_some();
                self.probe_results.push((failed, slow));
                if self.probe_results.len() as u32 == self.cfg.probes {
                    let reopen = match window {
                        None => self.probe_results.iter().any(|r| r.0),
                        Some(_) => self.rates(&self.probe_results.clone()),
                    };
                    self.go(if reopen { State::Open } else { State::Closed }, now);
                }
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_breaker_follows_the_rules(cfg in cfg(), ops in prop::collection::vec(op(), 1..300)) {
        let clock = ManualClock::new();
        let events = Arc::new(Mutex::new(Vec::<Transition>::new()));
        let seen = Arc::clone(&events);
        let b = CircuitBreaker::builder()
            .window(match cfg.window { Some(n) => Window::Count(n), None => Window::ConsecutiveFailures(cfg.limit) })
            .minimum_calls(cfg.min_calls)
            .failure_rate_threshold(cfg.failure_rate)
            .slow_call_rate_threshold(cfg.slow_rate)
            .slow_call_duration(SLOW)
            .wait_in_open(Duration::from_millis(WAIT_MS))
            .backoff(2.0, Duration::from_millis(MAX_WAIT_MS))
            .half_open_probes(cfg.probes)
            .max_wait_in_half_open(Duration::from_millis(HALF_OPEN_MS))
            .on_transition(move |t| seen.lock().unwrap().push(*t))
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut model = Model::new(cfg);
        let mut held: Vec<BreakerPermit> = vec![];
        let mut admitted_in_half_open = 0u32;
        let mut given_back = 0u32;
        for op in ops {
            let now = clock.now().as_nanos() as u64;
            match op {
                Op::Acquire => {
                    let got = b.try_acquire();
                    let want = model.acquire(now);
                    match (&got, want) {
                        (Ok(p), Ok(g)) => prop_assert_eq!(p.generation(), g),
                        (Err(r), Err(hint)) => prop_assert_eq!(r.retry_after_hint(), hint.map(Duration::from_nanos)),
                        _ => prop_assert!(false, "breaker {:?}, model {:?}", got, want),
                    }
                    if let Ok(p) = got {
                        if b.state() == State::HalfOpen { admitted_in_half_open += 1; }
                        held.push(p);
                    }
                }
                Op::Record(i, outcome, slow) if !held.is_empty() => {
                    let p = held.swap_remove(i % held.len());
                    let generation = p.generation();
                    if b.state() == State::HalfOpen && generation == b.generation()
                        && matches!(outcome, Outcome::Ignored | Outcome::Cancelled) {
                        given_back += 1;
                    }
                    let latency = if slow { SLOW } else { SLOW / 2 };
                    b.record(p, outcome, latency);
                    model.record(generation, outcome, slow, now);
                }
                Op::Record(..) => {}
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::ForceOpen => { b.force_open(); model.go(State::ForcedOpen, now); }
                Op::Disable => { b.disable(); model.go(State::Disabled, now); }
                Op::Reset => { b.reset(); model.go(State::Closed, now); }
            }
            prop_assert_eq!(b.state(), model.state);
            prop_assert_eq!(b.generation(), model.generation);
            if b.state() != State::HalfOpen {
                admitted_in_half_open = 0;
                given_back = 0;
            }
            // Half-open never has more probes out than configured.
            prop_assert!(admitted_in_half_open <= cfg.probes + given_back);
        }
        // Every transition was heard, in order, along an allowed edge.
        let events = events.lock().unwrap();
        prop_assert_eq!(events.len() as u64, b.generation());
        for (i, t) in events.iter().enumerate() {
            prop_assert_eq!(t.generation, i as u64 + 1);
            let allowed = matches!(
                (t.from, t.to),
                (State::Closed, State::Open) | (State::Open, State::HalfOpen)
                    | (State::HalfOpen, State::Closed) | (State::HalfOpen, State::Open)
                    | (_, State::ForcedOpen) | (_, State::Disabled) | (_, State::Closed)
            );
            prop_assert!(allowed, "{:?}", t);
            if i > 0 { prop_assert_eq!(t.from, events[i - 1].to); }
        }
    }
}
