//! Key hashing: which of the 16384 cluster slots a key belongs to.
//!
//! CRC16/XMODEM of the key (or of its hash tag) modulo 16384, exactly as Redis Cluster computes it.

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// The slot of `key`, honouring Redis's hash-tag rule: if the key holds a `{` and a later `}` with at
/// least one byte between them, only the bytes between the first `{` and the first `}` after it count.
#[inline]
pub fn slot(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_part(key)) & 0x3FFF
}

/// The part of `key` that is hashed (the hash tag when there is a non-empty one).
#[inline]
pub fn hash_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values checked against a live redis-server's CLUSTER KEYSLOT (see design/crates.md).
    #[test]
    fn matches_redis_keyslot() {
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), 3443);
        assert_eq!(slot(b"foo{}{bar}"), 8363);
        assert_eq!(slot(b"foo{{bar}}zap"), 4015);
        assert_eq!(slot(b"foo{bar}{zap}"), 5061);
        assert_eq!(slot(b""), 0);
    }

    #[test]
    fn agrees_with_redis_protocol_crate() {
        for i in 0..5000u32 {
            let key = format!("k{}{{t{}}}x", i, i % 7);
            assert_eq!(slot(key.as_bytes()), redis_protocol::redis_keyslot(key.as_bytes()));
        }
    }
}
