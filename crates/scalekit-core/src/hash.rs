//! Stable key hashing: the same 64-bit hash for the same key in every process, on
//! every platform, in every version of scalekit.
//!
//! Placement (which node holds a key) must agree between processes: the web tier
//! and the worker tier must send the same user to the same shard, and must keep
//! doing so after either is upgraded. `std`'s `DefaultHasher` and `RandomState`
//! are seeded per process and may change between Rust versions, `ahash` varies by
//! CPU features and version, and the `Hash` trait itself writes integers in native
//! byte order. None of them may place keys.
//!
//! # The pinned algorithm
//!
//! * **Keys** are hashed with **SipHash-1-3** (the `siphasher` crate) under the
//!   fixed 128-bit key `k0 = 0x5343_414c_454b_4954` (ASCII `"SCALEKIT"`),
//!   `k1 = 0x7363_616c_656b_6974` (ASCII `"scalekit"`). SipHash is a keyed PRF with
//!   good distribution on any input and costs about 15 ns for a short key.
//! * A key is hashed as **its byte encoding**, written by [`StableHash`]:
//!   * `str`, `String`, `[u8]`, `Vec<u8>`, `[u8; N]`: the bytes themselves, with no
//!     length prefix or terminator (so `"ab"` and `b"ab"` place alike);
//!   * unsigned integers (`u8` .. `u64`, `usize`): widened to `u64`, 8 bytes
//!     little-endian; signed integers: widened to `i64`, 8 bytes little-endian;
//!     `u128`/`i128`: 16 bytes little-endian (so `7u32` and `7u64` place alike);
//!   * `bool`: as `u64` 0 or 1; `char`: its scalar value as `u64`;
//!   * `Ipv4Addr`: 4 octets; `Ipv6Addr`: 16 octets; `IpAddr`: the octets of the
//!     address it holds; `SocketAddr`: the octets of its IP then the port, 2 bytes
//!     little-endian.
//! * Derived values (virtual-node points, per-node scores, rehashes) combine two
//!   64-bit values with [`hash_pair`], built on [`mix64`], the SplitMix64 finalizer
//!   (Steele, Lea and Flood, 2014) with its published constants.
//!
//! These choices are part of scalekit's compatibility promise: changing any of them
//! is a breaking change of every crate that places keys, and the tests pin outputs
//! for known inputs.
//!
//! ```
//! use scalekit_core::{stable_hash, StableHash};
//!
//! // The same number on every machine, every run.
//! assert_eq!("user:42".stable_hash(), stable_hash(b"user:42"));
//! assert_eq!(7u32.stable_hash(), 7u64.stable_hash());
//! ```

use std::borrow::Cow;
use std::hash::Hasher as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;

use siphasher::sip::SipHasher13;

/// First half of the pinned SipHash key: ASCII `"SCALEKIT"`.
pub const STABLE_HASH_K0: u64 = 0x5343_414c_454b_4954;
/// Second half of the pinned SipHash key: ASCII `"scalekit"`.
pub const STABLE_HASH_K1: u64 = 0x7363_616c_656b_6974;

/// An incremental stable hasher: SipHash-1-3 under the pinned key.
///
/// Writing `"ab"` then `"c"` gives the same hash as writing `"abc"`; when you hash
/// a composite key, write a length or a separator between variable-length parts.
///
/// ```
/// use scalekit_core::{stable_hash, StableHasher};
///
/// let mut h = StableHasher::new();
/// h.write(b"tenant-7/");
/// h.write_u64(1234);
/// let composite = h.finish();
///
/// let mut again = StableHasher::new();
/// again.write(b"tenant-7/");
/// again.write_u64(1234);
/// assert_eq!(composite, again.finish());
/// assert_ne!(composite, stable_hash(b"tenant-7/"));
/// ```
#[derive(Clone, Debug)]
pub struct StableHasher {
    inner: SipHasher13,
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl StableHasher {
    /// A hasher with the pinned key and nothing written.
    #[inline]
    pub fn new() -> Self {
        Self {
            inner: SipHasher13::new_with_keys(STABLE_HASH_K0, STABLE_HASH_K1),
        }
    }

    /// Writes raw bytes.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        self.inner.write(bytes);
    }

