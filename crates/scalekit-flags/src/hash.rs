//! Unleash's bucketing hash: MurmurHash3 x86 32-bit, normalised to `1..=modulus`.
//!
//! Every Unleash SDK computes `murmur3_32("{group}:{identifier}", seed) % modulus + 1`
//! (seed 0 and modulus 100 for rollouts, seed [`VARIANT_SEED`] and the variants' total
//! weight for variants). We hash the parts as one stream, so the hot path never
//! builds the joined string, and the state after `{group}:` is computed once, when a
//! state is compiled, so evaluation hashes only the identifier. The function is written here rather than taken from the
//! `murmur3` crate because that crate hashes through `std::io::Read` and returns an
//! `io::Result` (a fallible, allocating path for what is forty lines of arithmetic);
//! the tests check it against the published reference vectors.

/// The seed Unleash uses to bucket variants.
pub const VARIANT_SEED: u32 = 86_028_157;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline]
fn mix_k(mut k: u32) -> u32 {
    k = k.wrapping_mul(C1);
    k = k.rotate_left(15);
    k.wrapping_mul(C2)
}

/// MurmurHash3 x86 32-bit of the concatenation of `parts`.
///
/// ```
/// use scalekit_flags::hash::murmur3_32;
/// assert_eq!(murmur3_32(&[b"hello"], 0), 0x248b_fa47);
/// assert_eq!(murmur3_32(&[b"he", b"llo"], 0), 0x248b_fa47);
/// ```
pub fn murmur3_32(parts: &[&[u8]], seed: u32) -> u32 {
    let mut h = seed;
    let mut len: usize = 0;
    let mut buf = [0u8; 4];
    let mut filled = 0usize;
    for part in parts {
        len += part.len();
        let mut bytes: &[u8] = part;
        if filled > 0 {
            while filled < 4 && !bytes.is_empty() {
                buf[filled] = bytes[0];
                filled += 1;
                bytes = &bytes[1..];
            }
            if filled < 4 {
                continue;
            }
            h = block(h, u32::from_le_bytes(buf));
            filled = 0;
        }
        let mut chunks = bytes.chunks_exact(4);
        for c in &mut chunks {
            h = block(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        for &b in chunks.remainder() {
            buf[filled] = b;
            filled += 1;
        }
    }
    if filled > 0 {
        let mut k = 0u32;
        for i in (0..filled).rev() {
            k = (k << 8) | u32::from(buf[i]);
        }
        h ^= mix_k(k);
    }
    h ^= len as u32;
    fmix(h)
}

/// MurmurHash3's state after hashing `{group}:` with a seed, computed once (when a
/// state is compiled), so that bucketing hashes only the identifier: the full
/// blocks of the prefix are mixed in, the last zero to three bytes are carried.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prefix {
    h: u32,
    /// The bytes carried into the next block, little-endian.
    carry: u32,
    /// How many bytes `carry` holds (0 to 3).
    filled: u32,
    /// The prefix's length (only its low 32 bits count, as in MurmurHash3).
    len: u32,
}

impl Prefix {
    /// The state after `group`, a colon, and nothing else yet.
    pub(crate) fn new(group: &str, seed: u32) -> Self {
        let mut p = Prefix {
            h: seed,
            carry: 0,
            filled: 0,
            len: 0,
        };
        for &b in group.as_bytes().iter().chain(b":") {
            p.carry |= u32::from(b) << (8 * p.filled);
            p.filled += 1;
            if p.filled == 4 {
                p.h = block(p.h, p.carry);
                p.carry = 0;
                p.filled = 0;
            }
        }
        p.len = (group.len() as u32).wrapping_add(1);
        p
    }

    /// MurmurHash3 x86 32-bit of the prefix followed by `id`.
    #[inline]
    pub(crate) fn hash(&self, id: &[u8]) -> u32 {
        let mut h = self.h;
        let mut k = self.carry;
        let mut filled = self.filled;
        let mut rest = id;
        if filled > 0 {
            while filled < 4 {
                let Some((&b, r)) = rest.split_first() else {
                    break;
                };
                k |= u32::from(b) << (8 * filled);
                filled += 1;
                rest = r;
            }
            if filled == 4 {
                h = block(h, k);
                k = 0;
                filled = 0;
            }
        }
        let mut chunks = rest.chunks_exact(4);
        for c in &mut chunks {
            h = block(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        // Either `filled` is 0 here or `rest` was used up completing the carry.
        for &b in chunks.remainder() {
            k |= u32::from(b) << (8 * filled);
            filled += 1;
        }
        if filled > 0 {
            h ^= mix_k(k);
        }
        h ^= self.len.wrapping_add(id.len() as u32);
        fmix(h)
    }

    /// Unleash's normalised hash of the prefix and `id`: in `1..=modulus` (0 when
    /// `modulus` is 0).
    #[inline]
    pub(crate) fn normalized(&self, id: &str, modulus: u32) -> u32 {
        if modulus == 0 {
            return 0;
        }
        self.hash(id.as_bytes()) % modulus + 1
    }
}

#[cfg(test)]
fn murmur3_32_contiguous(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        h = block(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut k = 0u32;
        for &b in rest.iter().rev() {
            k = (k << 8) | u32::from(b);
        }
        h ^= mix_k(k);
    }
    h ^= data.len() as u32;
    fmix(h)
}

#[inline]
fn block(h: u32, k: u32) -> u32 {
    let h = (h ^ mix_k(k)).rotate_left(13);
    h.wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[inline]
fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Unleash's normalised hash: `murmur3_32("{group}:{id}", seed) % modulus + 1`, in
/// `1..=modulus`. A `modulus` of zero gives zero.
///
/// ```
/// use scalekit_flags::hash::normalized_hash;
/// // The rollout bucket of user "123" in group "gr1" (from Unleash's own tests).
/// assert_eq!(normalized_hash("gr1", "123", 100, 0), 73);
/// ```
#[inline]
pub fn normalized_hash(group: &str, id: &str, modulus: u32, seed: u32) -> u32 {
    Prefix::new(group, seed).normalized(id, modulus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &[u8], seed: u32) -> u32 {
        murmur3_32(&[s], seed)
    }

    #[test]
    fn reference_vectors() {
        // Published test vectors for MurmurHash3_x86_32.
        assert_eq!(one(b"", 0), 0);
        assert_eq!(one(b"", 1), 0x514e_28b7);
        assert_eq!(one(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(one(&[0, 0, 0, 0], 0), 0x2362_f9de);
        assert_eq!(one(&[0x21, 0x43, 0x65, 0x87], 0), 0xf55b_516b);
        assert_eq!(one(&[0x21, 0x43, 0x65, 0x87], 0x5082_edee), 0x2362_f9de);
        assert_eq!(one(&[0x21, 0x43, 0x65], 0), 0x7e4a_8634);
        assert_eq!(one(&[0x21, 0x43], 0), 0xa0f7_b07a);
        assert_eq!(one(&[0x21], 0), 0x7266_1cf4);
        assert_eq!(one(b"Hello, world!", 1234), 0xfaf6_cdb3);
        assert_eq!(
            one(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2fa8_26cd
        );
    }

    #[test]
    fn unleash_normalised_values() {
        // Values from the Unleash SDKs' own test suites.
        assert_eq!(normalized_hash("gr1", "123", 100, 0), 73);
        assert_eq!(normalized_hash("groupX", "999", 100, 0), 25);
    }

    proptest::proptest! {
        #[test]
        fn split_points_do_not_matter(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64), a in 0usize..64, b in 0usize..64, seed: u32) {
            let a = a.min(data.len());
            let b = b.min(data.len()).max(a);
            let whole = murmur3_32(&[&data], seed);
            proptest::prop_assert_eq!(murmur3_32(&[&data[..a], &data[a..b], &data[b..]], seed), whole);
            proptest::prop_assert_eq!(murmur3_32_contiguous(&data, seed), whole);
            let group = String::from_utf8_lossy(&data[..a]);
            let id = &data[a..];
            let joined = [group.as_bytes(), b":", id].concat();
            proptest::prop_assert_eq!(Prefix::new(&group, seed).hash(id), murmur3_32(&[&joined], seed));
        }
    }
}
