//! The disk buffer's record frame (`buffer/segment_log.py`, `FrameEncoder.encode`), written
//! into a buffer the caller provides (the PyO3 layer: the `bytes` object itself).
//!
//! Frame: magic u16 | body_len u32 | kind u8 (1) | seq u64 | created_at_ms i64 |
//! topic id u16 | key_len i32 | header_count i16 (-1) | key | value, then crc32 u32 of all
//! of it (zlib's CRC-32, which `crc32fast` computes with the CPU's carry-less multiply).

const FRAME_MAGIC: u16 = 0xF7A5;
const KIND_RECORD: u8 = 1;
/// kind, seq, created_at_ms, topic id, key_len, header_count (`_RECORD_FIELDS`).
const RECORD_FIELDS: usize = 1 + 8 + 8 + 2 + 4 + 2;
/// magic and body_len, then the fields (`RECORD_HEAD`).
const RECORD_HEAD: usize = 2 + 4 + RECORD_FIELDS;

/// One record without headers, ready to frame: its lengths fit their fields.
pub struct RecordFrame<'r> {
    seq: u64,
    created_at_ms: i64,
    topic_id: u16,
    key: &'r [u8],
    value: &'r [u8],
    key_len: i32,
    body_len: u32,
}

impl<'r> RecordFrame<'r> {
    /// None when the key or the body is too long for its length field (the Python
    /// encoder then frames the batch and reports it).
    pub fn new(
        seq: u64,
        created_at_ms: i64,
        topic_id: u16,
        key: &'r [u8],
        value: &'r [u8],
    ) -> Option<Self> {
        let key_len = i32::try_from(key.len()).ok()?;
        let body_len = u32::try_from(RECORD_FIELDS + key.len() + value.len()).ok()?;
        Some(Self {
            seq,
            created_at_ms,
            topic_id,
            key,
            value,
            key_len,
            body_len,
        })
    }

    /// The frame's length without its CRC: what `write` fills.
    pub fn len_without_crc(&self) -> usize {
        RECORD_HEAD + self.key.len() + self.value.len()
    }

    /// Writes the frame (without its CRC) into `frame`, `len_without_crc()` bytes, and
    /// returns the CRC that follows it.
    pub fn write(&self, frame: &mut [u8]) -> u32 {
        let mut at = 0;
        for field in [
            &FRAME_MAGIC.to_le_bytes()[..],
            &self.body_len.to_le_bytes(),
            &[KIND_RECORD],
            &self.seq.to_le_bytes(),
            &self.created_at_ms.to_le_bytes(),
            &self.topic_id.to_le_bytes(),
            &self.key_len.to_le_bytes(),
            &(-1i16).to_le_bytes(),
            self.key,
            self.value,
        ] {
            // The frame is the sum of these lengths, so every range is in bounds.
            if let Some(slot) = frame.get_mut(at..at + field.len()) {
                slot.copy_from_slice(field);
            }
            at += field.len();
        }
        crc32fast::hash(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(record: &RecordFrame<'_>) -> (Vec<u8>, u32) {
        let mut frame = vec![0u8; record.len_without_crc()];
        let crc = record.write(&mut frame);
        (frame, crc)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    // The expected bytes are what the Python `FrameEncoder.encode` writes for the same record.
    #[test]
    fn a_chat_record_frame_is_the_python_encoders_bytes() {
        let record = RecordFrame::new(42, 1_700_000_000_123, 0, b"chan", b"{\"a\":1}").unwrap();
        let (frame, crc) = framed(&record);
        assert_eq!(
            hex(&frame),
            "a5f724000000012a000000000000007b68e5cf8b010000000004000000ffff\
             6368616e7b2261223a317d"
        );
        assert_eq!(hex(&crc.to_le_bytes()), "945c7166");
    }

    #[test]
    fn an_empty_record_with_a_negative_timestamp() {
        let record = RecordFrame::new(0, -1, 0, b"", b"").unwrap();
        let (frame, crc) = framed(&record);
        assert_eq!(
            hex(&frame),
            "a5f719000000010000000000000000ffffffffffffffff000000000000ffff"
        );
        assert_eq!(hex(&crc.to_le_bytes()), "6de3498f");
    }

    #[test]
    fn the_crc_covers_the_whole_frame() {
        let record = RecordFrame::new(7, 1, 3, b"k", b"value").unwrap();
        let (mut frame, crc) = framed(&record);
        assert_eq!(crc, crc32fast::hash(&frame));
        frame[10] ^= 1;
        assert_ne!(crc, crc32fast::hash(&frame));
    }
}
