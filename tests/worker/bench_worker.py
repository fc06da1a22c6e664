"""Measure the worker end to end: events/s of the availability view, and release delay.

Not a test (timed numbers are reported, never asserted). Against a running broker::

    KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python -m tests.worker.bench_worker \
        --workers 1 --events 100000 [--rate 0]

Workers start first (idle), then the pre-encoded events are produced (as fast as possible, or
paced at ``--rate`` events/s), then one end-of-stream record per partition. Throughput is
events / (last availability window published − first event produced); the release delay is
read from the workers' ``respublica_window_release_delay_seconds`` histograms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer

from broker.kafka.local import free_port_pair
from broker.kafka.settings import as_settings
from broker.processes import histogram_quantile, metric_sum
from tests.worker.support import (
    WorkerProcess,
    create_topics,
    delete_topics,
    encode_raw,
    expected_windows,
    mobility_events,
    produce_end_of_stream,
    read_public,
    unique_contract,
    wait_for,
)

VIEW = "availability"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s, 0: as fast as possible")
    parser.add_argument(
        "--preload",
        action="store_true",
        help="produce everything first, then time the workers from their start",
    )
    args = parser.parse_args()
    bootstrap = os.environ["KAFKA_BOOTSTRAP"]
    tmp = Path(tempfile.mkdtemp(prefix="respublica-bench-"))
    contract = unique_contract(tmp, "micromobility")
    topics = create_topics(bootstrap, contract)
    workers: list[WorkerProcess] = []
    try:
        events = mobility_events(args.events, seed=1)
        only = {"vehicle_events": events["vehicle_events"]}
        expected = expected_windows(contract, only, VIEW)
        accepted = encode_raw(contract, "vehicle_events", only["vehicle_events"])
        group = f"bench-{uuid.uuid4().hex[:8]}"
        producer = KafkaProducer(
            **as_settings(bootstrap).kafka_python("tests"),
            acks="all",
            linger_ms=20,
            batch_size=512 * 1024,
            enable_idempotence=True,
        )
        raw = contract.topic_raw("vehicle_events")
        if args.preload:
            for item in accepted:
                producer.send(raw, key=item.key, value=item.value, headers=list(item.headers))
            producer.flush()
            accepted = []
        assert contract.source is not None  # written to tmp by unique_contract
        for i in range(args.workers):
            worker = WorkerProcess(
                bootstrap, [contract.source], f"bench-{i}", group, tmp, free_port_pair()
            )
            worker.start()
            workers.append(worker)
        if not args.preload:
            wait_for(lambda: all(w.healthy() for w in workers), 120, "workers healthy")
        started = time.monotonic()
        for n, item in enumerate(accepted):
            producer.send(raw, key=item.key, value=item.value, headers=list(item.headers))
            if args.rate and n % 100 == 0:
                ahead = n / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # pacing the input, not synchronising on the output
        producer.flush()
        produced = time.monotonic() - started
        for stream in contract.streams:
            produce_end_of_stream(producer, contract.topic_raw(stream), stream.partitions)
        wait_for(
            lambda: len(read_public(bootstrap, contract, VIEW).windows) >= len(expected),
            900,
            "every availability window",
            every_s=0.2,
        )
        elapsed = time.monotonic() - started
        got = read_public(bootstrap, contract, VIEW)
        assert got.windows == expected and got.duplicates == 0, "releases differ from oracle"
        texts = [w.metrics() for w in workers]
        delay = "respublica_window_release_delay_seconds"
        count = len(only["vehicle_events"])
        print(
            f"workers={args.workers} events={count} windows={len(expected)} "
            f"preload={args.preload} produced_in={produced:.1f}s end_to_end={elapsed:.1f}s "
            f"throughput={count / elapsed:,.0f} events/s "
            f"delay_p50={histogram_quantile(texts, delay, 0.5, view=VIEW):.2f}s "
            f"delay_p99={histogram_quantile(texts, delay, 0.99, view=VIEW):.2f}s "
            f"(n={sum(metric_sum(t, delay + '_count', view=VIEW) for t in texts):.0f})"
        )
    finally:
        for worker in workers:
            worker.terminate(timeout_s=30)
        admin = KafkaAdminClient(**as_settings(bootstrap).kafka_python("tests"))
        delete_topics(admin, topics)
        admin.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
