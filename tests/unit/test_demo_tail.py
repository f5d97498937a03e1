"""`twitch-ingestion demo` and `tail` without Kafka: what they say before reading."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from twitch_ingestion import tail as tail_module
from twitch_ingestion.config import load_settings
from twitch_ingestion.tail import TailedRecord


def test_tail_says_on_stderr_which_topic_it_waits_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_records(*_: object, **__: object) -> Iterator[TailedRecord]:
        return iter(())

    monkeypatch.setattr(tail_module, "iter_records", no_records)
    settings = load_settings(twitch_channel=["x"], kafka_brokers="broker.example:9092")
    printed = tail_module.tail(
        settings,
        "demo.twitch-chat-messages",
        from_beginning=True,
        idle_timeout_s=1,
        max_records=None,
    )
    out, err = capsys.readouterr()
    assert printed == 0
    assert out == ""  # stdout carries records only
    assert "'demo.twitch-chat-messages'" in err
    assert "broker.example:9092" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("make_path", [lambda tmp: tmp / "missing.txt", lambda tmp: tmp])
def test_demo_with_a_bad_corpus_path_is_one_line_not_a_traceback(
    tmp_path: Path, make_path: Callable[[Path], Path]
) -> None:
    path = make_path(tmp_path)
    # As a user runs it, in a folder without .env; refused before Kafka is contacted
    # (this broker address does not exist).
    result = subprocess.run(
        [sys.executable, "-m", "twitch_ingestion", "demo", "--corpus", str(path)],
        cwd=tmp_path,
        env={**os.environ, "KAFKA_BROKERS": "127.0.0.1:1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("twitch-ingestion demo: replay file ")
    assert str(path) in lines[0]
