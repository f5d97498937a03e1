//! `LineReader` and `ChatChunk`: a read's lines located by `line.rs` and kept as offsets
//! into the read's text; Python objects are made only for the lines that need them.

use std::collections::HashSet;
use std::sync::Arc;

use pyo3::exceptions::PyIndexError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySlice, PyString};

use crate::line::{complete_lines, split_fast, LineParts, Spans, KNOWN_COMMANDS, PRIVMSG};

/// Splits the complete lines of a read and parses them, as `TwitchSession.receive_data`
/// + `irc.parse_line` do.
///
/// `read_lines(complete)` takes the bytes up to and including a read's last `\n` and
/// returns `(chunk, control_indices, line_count)`: a `ChatChunk` with every non-empty
/// line, in order; the positions of the lines that are not PRIVMSG (the session handles
/// those); and the number of lines, empty ones included. PRIVMSG lines of the usual
/// Twitch shape (`@tags :prefix PRIVMSG #chan :text`) are only located here — no Python
/// object is made for them; `ChatEncoder.encode_chunk` encodes them straight from the
/// read's text. Other lines of that shape with a known command become `IrcMessage`s
/// here; any other line goes to the Python `parse_line` given at construction. None —
/// the caller then runs its Python path on the whole read — when a line is not UTF-8 or
/// not IRC, so every malformed-line report comes from the reference code.
#[pyclass(frozen, module = "twitch_ingestion_native")]
pub(super) struct LineReader {
    factory: Arc<MessageFactory>,
    parse_line: Py<PyAny>,
}

/// What a `ChatChunk` needs to build an `IrcMessage` on demand.
struct MessageFactory {
    message_type: Py<PyAny>,
    commands: Vec<Py<PyString>>,
}

impl MessageFactory {
    /// `IrcMessage(raw, parsed_tags, prefix, command, [target, trailing], raw_tags)`,
    /// exactly as `parse_line`'s fast path builds it.
    fn build<'py>(
        &self,
        py: Python<'py>,
        parts: &LineParts<'_>,
        command_index: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let params = PyList::new(
            py,
            [
                PyString::new(py, parts.target),
                PyString::new(py, parts.trailing),
            ],
        )?;
        let (parsed_tags, raw_tags) = if parts.tags.is_empty() {
            (PyDict::new(py).into_any(), py.None().into_bound(py))
        } else {
            (
                py.None().into_bound(py),
                PyString::new(py, parts.tags).into_any(),
            )
        };
        self.message_type.bind(py).call1((
            PyString::new(py, parts.line),
            parsed_tags,
            PyString::new(py, parts.prefix),
            self.commands[command_index].bind(py).clone(),
            params,
            raw_tags,
        ))
    }
}

/// One line of a `ChatChunk`: a located PRIVMSG, or an `IrcMessage` already built.
pub(super) enum Entry {
    Line(Spans),
    Message(Py<PyAny>),
}

impl Entry {
    fn clone_ref(&self, py: Python<'_>) -> Self {
        match self {
            Entry::Line(spans) => Entry::Line(*spans),
            Entry::Message(message) => Entry::Message(message.clone_ref(py)),
        }
    }
}

/// The chat-level lines of one read, a read-only sequence of `IrcMessage`s.
///
/// PRIVMSG lines stay offsets into the read's text until someone indexes or iterates
/// the chunk (de-duplication during a hand-over, the Python path for a line the encoder
/// leaves): then each is built as `parse_line` would build it, a new object per access.
/// `ChatEncoder.encode_chunk` reads the text directly and builds none.
#[pyclass(frozen, sequence, module = "twitch_ingestion_native")]
pub(super) struct ChatChunk {
    pub(super) text: Arc<str>,
    pub(super) entries: Vec<Entry>,
    factory: Arc<MessageFactory>,
}

