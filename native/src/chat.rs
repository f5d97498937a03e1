//! A PRIVMSG's parts → its record key (the channel) and `ChatMessage` JSON, the same
//! bytes `commands/privmsg.py` + msgspec produce; None for every line the Python path
//! must decide (see the crate documentation for the list).

use std::borrow::Cow;

use crate::json::{push_bool, push_int, push_optional_str, push_str};
use crate::tags::parse_tags;

/// 15 digits stay below 2**53 (see `fields.non_negative_int`).
const MAX_INT_DIGITS: usize = 15;

/// More badges than this on one line is not Twitch: let Python (dict semantics) decide.
const MAX_BADGES: usize = 64;

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

/// ASCII lower case, borrowed when it already is (Twitch logins nearly always are).
fn ascii_lower(value: &str) -> Cow<'_, str> {
    if value.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(value.to_ascii_lowercase())
    } else {
        Cow::Borrowed(value)
    }
}

/// The PRIVMSG → (key, JSON) step, on plain strings; None = "let Python do this line".
pub fn encode_privmsg<'t>(
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
    push_str(&mut out, &channel);
    out.extend_from_slice(b",\"user_id\":");
    push_str(&mut out, &tags.user_id);
    out.extend_from_slice(b",\"username\":");
    push_str(&mut out, &username);
    out.extend_from_slice(b",\"message\":");
    push_str(&mut out, text);
    out.extend_from_slice(b",\"timestamp\":");
    push_int(&mut out, timestamp as i64);
    out.extend_from_slice(b",\"emotes\":[");
    for (index, code) in emotes.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        push_str(&mut out, code);
    }
    out.extend_from_slice(b"],\"message_id\":");
    push_str(&mut out, &tags.id);
    out.extend_from_slice(b",\"room_id\":");
    push_str(&mut out, &tags.room_id);
    out.extend_from_slice(b",\"display_name\":");
    push_str(&mut out, tags.display_name.trim_matches(' '));
    out.extend_from_slice(b",\"badges\":{");
    for (index, (name, version)) in badges.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        push_str(&mut out, name);
        out.push(b':');
        push_str(&mut out, version);
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
    push_str(&mut out, ingested_via);
    out.push(b'}');
    Some((channel, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RECEIVED_AT: i64 = 1_700_000_000_123;
    const TAGS: &str = "id=m-1;room-id=11;tmi-sent-ts=1700000000000;user-id=21";

    fn encode(raw_tags: &str, prefix: &str, target: &str, text: &str) -> Option<String> {
        let (key, value) = encode_privmsg(raw_tags, prefix, target, text, RECEIVED_AT, 1, "irc")?;
        let value = String::from_utf8(value).expect("UTF-8 JSON");
        assert_eq!(
            key,
            target[1..].to_ascii_lowercase(),
            "the key is the channel"
        );
        Some(value)
    }

    fn field(json: &str, name: &str) -> serde_json::Value {
        let value: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
        value[name].clone()
    }

    // Both expected values are what `parse_privmsg` + msgspec write for the same line.
    #[test]
    fn a_full_privmsg_is_the_chat_message_msgspec_writes() {
        let json = encode(
            "badge-info=subscriber/8;badges=subscriber/6,premium/1;client-nonce=n;\
             color=#FF0000;display-name=Alice\\s;emotes=25:6-10/1902:12-16;first-msg=1;\
             id=m-1;mod=0;reply-parent-msg-id=p-9;room-id=11;tmi-sent-ts=1700000000000;\
             user-id=21",
            "Alice!alice@alice.tmi.twitch.tv",
            "#Chan",
            "hello Kappa Keepo \"q\"",
        );
        assert_eq!(
            json.as_deref(),
            Some(
                "{\"channel_id\":\"chan\",\"user_id\":\"21\",\"username\":\"alice\",\
                 \"message\":\"hello Kappa Keepo \\\"q\\\"\",\"timestamp\":1700000000000,\
                 \"emotes\":[\"Kappa\",\"Keepo\"],\"message_id\":\"m-1\",\"room_id\":\"11\",\
                 \"display_name\":\"Alice\",\"badges\":{\"subscriber\":\"6\",\"premium\":\"1\"},\
                 \"is_action\":false,\"bits\":0,\"reply_parent_message_id\":\"p-9\",\
                 \"first_message\":true,\"received_at\":1700000000123,\"schema_version\":1,\
                 \"source_room_id\":null,\"source_message_id\":null,\"ingested_via\":\"irc\"}"
            )
        );
    }

    #[test]
    fn an_action_with_shared_chat_tags_and_code_point_emotes() {
        let json = encode(
            "bits=100;display-name=bob;emotes=25:2-6;id=m-2;room-id=11;source-id=s-1;\
             source-room-id=12;tmi-sent-ts=1700000000001;user-id=22",
            "bob!bob@bob.tmi.twitch.tv",
            "#chan",
            "\x01ACTION é Kappa\x01",
        );
        assert_eq!(
            json.as_deref(),
            Some(
                "{\"channel_id\":\"chan\",\"user_id\":\"22\",\"username\":\"bob\",\
                 \"message\":\"é Kappa\",\"timestamp\":1700000000001,\"emotes\":[\"Kappa\"],\
                 \"message_id\":\"m-2\",\"room_id\":\"11\",\"display_name\":\"bob\",\
                 \"badges\":{},\"is_action\":true,\"bits\":100,\
                 \"reply_parent_message_id\":null,\"first_message\":false,\
                 \"received_at\":1700000000123,\"schema_version\":1,\"source_room_id\":\"12\",\
                 \"source_message_id\":\"s-1\",\"ingested_via\":\"irc\"}"
            )
        );
    }

    #[test]
    fn lines_the_python_path_must_decide_are_left_to_it() {
        let user = "u!u@u.tmi.twitch.tv";
        for (why, tags, prefix, target) in [
            ("no channel", TAGS, user, "chan"),
            ("empty channel", TAGS, user, "#"),
            ("non-ASCII channel (Unicode lower())", TAGS, user, "#chän"),
            ("no sender", TAGS, "", "#chan"),
            ("non-ASCII sender", TAGS, "ü!u@u", "#chan"),
            ("no tmi-sent-ts (counted)", "id=m;room-id=1", user, "#chan"),
            (
                "tmi-sent-ts not a plain decimal",
                "room-id=1;tmi-sent-ts=+5",
                user,
                "#chan",
            ),
            (
                "tmi-sent-ts too long",
                "room-id=1;tmi-sent-ts=1234567890123456",
                user,
                "#chan",
            ),
            (
                "no room-id (from ROOMSTATE)",
                "tmi-sent-ts=1",
                user,
                "#chan",
            ),
            (
                "emote past the text",
                &format!("{TAGS};emotes=1:0-99"),
                user,
                "#chan",
            ),
            (
                "emote spans overlap",
                &format!("{TAGS};emotes=1:0-1,1-2"),
                user,
                "#chan",
            ),
            (
                "emote with a space",
                &format!("{TAGS};emotes=1:0-3"),
                user,
                "#chan",
            ),
            (
                "emote number Python reads",
                &format!("{TAGS};emotes=1:٠-1"),
                user,
                "#chan",
            ),
            (
                "emote without ranges last",
                &format!("{TAGS};emotes=1:0-1/2"),
                user,
                "#chan",
            ),
            (
                "repeated badge",
                &format!("{TAGS};badges=a/1,a/2"),
                user,
                "#chan",
            ),
        ] {
            assert_eq!(encode(tags, prefix, target, "hi there"), None, "{why}");
        }
    }

    #[test]
    fn odd_but_valid_fields_are_encoded_as_python_reads_them() {
        let user = "u";
        let json = encode(
            "room-id=1;tmi-sent-ts=5;bits=x;display-name=\\s\\sB\\s;badges=,/0,b,c/",
            user,
            "#CHAN",
            "\x01ACTION",
        )
        .expect("encodable");
        assert_eq!(
            field(&json, "username"),
            "u",
            "a prefix without '!' is the login"
        );
        assert_eq!(
            field(&json, "bits"),
            0,
            "bits that are not a number count as 0"
        );
        assert_eq!(field(&json, "display_name"), "B", "spaces trimmed");
        assert_eq!(
            field(&json, "badges"),
            serde_json::json!({"b": "", "c": ""})
        );
        assert_eq!(
            field(&json, "message"),
            "",
            "a bare ACTION is an empty action"
        );
        assert_eq!(field(&json, "is_action"), true);
        assert_eq!(
            field(&json, "message_id"),
            "",
            "no id tag: the empty string"
        );
        let other_ctcp = encode(TAGS, user, "#c", "\x01ACTIONS x\x01").expect("encodable");
        assert_eq!(field(&other_ctcp, "is_action"), false);
        assert_eq!(field(&other_ctcp, "message"), "\u{1}ACTIONS x\u{1}");
        let truncated = encode(TAGS, user, "#c", "\x01ACTION waves").expect("encodable");
        assert_eq!(
            field(&truncated, "message"),
            "waves",
            "no closing \\x01: still an action"
        );
    }

    #[test]
    fn more_badges_than_twitch_sends_are_left_to_python() {
        let badges: Vec<String> = (0..=MAX_BADGES).map(|n| format!("b{n}/1")).collect();
        let tags = format!("{TAGS};badges={}", badges.join(","));
        assert_eq!(encode(&tags, "u", "#c", "hi"), None);
        let fewer = format!("{TAGS};badges={}", badges[..MAX_BADGES].join(","));
        assert!(encode(&fewer, "u", "#c", "hi").is_some());
    }

    fn text() -> impl Strategy<Value = String> {
        "(\\x01ACTION ?)?([a-zA-Z0-9 \"\\\\\\x00-\\x1f]|é|\u{1F600}){0,40}\\x01?"
    }

    fn raw_tags() -> impl Strategy<Value = String> {
        let value = "([a-z0-9/,:;=\\- ]|\\\\s|é){0,12}";
        (
            value,
            "[0-9]{1,16}|",
            "[0-9]{0,3}",
            "([0-9]{1,2}:[0-9]{1,2}-[0-9]{1,2}(,[0-9]{1,2}-[0-9]{1,2})?/?){0,3}",
            "([a-z]{1,3}/[0-9]?,?){0,4}",
        )
            .prop_map(|(junk, ts, bits, emotes, badges)| {
                format!(
                    "x={junk};room-id=7;tmi-sent-ts={ts};bits={bits};emotes={emotes};\
                     badges={badges};display-name=D;id=i"
                )
            })
    }

    proptest! {
        /// Whatever the line, the writer's output is JSON holding the text it was given.
        #[test]
        fn every_encoded_line_reads_back_as_json_with_its_fields(
            tags in raw_tags(),
            prefix in "[a-zA-Z0-9_]{0,6}(![a-z@.]{0,8})?",
            target in "#?[a-zA-Z_]{0,6}",
            text in text(),
        ) {
            let Some((key, value)) =
                encode_privmsg(&tags, &prefix, &target, &text, RECEIVED_AT, 1, "irc")
            else {
                return Ok(());
            };
            let record: serde_json::Value =
                serde_json::from_slice(&value).expect("the writer writes JSON");
            let (inner, is_action) = unwrap_action(&text);
            prop_assert_eq!(record["channel_id"].as_str(), Some(key.as_ref()));
            prop_assert_eq!(key.as_ref(), target[1..].to_ascii_lowercase());
            prop_assert_eq!(record["message"].as_str(), Some(inner));
            prop_assert_eq!(record["is_action"].as_bool(), Some(is_action));
            prop_assert_eq!(record["received_at"].as_i64(), Some(RECEIVED_AT));
            let emotes = record["emotes"].as_array().expect("a list");
            for code in emotes {
                let code = code.as_str().expect("a string");
                prop_assert!(!code.is_empty() && inner.contains(code), "{code:?} in {inner:?}");
            }
            prop_assert_eq!(record.as_object().map(|fields| fields.len()), Some(19), "19 distinct fields");
        }

        /// Never a panic, whatever the four strings (a panic would abort the service).
        #[test]
        fn any_strings_give_a_record_or_none_without_panicking(
            tags in any::<String>(),
            prefix in any::<String>(),
            target in any::<String>(),
            text in any::<String>(),
        ) {
            let _ = encode_privmsg(&tags, &prefix, &target, &text, 0, 1, "irc");
        }

        #[test]
        fn emote_codes_slice_the_text_by_code_points(
            text in "(é|[a-z]|\u{1F600}){1,30}",
            cuts in proptest::collection::btree_set(0usize..30, 0..8),
        ) {
            let length = text.chars().count();
            let cuts: Vec<usize> = cuts.into_iter().filter(|cut| *cut < length).collect();
            let spans: Vec<(usize, usize)> =
                cuts.chunks_exact(2).map(|pair| (pair[0], pair[1])).collect();
            let tag = spans
                .iter()
                .map(|(start, end)| format!("e:{start}-{end}"))
                .collect::<Vec<_>>()
                .join("/");
            let expected: Vec<String> = spans
                .iter()
                .map(|(start, end)| text.chars().skip(*start).take(end - start + 1).collect())
                .collect();
            prop_assert_eq!(emote_codes(&tag, &text), Some(expected.iter().map(String::as_str).collect()));
        }
    }
}
