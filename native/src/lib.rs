//! Compiled hot path of twitch-ingestion, two steps, each one call per socket read:
//!
//! * `LineReader.read_lines`: a read's complete lines split, UTF-8 decoded and parsed into
//!   the Python `IrcMessage`s the session and the encoder use (`irc.parse_line`'s fast
//!   shape here, every other line through the Python `parse_line` itself);
//! * `ChatEncoder.encode_chunk`: each parsed PRIVMSG → its records, the `ChatMessage`
//!   JSON byte-identical to msgspec's.
//!
//! The pure-Python path (`sources/irc/session.py`, `commands/privmsg.py` + msgspec) is the
//! reference: this takes only the lines it can reproduce exactly without side effects.
//! Everything else — a contract violation (dead letter), a missing or invalid
//! `tmi-sent-ts` or an emote tag that does not fit the text (both counted in
//! `ParseStats`), a missing `room-id` (filled from ROOMSTATE), non-ASCII logins (Python's
//! Unicode `lower()`), odd emote numbers that Python's `int()` reads differently, a line
//! that is not UTF-8 or not IRC — is handed back and Python does it. The differential
//! test (`tests/unit/test_compiled_differential.py`) holds the two together.
//!
//! Safety on hostile input: no indexing that can panic (every slice is at a boundary
//! found by `find`/`split` on ASCII bytes), no recursion, and every allocation is
//! bounded by a small multiple of the input line (which the session caps at 64 KiB).

use std::borrow::Cow;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

/// 15 digits stay below 2**53 (see `fields.non_negative_int`).
const MAX_INT_DIGITS: usize = 15;

/// More badges than this on one line is not Twitch: let Python (dict semantics) decide.
const MAX_BADGES: usize = 64;

/// The PRIVMSG tags a `ChatMessage` uses, unescaped (`privmsg._PrivmsgTags`).
#[derive(Default)]
struct Tags<'a> {
    badges: Cow<'a, str>,
    bits: Cow<'a, str>,
    display_name: Cow<'a, str>,
    emotes: Cow<'a, str>,
    first_msg: Cow<'a, str>,
    id: Cow<'a, str>,
    reply_parent_msg_id: Cow<'a, str>,
    room_id: Cow<'a, str>,
    source_id: Cow<'a, str>,
    source_room_id: Cow<'a, str>,
    tmi_sent_ts: Cow<'a, str>,
    user_id: Cow<'a, str>,
}

/// IRCv3 tag unescaping, as `irc.unescape_tag_value`.
fn unescape(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => break, // a lone trailing backslash is dropped
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
        }
    }
    Cow::Owned(out)
}

/// `irc._parse_tags_exact`, keeping only the fields we need: empty keys are skipped, a
/// valueless key means the empty value, the last repeat wins.
///
/// One pass over the bytes (the separators are ASCII, so every cut is a char boundary);
/// keys are told apart by length first, so most unknown tags cost one comparison.
fn parse_tags(raw: &str) -> Tags<'_> {
    let mut tags = Tags::default();
    let bytes = raw.as_bytes();
    let mut start = 0;
    while start <= bytes.len() {
        let mut eq = usize::MAX;
        let mut escaped = false;
        let mut end = start;
        while end < bytes.len() {
            match bytes[end] {
                b';' => break,
                b'=' if eq == usize::MAX => eq = end,
                b'\\' => escaped = true,
                _ => {}
            }
            end += 1;
        }
        let (key, value) = if eq == usize::MAX {
            (&raw[start..end], "")
        } else {
            (&raw[start..eq], &raw[eq + 1..end])
        };
        start = end + 1;
        let slot = match (key.len(), key.as_bytes().first()) {
            (2, Some(b'i')) if key == "id" => &mut tags.id,
            (4, Some(b'b')) if key == "bits" => &mut tags.bits,
            (6, Some(b'b')) if key == "badges" => &mut tags.badges,
            (6, Some(b'e')) if key == "emotes" => &mut tags.emotes,
            (7, Some(b'r')) if key == "room-id" => &mut tags.room_id,
            (7, Some(b'u')) if key == "user-id" => &mut tags.user_id,
            (9, Some(b'f')) if key == "first-msg" => &mut tags.first_msg,
            (9, Some(b's')) if key == "source-id" => &mut tags.source_id,
            (11, Some(b't')) if key == "tmi-sent-ts" => &mut tags.tmi_sent_ts,
            (12, Some(b'd')) if key == "display-name" => &mut tags.display_name,
            (14, Some(b's')) if key == "source-room-id" => &mut tags.source_room_id,
            (19, Some(b'r')) if key == "reply-parent-msg-id" => &mut tags.reply_parent_msg_id,
            _ => continue,
        };
        *slot = if escaped && value.contains('\\') {
            unescape(value)
        } else {
            Cow::Borrowed(value)
        };
    }
    tags
}

