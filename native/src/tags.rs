//! IRCv3 message tags (`@key=value;…`): the PRIVMSG tags a `ChatMessage` uses, found in
//! one pass without splitting the whole tag string (`irc._parse_tags_exact` is the
//! reference).

use std::borrow::Cow;

use crate::swar::{has_byte, word_at};

/// The PRIVMSG tags a `ChatMessage` uses, unescaped (`privmsg._PrivmsgTags`); a tag that
/// is absent is the empty string, as Python's `tags.get(name, "")`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tags<'a> {
    pub badges: Cow<'a, str>,
    pub bits: Cow<'a, str>,
    pub display_name: Cow<'a, str>,
    pub emotes: Cow<'a, str>,
    pub first_msg: Cow<'a, str>,
    pub id: Cow<'a, str>,
    pub reply_parent_msg_id: Cow<'a, str>,
    pub room_id: Cow<'a, str>,
    pub source_id: Cow<'a, str>,
    pub source_room_id: Cow<'a, str>,
    pub tmi_sent_ts: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
}

/// IRCv3 tag unescaping, as `irc.unescape_tag_value`.
pub fn unescape(value: &str) -> Cow<'_, str> {
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

/// The position of the first `;` or `\\` at or after `at`, else `bytes.len()`: eight
/// bytes a step over the long tag values (client-nonce, badge-info, emotes…).
fn next_separator_or_escape(bytes: &[u8], mut at: usize) -> usize {
    while let Some(word) = word_at(bytes, at) {
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
pub fn parse_tags(raw: &str) -> Tags<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KNOWN_KEYS: [&str; 12] = [
        "badges",
        "bits",
        "display-name",
        "emotes",
        "first-msg",
        "id",
        "reply-parent-msg-id",
        "room-id",
        "source-id",
        "source-room-id",
        "tmi-sent-ts",
        "user-id",
    ];

    /// The reference, spelled the way `irc._parse_tags_exact` is: split on `;`, then on
    /// the first `=`, later repeats overwrite earlier ones.
    fn reference(raw: &str) -> Tags<'static> {
        let mut tags = Tags::default();
        for item in raw.split(';') {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            let value = Cow::Owned(unescape(value).into_owned());
            match key {
                "badges" => tags.badges = value,
                "bits" => tags.bits = value,
                "display-name" => tags.display_name = value,
                "emotes" => tags.emotes = value,
                "first-msg" => tags.first_msg = value,
                "id" => tags.id = value,
                "reply-parent-msg-id" => tags.reply_parent_msg_id = value,
                "room-id" => tags.room_id = value,
                "source-id" => tags.source_id = value,
                "source-room-id" => tags.source_room_id = value,
                "tmi-sent-ts" => tags.tmi_sent_ts = value,
                "user-id" => tags.user_id = value,
                _ => {}
            }
        }
        tags
    }

    #[test]
    fn a_twitch_privmsg_tag_string_gives_the_fields_a_chat_message_uses() {
        let tags = parse_tags(
            "badge-info=subscriber/8;badges=subscriber/6,premium/1;client-nonce=abc;color=;\
             display-name=Alice\\sB;emotes=25:0-4;first-msg=0;id=m-1;mod=0;room-id=11;\
             tmi-sent-ts=1700000000000;user-id=21",
        );
        assert_eq!(tags.badges, "subscriber/6,premium/1");
        assert_eq!(tags.display_name, "Alice B");
        assert_eq!(tags.emotes, "25:0-4");
        assert_eq!(tags.first_msg, "0");
        assert_eq!(tags.id, "m-1");
        assert_eq!(tags.room_id, "11");
        assert_eq!(tags.tmi_sent_ts, "1700000000000");
        assert_eq!(tags.user_id, "21");
        assert_eq!(tags.bits, "", "an absent tag reads as empty");
    }

    #[test]
    fn unescape_follows_ircv3_and_drops_a_lone_trailing_backslash() {
        assert_eq!(unescape(r"a\:b\sc\\d\re\nf"), "a;b c\\d\re\nf");
        assert_eq!(
            unescape(r"\x"),
            "x",
            "an unknown escape is the character itself"
        );
        assert_eq!(unescape("end\\"), "end");
        assert!(matches!(unescape("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn valueless_keys_are_empty_empty_keys_are_skipped_and_the_last_repeat_wins() {
        let tags = parse_tags(";=x;id;room-id=1;room-id=2;;bits=5=6");
        assert_eq!(tags.id, "");
        assert_eq!(tags.room_id, "2");
        assert_eq!(tags.bits, "5=6", "only the first '=' separates");
    }

    #[test]
    fn a_backslash_before_a_semicolon_does_not_hide_the_separator() {
        // `_parse_tags_exact` splits on ';' before it unescapes.
        let tags = parse_tags(r"id=a\;room-id=7;user-id=b\\;bits=3");
        assert_eq!(tags.id, "a");
        assert_eq!(tags.room_id, "7");
        assert_eq!(tags.user_id, "b\\");
        assert_eq!(tags.bits, "3");
    }

    #[test]
    fn separators_and_escapes_are_found_at_every_offset_of_the_eight_byte_steps() {
        for offset in 0..24 {
            let filler = "x".repeat(offset);
            for (raw, id) in [
                (format!("client-nonce={filler};id=m"), "m"),
                (format!("id={filler}\\s;bits=1"), &*format!("{filler} ")),
                (format!("id={filler}é\\:é"), &*format!("{filler}é;é")),
            ] {
                assert_eq!(parse_tags(&raw).id, id, "{raw:?}");
            }
        }
    }

    fn tag_string() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            proptest::sample::select(&KNOWN_KEYS[..]).prop_map(str::to_owned),
            "[a-z=-]{0,8}",
        ];
        let value =
            proptest::option::of("([a-z0-9/,:=-]|\\\\|\\\\[:s\\\\rnx]|é| |\u{1F600}){0,30}");
        proptest::collection::vec((key, value), 0..10).prop_map(|items| {
            items
                .into_iter()
                .map(|(key, value)| match value {
                    Some(value) => format!("{key}={value}"),
                    None => key,
                })
                .collect::<Vec<_>>()
                .join(";")
        })
    }

    proptest! {
        #[test]
        fn parse_tags_agrees_with_split_then_unescape(raw in tag_string()) {
            prop_assert_eq!(parse_tags(&raw), reference(&raw));
        }

        #[test]
        fn parse_tags_agrees_with_split_then_unescape_on_any_text(raw in any::<String>()) {
            prop_assert_eq!(parse_tags(&raw), reference(&raw));
        }
    }
}
