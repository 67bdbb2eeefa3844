//! Redis Cluster hash slots: CRC16/XMODEM of the key (or of its `{hash tag}`)
//! modulo 16384, exactly as Redis computes them.

/// How many hash slots a Redis Cluster has.
pub const REDIS_CLUSTER_SLOTS: u16 = 16384;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0, no reflection), one table
/// lookup a byte. The table is built at compile time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC16/XMODEM of `bytes`, the checksum Redis Cluster places keys with.
///
/// ```
/// // The standard check value of CRC16/XMODEM.
/// assert_eq!(scalekit_shard::crc16_xmodem(b"123456789"), 0x31C3);
/// ```
#[inline]
pub fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc = (crc << 8) ^ CRC16_TABLE[usize::from(((crc >> 8) as u8) ^ b)];
    }
    crc
}

/// The part of a key Redis Cluster hashes: the bytes between the first `{` and
/// the first `}` after it, when that is not empty; otherwise the whole key.
///
/// ```
/// use scalekit_shard::hash_tag;
/// assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
/// assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}"); // empty first tag: whole key
/// assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
/// ```
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&b| b == b'}') {
        Some(0) | None => key,
        Some(close) => &rest[..close],
    }
}

/// The Redis Cluster hash slot of `key`: `CRC16(hash_tag(key)) mod 16384`, the
/// same answer `CLUSTER KEYSLOT` gives.
///
/// Keys that share a `{hash tag}` share a slot, so multi-key commands on them
/// stay on one node.
///
/// ```
/// use scalekit_shard::redis_cluster_slot;
/// assert_eq!(redis_cluster_slot(b"foo"), 12182);
/// assert_eq!(
///     redis_cluster_slot(b"{user1000}.following"),
///     redis_cluster_slot(b"{user1000}.followers"),
/// );
/// ```
#[inline]
pub fn redis_cluster_slot(key: &[u8]) -> u16 {
    crc16_xmodem(hash_tag(key)) & (REDIS_CLUSTER_SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(crc16_xmodem(b""), 0);
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(redis_cluster_slot(b"foo"), 12182);
        assert_eq!(redis_cluster_slot(b"bar"), 5061);
        assert_eq!(redis_cluster_slot(b"hello"), 866);
        assert_eq!(redis_cluster_slot(b""), 0);
        assert_eq!(
            redis_cluster_slot(b"{user1000}.following"),
            redis_cluster_slot(b"user1000")
        );
        // An empty tag: the whole key is hashed.
        assert_eq!(
            redis_cluster_slot(b"foo{}bar"),
            crc16_xmodem(b"foo{}bar") & 16383
        );
        // Only the first tag counts.
        assert_eq!(redis_cluster_slot(b"{a}{b}"), redis_cluster_slot(b"a"));
        // An unclosed brace: the whole key.
        assert_eq!(redis_cluster_slot(b"{abc"), crc16_xmodem(b"{abc") & 16383);
    }
}
