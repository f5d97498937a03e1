"""The simulator's numbered chat (`seq <channel> <n>`) read back from Kafka records.

A channel is one key, so one partition: its numbers must come back once each, in order.
"""

from __future__ import annotations

import json
from collections import defaultdict

from tests.integration.kafka_helpers import ConsumedRecord


def parse_number(value: bytes) -> tuple[str, int] | None:
    """(channel, n) of a numbered chat record, None for anything else (events)."""
    message = json.loads(value).get("message")
    if not isinstance(message, str) or not message.startswith("seq "):
        return None
    _, channel, number = message.split()
    return channel, int(number)


def numbers_by_channel(records: list[ConsumedRecord]) -> dict[str, list[int]]:
    """Each channel's numbers in partition order, checking a channel is one partition."""
    partitions: dict[str, set[int]] = defaultdict(set)
    ordered: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for record in records:
        parsed = parse_number(record.value)
        assert parsed is not None, record.value
        channel, number = parsed
        partitions[channel].add(record.partition)
        ordered[channel].append((record.offset, number))
    for channel, seen in partitions.items():
        assert len(seen) == 1, f"{channel} spread over partitions {seen}"
    return {channel: [n for _, n in sorted(pairs)] for channel, pairs in ordered.items()}


def runs(seen: list[int]) -> list[tuple[int, int]]:
    """`seen` as maximal runs of consecutive numbers: [1..700, 650..900] for a replay."""
    found: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(seen) + 1):
        if index == len(seen) or seen[index] != seen[index - 1] + 1:
            found.append((seen[start], seen[index - 1]))
            start = index
    return found


def duplicates_of(seen: list[int]) -> list[int]:
    counts: dict[int, int] = defaultdict(int)
    for number in seen:
        counts[number] += 1
    return sorted(number for number, count in counts.items() if count > 1)


def assert_exactly_once_in_order(numbers: dict[str, list[int]], last: dict[str, int]) -> None:
    """For each channel in `last`: 1..last[channel], each once, in order."""
    for channel, last_number in last.items():
        expected = list(range(1, last_number + 1))
        seen = numbers.get(channel, [])
        missing = sorted(set(expected) - set(seen))
        assert not missing, f"{channel}: {len(missing)} missing, first {missing[:10]}"
        assert not duplicates_of(seen), f"{channel}: duplicates, runs {runs(seen)[:20]}"
        assert seen == expected, f"{channel}: out of order, runs {runs(seen)[:20]}"
