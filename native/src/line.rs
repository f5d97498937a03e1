//! Finding the lines of a read and the parts of a line, without copying: what
//! `TwitchSession.receive_data` and `irc.parse_line`'s fast path do, on borrowed text.

/// The commands `irc._KNOWN_COMMANDS` lists: the only ones the fast path takes.
pub const KNOWN_COMMANDS: [&str; 16] = [
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

/// PRIVMSG's position in `KNOWN_COMMANDS`.
pub const PRIVMSG: usize = 0;

/// The complete lines of a read, `\r\n` or `\n` ended, empty ones included; what follows
/// the last `\n` is not a line (the caller keeps it for the next read).
pub fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
        .map_while(|segment| segment.strip_suffix('\n'))
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
}

/// A fast-shape line's parts, borrowed from its chunk's text.
#[derive(Debug, PartialEq, Eq)]
pub struct LineParts<'t> {
    pub line: &'t str,
    pub tags: &'t str,
    pub prefix: &'t str,
    pub target: &'t str,
    pub trailing: &'t str,
}

/// `parse_line`'s fast path: `line.split(" ", 4)` and its six conditions, or None. The
/// parts and the command's position in `KNOWN_COMMANDS`.
pub fn split_fast(line: &str) -> Option<(LineParts<'_>, usize)> {
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

/// Where a fast-shape line's parts sit in its chunk's text (byte offsets): what a chunk
/// keeps instead of a Python object per line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spans {
    line: (usize, usize),
    tags: (usize, usize),
    prefix: (usize, usize),
    target: (usize, usize),
    trailing: (usize, usize),
}

impl Spans {
    /// The offsets of `parts`, which must be borrowed from `text` itself.
    pub fn of(text: &str, parts: &LineParts<'_>) -> Self {
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
    pub fn parts<'t>(&self, text: &'t str) -> LineParts<'t> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PRIVMSG_LINE: &str = "@id=1;room-id=2 :a!a@a.tmi.twitch.tv PRIVMSG #chan :hi: there";

    #[test]
    fn a_read_splits_into_its_complete_lines_and_keeps_no_partial_one() {
        let lines: Vec<&str> = complete_lines("a\r\nb\n\n\r\nc").collect();
        assert_eq!(lines, ["a", "b", "", ""]);
        assert_eq!(complete_lines("").count(), 0);
        assert_eq!(complete_lines("partial").count(), 0);
        assert_eq!(complete_lines("\n").collect::<Vec<_>>(), [""]);
        assert_eq!(
            complete_lines("a\rb\n").collect::<Vec<_>>(),
            ["a\rb"],
            "a lone CR stays"
        );
    }

    #[test]
    fn a_twitch_privmsg_is_split_into_its_five_parts() {
        let (parts, command) = split_fast(PRIVMSG_LINE).expect("fast shape");
        assert_eq!(command, PRIVMSG);
        assert_eq!(
            parts,
            LineParts {
                line: PRIVMSG_LINE,
                tags: "id=1;room-id=2",
                prefix: "a!a@a.tmi.twitch.tv",
                target: "#chan",
                trailing: "hi: there",
            }
        );
    }

    #[test]
    fn other_known_commands_of_the_same_shape_give_their_position() {
        let line = "@msg-id=x :tmi.twitch.tv NOTICE #chan :slow down";
        assert_eq!(
            split_fast(line).map(|(_, command)| KNOWN_COMMANDS[command]),
            Some("NOTICE")
        );
        let (parts, _) = split_fast("@ :p PRIVMSG #c :x").expect("empty tags are a shape too");
        assert_eq!(parts.tags, "");
    }

    #[test]
    fn every_other_shape_is_left_to_the_python_parser() {
        for line in [
            ":a!a@a PRIVMSG #chan :no tags",
            "@id=1 :a PRIVMSG #chan",
            "@id=1 :a PRIVMSG #chan no-colon",
            "@id=1 a PRIVMSG #chan :prefix without colon",
            "@id=1 : PRIVMSG #chan :empty prefix",
            "@id=1 :a PRIVMSG  :empty target",
            "@id=1 :a PRIVMSG ::colon target",
            "@id=1 :a privmsg #chan :lower-case command",
            "@id=1 :a 001 nick :a numeric",
            "@id=1 :a PRIVMSG #chan  :two spaces",
            "PING :tmi.twitch.tv",
            "",
        ] {
            assert_eq!(split_fast(line), None, "{line:?}");
        }
    }

    #[test]
    fn spans_give_back_the_same_parts_of_a_later_line() {
        let text = format!("PING :x\r\n{PRIVMSG_LINE}\r\n");
        let line = complete_lines(&text).nth(1).expect("two lines");
        let (parts, _) = split_fast(line).expect("fast shape");
        assert_eq!(Spans::of(&text, &parts).parts(&text), parts);
    }

    fn read() -> impl Strategy<Value = String> {
        let part = "([a-z=;@:#!. ]|é|\u{1F600}){0,12}";
        let command = proptest::sample::select(&["PRIVMSG", "NOTICE", "PING", "FOO"][..]);
        let line = (part, part, command, part, part, "\r?\n?").prop_map(
            |(tags, prefix, command, target, trailing, end)| {
                format!("@{tags} :{prefix} {command} {target} :{trailing}{end}")
            },
        );
        proptest::collection::vec(line, 0..6).prop_map(|lines| lines.concat())
    }

    proptest! {
        /// The parts put back together are the line, and the spans find them again.
        #[test]
        fn fast_shape_parts_rebuild_their_line(text in read()) {
            for line in complete_lines(&text) {
                prop_assert!(!line.contains('\n'));
                let Some((parts, command)) = split_fast(line) else {
                    continue;
                };
                let rebuilt = format!(
                    "@{} :{} {} {} :{}",
                    parts.tags, parts.prefix, KNOWN_COMMANDS[command], parts.target, parts.trailing
                );
                prop_assert_eq!(rebuilt, line);
                prop_assert_eq!(Spans::of(&text, &parts).parts(&text), parts);
            }
        }

        #[test]
        fn the_lines_are_the_text_up_to_its_last_newline(text in any::<String>()) {
            let complete = text.rfind('\n').map_or("", |last| &text[..=last]);
            let expected: Vec<&str> = complete
                .split_terminator('\n')
                .map(|line| line.strip_suffix('\r').unwrap_or(line))
                .collect();
            prop_assert_eq!(complete_lines(&text).collect::<Vec<_>>(), expected);
        }

        #[test]
        fn any_line_splits_or_not_without_panicking(line in any::<String>()) {
            let _ = split_fast(&line);
        }
    }
}
