"""The control topic's records and the per-partition channel table (no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twitch_ingestion.fleet.commands import parse_channel_args
from twitch_ingestion.fleet.control_topic import (
    ChannelChange,
    ChannelRecord,
    ChannelTable,
    InvalidRecord,
    decode_record,
    encode_state,
)

# --- records ------------------------------------------------------------------------------


def test_enabled_record_is_a_wanted_channel() -> None:
    assert decode_record(b"forsen", encode_state(enabled=True)) == ChannelRecord("forsen", True)


def test_tombstone_removes_the_channel() -> None:
    assert decode_record(b"forsen", None) == ChannelRecord("forsen", False)


def test_enabled_false_removes_the_channel() -> None:
    assert decode_record(b"forsen", b'{"enabled": false}') == ChannelRecord("forsen", False)


@pytest.mark.parametrize("value", [b"not json", b"[1]", b'{"enabled": "yes"}', b"{}", b"\xff"])
def test_a_value_that_does_not_say_enabled_true_is_not_wanted(value: bytes) -> None:
    assert decode_record(b"forsen", value) == ChannelRecord("forsen", False)


def test_key_is_normalised_like_twitch_channel() -> None:
    assert decode_record(b"#Forsen", encode_state()) == ChannelRecord("forsen", True)


@pytest.mark.parametrize("key", [None, b"", b"two words", b"x" * 26, b"caf\xc3\xa9"])
def test_a_key_that_is_not_a_login_is_invalid(key: bytes | None) -> None:
    assert isinstance(decode_record(key, encode_state()), InvalidRecord)


def test_encoded_state_is_the_documented_json() -> None:
    assert json.loads(encode_state()) == {"enabled": True}
    assert json.loads(encode_state(enabled=False)) == {"enabled": False}


# --- the table ------------------------------------------------------------------------------


def on(channel: str) -> ChannelRecord:
    return ChannelRecord(channel, True)


def off(channel: str) -> ChannelRecord:
    return ChannelRecord(channel, False)


def test_records_of_a_loading_partition_are_collected_then_handed_over_at_its_end() -> None:
    table = ChannelTable()
    table.assign([3])
    assert table.apply(3, on("a")) == ChannelChange()
    assert table.apply(3, on("b")) == ChannelChange()
    assert table.channels() == set()
    assert table.caught_up(3) == ("a", "b")
    assert table.channels() == {"a", "b"}


def test_a_channel_added_then_tombstoned_in_an_uncompacted_tail_is_never_joined() -> None:
    table = ChannelTable()
    table.assign([0])
    table.apply(0, on("a"))
    table.apply(0, on("gone"))
    table.apply(0, off("gone"))
    assert table.caught_up(0) == ("a",)


def test_after_loading_every_record_is_a_change() -> None:
    table = ChannelTable()
    table.assign([0])
    table.caught_up(0)
    assert table.apply(0, on("a")) == ChannelChange(added=("a",))
    assert table.apply(0, on("a")) == ChannelChange()  # re-sent: nothing to do
    assert table.apply(0, off("a")) == ChannelChange(removed=("a",))
    assert table.apply(0, off("a")) == ChannelChange()
    assert not ChannelChange()


def test_only_the_first_end_of_partition_loads_it() -> None:
    table = ChannelTable()
    table.assign([0])
    table.apply(0, on("a"))
    assert table.caught_up(0) == ("a",)
    assert table.caught_up(0) is None


def test_an_empty_partition_loads_empty() -> None:
    table = ChannelTable()
    table.assign([5])
    assert table.is_loading(5)
    assert table.caught_up(5) == ()
    assert not table.is_loading(5)


def test_revoke_returns_the_loaded_channels_only() -> None:
    table = ChannelTable()
    table.assign([0, 1, 2])
    table.apply(0, on("a"))
    table.apply(1, on("b"))
    table.caught_up(0)
    table.caught_up(2)
    # 1 is still loading: its channels were never joined, so there is nothing to give up.
    assert table.revoke([0, 1, 2]) == {0: ("a",)}
    assert table.partitions == []
    assert table.channels() == set()


def test_a_record_for_a_partition_no_longer_assigned_is_ignored() -> None:
    table = ChannelTable()
    assert table.apply(7, on("late")) == ChannelChange()
    assert table.channels() == set()


def test_reassigning_a_loaded_partition_keeps_it_loaded() -> None:
    table = ChannelTable()
    table.assign([0])
    table.apply(0, on("a"))
    table.caught_up(0)
    table.assign([0, 1])
    assert table.partitions == [0, 1]
    assert not table.is_loading(0)
    assert table.is_loading(1)


# --- CLI arguments --------------------------------------------------------------------------


def test_channel_arguments_accept_commas_hashes_and_a_file(tmp_path: Path) -> None:
    listed = tmp_path / "channels.txt"
    listed.write_text("xqc\n\n  #Pokimane \nforsen\n", encoding="utf-8")
    assert parse_channel_args(["forsen,#Sodapoppin", "lirik"], listed) == [
        "forsen",
        "sodapoppin",
        "lirik",
        "xqc",
        "pokimane",
    ]


def test_channel_arguments_name_the_bad_ones() -> None:
    with pytest.raises(ValueError, match="bad name"):
        parse_channel_args(["ok", "bad name"], None)


def test_a_channel_file_may_have_comments_and_blank_lines(tmp_path: Path) -> None:
    listed = tmp_path / "channels.txt"
    listed.write_text(
        "# the channels we read\n\nforsen  # the big one\n#xqc\n   \n#\nlirik, summit1g\n",
        encoding="utf-8",
    )
    assert parse_channel_args([], listed) == ["forsen", "xqc", "lirik", "summit1g"]
