"""The one channel-login rule (`twitch_ingestion.channels`) and every place that uses it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twitch_ingestion.channels import (
    ChannelLoginError,
    InvalidLogin,
    normalise_login,
    normalise_logins,
)
from twitch_ingestion.config import Settings
from twitch_ingestion.fleet.commands import parse_channel_args
from twitch_ingestion.fleet.control_topic import ChannelRecord, InvalidRecord, decode_record


@pytest.mark.parametrize(
    ("given", "login"),
    [
        ("forsen", "forsen"),
        ("#Sodapoppin", "sodapoppin"),
        ("  lirik ", "lirik"),
        ("a", "a"),
        ("x" * 25, "x" * 25),
        ("under_score_99", "under_score_99"),
    ],
)
def test_a_login_is_trimmed_stripped_of_one_hash_and_lower_cased(given: str, login: str) -> None:
    assert normalise_login(given) == login


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "empty"),
        ("#", "empty"),
        ("x" * 26, "26 characters, at most 25"),
        ("two,channels", "contains ','"),
        ("bad name", "contains ' '"),
        ("##double", "contains '#'"),
        ("café", "contains 'é'"),
        ("ｆｕｌｌ", "contains"),
    ],
)
def test_an_invalid_login_says_what_is_wrong_with_which_input(given: str, reason: str) -> None:
    result = normalise_login(given)

    assert isinstance(result, InvalidLogin)
    assert result.given == given
    assert reason in result.reason


def test_a_list_is_normalised_deduplicated_in_order_and_skips_blanks() -> None:
    assert normalise_logins(["B", "#a", "", "  ", "b", "c"]) == ["b", "a", "c"]


def test_a_list_names_every_invalid_entry_at_once() -> None:
    with pytest.raises(ChannelLoginError) as caught:
        normalise_logins(["ok", "two,channels", "x" * 30])

    assert [item.given for item in caught.value.invalid] == ["two,channels", "x" * 30]
    message = str(caught.value)
    assert message.startswith("not Twitch channel logins")
    assert "'two,channels'" in message
    assert isinstance(caught.value, ValueError), "callers catch ValueError"


def test_twitch_channel_setting_uses_the_rule() -> None:
    values: dict[str, Any] = {"twitch_channel": "#Forsen, xqcow,forsen"}
    assert Settings(_env_file=None, **values).twitch_channel == ["forsen", "xqcow"]  # type: ignore[call-arg]

    with pytest.raises(
        ValueError, match=r"'bad name' is not a Twitch channel login \(1-25 .*\): contains ' '"
    ):
        Settings(_env_file=None, twitch_channel=["bad name"])  # type: ignore[call-arg]


def test_the_fleet_cli_and_the_control_topic_use_the_rule() -> None:
    assert parse_channel_args(["#A,b"], None) == ["a", "b"]
    with pytest.raises(ValueError, match="not Twitch channel logins"):
        parse_channel_args(["a b"], None)

    assert decode_record(b"#Forsen", None) == ChannelRecord("forsen", wanted=False)
    invalid = decode_record(b"two,channels", None)
    assert isinstance(invalid, InvalidRecord)
    assert "contains ','" in invalid.reason


@given(st.text(max_size=40))
def test_whatever_the_input_a_login_is_valid_and_normalising_it_again_changes_nothing(
    value: str,
) -> None:
    login = normalise_login(value)

    if isinstance(login, InvalidLogin):
        assert login.given == value
        assert login.reason
    else:
        assert re.fullmatch(r"[a-z0-9_]{1,25}", login)
        assert normalise_login(login) == login
        assert normalise_login("#" + login.upper()) == login
