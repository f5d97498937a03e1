"""HOT_PATH: which IRC hot path runs, how the service says so, and what it refuses."""

from __future__ import annotations

import sys

import pytest
from structlog.testing import capture_logs

from tests.support.record_sinks import NullRecordSink
from twitch_ingestion import component_configs as configs
from twitch_ingestion.config import ConfigError, load_settings
from twitch_ingestion.metrics import REGISTRY
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.sources.irc.compiled import (
    EXTENSION_MODULE,
    compiled_chat_encoder,
    compiled_line_reader,
)
from twitch_ingestion.sources.irc.records import IrcRecordEncoder


@pytest.fixture
def without_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where `make install` found no cargo: the import fails."""
    monkeypatch.setitem(sys.modules, EXTENSION_MODULE, None)  # `import` raises ImportError


def _hot_path_metric(path: str) -> float | None:
    """The info series of `path`, whatever HOT_PATH asked for (its `requested` label)."""
    for requested in ("auto", "compiled", "python"):
        value = REGISTRY.get_sample_value(
            "twitch_ingestion_hot_path_info", {"path": path, "requested": requested}
        )
        if value is not None:
            return value
    return None


def test_hot_path_defaults_to_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOT_PATH", raising=False)  # CI also runs the suite with HOT_PATH=python
    assert load_settings(require_channels=False).hot_path == "auto"


@pytest.mark.usefixtures("without_extension")
def test_hot_path_compiled_without_the_extension_is_one_clear_config_problem() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(require_channels=False, hot_path="compiled")
    (problem,) = raised.value.problems
    assert problem.startswith("HOT_PATH: HOT_PATH=compiled but the compiled extension")
    assert "make install" in problem
    assert "\n" not in problem


@pytest.mark.usefixtures("without_extension")
def test_auto_without_the_extension_runs_python_and_says_so_once() -> None:
    settings = load_settings(require_channels=False, hot_path="auto")
    with capture_logs() as logs:
        encoder = IrcRecordEncoder.for_hot_path(
            settings.hot_path, NullRecordSink(), RecordBuilder(configs.topics(settings))
        )
    assert encoder.hot_path == "python"
    assert compiled_line_reader("auto") is None
    said = [entry for entry in logs if entry["event"] == "irc hot path"]
    assert len(said) == 1
    assert said[0]["path"] == "python"
    assert "not installed" in said[0]["reason"]
    assert _hot_path_metric("python") == 1.0
    assert _hot_path_metric("compiled") is None


def test_hot_path_python_never_touches_the_extension() -> None:
    settings = load_settings(require_channels=False, hot_path="python")
    with capture_logs() as logs:
        encoder = IrcRecordEncoder.for_hot_path(
            settings.hot_path, NullRecordSink(), RecordBuilder(configs.topics(settings))
        )
    assert encoder.hot_path == "python"
    assert compiled_line_reader("python") is None
    assert compiled_chat_encoder("python", schema_version=1, ingested_via="irc") is None
    assert [entry["path"] for entry in logs if entry["event"] == "irc hot path"] == ["python"]
    assert _hot_path_metric("python") == 1.0


@pytest.mark.compiled
@pytest.mark.parametrize("choice", ["auto", "compiled"])
def test_with_the_extension_auto_and_compiled_run_it_and_metrics_say_so(choice: str) -> None:
    settings = load_settings(require_channels=False, hot_path=choice)
    with capture_logs() as logs:
        encoder = IrcRecordEncoder.for_hot_path(
            settings.hot_path, NullRecordSink(), RecordBuilder(configs.topics(settings))
        )
    assert encoder.hot_path == "compiled"
    assert compiled_line_reader(settings.hot_path) is not None
    assert [entry["path"] for entry in logs if entry["event"] == "irc hot path"] == ["compiled"]
    assert _hot_path_metric("compiled") == 1.0
    assert _hot_path_metric("python") is None  # one path at a time
