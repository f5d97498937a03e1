"""Twitch's `emotes` tag → the emote codes in the message text.

Tag format: `id:start-end,start-end/id2:start-end`. Ids are opaque and may themselves
contain `_` or `/` (`emotesv2_…`, `80481_/3`), so the tag is not simply split on `/`:
a `/`-separated piece without a `:` is the front part of the next entry's id. Ranges are
inclusive Unicode code-point indices into the text after the `\\x01ACTION` wrapper is
removed — Python's `str` indexing, not UTF-16 units, not bytes.

Twitch sometimes sends ranges that do not match the text (twitchdev/issues #104, #175:
out of bounds, or shifted by one so the slice catches a space). A code must never be
wrong, and a tag with one impossible range is misaligned as a whole (the shift moves
every range after the offending character), so such a tag yields no codes at all and
all of its ranges are counted in `ParseStats`. An emote code never contains a space
(Twitch splits words on spaces before matching emotes), which is what exposes the
shifted ranges; it can touch punctuation or emoji (`Kappa.Keepo`, `😂Kappa😂`), so word
boundaries are not required.
"""

from __future__ import annotations

from twitch_ingestion.sources.irc.commands.stats import ParseStats

__all__ = ["emote_codes", "parse_emote_tag"]


def parse_emote_tag(tag: str) -> tuple[list[tuple[str, int, int]], int]:
    """Parse the tag into `(emote_id, start, end_inclusive)` in tag order.

    Returns the ranges and the number of malformed items (`7`, `x-3`, an id without
    ranges); bounds against the text are not checked here. `emote_codes` applies the
    same grammar without building ids.
    """
    ranges: list[tuple[str, int, int]] = []
    malformed = 0
    id_prefix = ""
    for piece in tag.split("/"):
        colon = piece.find(":")
        if colon < 0:
            # No ranges: this `/` is part of an id (`80481_/3:7-14`).
            id_prefix += piece + "/"
            continue
        emote_id = id_prefix + piece[:colon]
        id_prefix = ""
        for item in piece[colon + 1 :].split(","):
            try:
                start, end = item.split("-")
                ranges.append((emote_id, int(start), int(end)))
            except ValueError:
                malformed += 1
    if id_prefix.strip("/"):  # an id that never got its `:ranges`
        malformed += 1
    return ranges, malformed


def emote_codes(tag: str, text: str, stats: ParseStats) -> list[str]:
    """The emote codes of `text` in order of position, or [] when the tag is misaligned.

    Same grammar as `parse_emote_tag`, trimmed for the hot path: ids are not built, and
    `int()` parses the numbers (it also takes `+1`, `1_0` or non-ASCII digits; such a
    range must still land on a space-free slice inside the text to be used).
    """
    spans: list[tuple[int, int]] = []
    try:
        for piece in tag.split("/"):
            colon = piece.find(":")
            if colon < 0:  # the front part of an id that contains `/`
                continue
            for item in piece[colon + 1 :].split(","):
                first, last = item.split("-")
                spans.append((int(first), int(last)))
        if colon < 0 and piece:  # an id that never got its `:ranges`
            raise ValueError(tag)
    except ValueError:  # `7`, `7-8-9`, `x-3`, an id without ranges: the tag is malformed
        # Count its range items (one per `:` plus one per `,`), at least one.
        return _reject(stats, (tag.count(":") + tag.count(",")) or 1)
    if len(spans) > 1:
        spans.sort()
    codes: list[str] = []
    length = len(text)
    previous_end = -1
    for start, end in spans:
        if start <= previous_end or start > end or end >= length:
            return _reject(stats, len(spans))
        code = text[start : end + 1]
        if " " in code:
            return _reject(stats, len(spans))
        codes.append(code)
        previous_end = end
    return codes


def _reject(stats: ParseStats, range_count: int) -> list[str]:
    stats.emote_ranges_skipped += range_count
    stats.emote_tags_rejected += 1
    return []