    /// Writes 8 bytes, little-endian.
    #[inline]
    pub fn write_u64(&mut self, value: u64) {
        self.inner.write(&value.to_le_bytes());
    }

    /// Writes 8 bytes, little-endian.
    #[inline]
    pub fn write_i64(&mut self, value: i64) {
        self.inner.write(&value.to_le_bytes());
    }

    /// Writes 16 bytes, little-endian.
    #[inline]
    pub fn write_u128(&mut self, value: u128) {
        self.inner.write(&value.to_le_bytes());
    }

    /// The hash of everything written so far.
    #[inline]
    pub fn finish(&self) -> u64 {
        self.inner.finish()
    }
}

/// The stable hash of a byte string: SipHash-1-3 under the pinned key.
///
/// ```
/// use scalekit_core::stable_hash;
/// assert_eq!(stable_hash(b"hello"), stable_hash("hello".as_bytes()));
/// ```
#[inline]
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = StableHasher::new();
    h.write(bytes);
    h.finish()
}

/// The stable hash of a `u64` key (its 8 little-endian bytes).
///
/// ```
/// use scalekit_core::{stable_hash_u64, StableHash};
/// assert_eq!(stable_hash_u64(99), 99u64.stable_hash());
/// ```
#[inline]
pub fn stable_hash_u64(key: u64) -> u64 {
    // SipHash-1-3 of exactly one 8-byte block, written out: the same output as
    // the streaming hasher (a test checks it), in about half the time, since the
    // key is a constant and there is no buffering.
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut v = [
        STABLE_HASH_K0 ^ 0x736f_6d65_7073_6575,
        STABLE_HASH_K1 ^ 0x646f_7261_6e64_6f6d,
        STABLE_HASH_K0 ^ 0x6c79_6765_6e65_7261,
        STABLE_HASH_K1 ^ 0x7465_6462_7974_6573,
    ];
    // The message block (the key, little-endian), one compression round.
    v[3] ^= key;
    round(&mut v);
    v[0] ^= key;
    // The final block: the length (8) in the top byte, no tail bytes.
    let last = 8u64 << 56;
    v[3] ^= last;
    round(&mut v);
    v[0] ^= last;
    // Three finalization rounds.
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The SplitMix64 finalizer: a fast bijection on `u64` with full avalanche.
///
/// `z ^= z >> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27; z *= 0x94d049bb133111eb;
/// z ^= z >> 31`. Pinned: part of placement.
///
/// ```
/// use scalekit_core::mix64;
/// assert_eq!(mix64(0), 0);
/// assert_ne!(mix64(1), mix64(2));
/// ```
#[inline]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Combines two 64-bit hashes into one: `mix64(a ^ mix64(b + 0x9e3779b97f4a7c15))`.
///
/// Not symmetric (`hash_pair(a, b) != hash_pair(b, a)` in general). Used for
/// virtual-node points (node hash, index), rendezvous scores (key hash, node hash)
/// and rehashing (key hash, attempt). Pinned: part of placement.
///
/// ```
/// use scalekit_core::hash_pair;
/// assert_ne!(hash_pair(1, 2), hash_pair(2, 1));
/// ```
#[inline]
pub const fn hash_pair(a: u64, b: u64) -> u64 {
    mix64(a ^ mix64(b.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// A value with a stable byte encoding, hashed by [`StableHasher`].
///
/// Implemented for strings, byte strings, integers, `bool`, `char`, IP and socket
/// addresses, and through references and smart pointers. Implement it for your own
/// node or key types by writing a stable encoding of their identity:
///
/// ```
/// use scalekit_core::{StableHash, StableHasher};
///
/// struct Shard { region: &'static str, index: u32 }
///
/// impl StableHash for Shard {
///     fn stable_hash_into(&self, h: &mut StableHasher) {
///         h.write(self.region.as_bytes());
///         h.write(b"/"); // separator: "eu"/"1" must not equal "e"/"u1"
///         h.write_u64(u64::from(self.index));
///     }
/// }
///
/// let a = Shard { region: "eu", index: 1 };
/// let b = Shard { region: "eu", index: 1 };
/// assert_eq!(a.stable_hash(), b.stable_hash());
/// ```
pub trait StableHash {
    /// Writes this value's stable encoding into `state`.
    fn stable_hash_into(&self, state: &mut StableHasher);

    /// The stable 64-bit hash of this value alone.
    #[inline]
    fn stable_hash(&self) -> u64 {
        let mut h = StableHasher::new();
        self.stable_hash_into(&mut h);
        h.finish()
    }
}

impl StableHash for [u8] {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write(self);
    }
}

impl<const N: usize> StableHash for [u8; N] {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write(self);
    }
}

impl StableHash for Vec<u8> {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write(self);
    }
}

impl StableHash for str {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write(self.as_bytes());
    }
}

