//! The JSON writer: strings, integers and booleans byte-identical to msgspec's output, so
//! a compiled record and a Python one are the same bytes.

use crate::swar::{has_byte, word_at, HIGHS, ONES};

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
#[inline]
fn needs_escape(word: u64) -> u64 {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    below_space | has_byte(word, b'"') | has_byte(word, b'\\')
}

/// A JSON string exactly as msgspec writes it: `"` and `\` escaped, `\b \t \n \f \r`
/// short, every other control character `\u00XX` (lower-case hex), nothing else.
/// Clean runs are skipped eight bytes a step (chat text rarely needs escaping).
pub fn push_str(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut at = 0;
    loop {
        while let Some(word) = word_at(bytes, at) {
            if needs_escape(word) != 0 {
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

/// An optional string field: `null` for the empty string (an absent tag).
pub fn push_optional_str(out: &mut Vec<u8>, value: &str) {
    if value.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        push_str(out, value);
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
pub fn push_int(out: &mut Vec<u8>, value: i64) {
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

pub fn push_bool(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn string(value: &str) -> String {
        let mut out = Vec::new();
        push_str(&mut out, value);
        String::from_utf8(out).expect("the writer keeps UTF-8 intact")
    }

    /// The reference: one character at a time, msgspec's escapes.
    fn reference(value: &str) -> String {
        let mut out = String::from("\"");
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\u{c}' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters_as_msgspec_does() {
        assert_eq!(string("say \"hi\" \\o/"), r#""say \"hi\" \\o/""#);
        assert_eq!(string("\u{8}\t\n\u{c}\r"), r#""\b\t\n\f\r""#);
        assert_eq!(string("\u{1}\u{1f}\u{0}"), r#""\u0001\u001f\u0000""#);
        assert_eq!(string("\u{7f} é 😀 </script>"), "\"\u{7f} é 😀 </script>\"");
        assert_eq!(string(""), "\"\"");
    }

    #[test]
    fn every_escaped_character_at_every_offset_of_two_eight_byte_steps() {
        for byte in (0u8..0x20).chain([b'"', b'\\']) {
            for offset in 0..16 {
                let value = format!("{}{}{}", "a".repeat(offset), byte as char, "b".repeat(9));
                assert_eq!(string(&value), reference(&value), "{value:?}");
            }
        }
    }

    #[test]
    fn optional_strings_are_null_when_empty() {
        let mut out = Vec::new();
        push_optional_str(&mut out, "");
        out.push(b',');
        push_optional_str(&mut out, "x");
        assert_eq!(out, b"null,\"x\"");
    }

    #[test]
    fn integers_at_the_edges_of_the_two_digit_steps() {
        for value in [
            0,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            -1,
            -10,
            -100,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            push_int(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }

    #[test]
    fn booleans() {
        let mut out = Vec::new();
        push_bool(&mut out, true);
        push_bool(&mut out, false);
        assert_eq!(out, b"truefalse");
    }

    proptest! {
        #[test]
        fn push_str_agrees_with_the_one_character_reference(value in any::<String>()) {
            prop_assert_eq!(string(&value), reference(&value));
        }

        #[test]
        fn push_str_agrees_on_text_dense_with_escapes(
            value in "([\\x00-\\x1f\"\\\\]|[a-z ]{1,9}|é|\u{1F600}){0,40}"
        ) {
            prop_assert_eq!(string(&value), reference(&value));
        }

        #[test]
        fn push_str_reads_back_as_the_same_string(value in any::<String>()) {
            let parsed: String = serde_json::from_str(&string(&value)).expect("valid JSON");
            prop_assert_eq!(parsed, value);
        }

        #[test]
        fn push_int_agrees_with_to_string(value in any::<i64>()) {
            let mut out = Vec::new();
            push_int(&mut out, value);
            prop_assert_eq!(out, value.to_string().into_bytes());
        }
    }
}
