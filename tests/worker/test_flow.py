"""Event-time flow control of raw partitions (``broker.worker.flow.decide``)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import TopicPartition

from broker.kafka.clients import WorkerClients
from broker.kafka.settings import as_settings
from broker.worker.flow import FlowControl, decide
from policies.base import END_OF_STREAM, NO_WATERMARK

LEAD = 5_000


@pytest.mark.parametrize(
    ("watermarks", "behind", "paused", "expected"),
    [
        ({0: 10_000, 1: 1_000}, {1}, set(), {0}),  # 0 ran 9 s ahead of a lagging 1
        ({0: 3_000, 1: 1_000}, {1}, set(), set()),  # within the lead: keep reading
        ({0: 10_000, 1: 1_000}, {0, 1}, set(), {0}),  # a backlog on both: still paused
        ({0: 10_000, 1: 1_000}, {0}, set(), set()),  # 1 is caught up: never a brake
        ({0: 10_000, 1: END_OF_STREAM}, {1}, set(), set()),  # an ended partition is no brake
        ({0: 10_000, 1: NO_WATERMARK}, {1}, set(), {0}),  # 1 has data but no event yet
        ({0: 10_000, 1: 1_000, 2: 9_000}, {0, 1, 2}, set(), {0, 2}),
        ({0: 4_000, 1: 1_000}, {0, 1}, {0}, {0}),  # hysteresis: stays paused...
        ({0: 3_000, 1: 1_000}, {0, 1}, {0}, set()),  # ...until within half the lead
        ({0: END_OF_STREAM, 1: 1_000}, {1}, {0}, set()),  # an ended one is never paused
        ({}, set(), set(), set()),
    ],
)
def test_partitions_far_ahead_in_event_time_are_paused(
    watermarks: dict[int, int], behind: set[int], paused: set[int], expected: set[int]
) -> None:
    assert decide(watermarks, behind, paused, LEAD) == expected


marks = st.one_of(st.integers(0, 100_000), st.just(NO_WATERMARK), st.just(END_OF_STREAM))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(0, 7), marks, max_size=8), st.data())
def test_the_slowest_partition_with_records_left_is_never_paused(
    watermarks: dict[int, int], data: st.DataObject
) -> None:
    parts = sorted(watermarks)
    behind = set(data.draw(st.lists(st.sampled_from(parts), unique=True) if parts else st.just([])))
    paused = set(data.draw(st.lists(st.sampled_from(parts), unique=True) if parts else st.just([])))
    stop = decide(watermarks, behind, paused, LEAD)
    assert stop <= set(watermarks)
    lagging = {p: w for p, w in watermarks.items() if p in behind and w != END_OF_STREAM}
    if not lagging:
        assert stop == set()  # nothing left to wait for: never pause
        return
    slowest = min(lagging.values())
    # liveness: some partition with records left stays readable
    assert any(p not in stop for p, w in lagging.items() if w == slowest)
    for p in stop:
        assert watermarks[p] != END_OF_STREAM
        assert watermarks[p] - max(slowest, NO_WATERMARK + LEAD) > LEAD // 2


@pytest.mark.parametrize("client", ["kafka-python", "aiokafka"])
def test_flow_control_reads_every_record_of_a_skewed_backlog_without_stalling(
    topic_factory: Any,
    producer_factory: Any,
    consumer_factory: Any,
    kafka_bootstrap: str,
    client: str,
) -> None:
    """Real broker: partitions paused and resumed hundreds of times are all read to the end,
    exactly once and in order, and no poll comes back empty while records are left (the
    kafka-python fetcher bug ``FlowControl.before_poll`` works around stalled here), on
    either client the raw loop can consume with."""
    partitions, per_partition = 4, 5_000
    topic = topic_factory("flow", partitions=partitions)
    producer = producer_factory(linger_ms=20, batch_size=256 * 1024)
    for p in range(partitions):
        for i in range(per_partition):
            producer.send(topic, value=b"%d|%d|" % (p, i) + b"x" * 100, partition=p)
    producer.flush()
    sizes = {"max_poll_records": 500, "max_partition_fetch_bytes": 16 * 1024}
    if client == "aiokafka":
        clients = WorkerClients(as_settings(kafka_bootstrap), "tests", loop_client="aiokafka")
        consumer = clients.loop_consumer(group_id=None, **sizes)
    else:
        consumer = consumer_factory(**sizes)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        flow = FlowControl(consumer, refresh_s=0.0)
        # Event time = 1 s per offset: a partition 50 records ahead of the slowest is paused.
        watermarks: dict[int, int] = {p: NO_WATERMARK for p in range(partitions)}
        seen: dict[int, list[int]] = {p: [] for p in range(partitions)}
        empty = pauses = 0
        deadline = time.monotonic() + 120
        while sum(map(len, seen.values())) < partitions * per_partition:
            assert time.monotonic() < deadline, f"read {sum(map(len, seen.values()))} records"
            flow.before_poll()
            polled = consumer.poll(timeout_ms=2000)
            if not polled:
                empty += 1
                flow.idle()
                continue
            for tp, records in polled.items():
                for record in records:
                    seen[tp.partition].append(int(record.value.split(b"|")[1]))
                watermarks[tp.partition] = records[-1].offset * 1000
            flow.balance({topic: (dict(watermarks), 50_000)})
            pauses += len(flow.paused)
    finally:
        if client == "aiokafka":
            consumer.close()
    assert all(seen[p] == list(range(per_partition)) for p in seen)
    assert pauses > 100  # the flow control really paused partitions, again and again
    assert empty == 0
