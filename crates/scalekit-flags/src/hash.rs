//! Unleash's bucketing hash: MurmurHash3 x86 32-bit, normalised to `1..=modulus`.
//!
//! Every Unleash SDK computes `murmur3_32("{group}:{identifier}", seed) % modulus + 1`
//! (seed 0 and modulus 100 for rollouts, seed [`VARIANT_SEED`] and the variants' total
//! weight for variants). We hash the three parts as one stream, so the hot path never
//! builds the joined string. The function is written here rather than taken from the
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

/// MurmurHash3 of `g ++ ":" ++ i` without copying either part: the blocks of `g`,
/// one block stitched from `g`'s tail, the colon and `i`'s head, then `i`'s blocks.
#[inline]
fn murmur3_joined(g: &[u8], i: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut gc = g.chunks_exact(4);
    for c in &mut gc {
        h = block(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let gr = gc.remainder();
    let mut carry = [0u8; 4];
    let mut n = gr.len();
    carry[..n].copy_from_slice(gr);
    carry[n] = b':';
    n += 1;
    let take = (4 - n).min(i.len());
    carry[n..n + take].copy_from_slice(&i[..take]);
    n += take;
    let tail: &[u8] = if n == 4 {
        h = block(h, u32::from_le_bytes(carry));
        let mut ic = i[take..].chunks_exact(4);
        for c in &mut ic {
            h = block(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        ic.remainder()
    } else {
        &carry[..n]
    };
    if !tail.is_empty() {
        let mut k = 0u32;
        for &b in tail.iter().rev() {
            k = (k << 8) | u32::from(b);
        }
        h ^= mix_k(k);
    }
    h ^= (g.len() + 1 + i.len()) as u32;
    fmix(h)
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
    if modulus == 0 {
        return 0;
    }
    murmur3_joined(group.as_bytes(), id.as_bytes(), seed) % modulus + 1
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
            let joined = [&data[..a], b":", &data[a..]].concat();
            proptest::prop_assert_eq!(murmur3_joined(&data[..a], &data[a..], seed), murmur3_32(&[&joined], seed));
        }
    }
}
