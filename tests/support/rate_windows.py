"""Counting events in sliding time windows, to check a rate limit held."""

from __future__ import annotations


def max_in_any_window(stamps: list[float], window: float) -> int:
    """The most `stamps` that fall in any window of `window` seconds."""
    stamps = sorted(stamps)
    best = 0
    start = 0
    for end, t in enumerate(stamps):
        while stamps[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best
