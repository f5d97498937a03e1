"""`DeliveryState`: the sink's delivery decisions, events and times in, actions out."""

from __future__ import annotations

from twitch_ingestion.kafka.delivery import (
    REDELIVERY_DELAY_S,
    REFUSED_RETRY_DELAY_S,
    DeadLetter,
    DeliveryState,
    Failure,
    PurgeQueue,
    Stalled,
    StartRewind,
)
from twitch_ingestion.records import Record

T0 = 1000.0
STALL_S = 120.0
DLQ = "chat.dlq"


def record(n: int, topic: str = "chat", channel: str = "alpha") -> Record:
    return (topic, channel.encode(), f'{{"n":{n}}}'.encode(), None, 1_700_000_000_000 + n)


def state(dlq: str | None = DLQ) -> DeliveryState:
    return DeliveryState(dlq_topic=dlq, stall_timeout_s=STALL_S, now=T0)


def redeliveries(delivery: DeliveryState, now: float) -> list[tuple[int, Record]]:
    """Everything due at `now`, as the sink's tick produces it (queue never full)."""
    produced = []
    while (due := delivery.due_redelivery(now)) is not None:
        produced.append(due)
        delivery.redelivered()
    return produced


def rewind(delivery: DeliveryState, unacked: list[tuple[int, Record]]) -> list[int]:
    """Run a started rewind to its end as the sink does; the seqs it produced, in order."""
    produced: list[int] = []
    while not delivery.rewind_interrupted:
        before = len(produced)
        produced.extend(seq for seq, _ in delivery.rewind_pass(list(unacked)))
        if len(produced) == before:
            break
    return produced


# --- delivered --------------------------------------------------------------------------


def test_acknowledged_records_keep_delivery_running_and_ask_for_nothing() -> None:
    delivery = state()
    for second in range(0, 1000, 10):
        # Records outstanding the whole time, but acknowledgements keep coming.
        assert delivery.tick(T0 + second, in_flight=50, delivered=second) == []
    assert not delivery.paused
    assert redeliveries(delivery, T0 + 10_000) == []


# --- permanent refusal ------------------------------------------------------------------


def test_refused_record_becomes_a_dead_letter_with_its_bytes_headers_and_seq() -> None:
    delivery = state()
    refused = record(7)
    actions = delivery.on_failed(42, refused, Failure.PERMANENT, "MSG_SIZE_TOO_LARGE", T0)
    assert actions == [
        DeadLetter(
            42,
            (
                DLQ,
                b"alpha",
                b'{"n":7}',
                [
                    ("dlq.reason", b"kafka-refused"),
                    ("dlq.error", b"MSG_SIZE_TOO_LARGE"),
                    ("dlq.received_at", b"1700000000007"),
                    ("dlq.topic", b"chat"),
                ],
                1_700_000_000_007,
            ),
            "MSG_SIZE_TOO_LARGE",
        )
    ]
    # Neither a pause nor a later retry of the refused record itself.
    assert not delivery.paused
    assert redeliveries(delivery, T0 + 3600) == []


def test_refused_record_without_dlq_is_parked_and_retried_every_30_s() -> None:
    delivery = state(dlq=None)
    refused = record(1)
    assert delivery.on_failed(3, refused, Failure.PERMANENT, "TOPIC_AUTHORIZATION_FAILED", T0) == []
    assert not delivery.paused
    assert redeliveries(delivery, T0 + REFUSED_RETRY_DELAY_S - 0.01) == []
    assert redeliveries(delivery, T0 + REFUSED_RETRY_DELAY_S) == [(3, refused)]
    # Refused again: parked again, for another 30 s.
    later = T0 + REFUSED_RETRY_DELAY_S
    assert (
        delivery.on_failed(3, refused, Failure.PERMANENT, "TOPIC_AUTHORIZATION_FAILED", later) == []
    )
    assert redeliveries(delivery, later + REFUSED_RETRY_DELAY_S - 0.01) == []
    assert redeliveries(delivery, later + REFUSED_RETRY_DELAY_S) == [(3, refused)]


def test_dead_letter_refused_by_the_dlq_itself_is_parked_not_dead_lettered_again() -> None:
    delivery = state()
    dead_letter = record(1, topic=DLQ)
    assert delivery.on_failed(5, dead_letter, Failure.PERMANENT, "MSG_SIZE_TOO_LARGE", T0) == []
    assert redeliveries(delivery, T0 + REFUSED_RETRY_DELAY_S) == [(5, dead_letter)]