impl StableHash for String {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write(self.as_bytes());
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl StableHash for $t {
            #[inline]
            fn stable_hash_into(&self, state: &mut StableHasher) {
                state.write_u64(*self as u64);
            }
            #[inline]
            fn stable_hash(&self) -> u64 {
                stable_hash_u64(*self as u64)
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64, usize);

macro_rules! signed {
    ($($t:ty),*) => {$(
        impl StableHash for $t {
            #[inline]
            fn stable_hash_into(&self, state: &mut StableHasher) {
                state.write_i64(*self as i64);
            }
            #[inline]
            fn stable_hash(&self) -> u64 {
                stable_hash_u64(*self as i64 as u64)
            }
        }
    )*};
}
signed!(i8, i16, i32, i64, isize);

impl StableHash for u128 {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write_u128(*self);
    }
}

impl StableHash for i128 {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write(&self.to_le_bytes());
    }
}

impl StableHash for bool {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write_u64(u64::from(*self));
    }
}

impl StableHash for char {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write_u64(u64::from(*self));
    }
}

impl StableHash for Ipv4Addr {
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write(&self.octets());
    }
}

impl StableHash for Ipv6Addr {
    fn stable_hash_into(&self, state: &mut StableHasher) {
        state.write(&self.octets());
    }
}

impl StableHash for IpAddr {
    fn stable_hash_into(&self, state: &mut StableHasher) {
        match self {
            IpAddr::V4(ip) => ip.stable_hash_into(state),
            IpAddr::V6(ip) => ip.stable_hash_into(state),
        }
    }
}

impl StableHash for SocketAddr {
    fn stable_hash_into(&self, state: &mut StableHasher) {
        self.ip().stable_hash_into(state);
        state.write(&self.port().to_le_bytes());
    }
}

impl<T: StableHash + ?Sized> StableHash for &T {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        (**self).stable_hash_into(state);
    }
}

impl<T: StableHash + ?Sized> StableHash for Box<T> {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        (**self).stable_hash_into(state);
    }
}

impl<T: StableHash + ?Sized> StableHash for Arc<T> {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        (**self).stable_hash_into(state);
    }
}

impl<T: StableHash + ?Sized> StableHash for Rc<T> {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        (**self).stable_hash_into(state);
    }
}

