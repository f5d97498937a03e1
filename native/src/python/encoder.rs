//! `ChatEncoder`: a read's PRIVMSG lines → their Kafka record tuples, with the JSON from
//! `chat::encode_privmsg`; every line it cannot encode is handed back to Python.

use std::borrow::Cow;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::as_str;
use super::reader::{ChatChunk, Entry};
use crate::chat::encode_privmsg;

/// Encodes PRIVMSG lines (`IrcMessage`s from `irc.parse_line`) to `ChatMessage` JSON.
///
/// `encode_privmsg(message, received_at_ms)` returns `(key, value)` bytes, or None when
/// the line must take the Python path (see the module documentation).
#[pyclass(frozen, module = "twitch_ingestion_native")]
pub(super) struct ChatEncoder {
    schema_version: i64,
    ingested_via: String,
}

#[pymethods]
impl ChatEncoder {
    #[new]
    fn new(schema_version: i64, ingested_via: String) -> PyResult<Self> {
        if ingested_via.is_empty() {
            return Err(PyValueError::new_err("ingested_via must not be empty"));
        }
        Ok(Self {
            schema_version,
            ingested_via,
        })
    }

    fn encode_privmsg<'py>(
        &self,
        py: Python<'py>,
        message: &Bound<'py, PyAny>,
        received_at_ms: i64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some((key, value)) = self.encode_message(py, message, received_at_ms)? else {
            return Ok(None);
        };
        Ok(Some(PyTuple::new(
            py,
            [PyBytes::new(py, key.as_bytes()), PyBytes::new(py, &value)],
        )?))
    }

    /// One read's chat lines → their records, as `IrcRecordEncoder.deliver` builds them:
    /// per PRIVMSG it can encode, the raw copy (when `raw_topic` is set) and the chat
    /// record `(topic, key, value, None, received_at_ms)`. Returns the records and, in
    /// order, `(position, index)` for every other line: `messages[index]`'s records
    /// belong at `records[position]`, and the caller builds them in Python.
    ///
    /// `messages` is a `ChatChunk` from `LineReader.read_lines` (the fused step: its
    /// PRIVMSG lines are encoded straight from the read's text, no `IrcMessage` is ever
    /// built for them) or any sequence of `IrcMessage`s (what de-duplication returns).
    fn encode_chunk<'py>(
        &self,
        py: Python<'py>,
        messages: &Bound<'py, PyAny>,
        received_at_ms: i64,
        chat_topic: &Bound<'py, PyString>,
        raw_topic: Option<&Bound<'py, PyString>>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let out = RecordsOut {
            records: PyList::empty(py),
            pending: PyList::empty(py),
            chat_topic: chat_topic.clone().into_any(),
            raw_topic: raw_topic.map(|topic| topic.clone().into_any()),
            none: py.None().into_bound(py),
            timestamp: received_at_ms.into_pyobject(py)?.into_any(),
        };
        if let Ok(chunk) = messages.cast::<ChatChunk>() {
            self.encode_parsed_chunk(py, chunk.get(), received_at_ms, &out)?;
        } else {
            let messages = match messages.cast::<PyList>() {
                Ok(list) => list.clone(),
                Err(_) => PyList::new(py, messages.try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
            };
            self.encode_message_list(py, &messages, received_at_ms, &out)?;
        }
        Ok((out.records, out.pending))
    }
}

/// A PRIVMSG's record key, `ChatMessage` JSON and raw bytes (empty without a raw topic).
type Encoded<'t> = (Cow<'t, str>, Vec<u8>, Cow<'t, [u8]>);

/// What `encode_chunk` builds: the records, the lines left to Python, shared objects.
struct RecordsOut<'py> {
    records: Bound<'py, PyList>,
    pending: Bound<'py, PyList>,
    chat_topic: Bound<'py, PyAny>,
    raw_topic: Option<Bound<'py, PyAny>>,
    none: Bound<'py, PyAny>,
    timestamp: Bound<'py, PyAny>,
}

