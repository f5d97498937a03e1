//! The disk buffer's record frames (`kafka/segment_log.py`, `FrameEncoder.encode`), for
//! the common batch: every record a `(topic, key, value, None, created_at_ms)` tuple of a
//! topic the encoder already knows, with bytes key and value. Anything else — a new
//! topic, a missing key, headers, a number `struct.pack` would refuse — is left to the
//! Python encoder (None), which stays the reference and raises its own errors.
//!
//! Frame: magic u16 | body_len u32 | kind u8 (1) | seq u64 | created_at_ms i64 |
//! topic id u16 | key_len i32 | header_count i16 (-1) | key | value, then crc32 u32 of all
//! of it (zlib's CRC-32, which `crc32fast` computes with the CPU's carry-less multiply).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

const FRAME_MAGIC: u16 = 0xF7A5;
const KIND_RECORD: u8 = 1;
/// kind, seq, created_at_ms, topic id, key_len, header_count (`_RECORD_FIELDS`).
const RECORD_FIELDS: usize = 1 + 8 + 8 + 2 + 4 + 2;
/// magic and body_len, then the fields (`RECORD_HEAD`).
const RECORD_HEAD: usize = 2 + 4 + RECORD_FIELDS;

/// One record's frame fields, read from its tuple; None: leave the batch to Python.
struct Fields<'py> {
    topic_id: u16,
    key: Bound<'py, PyBytes>,
    value: Bound<'py, PyBytes>,
    created_at_ms: i64,
}

fn fields<'py>(
    record: &Bound<'py, PyAny>,
    topic_ids: &Bound<'py, PyDict>,
) -> PyResult<Option<Fields<'py>>> {
    let Ok(record) = record.cast::<PyTuple>() else {
        return Ok(None);
    };
    if record.len() != 5 || !record.get_item(3)?.is_none() {
        return Ok(None);
    }
    let Some(topic_id) = topic_ids.get_item(record.get_item(0)?)? else {
        return Ok(None); // a topic this segment has not defined yet
    };
    let (Ok(topic_id), Ok(key), Ok(value), Ok(created_at_ms)) = (
        topic_id.extract::<u16>(),
        record.get_item(1)?.cast_into::<PyBytes>(),
        record.get_item(2)?.cast_into::<PyBytes>(),
        record.get_item(4)?.extract::<i64>(),
    ) else {
        return Ok(None);
    };
    Ok(Some(Fields {
        topic_id,
        key,
        value,
        created_at_ms,
    }))
}

/// `FrameEncoder.encode`'s `(parts, size)` for `records` with seqs from `first_seq` —
/// two parts per record, its frame without the CRC and the CRC — or None when a record
/// is not of the common shape (the Python encoder then frames the whole batch).
#[pyfunction]
pub fn frame_records<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyAny>,
    first_seq: u64,
    topic_ids: &Bound<'py, PyDict>,
) -> PyResult<Option<(Bound<'py, PyList>, usize)>> {
    let Ok(records) = records.cast::<PyList>() else {
        return Ok(None);
    };
    let mut batch = Vec::with_capacity(records.len());
    for record in records.iter() {
        match fields(&record, topic_ids)? {
            Some(fields) => batch.push(fields),
            None => return Ok(None),
        }
    }
    let parts = PyList::empty(py);
    let mut size = 0usize;
    for (index, record) in batch.iter().enumerate() {
        let key = record.key.as_bytes();
        let value = record.value.as_bytes();
        let (Some(seq), Ok(key_len), Ok(body_len)) = (
            first_seq.checked_add(index as u64),
            i32::try_from(key.len()),
            u32::try_from(RECORD_FIELDS + key.len() + value.len()),
        ) else {
            return Ok(None);
        };
        let frame_len = RECORD_HEAD + key.len() + value.len();
        let mut crc = 0u32;
        let frame = PyBytes::new_with(py, frame_len, |frame| {
            let mut at = 0;
            for field in [
                &FRAME_MAGIC.to_le_bytes()[..],
                &body_len.to_le_bytes(),
                &[KIND_RECORD],
                &seq.to_le_bytes(),
                &record.created_at_ms.to_le_bytes(),
                &record.topic_id.to_le_bytes(),
                &key_len.to_le_bytes(),
                &(-1i16).to_le_bytes(),
                key,
                value,
            ] {
                // frame_len is the sum of these lengths, so every range is in bounds.
                if let Some(slot) = frame.get_mut(at..at + field.len()) {
                    slot.copy_from_slice(field);
                }
                at += field.len();
            }
            crc = crc32fast::hash(frame);
            Ok(())
        })?;
        parts.append(frame)?;
        parts.append(PyBytes::new(py, &crc.to_le_bytes()))?;
        size += frame_len + 4;
    }
    Ok(Some((parts, size)))
}
