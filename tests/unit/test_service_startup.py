"""Start-up failures of the service: one line naming the setting, its own exit code."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from twitch_ingestion.buffer.errors import BufferLockedError, DurableBufferError
from twitch_ingestion.config import load_settings
from twitch_ingestion.service import ExitCode, _buffer_problem, _exit_code_for
from twitch_ingestion.sources.irc.pool import TwitchGaveUp


def test_a_buffer_error_that_names_buffer_dir_is_shown_as_it_is(tmp_path: Path) -> None:
    settings = load_settings(require_channels=False, buffer_dir=tmp_path)
    locked = BufferLockedError(
        f"{tmp_path} is in use by pid 42: give each instance its own BUFFER_DIR"
    )
    assert _buffer_problem(locked, settings) == str(locked)


def test_a_buffer_error_that_does_not_is_prefixed_with_it(tmp_path: Path) -> None:
    settings = load_settings(require_channels=False, buffer_dir=tmp_path)
    problem = _buffer_problem(DurableBufferError("segment 12 is unreadable"), settings)
    assert problem == f"BUFFER_DIR={tmp_path}: segment 12 is unreadable"


def test_an_os_error_names_buffer_dir_the_reason_and_the_path(tmp_path: Path) -> None:
    settings = load_settings(require_channels=False, buffer_dir=tmp_path / "buffer")
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "buffer"))
    problem = _buffer_problem(denied, settings)
    assert problem.startswith(f"BUFFER_DIR={tmp_path / 'buffer'} cannot be used: Permission denied")
    assert "\n" not in problem


async def test_giving_up_is_not_logged_again_by_the_service() -> None:
    async def give_up() -> None:
        raise TwitchGaveUp("gave up on Twitch after 3 failed connection attempts in a row")

    task = asyncio.create_task(give_up())
    with pytest.raises(TwitchGaveUp):
        await task
    with capture_logs() as logs:
        assert _exit_code_for(task) is ExitCode.TWITCH_GAVE_UP
    assert logs == []  # the source logged it as it gave up
