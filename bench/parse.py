"""parse: CPU per line of the transform alone, over the real corpus, on one core.

Three nested stages, each timed over whole passes of the corpus (every line, in file
order, the realistic mix of PRIVMSG, USERNOTICE, CLEARCHAT, NOTICE, numerics …):

1. `parse_line` (IRC line → `IrcMessage`);
2. + `route_message` (PRIVMSG → `ChatMessage`, events → `ChatEventRecord`, the rest None);
3. + the sink's msgspec JSON encoding of the record.

Then, per `--hot-paths` value, what the service does with the same lines as wire bytes:
the corpus in 256 KiB reads through `TwitchSession.receive_data` (split, decode, parse,
control lines) and `IrcRecordEncoder.deliver` (route, encode, records, dead letters)
into a sink that keeps nothing — on the compiled path, the fused step.

Time is this process's CPU time (`time.process_time_ns`), so other work on the machine
slows the figures less than wall time would; each stage runs `--parse-rounds` rounds
and the best round is reported (the median is in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from bench.hotpath import NullRecordSink
from bench.report import Result
from twitch_ingestion.records import Topics
from twitch_ingestion.records.builder import RecordBuilder
from twitch_ingestion.simulator import default_corpus_path
from twitch_ingestion.sources.irc.compiled import HotPathChoice, compiled_line_reader
from twitch_ingestion.sources.irc.irc import IrcParseError, parse_line
from twitch_ingestion.sources.irc.records import IrcRecordEncoder
from twitch_ingestion.sources.irc.routing import ContractViolation, route_message
from twitch_ingestion.sources.irc.session import ChatLines, TwitchSession

__all__ = ["NAME", "add_arguments", "run"]

NAME = "parse"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("parse")
    group.add_argument(
        "--parse-seconds",
        type=float,
        default=4.0,
        help="CPU seconds per stage, split over the rounds",
    )
    group.add_argument(
        "--parse-rounds", type=int, default=5, help="rounds per stage; the best is kept"
    )
    group.add_argument(
        "--corpus", type=Path, default=None, help="corpus file (None: the shared corpus)"
    )


def load_lines(path: Path | None = None) -> list[str]:
    text = (path or default_corpus_path()).read_text(encoding="utf-8")
    return [line.removesuffix("\r") for line in text.split("\n") if line.strip("\r")]


# Each stage returns the lines it handled; a line that fails to parse or breaks the
# contract is counted too (the service dead-letters it, which is not timed here).


def _parse_only(lines: list[str]) -> int:
    done = 0
    for line in lines:
        try:
            parse_line(line)
        except IrcParseError:
            done += 1
            continue
        done += 1
    return done


def _parse_route(lines: list[str]) -> int:
    room_ids: dict[str, str] = {}
    received_at_ms = time.time_ns() // 1_000_000
    done = 0
    for line in lines:
        try:
            route_message(parse_line(line), received_at_ms, room_ids)
        except (IrcParseError, ContractViolation):
            done += 1
            continue
        done += 1
    return done


_ENCODE = msgspec.json.Encoder().encode


def _parse_route_encode(lines: list[str]) -> int:
    room_ids: dict[str, str] = {}
    received_at_ms = time.time_ns() // 1_000_000
    encode = _ENCODE
    done = 0
    for line in lines:
        try:
            routed = route_message(parse_line(line), received_at_ms, room_ids)
        except (IrcParseError, ContractViolation):
            done += 1
            continue
        if routed is not None:
            encode(routed.record)
        done += 1
    return done


STAGES: dict[str, Callable[[list[str]], int]] = {
    "parse_line": _parse_only,
    "parse+route": _parse_route,
    "parse+route+encode": _parse_route_encode,
}


_READ_BYTES = 256 * 1024  # TWITCH_READ_BUFFER_BYTES' default


def _from_bytes(hot_path: HotPathChoice) -> Callable[[list[str]], int]:
    """The service's read + encode steps on `hot_path`, fed the lines as wire bytes."""
    reads: list[bytes] = []
    encoder = IrcRecordEncoder(
        NullRecordSink(), RecordBuilder(Topics("chat", "events", dlq="dlq")), hot_path=hot_path
    )

    def stage(lines: list[str]) -> int:
        if not reads:
            data = "".join(f"{line}\r\n" for line in lines).encode()
            reads.extend(data[i : i + _READ_BYTES] for i in range(0, len(data), _READ_BYTES))
        session = TwitchSession("justinfan1", None)
        session.line_reader = compiled_line_reader(hot_path)

        async def read_all() -> None:
            for read in reads:
                for event in session.receive_data(read, 0.0):
                    if type(event) is ChatLines:
                        await encoder.deliver(event.messages, 1, session.room_ids)

        asyncio.run(read_all())
        return len(lines)

    return stage


def time_stage(
    stage: Callable[[list[str]], int], lines: list[str], seconds: float, rounds: int
) -> list[float]:
    """Nanoseconds of CPU per line, one value per round."""
    stage(lines)  # warm caches and lazily built decoders
    started = time.process_time_ns()
    stage(lines)
    per_pass_s = max((time.process_time_ns() - started) / 1e9, 1e-6)
    passes = max(1, round(seconds / rounds / per_pass_s))
    per_line: list[float] = []
    for _ in range(rounds):
        gc.collect()
        done = 0
        started = time.process_time_ns()
        for _ in range(passes):
            done += stage(lines)
        per_line.append((time.process_time_ns() - started) / done)
    return per_line


def run(args: argparse.Namespace) -> Result:
    result = Result(NAME)
    lines = load_lines(args.corpus)
    result.details["corpus_lines"] = len(lines)
    result.details["stages"] = {}
    stages = dict(STAGES)
    for hot_path in args.hot_paths:
        stages[f"[{hot_path}] read+encode from bytes"] = _from_bytes(hot_path)
    for label, stage in stages.items():
        per_line_ns = time_stage(stage, lines, args.parse_seconds, args.parse_rounds)
        best = min(per_line_ns)
        result.details["stages"][label] = {
            "ns_per_line_rounds": per_line_ns,
            "ns_per_line_best": best,
            "ns_per_line_median": statistics.median(per_line_ns),
        }
        result.add(f"{label}: CPU per line", best / 1000, "µs", note=f"{len(lines)}-line corpus")
        result.add(f"{label}: lines/s (1 core)", 1e9 / best, "lines/s")
    return result
