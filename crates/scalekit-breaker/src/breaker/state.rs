//! The breaker's states and the atomic words they live in: the state word
//! (state, probes left, generation) and the half-open probe tally.

use std::fmt;

/// The state of a [`CircuitBreaker`](crate::CircuitBreaker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are rejected until the wait in open is over.
    Open,
    /// A fixed number of probe calls go through; their outcomes decide between
    /// closed and open.
    HalfOpen,
    /// Every call goes through and nothing is counted (an operator's switch).
    Disabled,
    /// Every call is rejected until
    /// [`CircuitBreaker::reset`](crate::CircuitBreaker::reset) (an operator's switch).
    ForcedOpen,
}

impl State {
    fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::Disabled => 3,
            State::ForcedOpen => 4,
        }
    }

    fn from_code(code: u64) -> State {
        match code {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::Disabled,
            _ => State::ForcedOpen,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced-open",
        })
    }
}

// The state word: state (3 bits) | probes left in half-open (16 bits) | generation.
const STATE_BITS: u32 = 3;
pub(crate) const PROBE_SHIFT: u32 = STATE_BITS;
pub(crate) const PROBE_MASK: u64 = 0xFFFF;
const GEN_SHIFT: u32 = PROBE_SHIFT + 16;

pub(crate) fn encode(state: State, probes: u64, generation: u64) -> u64 {
    state.code() | (probes & PROBE_MASK) << PROBE_SHIFT | generation << GEN_SHIFT
}
pub(crate) fn state_of(word: u64) -> State {
    State::from_code(word & ((1 << STATE_BITS) - 1))
}
pub(crate) fn probes_of(word: u64) -> u64 {
    (word >> PROBE_SHIFT) & PROBE_MASK
}
pub(crate) fn gen_of(word: u64) -> u64 {
    word >> GEN_SHIFT
}

// Probe results of one half-open generation: tag (25 bits) | done | failed | slow (13 bits each).
pub(crate) const FIELD: u32 = 13;
pub(crate) const FIELD_MASK: u64 = (1 << FIELD) - 1;
pub(crate) const TAG_SHIFT: u32 = 3 * FIELD;
pub(crate) const DONE_ONE: u64 = 1;
pub(crate) const FAILED_ONE: u64 = 1 << FIELD;
pub(crate) const SLOW_ONE: u64 = 1 << (2 * FIELD);

/// The tag of a generation in the probe tally.
pub(crate) fn tag(generation: u64) -> u64 {
    generation & ((1 << (64 - TAG_SHIFT)) - 1)
}

/// The most probe calls half-open can admit.
pub const MAX_HALF_OPEN_PROBES: u32 = 4095;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_round_trips() {
        for state in [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::Disabled,
            State::ForcedOpen,
        ] {
            let w = encode(state, 4095, 123_456);
            assert_eq!(
                (state_of(w), probes_of(w), gen_of(w)),
                (state, 4095, 123_456)
            );
        }
    }
}
