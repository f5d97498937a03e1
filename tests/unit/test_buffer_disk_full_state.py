"""The disk-full state machine (`buffer/disk_full.py`) alone: events and a fake clock in,
phases, retry times and reports out. No file, no clock read.

`test_buffer_disk_full.py` drives the same decisions through `DiskBuffer` on a disk that
refuses writes; here each transition of the table is a line of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from twitch_ingestion.buffer.disk_full import (
    DISK_RETRY_S,
    TRANSITIONS,
    WRITE_BACK_RECORDS,
    DiskEvent,
    DiskFullState,
    DiskPhase,
    DiskReport,
    IllegalDiskTransitionError,
    write_back_runs,
)

W, F, FH, H = DiskPhase.WRITABLE, DiskPhase.FULL, DiskPhase.FULL_HOLDING, DiskPhase.HOLDING

# A fake monotonic clock: the seconds the tests pass in.
T = 1000.0


def _refused(state: DiskFullState) -> DiskReport | None:
    return state.refused(T)


def _held(state: DiskFullState) -> None:
    state.held()


def _released_all(state: DiskFullState) -> None:
    state.released_all()


def _wrote_back_all(state: DiskFullState) -> DiskReport | None:
    return state.wrote_back(still_held=0)


def _wrote_back_some(state: DiskFullState) -> DiskReport | None:
    return state.wrote_back(still_held=3)


def _appended(state: DiskFullState) -> DiskReport | None:
    return state.appended()


# The shell's call that sends each event.
CALLS: dict[DiskEvent, Callable[[DiskFullState], DiskReport | None]] = {
    DiskEvent.REFUSED: _refused,
    DiskEvent.APPENDED: _appended,
    DiskEvent.HELD: _held,
    DiskEvent.RELEASED_ALL: _released_all,
    DiskEvent.WROTE_BACK_ALL: _wrote_back_all,
    DiskEvent.WROTE_BACK_SOME: _wrote_back_some,
}

# The whole table, written out again by hand: (phase, event) -> (next phase, report).
EXPECTED: dict[tuple[DiskPhase, DiskEvent], tuple[DiskPhase, DiskReport | None]] = {
    (W, DiskEvent.REFUSED): (F, DiskReport.FULL),
    (F, DiskEvent.REFUSED): (F, None),
    (FH, DiskEvent.REFUSED): (FH, None),
    (H, DiskEvent.REFUSED): (FH, DiskReport.FULL),
    (W, DiskEvent.APPENDED): (W, None),
    (F, DiskEvent.APPENDED): (W, DiskReport.WRITABLE_AGAIN),
    (F, DiskEvent.HELD): (FH, None),
    (FH, DiskEvent.HELD): (FH, None),
    (H, DiskEvent.HELD): (H, None),
    (FH, DiskEvent.RELEASED_ALL): (F, None),
    (H, DiskEvent.RELEASED_ALL): (W, None),
    (FH, DiskEvent.WROTE_BACK_ALL): (W, DiskReport.WRITABLE_AGAIN),
    (H, DiskEvent.WROTE_BACK_ALL): (W, None),
    (FH, DiskEvent.WROTE_BACK_SOME): (H, DiskReport.WRITABLE_AGAIN),
    (H, DiskEvent.WROTE_BACK_SOME): (H, None),
}


def in_phase(phase: DiskPhase) -> DiskFullState:
    """A state brought to `phase` through legal events only."""
    state = DiskFullState()
    paths = {
        W: [],
        F: [DiskEvent.REFUSED],
        FH: [DiskEvent.REFUSED, DiskEvent.HELD],
        H: [DiskEvent.REFUSED, DiskEvent.HELD, DiskEvent.WROTE_BACK_SOME],
    }
    for event in paths[phase]:
        CALLS[event](state)
    assert state.phase is phase
    return state


def test_the_table_is_the_one_written_out_here() -> None:
    assert dict(TRANSITIONS) == {key: phase for key, (phase, _report) in EXPECTED.items()}


@pytest.mark.parametrize(
    ("phase", "event"), list(EXPECTED), ids=[f"{p.value}-{e.value}" for p, e in EXPECTED]
)
def test_each_allowed_transition_moves_and_reports(phase: DiskPhase, event: DiskEvent) -> None:
    state = in_phase(phase)
    report = CALLS[event](state)
    expected_phase, expected_report = EXPECTED[(phase, event)]
    assert state.phase is expected_phase
    assert report is expected_report


ILLEGAL = [
    (phase, event)
    for phase, event in itertools.product(DiskPhase, DiskEvent)
    if (phase, event) not in TRANSITIONS
]


@pytest.mark.parametrize(
    ("phase", "event"), ILLEGAL, ids=[f"{p.value}-{e.value}" for p, e in ILLEGAL]
)
def test_every_other_transition_raises_and_changes_nothing(
    phase: DiskPhase, event: DiskEvent
) -> None:
    state = in_phase(phase)
    retry_at = state.retry_at
    with pytest.raises(IllegalDiskTransitionError, match=event.value) as raised:
        CALLS[event](state)
    assert (raised.value.phase, raised.value.event) == (phase, event)
    assert state.phase is phase
    assert state.retry_at == retry_at


def test_the_illegal_ones_are_the_records_the_shell_cannot_have() -> None:
    """Holding, releasing or writing back with nothing held; an append reaching the disk
    past held records."""
    assert set(ILLEGAL) == {
        (W, DiskEvent.HELD),
        (W, DiskEvent.RELEASED_ALL),
        (W, DiskEvent.WROTE_BACK_ALL),
        (W, DiskEvent.WROTE_BACK_SOME),
        (F, DiskEvent.RELEASED_ALL),
        (F, DiskEvent.WROTE_BACK_ALL),
        (F, DiskEvent.WROTE_BACK_SOME),
        (FH, DiskEvent.APPENDED),
        (H, DiskEvent.APPENDED),
    }


@pytest.mark.parametrize(
    ("phase", "full", "holding"),
    [(W, False, False), (F, True, False), (FH, True, True), (H, False, True)],
)
def test_what_the_shell_reads_of_each_phase(phase: DiskPhase, full: bool, holding: bool) -> None:
    state = in_phase(phase)
    assert state.full is full  # the gauge and `DiskBuffer.disk_full`
    assert state.holding is holding  # appends queue behind held records


def test_a_new_buffer_is_writable_and_writes_nothing_back() -> None:
    state = DiskFullState()
    assert state.phase is W
    assert not state.full
    assert not state.write_back_due(0.0)


def test_a_refusal_schedules_the_write_back_one_interval_later() -> None:
    state = DiskFullState()
    assert state.refused(T) is DiskReport.FULL
    state.held()
    assert not state.write_back_due(T)
    assert not state.write_back_due(T + DISK_RETRY_S - 0.001)
    assert state.write_back_due(T + DISK_RETRY_S)


def test_each_refusal_pushes_the_retry_back_but_warns_once_per_episode() -> None:
    state = DiskFullState(retry_s=2.0)
    assert state.refused(T) is DiskReport.FULL
    state.held()
    assert state.refused(T + 2.0) is None  # the retry was refused too: same episode
    assert state.retry_at == T + 4.0
    assert not state.write_back_due(T + 3.9)
    assert state.write_back_due(T + 4.0)


def test_freed_space_makes_the_write_back_due_at_once() -> None:
    state = in_phase(FH)
    assert not state.write_back_due(T)
    state.space_freed()
    assert state.write_back_due(T)
    assert state.phase is FH  # freed space is a chance to retry, not a write


def test_closing_makes_the_write_back_due_at_once() -> None:
    state = in_phase(FH)
    state.closing()
    assert state.write_back_due(T)


def test_a_write_back_stopped_by_the_cap_retries_on_every_tick() -> None:
    state = in_phase(FH)
    assert state.wrote_back(still_held=5) is DiskReport.WRITABLE_AGAIN
    assert state.phase is H
    assert not state.full  # the disk took it: the gauge goes to 0
    assert state.write_back_due(T + DISK_RETRY_S)
    assert state.write_back_due(T + DISK_RETRY_S + 0.001)
    assert state.wrote_back(still_held=2) is None  # reported once, not on every tick


def test_a_refused_write_back_after_the_cap_stopped_one_is_a_new_episode() -> None:
    state = in_phase(H)
    assert state.refused(T + 10) is DiskReport.FULL
    assert state.phase is FH
    assert not state.write_back_due(T + 10)
    assert state.write_back_due(T + 10 + DISK_RETRY_S)


def test_nothing_is_written_back_while_nothing_is_held() -> None:
    """A spill's disk (it never holds) or a full disk whose held records were all acked:
    the next append tries the disk itself."""
    state = in_phase(FH)
    state.released_all()
    assert state.phase is F
    assert not state.write_back_due(T + 100)
    assert state.appended() is DiskReport.WRITABLE_AGAIN
    assert state.phase is W


def test_an_episode_from_refusal_to_the_last_record_written_back() -> None:
    state = DiskFullState()
    assert state.refused(T) is DiskReport.FULL
    state.held()
    state.held()
    assert state.refused(T + DISK_RETRY_S) is None  # first retry: still full
    assert state.write_back_due(T + 2 * DISK_RETRY_S)
    assert state.wrote_back(still_held=0) is DiskReport.WRITABLE_AGAIN
    assert state.phase is W
    assert not state.write_back_due(T + 100)
    assert state.appended() is None


# --- how much goes back under the cap ------------------------------------------------


def fits(capped: int, extra: int, *, written: int = 0, records: int = 5, held: int = 2) -> bool:
    return DiskFullState.write_back_fits(
        capped, extra, 1000, written=written, records=records, held=held
    )


def test_a_write_back_fits_while_the_files_stay_under_the_cap() -> None:
    assert fits(900, 100)
    assert not fits(901, 100)


def test_the_one_record_an_empty_buffer_took_past_the_cap_always_goes_back() -> None:
    assert fits(5000, 100, records=1, held=1)
    assert not fits(5000, 100, records=1, held=1, written=1)  # only as the first write
    assert not fits(5000, 100, records=2, held=1)  # another record is on disk
    assert not fits(5000, 100, records=2, held=2)


def test_write_back_runs_are_consecutive_seqs_of_at_most_the_limit() -> None:
    seqs = [10, 11, 12, 14, 15, 20]
    assert list(write_back_runs(seqs)) == [(0, 3), (3, 5), (5, 6)]
    assert list(write_back_runs(seqs, limit=2)) == [(0, 2), (2, 3), (3, 5), (5, 6)]
    assert list(write_back_runs([])) == []
    long = list(range(100, 100 + WRITE_BACK_RECORDS + 1))
    assert list(write_back_runs(long)) == [(0, WRITE_BACK_RECORDS), (WRITE_BACK_RECORDS, len(long))]