impl ChatChunk {
    fn message<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyAny>> {
        match self.entries.get(index) {
            None => Err(PyIndexError::new_err("ChatChunk index out of range")),
            Some(Entry::Message(message)) => Ok(message.bind(py).clone()),
            Some(Entry::Line(spans)) => self.factory.build(py, &spans.parts(&self.text), PRIVMSG),
        }
    }

    fn all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for index in 0..self.entries.len() {
            list.append(self.message(py, index)?)?;
        }
        Ok(list)
    }
}

#[pymethods]
impl ChatChunk {
    fn __len__(&self) -> usize {
        self.entries.len()
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(slice) = index.cast::<PySlice>() {
            let all = self.all(py)?;
            return all.as_any().get_item(slice);
        }
        let index: isize = index.extract()?;
        let length = self.entries.len() as isize;
        let position = if index < 0 { index + length } else { index };
        if position < 0 || position >= length {
            return Err(PyIndexError::new_err("ChatChunk index out of range"));
        }
        self.message(py, position as usize)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.all(py)?.as_any().try_iter()?.into_any())
    }

    fn __repr__(&self) -> String {
        format!("<ChatChunk of {} lines>", self.entries.len())
    }

    /// The same chunk without the lines at `dropped` (the session's connection-level
    /// lines: PING, our own JOIN/PART, numerics…).
    fn without(&self, py: Python<'_>, dropped: HashSet<usize>) -> Self {
        Self {
            text: Arc::clone(&self.text),
            entries: self
                .entries
                .iter()
                .enumerate()
                .filter(|(index, _)| !dropped.contains(index))
                .map(|(_, entry)| entry.clone_ref(py))
                .collect(),
            factory: Arc::clone(&self.factory),
        }
    }
}

/// `read_lines`' result: the chunk, the positions of its non-PRIVMSG lines, the line count.
type ReadLines<'py> = (ChatChunk, Bound<'py, PyList>, usize);

#[pymethods]
impl LineReader {
    #[new]
    fn new(py: Python<'_>, message_type: Py<PyAny>, parse_line: Py<PyAny>) -> Self {
        let commands = KNOWN_COMMANDS
            .iter()
            .map(|name| PyString::intern(py, name).unbind())
            .collect();
        Self {
            factory: Arc::new(MessageFactory {
                message_type,
                commands,
            }),
            parse_line,
        }
    }

    fn read_lines<'py>(
        &self,
        py: Python<'py>,
        complete: &[u8],
    ) -> PyResult<Option<ReadLines<'py>>> {
        // Line ends are ASCII, so the read is UTF-8 exactly when each of its lines is.
        let Ok(text) = std::str::from_utf8(complete) else {
            return Ok(None);
        };
        let text: Arc<str> = Arc::from(text);
        let mut entries: Vec<Entry> = Vec::new();
        let controls = PyList::empty(py);
        let parse_line = self.parse_line.bind(py);
        let privmsg = self.factory.commands[PRIVMSG].bind(py);
        let mut line_count = 0usize;
        for line in complete_lines(&text) {
            line_count += 1;
            if line.is_empty() {
                continue;
            }
            let entry = match split_fast(line) {
                Some((parts, PRIVMSG)) => Entry::Line(Spans::of(&text, &parts)),
                Some((parts, command_index)) => {
                    controls.append(entries.len())?;
                    Entry::Message(self.factory.build(py, &parts, command_index)?.unbind())
                }
                None => {
                    let Ok(message) = parse_line.call1((line,)) else {
                        return Ok(None);
                    };
                    let command = message.getattr(intern!(py, "command"))?;
                    if !command.eq(privmsg)? {
                        controls.append(entries.len())?;
                    }
                    Entry::Message(message.unbind())
                }
            };
            entries.push(entry);
        }
        let chunk = ChatChunk {
            text: Arc::clone(&text),
            entries,
            factory: Arc::clone(&self.factory),
        };
        Ok(Some((chunk, controls, line_count)))
    }
}
