//! `frame_records`: the disk buffer's frames for the common batch, every record a
//! `(topic, key, value, None, created_at_ms)` tuple of a topic the encoder already knows,
//! with bytes key and value (`frame.rs` writes each frame). Anything else — a new topic,
//! a missing key, headers, a number `struct.pack` would refuse — is left to the Python
//! encoder (None), which stays the reference and raises its own errors.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::frame::RecordFrame;

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
pub(super) fn frame_records<'py>(
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
        let Some(frame) = first_seq.checked_add(index as u64).and_then(|seq| {
            RecordFrame::new(
                seq,
                record.created_at_ms,
                record.topic_id,
                record.key.as_bytes(),
                record.value.as_bytes(),
            )
        }) else {
            return Ok(None);
        };
        let frame_len = frame.len_without_crc();
        let mut crc = 0u32;
        let bytes = PyBytes::new_with(py, frame_len, |buffer| {
            crc = frame.write(buffer);
            Ok(())
        })?;
        parts.append(bytes)?;
        parts.append(PyBytes::new(py, &crc.to_le_bytes()))?;
        size += frame_len + 4;
    }
    Ok(Some((parts, size)))
}