impl RecordsOut<'_> {
    /// Line `index` is left to Python; its records go where the next record would.
    fn leave(&self, index: usize) -> PyResult<()> {
        self.pending.append((self.records.len(), index))
    }

    /// A PRIVMSG's records: its raw copy (with a raw topic), then its chat record.
    fn push(&self, key: &str, value: &[u8], raw: &[u8]) -> PyResult<()> {
        let py = self.records.py();
        let key = PyBytes::new(py, key.as_bytes()).into_any();
        if let Some(raw_topic) = &self.raw_topic {
            self.records.append(PyTuple::new(
                py,
                [
                    raw_topic.clone(),
                    key.clone(),
                    PyBytes::new(py, raw).into_any(),
                    self.none.clone(),
                    self.timestamp.clone(),
                ],
            )?)?;
        }
        self.records.append(PyTuple::new(
            py,
            [
                self.chat_topic.clone(),
                key,
                PyBytes::new(py, value).into_any(),
                self.none.clone(),
                self.timestamp.clone(),
            ],
        )?)
    }
}

impl ChatEncoder {
    /// The fused step: fast-shape PRIVMSG lines encoded from the chunk's text.
    fn encode_parsed_chunk(
        &self,
        py: Python<'_>,
        chunk: &ChatChunk,
        received_at_ms: i64,
        out: &RecordsOut<'_>,
    ) -> PyResult<()> {
        let text: &str = &chunk.text;
        for (index, entry) in chunk.entries.iter().enumerate() {
            let encoded = match entry {
                Entry::Line(spans) => {
                    let parts = spans.parts(text);
                    if parts.tags.is_empty() {
                        // `@ :…`: parsed with an empty tag dict, no raw tags; Python does it.
                        None
                    } else {
                        encode_privmsg(
                            parts.tags,
                            parts.prefix,
                            parts.target,
                            parts.trailing,
                            received_at_ms,
                            self.schema_version,
                            &self.ingested_via,
                        )
                        .map(|(key, value)| (key, value, Cow::Borrowed(parts.line.as_bytes())))
                    }
                }
                Entry::Message(message) => {
                    self.encode_privmsg_object(py, message.bind(py), received_at_ms, out)?
                }
            };
            match encoded {
                Some((key, value, raw)) => out.push(&key, &value, &raw)?,
                None => out.leave(index)?,
            }
        }
        Ok(())
    }

    fn encode_message_list(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyList>,
        received_at_ms: i64,
        out: &RecordsOut<'_>,
    ) -> PyResult<()> {
        for (index, message) in messages.iter().enumerate() {
            match self.encode_privmsg_object(py, &message, received_at_ms, out)? {
                Some((key, value, raw)) => out.push(&key, &value, &raw)?,
                None => out.leave(index)?,
            }
        }
        Ok(())
    }

    /// An `IrcMessage`'s key, value and (with a raw topic) raw bytes when it is a
    /// PRIVMSG this can encode.
    fn encode_privmsg_object(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        received_at_ms: i64,
        out: &RecordsOut<'_>,
    ) -> PyResult<Option<Encoded<'static>>> {
        let command = message.getattr(intern!(py, "command"))?;
        if !command.eq(intern!(py, "PRIVMSG"))? {
            return Ok(None);
        }
        let Some((key, value)) = self.encode_message(py, message, received_at_ms)? else {
            return Ok(None);
        };
        let key = Cow::Owned(key);
        if out.raw_topic.is_none() {
            return Ok(Some((key, value, Cow::Borrowed(b""))));
        }
        let raw = message.getattr(intern!(py, "raw"))?;
        let Some(raw) = as_str(&raw) else {
            return Ok(None);
        };
        Ok(Some((key, value, Cow::Owned(raw.as_bytes().to_vec()))))
    }
}

impl ChatEncoder {
    fn encode_message(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        received_at_ms: i64,
    ) -> PyResult<Option<(String, Vec<u8>)>> {
        let raw_tags = message.getattr(intern!(py, "raw_tags"))?;
        let Some(raw_tags) = as_str(&raw_tags) else {
            return Ok(None);
        };
        let prefix = message.getattr(intern!(py, "prefix"))?;
        let Some(prefix) = as_str(&prefix) else {
            return Ok(None);
        };
        let params = message.getattr(intern!(py, "params"))?;
        let Ok(params) = params.cast::<PyList>() else {
            return Ok(None);
        };
        if params.len() < 2 {
            return Ok(None);
        }
        let target = params.get_item(0)?;
        let text = params.get_item(params.len() - 1)?;
        let (Some(target), Some(text)) = (as_str(&target), as_str(&text)) else {
            return Ok(None);
        };
        Ok(encode_privmsg(
            raw_tags,
            prefix,
            target,
            text,
            received_at_ms,
            self.schema_version,
            &self.ingested_via,
        )
        .map(|(key, value)| (key.into_owned(), value)))
    }
}