def test_a_rewind_leaves_parked_records_to_their_slow_retry() -> None:
    delivery = state(dlq=None)
    delivery.on_failed(1, record(1), Failure.PERMANENT, "MSG_SIZE_TOO_LARGE", T0)
    delivery.on_failed(2, record(2), Failure.TRANSIENT, "UNKNOWN_TOPIC_OR_PART", T0)
    assert delivery.tick(T0 + REDELIVERY_DELAY_S, in_flight=0, delivered=0) == [StartRewind()]
    unacked = [(seq, record(seq)) for seq in (1, 2, 3)]
    assert rewind(delivery, unacked) == [2, 3]
    assert delivery.end_rewind()
    # The parked one still comes back on its own schedule, once.
    assert redeliveries(delivery, T0 + REFUSED_RETRY_DELAY_S) == [(1, record(1))]


# --- transient failure ------------------------------------------------------------------


def test_transient_failure_pauses_takes_back_the_queue_once_and_rewinds_in_order() -> None:
    delivery = state()
    assert delivery.on_failed(0, record(0), Failure.TRANSIENT, "UNKNOWN_TOPIC_OR_PART", T0) == [
        PurgeQueue()
    ]
    assert delivery.paused
    # More failures of the same outage: librdkafka's queue is already taken back.
    assert delivery.on_failed(1, record(1), Failure.TRANSIENT, "UNKNOWN_TOPIC_OR_PART", T0) == []
    # The records taken back stay in the buffer: the rewind produces them.
    for seq in (2, 3):
        assert delivery.on_failed(seq, record(seq), Failure.PURGED, "_PURGE_QUEUE", T0) == []
    assert redeliveries(delivery, T0 + 3600) == []
    # Not before the delay, and not while librdkafka still holds records (in flight).
    assert delivery.tick(T0 + REDELIVERY_DELAY_S - 0.01, in_flight=0, delivered=0) == []
    assert delivery.tick(T0 + REDELIVERY_DELAY_S, in_flight=2, delivered=0) == []
    assert delivery.tick(T0 + REDELIVERY_DELAY_S + 5, in_flight=0, delivered=0) == [StartRewind()]
    assert delivery.paused
    # Everything unacknowledged, in append order, including what was buffered while paused.
    unacked = [(seq, record(seq)) for seq in range(6)]
    assert rewind(delivery, unacked) == [0, 1, 2, 3, 4, 5]
    assert delivery.end_rewind()
    assert not delivery.paused
    # A rewind is not started twice.
    assert delivery.tick(T0 + 60, in_flight=0, delivered=0) == []


def test_rewind_picks_up_records_buffered_while_it_runs() -> None:
    delivery = state()
    delivery.on_failed(0, record(0), Failure.TRANSIENT, "NOT_ENOUGH_REPLICAS", T0)
    assert delivery.tick(T0 + REDELIVERY_DELAY_S, in_flight=0, delivered=0) == [StartRewind()]
    unacked = [(0, record(0)), (1, record(1))]
    produced = []
    for seq, _ in delivery.rewind_pass(list(unacked)):
        produced.append(seq)
        if seq == 1:
            unacked.append((2, record(2)))  # delivered by the source meanwhile
    produced.extend(seq for seq, _ in delivery.rewind_pass(list(unacked)))
    assert produced == [0, 1, 2]
    assert list(delivery.rewind_pass(list(unacked))) == []
    assert delivery.end_rewind()


def test_failure_during_a_rewind_stops_it_and_the_next_one_starts_from_the_oldest() -> None:
    delivery = state()
    delivery.on_failed(0, record(0), Failure.TRANSIENT, "UNKNOWN_TOPIC_OR_PART", T0)
    now = T0 + REDELIVERY_DELAY_S
    assert delivery.tick(now, in_flight=0, delivered=0) == [StartRewind()]
    unacked = [(seq, record(seq)) for seq in range(4)]
    produced = []
    for seq, _ in delivery.rewind_pass(unacked):
        produced.append(seq)
        if seq == 1:
            # Record 0 fails again while the rewind produces: librdkafka's queue is
            # taken back again, and the rewind stops.
            assert delivery.on_failed(
                0, record(0), Failure.TRANSIENT, "UNKNOWN_TOPIC_OR_PART", now
            ) == [PurgeQueue()]
    assert produced == [0, 1]
    assert delivery.rewind_interrupted
    assert not delivery.end_rewind()
    assert delivery.paused
    assert delivery.tick(now + REDELIVERY_DELAY_S, in_flight=0, delivered=0) == [StartRewind()]
    assert rewind(delivery, unacked) == [0, 1, 2, 3]
    assert delivery.end_rewind()
    assert not delivery.paused


