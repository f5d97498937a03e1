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

mod frames;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PySlice, PyString, PyTuple};

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

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Non-zero when one of `word`'s 8 bytes is `byte` (the classic SWAR zero-byte test; a
/// false positive can only follow a true one, so the caller rescans byte by byte).
fn has_byte(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The position of the first `;` or `\\` at or after `at`, else `bytes.len()`: eight
/// bytes a step over the long tag values (client-nonce, badge-info, emotes…).
fn next_separator_or_escape(bytes: &[u8], mut at: usize) -> usize {
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if has_byte(word, b';') | has_byte(word, b'\\') != 0 {
            break;
        }
        at += 8;
    }
    while let Some(&byte) = bytes.get(at) {
        if byte == b';' || byte == b'\\' {
            return at;
        }
        at += 1;
    }
    bytes.len()
}

/// `irc._parse_tags_exact`, keeping only the fields we need: empty keys are skipped, a
/// valueless key means the empty value, the last repeat wins.
///
/// The separators are ASCII, so every cut is a char boundary. Keys are short and
/// scanned byte by byte; values are skipped eight bytes a step; keys are told apart by
/// length first, so most unknown tags cost one comparison.
fn parse_tags(raw: &str) -> Tags<'_> {
    let mut tags = Tags::default();
    let bytes = raw.as_bytes();
    let mut start = 0;
    while start <= bytes.len() {
        let mut key_end = start;
        while let Some(&byte) = bytes.get(key_end) {
            if byte == b'=' || byte == b';' {
                break;
            }
            key_end += 1;
        }
        let valued = bytes.get(key_end) == Some(&b'=');
        let value_start = if valued { key_end + 1 } else { key_end };
        let mut escaped = false;
        let mut end = value_start;
        loop {
            end = next_separator_or_escape(bytes, end);
            if bytes.get(end) == Some(&b'\\') {
                escaped = true;
                end += 1;
                continue;
            }
            break;
        }
        let key = raw.get(start..key_end).unwrap_or("");
        let value = raw.get(value_start..end).unwrap_or("");
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
        *slot = if escaped {
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

/// Non-zero when one of `word`'s 8 bytes needs escaping in JSON: below 0x20, `"` or
/// `\\` (SWAR; a false positive can only follow a true one).
fn needs_escape(word: u64) -> u64 {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    below_space | has_byte(word, b'"') | has_byte(word, b'\\')
}

/// A JSON string exactly as msgspec writes it: `"` and `\` escaped, `\b \t \n \f \r`
/// short, every other control character `\u00XX` (lower-case hex), nothing else.
/// Clean runs are skipped eight bytes a step (chat text rarely needs escaping).
fn push_json_str(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut at = 0;
    loop {
        while let Some(chunk) = bytes.get(at..at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if needs_escape(u64::from_le_bytes(word)) != 0 {
                break;
            }
            at += 8;
        }
        let Some(&byte) = bytes.get(at) else {
            break;
        };
        at += 1;
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
        out.extend_from_slice(bytes.get(start..at - 1).unwrap_or_default());
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(b"00");
            out.push(HEX[(byte >> 4) as usize]);
            out.push(HEX[(byte & 0xf) as usize]);
        }
        start = at;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

fn push_optional_str(out: &mut Vec<u8>, value: &str) {
    if value.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        push_json_str(out, value);
    }
}

/// "00" to "99": two digits a step for `push_int`.
const TWO_DIGITS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// A decimal integer, without the allocation `to_string` makes (this runs ~4× a line).
fn push_int(out: &mut Vec<u8>, value: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value.unsigned_abs();
    while rest >= 100 {
        let pair = (rest % 100) as usize * 2;
        rest /= 100;
        at -= 2;
        digits[at] = TWO_DIGITS[pair];
        digits[at + 1] = TWO_DIGITS[pair + 1];
    }
    if rest >= 10 {
        let pair = rest as usize * 2;
        at -= 2;
        digits[at] = TWO_DIGITS[pair];
        digits[at + 1] = TWO_DIGITS[pair + 1];
    } else {
        at -= 1;
        digits[at] = b'0' + rest as u8;
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// ASCII lower case, borrowed when it already is (Twitch logins nearly always are).
fn ascii_lower(value: &str) -> Cow<'_, str> {
    if value.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(value.to_ascii_lowercase())
    } else {
        Cow::Borrowed(value)
    }
}

fn push_bool(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// The PRIVMSG → (key, JSON) step, on plain strings; None = "let Python do this line".
fn encode_privmsg<'t>(
    raw_tags: &str,
    prefix: &str,
    target: &'t str,
    text: &str,
    received_at_ms: i64,
    schema_version: i64,
    ingested_via: &str,
) -> Option<(Cow<'t, str>, Vec<u8>)> {
    let channel = target.strip_prefix('#')?;
    if channel.is_empty() || !channel.is_ascii() {
        return None; // a contract violation, or Python's Unicode lower()
    }
    let channel = ascii_lower(channel);
    let username = match prefix.bytes().position(|byte| byte == b'!') {
        Some(bang) => prefix.get(..bang).unwrap_or(prefix),
        None => prefix,
    };
    if username.is_empty() || !username.is_ascii() {
        return None;
    }
    let username = ascii_lower(username);

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
struct LineReader {
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

/// A fast-shape line's parts, borrowed from its chunk's text.
struct LineParts<'t> {
    line: &'t str,
    tags: &'t str,
    prefix: &'t str,
    target: &'t str,
    trailing: &'t str,
}

/// Where a fast-shape PRIVMSG line's parts sit in its chunk's text (byte offsets).
#[derive(Clone, Copy)]
struct Spans {
    line: (usize, usize),
    tags: (usize, usize),
    prefix: (usize, usize),
    target: (usize, usize),
    trailing: (usize, usize),
}

impl Spans {
    fn of(text: &str, parts: &LineParts<'_>) -> Self {
        let span = |part: &str| {
            let start = part.as_ptr() as usize - text.as_ptr() as usize;
            (start, start + part.len())
        };
        Self {
            line: span(parts.line),
            tags: span(parts.tags),
            prefix: span(parts.prefix),
            target: span(parts.target),
            trailing: span(parts.trailing),
        }
    }

    /// The parts again. Every offset was taken from a `&str` of this very text, so each
    /// is a char boundary; `get` keeps even a wrong offset from panicking.
    fn parts<'t>(&self, text: &'t str) -> LineParts<'t> {
        let part = |(start, end): (usize, usize)| text.get(start..end).unwrap_or("");
        LineParts {
            line: part(self.line),
            tags: part(self.tags),
            prefix: part(self.prefix),
            target: part(self.target),
            trailing: part(self.trailing),
        }
    }
}

/// One line of a `ChatChunk`: a located PRIVMSG, or an `IrcMessage` already built.
enum Entry {
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
struct ChatChunk {
    text: Arc<str>,
    entries: Vec<Entry>,
    factory: Arc<MessageFactory>,
}

impl ChatChunk {
    fn message<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyAny>> {
        match self.entries.get(index) {
            None => Err(PyIndexError::new_err("ChatChunk index out of range")),
            Some(Entry::Message(message)) => Ok(message.bind(py).clone()),
            Some(Entry::Line(spans)) => self.factory.build(py, &spans.parts(&self.text), 0),
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

/// `parse_line`'s fast path: `line.split(" ", 4)` and its six conditions, or None.
fn split_fast(line: &str) -> Option<(LineParts<'_>, usize)> {
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
    let parts = LineParts {
        line,
        tags,
        prefix,
        target,
        trailing,
    };
    Some((parts, command_index))
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
        let privmsg = self.factory.commands[0].bind(py);
        let mut segments = text.split('\n');
        let mut line_count = 0usize;
        let mut next = segments.next();
        while let Some(segment) = next {
            next = segments.next();
            if next.is_none() {
                break; // what follows the last `\n`: not a line (the caller keeps it)
            }
            line_count += 1;
            let line = segment.strip_suffix('\r').unwrap_or(segment);
            if line.is_empty() {
                continue;
            }
            let entry = match split_fast(line) {
                Some((parts, 0)) => Entry::Line(Spans::of(&text, &parts)),
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

#[pymodule]
fn twitch_ingestion_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<ChatEncoder>()?;
    module.add_class::<LineReader>()?;
    module.add_class::<ChatChunk>()?;
    module.add_function(wrap_pyfunction!(frames::frame_records, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
