//! What the sources share: the backoff schedule, content fingerprints and the
//! JSON-or-TOML guess.

/// The delay before the next attempt after `failures` consecutive failures: the
/// interval doubled per failure, capped at `max`.
///
/// ```
/// use scalekit_flags::sources::backoff;
/// use std::time::Duration;
/// let s = Duration::from_secs(1);
/// assert_eq!(backoff(s, Duration::from_secs(60), 0), s);
/// assert_eq!(backoff(s, Duration::from_secs(60), 3), Duration::from_secs(8));
/// assert_eq!(backoff(s, Duration::from_secs(60), 40), Duration::from_secs(60));
/// ```
pub fn backoff(
    interval: std::time::Duration,
    max: std::time::Duration,
    failures: u32,
) -> std::time::Duration {
    let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
    interval
        .checked_mul(factor)
        .unwrap_or(max)
        .min(max.max(interval))
}

/// A 64-bit FNV-1a of the text, to skip re-applying identical content.
#[cfg_attr(not(any(feature = "watch", feature = "redis")), allow(dead_code))]
pub(crate) fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether text looks like TOML rather than JSON (JSON states start with `{`).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn looks_like_toml(text: &str) -> bool {
    !text.trim_start().starts_with('{')
}