/// A plain ASCII decimal of 1..=`max_digits` digits (`str.isdigit() and isascii()`).
fn ascii_decimal(value: &str, max_digits: usize) -> Option<u64> {
    if value.is_empty() || value.len() > max_digits || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// `fields.unwrap_action`: the text inside `\x01ACTION …\x01` and whether it was one.
fn unwrap_action(text: &str) -> (&str, bool) {
    let Some(body) = text.strip_prefix("\x01ACTION") else {
        return (text, false);
    };
    let body = if let Some(rest) = body.strip_prefix(' ') {
        rest
    } else if !body.is_empty() && !body.starts_with('\x01') {
        return (text, false); // `\x01ACTIONS…` is some other CTCP verb
    } else {
        body
    };
    (body.strip_suffix('\x01').unwrap_or(body), true)
}

/// `emotes.emote_codes` when the tag fits the text; None (Python decides and counts the
/// rejection) for anything else, including numbers Python's `int()` would read but a
/// plain decimal parser would not.
fn emote_codes<'t>(tag: &str, text: &'t str) -> Option<Vec<&'t str>> {
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut last_without_colon = false;
    for piece in tag.split('/') {
        let Some(colon) = piece.find(':') else {
            last_without_colon = !piece.is_empty();
            continue;
        };
        last_without_colon = false;
        for item in piece[colon + 1..].split(',') {
            let mut bounds = item.split('-');
            let first = ascii_decimal(bounds.next()?, 18)?;
            let last = ascii_decimal(bounds.next()?, 18)?;
            if bounds.next().is_some() {
                return None;
            }
            spans.push((first, last));
        }
    }
    if last_without_colon {
        return None;
    }
    spans.sort_unstable();
    // Code-point offsets: for ASCII text they are byte offsets; otherwise one table.
    let offsets: Option<Vec<usize>> = if text.is_ascii() {
        None
    } else {
        Some(
            text.char_indices()
                .map(|(at, _)| at)
                .chain(std::iter::once(text.len()))
                .collect(),
        )
    };
    let length = match &offsets {
        None => text.len(),
        Some(table) => table.len() - 1,
    } as u64;
    let mut codes = Vec::with_capacity(spans.len());
    let mut previous_end: Option<u64> = None;
    for (start, end) in spans {
        if previous_end.is_some_and(|previous| start <= previous) || start > end || end >= length {
            return None;
        }
        let (from, to) = match &offsets {
            None => (start as usize, end as usize + 1),
            Some(table) => (table[start as usize], table[end as usize + 1]),
        };
        let code = text.get(from..to)?;
        if code.contains(' ') {
            return None;
        }
        codes.push(code);
        previous_end = Some(end);
    }
    Some(codes)
}

/// `fields.parse_badges` in insertion order; None for a repeated name (dict semantics
/// keep the first position with the last value: rare enough to leave to Python).
fn parse_badges(value: &str) -> Option<Vec<(&str, &str)>> {
    let mut badges: Vec<(&str, &str)> = Vec::new();
    for item in value.split(',') {
        let (name, version) = match item.find('/') {
            Some(slash) => (&item[..slash], &item[slash + 1..]),
            None => (item, ""),
        };
        if name.is_empty() {
            continue;
        }
        if badges.len() >= MAX_BADGES || badges.iter().any(|(seen, _)| *seen == name) {
            return None;
        }
        badges.push((name, version));
    }
    Some(badges)
}

