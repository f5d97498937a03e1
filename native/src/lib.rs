//! Compiled hot path of twitch-ingestion, two steps, each one call per socket read:
//!
//! * `LineReader.read_lines`: a read's complete lines split, UTF-8 decoded and parsed into
//!   the Python `IrcMessage`s the session and the encoder use (`irc.parse_line`'s fast
//!   shape here, every other line through the Python `parse_line` itself);
//! * `ChatEncoder.encode_chunk`: each parsed PRIVMSG → its records, the `ChatMessage`
//!   JSON byte-identical to msgspec's.
//!
//! and, for the disk buffer, `frame_records`: a batch of records → their frames.
//!
//! The pure-Python path (`sources/irc/session.py`, `commands/privmsg.py` + msgspec) is the
//! reference: this takes only the lines it can reproduce exactly without side effects.
//! Everything else — a contract violation (dead letter), a missing or invalid
//! `tmi-sent-ts` or an emote tag that does not fit the text (both counted in
//! `ParseStats`), a missing `room-id` (filled from ROOMSTATE), non-ASCII logins (Python's
//! Unicode `lower()`), odd emote numbers that Python's `int()` reads differently, a line
//! that is not UTF-8 or not IRC — is handed back and Python does it. The differential
//! tests (`tests/unit/test_compiled_differential.py`, `test_frame_differential.py`) hold
//! the two together.
//!
//! Layout: the decisions are pure Rust, tested with `cargo test` (unit and property
//! tests, no Python); `python/` is the PyO3 layer that turns Python objects into their
//! arguments and their answers into Python objects. Built without the default `python`
//! feature the crate is the pure core alone, so a core module cannot reach for Python.
//!
//! * `line` — a read's complete lines, a line's fast-shape parts, their offsets;
//! * `tags` — the PRIVMSG tags a record uses, found in one pass;
//! * `chat` — a PRIVMSG's parts → its key and `ChatMessage` JSON, or "Python decides";
//! * `json` — the JSON writer (strings, integers, booleans as msgspec writes them);
//! * `frame` — the disk buffer's record frame and its CRC;
//! * `swar` — eight bytes a step, for the scanner and the writer.
//!
//! Safety on hostile input: no indexing that can panic (every slice is at a boundary
//! found by `find`/`split` on ASCII bytes), no recursion, and every allocation is
//! bounded by a small multiple of the input line (which the session caps at 64 KiB).

pub mod chat;
pub mod frame;
pub mod json;
pub mod line;
pub mod swar;
pub mod tags;

#[cfg(feature = "python")]
mod python;
