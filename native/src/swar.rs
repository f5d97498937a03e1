//! Eight bytes a step ("SIMD within a register"): how the tag scanner and the JSON writer
//! skip the long clean runs that make up most of a chat line.

pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
pub(crate) const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Non-zero when one of `word`'s 8 bytes is `byte` (the classic SWAR zero-byte test; a
/// false positive can only follow a true one, so the caller rescans byte by byte).
#[inline]
pub fn has_byte(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The 8 bytes at `at` as one little-endian word, None when fewer than 8 are left.
#[inline]
pub fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk = bytes.get(at..at + 8)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    Some(u64::from_le_bytes(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_byte_finds_the_byte_at_every_position_and_nothing_in_a_clean_word() {
        for position in 0..8 {
            let mut bytes = *b"abcdefgh";
            bytes[position] = b';';
            assert_ne!(
                has_byte(u64::from_le_bytes(bytes), b';'),
                0,
                "at {position}"
            );
        }
        assert_eq!(has_byte(u64::from_le_bytes(*b"abcdefgh"), b';'), 0);
        // High bytes (UTF-8 continuation bytes) are not mistaken for an ASCII one.
        assert_eq!(has_byte(u64::from_le_bytes([0xbb; 8]), b';'), 0);
    }

    #[test]
    fn word_at_reads_little_endian_and_stops_short_of_the_end() {
        let bytes = b"0123456789";
        assert_eq!(word_at(bytes, 0), Some(u64::from_le_bytes(*b"01234567")));
        assert_eq!(word_at(bytes, 2), Some(u64::from_le_bytes(*b"23456789")));
        assert_eq!(word_at(bytes, 3), None);
        assert_eq!(word_at(bytes, 10), None);
    }
}