/// Bytes msgspec escapes in a JSON string: `"`, `\\` and the control characters.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A JSON string exactly as msgspec writes it: `"` and `\` escaped, `\b \t \n \f \r`
/// short, every other control character `\u00XX` (lower-case hex), nothing else.
fn push_json_str(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if !NEEDS_ESCAPE[byte as usize] {
            continue;
        }
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            _ => b'u',
        };
        out.extend_from_slice(&bytes[start..at]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[(byte >> 4) as usize]);
            out.push(HEX[(byte & 0xf) as usize]);
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn push_optional_str(out: &mut Vec<u8>, value: &str) {
    if value.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        push_json_str(out, value);
    }
}

fn push_int(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(value.to_string().as_bytes());
}

fn push_bool(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// The PRIVMSG → (key, JSON) step, on plain strings; None = "let Python do this line".
fn encode_privmsg(
    raw_tags: &str,
    prefix: &str,
    target: &str,
    text: &str,
    received_at_ms: i64,
    schema_version: i64,
    ingested_via: &str,
) -> Option<(String, Vec<u8>)> {
    let channel = target.strip_prefix('#')?;
    if channel.is_empty() || !channel.is_ascii() {
        return None; // a contract violation, or Python's Unicode lower()
    }
    let channel = channel.to_ascii_lowercase();
    let username = match prefix.find('!') {
        Some(bang) => &prefix[..bang],
        None => prefix,
    };
    if username.is_empty() || !username.is_ascii() {
        return None;
    }
    let username = username.to_ascii_lowercase();

    let tags = parse_tags(raw_tags);
    let timestamp = ascii_decimal(&tags.tmi_sent_ts, MAX_INT_DIGITS)?; // else counted in Python
    if tags.room_id.is_empty() {
        return None; // filled from ROOMSTATE by the caller's room_ids
    }
    let (text, is_action) = if text.starts_with('\x01') {
        unwrap_action(text)
    } else {
        (text, false)
    };
    let emotes = if tags.emotes.is_empty() {
        Vec::new()
    } else {
        emote_codes(&tags.emotes, text)?
    };
    let badges = if tags.badges.is_empty() {
        Vec::new()
    } else {
        parse_badges(&tags.badges)?
    };
    let bits = ascii_decimal(&tags.bits, MAX_INT_DIGITS).unwrap_or(0);

    let mut out = Vec::with_capacity(360 + text.len() + raw_tags.len() / 2);
    out.extend_from_slice(b"{\"channel_id\":");
    push_json_str(&mut out, &channel);
    out.extend_from_slice(b",\"user_id\":");
    push_json_str(&mut out, &tags.user_id);
    out.extend_from_slice(b",\"username\":");
    push_json_str(&mut out, &username);
    out.extend_from_slice(b",\"message\":");
    push_json_str(&mut out, text);
    out.extend_from_slice(b",\"timestamp\":");
    push_int(&mut out, timestamp as i64);
    out.extend_from_slice(b",\"emotes\":[");
    for (index, code) in emotes.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        push_json_str(&mut out, code);
    }
    out.extend_from_slice(b"],\"message_id\":");
    push_json_str(&mut out, &tags.id);
    out.extend_from_slice(b",\"room_id\":");
    push_json_str(&mut out, &tags.room_id);
    out.extend_from_slice(b",\"display_name\":");
    push_json_str(&mut out, tags.display_name.trim_matches(' '));
    out.extend_from_slice(b",\"badges\":{");
    for (index, (name, version)) in badges.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        push_json_str(&mut out, name);
        out.push(b':');
        push_json_str(&mut out, version);
    }
    out.extend_from_slice(b"},\"is_action\":");
    push_bool(&mut out, is_action);
    out.extend_from_slice(b",\"bits\":");
    push_int(&mut out, bits as i64);
    out.extend_from_slice(b",\"reply_parent_message_id\":");
    push_optional_str(&mut out, &tags.reply_parent_msg_id);
    out.extend_from_slice(b",\"first_message\":");
    push_bool(&mut out, tags.first_msg == "1");
    out.extend_from_slice(b",\"received_at\":");
    push_int(&mut out, received_at_ms);
    out.extend_from_slice(b",\"schema_version\":");
    push_int(&mut out, schema_version);
    out.extend_from_slice(b",\"source_room_id\":");
    push_optional_str(&mut out, &tags.source_room_id);
    out.extend_from_slice(b",\"source_message_id\":");
    push_optional_str(&mut out, &tags.source_id);
    out.extend_from_slice(b",\"ingested_via\":");
    push_json_str(&mut out, ingested_via);
    out.push(b'}');
    Some((channel, out))
}