def test_rewind_that_raised_is_tried_again_after_the_delay() -> None:
    delivery = state()
    delivery.on_failed(0, record(0), Failure.TRANSIENT, "UNKNOWN_TOPIC_OR_PART", T0)
    assert delivery.tick(T0 + 1, in_flight=0, delivered=0) == [StartRewind()]
    delivery.rewind_failed(T0 + 1)
    assert delivery.paused
    assert delivery.tick(T0 + 1 + REDELIVERY_DELAY_S - 0.01, in_flight=0, delivered=0) == []
    assert delivery.tick(T0 + 1 + REDELIVERY_DELAY_S, in_flight=0, delivered=0) == [StartRewind()]


def test_records_outside_the_buffer_are_produced_again_on_their_own() -> None:
    # seq -1: the buffer was full (drop_newest), so no rewind would find them.
    delivery = state()
    assert delivery.on_failed(-1, record(1), Failure.TRANSIENT, "UNKNOWN_TOPIC_OR_PART", T0) == []
    assert delivery.on_failed(-1, record(2), Failure.PURGED, "_PURGE_QUEUE", T0) == []
    assert not delivery.paused
    assert redeliveries(delivery, T0 + REDELIVERY_DELAY_S - 0.01) == []
    assert redeliveries(delivery, T0 + REDELIVERY_DELAY_S) == [(-1, record(1)), (-1, record(2))]


def test_record_that_met_a_full_queue_is_produced_on_the_next_tick() -> None:
    delivery = state()
    delivery.on_queue_full(9, record(9), T0)
    assert delivery.due_redelivery(T0) == (9, record(9))
    # Still full: it stays first in line until the sink confirms it was produced.
    assert delivery.due_redelivery(T0 + 0.01) == (9, record(9))
    delivery.redelivered()
    assert delivery.due_redelivery(T0 + 0.02) is None


# --- stall ------------------------------------------------------------------------------


def test_stall_pauses_waits_for_librdkafka_to_drain_then_rewinds() -> None:
    delivery = state()
    assert delivery.tick(T0, in_flight=10, delivered=0) == []
    assert delivery.tick(T0 + STALL_S - 0.01, in_flight=10, delivered=0) == []
    assert delivery.tick(T0 + STALL_S, in_flight=10, delivered=0) == [Stalled(10, STALL_S)]
    assert delivery.paused
    # Said once, and nothing is taken back from librdkafka: it keeps what it holds.
    assert delivery.tick(T0 + 2 * STALL_S, in_flight=10, delivered=0) == []
    # Kafka answers: librdkafka delivers what it held, then holds nothing.
    assert delivery.tick(T0 + 2 * STALL_S + 1, in_flight=4, delivered=6) == []
    assert delivery.tick(T0 + 2 * STALL_S + 2, in_flight=0, delivered=10) == [StartRewind()]
    # Only what Kafka never acknowledged: records buffered during the pause.
    assert rewind(delivery, [(10, record(10)), (11, record(11))]) == [10, 11]
    assert delivery.end_rewind()
    assert not delivery.paused


def test_progress_or_an_empty_queue_resets_the_stall_watch() -> None:
    delivery = state()
    delivery.tick(T0, in_flight=10, delivered=0)
    delivery.tick(T0 + STALL_S - 1, in_flight=10, delivered=1)  # one acknowledgement
    assert delivery.tick(T0 + STALL_S + 1, in_flight=10, delivered=1) == []
    delivery.tick(T0 + STALL_S + 2, in_flight=0, delivered=1)  # idle
    assert delivery.tick(T0 + 2 * STALL_S + 1, in_flight=3, delivered=1) == []
    assert delivery.tick(T0 + 2 * STALL_S + 2, in_flight=3, delivered=1) == [Stalled(3, STALL_S)]


def test_stall_during_a_pause_is_not_reported_again() -> None:
    delivery = state()
    delivery.on_failed(0, record(0), Failure.TRANSIENT, "UNKNOWN_TOPIC_OR_PART", T0)
    assert delivery.tick(T0 + STALL_S + 1, in_flight=5, delivered=0) == []


# --- held until the topics exist ----------------------------------------------------------


def test_a_held_state_rewinds_nothing_until_released_then_rewinds_at_once() -> None:
    delivery = state()
    delivery.hold()
    assert delivery.paused
    # However long the topics take, nothing is produced: no rewind, no stall.
    for second in (0, 10, 1000):
        assert delivery.tick(T0 + second, in_flight=0, delivered=0) == []
    delivery.release(T0 + 1000)
    assert delivery.tick(T0 + 1000, in_flight=0, delivered=0) == [StartRewind()]
    assert rewind(delivery, [(0, record(0)), (1, record(1))]) == [0, 1]
    assert delivery.end_rewind()
    assert not delivery.paused