impl<T: StableHash + ToOwned + ?Sized> StableHash for Cow<'_, T> {
    #[inline]
    fn stable_hash_into(&self, state: &mut StableHasher) {
        self.as_ref().stable_hash_into(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The pinned outputs. If this test fails, placement changed for every user:
    /// that is a breaking change, never a test to update casually.
    #[test]
    fn pinned_outputs_for_known_inputs() {
        let pinned: [(&[u8], u64); 5] = [
            (b"", PIN_EMPTY),
            (b"a", PIN_A),
            (b"user:42", PIN_USER42),
            (b"The quick brown fox jumps over the lazy dog", PIN_FOX),
            (&[0u8; 8], PIN_ZERO_U64),
        ];
        for (input, want) in pinned {
            assert_eq!(stable_hash(input), want, "input {input:?}");
        }
        assert_eq!(0u64.stable_hash(), PIN_ZERO_U64);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        // SplitMix64's first output from state 0 (its published reference value).
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        assert_eq!(hash_pair(1, 2), PIN_PAIR_1_2);
    }

    const PIN_EMPTY: u64 = 0x0a06_96ad_d6df_ba1a;
    const PIN_A: u64 = 0xf796_a04f_9381_35ef;
    const PIN_USER42: u64 = 0xfc60_41a4_a9a1_c545;
    const PIN_FOX: u64 = 0xdd11_b12c_a695_27cc;
    const PIN_ZERO_U64: u64 = 0xd873_a123_6964_37c0;
    const PIN_PAIR_1_2: u64 = 0xf282_6f98_653e_9e57;

    #[test]
    fn siphash13_matches_an_independent_implementation() {
        // CPython 3.11+ hashes bytes with SipHash-1-3; under PYTHONHASHSEED=0 its key
        // is all zeros. `PYTHONHASHSEED=0 python3 -c 'print(hex(hash(b"a") % 2**64))'`
        // gives these values: they check the algorithm, independent of our key.
        for (input, want) in [
            (&b"a"[..], 0x4074_48d2_b89b_1813_u64),
            (b"user:42", 0x223d_d74f_b15f_308d),
            (
                b"The quick brown fox jumps over the lazy dog",
                0x8df6_76d3_d00c_451e,
            ),
        ] {
            let mut h = SipHasher13::new_with_keys(0, 0);
            h.write(input);
            assert_eq!(h.finish(), want, "input {input:?}");
        }
    }

    #[test]
    fn encodings_documented_in_the_module_hold() {
        assert_eq!("ab".stable_hash(), b"ab".stable_hash());
        assert_eq!(
            String::from("ab").stable_hash(),
            b"ab".to_vec().stable_hash()
        );
        assert_eq!(7u8.stable_hash(), 7u64.stable_hash());
        assert_eq!(7usize.stable_hash(), 7u64.stable_hash());
        assert_eq!((-7i32).stable_hash(), (-7i64).stable_hash());
        assert_eq!(true.stable_hash(), 1u64.stable_hash());
        assert_eq!('A'.stable_hash(), 65u64.stable_hash());
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(ip.stable_hash(), stable_hash(&[10, 0, 0, 1]));
        assert_eq!(IpAddr::V4(ip).stable_hash(), ip.stable_hash());
        let sa = SocketAddr::new(IpAddr::V4(ip), 0x1234);
        assert_eq!(sa.stable_hash(), stable_hash(&[10, 0, 0, 1, 0x34, 0x12]));
        assert_eq!(Arc::new("x").stable_hash(), "x".stable_hash());
        assert_eq!(Cow::Borrowed("x").stable_hash(), "x".stable_hash());
    }

    proptest! {
        #[test]
        fn streaming_equals_one_shot(a in proptest::collection::vec(any::<u8>(), 0..64),
                                     b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut h = StableHasher::new();
            h.write(&a);
            h.write(&b);
            let joined: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
            prop_assert_eq!(h.finish(), stable_hash(&joined));
        }

        #[test]
        fn integers_hash_as_little_endian_u64(x in any::<u64>(), y in any::<i32>()) {
            // The written-out one-block SipHash equals the streaming hasher.
            prop_assert_eq!(stable_hash_u64(x), stable_hash(&x.to_le_bytes()));
            let mut h = StableHasher::new();
            x.stable_hash_into(&mut h);
            prop_assert_eq!(x.stable_hash(), h.finish());
            prop_assert_eq!((x as u32).stable_hash(), stable_hash(&u64::from(x as u32).to_le_bytes()));
            prop_assert_eq!(y.stable_hash(), stable_hash(&i64::from(y).to_le_bytes()));
        }

        #[test]
        fn mix64_is_a_bijection_on_samples(a in any::<u64>(), b in any::<u64>()) {
            prop_assume!(a != b);
            prop_assert_ne!(mix64(a), mix64(b));
        }
    }
}