fn as_str<'a>(value: &'a Bound<'_, PyAny>) -> Option<&'a str> {
    // A str with lone surrogates (never from a strict UTF-8 decode) is left to Python.
    value.cast::<PyString>().ok()?.to_str().ok()
}

/// Encodes PRIVMSG lines (`IrcMessage`s from `irc.parse_line`) to `ChatMessage` JSON.
///
/// `encode_privmsg(message, received_at_ms)` returns `(key, value)` bytes, or None when
/// the line must take the Python path (see the module documentation).
#[pyclass(frozen, module = "twitch_ingestion_native")]
struct ChatEncoder {
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
    fn encode_chunk<'py>(
        &self,
        py: Python<'py>,
        messages: &Bound<'py, PyList>,
        received_at_ms: i64,
        chat_topic: &Bound<'py, PyString>,
        raw_topic: Option<&Bound<'py, PyString>>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let records = PyList::empty(py);
        let pending = PyList::empty(py);
        let privmsg = intern!(py, "PRIVMSG");
        let none = py.None().into_bound(py);
        let timestamp = received_at_ms.into_pyobject(py)?.into_any();
        for (index, message) in messages.iter().enumerate() {
            let command = message.getattr(intern!(py, "command"))?;
            let encoded = if command.eq(privmsg)? {
                self.encode_message(py, &message, received_at_ms)?
            } else {
                None
            };
            let Some((key, value)) = encoded else {
                pending.append((records.len(), index))?;
                continue;
            };
            let key = PyBytes::new(py, key.as_bytes()).into_any();
            if let Some(raw_topic) = raw_topic {
                let raw = message.getattr(intern!(py, "raw"))?;
                let Some(raw) = as_str(&raw) else {
                    pending.append((records.len(), index))?;
                    continue;
                };
                let raw = PyBytes::new(py, raw.as_bytes()).into_any();
                records.append(PyTuple::new(
                    py,
                    [
                        raw_topic.clone().into_any(),
                        key.clone(),
                        raw,
                        none.clone(),
                        timestamp.clone(),
                    ],
                )?)?;
            }
            let value = PyBytes::new(py, &value).into_any();
            records.append(PyTuple::new(
                py,
                [
                    chat_topic.clone().into_any(),
                    key,
                    value,
                    none.clone(),
                    timestamp.clone(),
                ],
            )?)?;
        }
        Ok((records, pending))
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
        ))
    }
}

/// The commands `irc._KNOWN_COMMANDS` lists: the only ones the fast path takes.
const KNOWN_COMMANDS: [&str; 16] = [
    "PRIVMSG",
    "USERNOTICE",
    "CLEARCHAT",
    "CLEARMSG",
    "ROOMSTATE",
    "USERSTATE",
    "GLOBALUSERSTATE",
    "NOTICE",
    "PING",
    "PONG",
    "RECONNECT",
    "JOIN",
    "PART",
    "CAP",
    "WHISPER",
    "HOSTTARGET",
];

/// Splits the complete lines of a read and parses them into `IrcMessage`s, as
/// `TwitchSession.receive_data` + `irc.parse_line` do.
///
/// `read_lines(complete)` takes the bytes up to and including a read's last `\n` and
/// returns `(messages, control_indices, line_count)`: every non-empty line parsed, in
/// order; the positions of the lines that are not PRIVMSG (the session handles those);
/// and the number of lines, empty ones included. Lines of the usual Twitch shape
/// (`@tags :prefix CMD #chan :text`, a known command) are parsed here; any other line
/// goes to the Python `parse_line` given at construction. None — the caller then runs
/// its Python path on the whole read — when a line is not UTF-8 or not IRC, so every
/// malformed-line report comes from the reference code.
#[pyclass(frozen, module = "twitch_ingestion_native")]
struct LineReader {
    message_type: Py<PyAny>,
    parse_line: Py<PyAny>,
    commands: Vec<Py<PyString>>,
}

/// `read_lines`' result: the messages, the positions of the non-PRIVMSG ones, the line count.
type ReadLines<'py> = (Bound<'py, PyList>, Bound<'py, PyList>, usize);

/// `parse_line`'s fast path: `line.split(" ", 4)` and its six conditions, or None.
fn split_fast(line: &str) -> Option<(&str, &str, usize, &str, &str)> {
    let rest = line.strip_prefix('@')?;
    let mut parts = rest.splitn(5, ' ');
    let tags = parts.next()?;
    let prefix = parts.next()?;
    let command = parts.next()?;
    let target = parts.next()?;
    let trailing = parts.next()?;
    let command_index = KNOWN_COMMANDS.iter().position(|known| *known == command)?;
    let prefix = prefix.strip_prefix(':')?;
    let trailing = trailing.strip_prefix(':')?;
    if prefix.is_empty() || target.is_empty() || target.starts_with(':') {
        return None;
    }
    Some((tags, prefix, command_index, target, trailing))
}

#[pymethods]
impl LineReader {
    #[new]
    fn new(py: Python<'_>, message_type: Py<PyAny>, parse_line: Py<PyAny>) -> Self {
        let commands = KNOWN_COMMANDS
            .iter()
            .map(|name| PyString::intern(py, name).unbind())
            .collect();
        Self {
            message_type,
            parse_line,
            commands,
        }
    }

    fn read_lines<'py>(
        &self,
        py: Python<'py>,
        complete: &[u8],
    ) -> PyResult<Option<ReadLines<'py>>> {
        let messages = PyList::empty(py);
        let controls = PyList::empty(py);
        let message_type = self.message_type.bind(py);
        let parse_line = self.parse_line.bind(py);
        let mut segments = complete.split(|byte| *byte == b'\n');
        let mut line_count = 0usize;
        let mut next = segments.next();
        while let Some(segment) = next {
            next = segments.next();
            if next.is_none() {
                break; // what follows the last `\n`: not a line (the caller keeps it)
            }
            line_count += 1;
            let segment = segment.strip_suffix(b"\r").unwrap_or(segment);
            let Ok(line) = std::str::from_utf8(segment) else {
                return Ok(None);
            };
            if line.is_empty() {
                continue;
            }
            let message = match split_fast(line) {
                Some((tags, prefix, command_index, target, trailing)) => {
                    let params =
                        PyList::new(py, [PyString::new(py, target), PyString::new(py, trailing)])?;
                    let (parsed_tags, raw_tags) = if tags.is_empty() {
                        (
                            pyo3::types::PyDict::new(py).into_any(),
                            py.None().into_bound(py),
                        )
                    } else {
                        (py.None().into_bound(py), PyString::new(py, tags).into_any())
                    };
                    let args = (
                        PyString::new(py, line),
                        parsed_tags,
                        PyString::new(py, prefix),
                        self.commands[command_index].bind(py).clone(),
                        params,
                        raw_tags,
                    );
                    if command_index != 0 {
                        controls.append(messages.len())?;
                    }
                    message_type.call1(args)?
                }
                None => {
                    let Ok(message) = parse_line.call1((line,)) else {
                        return Ok(None);
                    };
                    let command = message.getattr(intern!(py, "command"))?;
                    if !command.eq(self.commands[0].bind(py))? {
                        controls.append(messages.len())?;
                    }
                    message
                }
            };
            messages.append(message)?;
        }
        Ok(Some((messages, controls, line_count)))
    }
}

#[pymodule]
fn twitch_ingestion_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<ChatEncoder>()?;
    module.add_class::<LineReader>()?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
