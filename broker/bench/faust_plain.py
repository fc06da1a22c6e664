"""F: the availability view written the way faust's documentation teaches it.

An agent iterates ``faust.Record`` events, a windowed ``Table`` holds per-cell state, and
``on_window_close`` publishes the groups with at least k distinct vehicles. This is the peer a
user would write without respublica; the bench measures it and checks its output too.
Run as ``python -m broker.bench.faust_plain worker`` with the ``BENCH_*`` environment set by
the harness; it writes its measurements to ``BENCH_RESULT`` once it has read every event.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import time
from datetime import timedelta
from typing import Any

import fastavro
import faust
import h3
from faust.serializers import codecs

from broker.kafka.settings import KafkaSettings
from broker.processes import peak_rss_mb

ENV = os.environ
SCHEMA: Any = (
    fastavro.parse_schema(json.loads(ENV["BENCH_SCHEMA"])) if "BENCH_SCHEMA" in ENV else None
)
KEY = bytes.fromhex(ENV.get("BENCH_HMAC_KEY", "00" * 32))
K = int(ENV.get("BENCH_K", "10"))
EXPECTED = int(ENV.get("BENCH_EVENTS", "0"))
WINDOW_S = 900


class ConfluentAvro(codecs.Codec):
    """Confluent-framed Avro → dict, the way a faust user plugs a schema-registry format in."""

    def _loads(self, s: bytes) -> Any:
        if not s:  # an end-of-stream control record: faust logs and skips a decode error
            msg = "control record"
            raise ValueError(msg)
        return fastavro.schemaless_reader(io.BytesIO(s[5:]), SCHEMA, None)

    def _dumps(self, s: Any) -> bytes:
        return json.dumps(s).encode()


codecs.register("confluent_avro", ConfluentAvro())


class VehicleEvent(faust.Record, serializer="confluent_avro"):
    """An MDS-style vehicle event (only the fields the view needs are typed)."""

    event_id: str
    vehicle_id: str
    event_type: str
    timestamp: int
    lat: float
    lon: float
    provider_id: str = ""
    vehicle_type: str = ""
    propulsion: str = ""
    battery_pct: int | None = None
    trip_id: str | None = None
    ts: float = 0.0

    def __post_init__(self) -> None:
        self.ts = self.timestamp / 1000.0


app = faust.App(
    ENV.get("BENCH_APP_ID", "respublica-bench-faust"),
    **KafkaSettings.load(bootstrap=ENV.get("BENCH_BOOTSTRAP")).faust(),
    store="memory://",
    datadir=ENV.get("BENCH_DATADIR", "faust-bench-data"),
    topic_partitions=int(ENV.get("BENCH_PARTITIONS", "1")),
    topic_replication_factor=1,
    table_cleanup_interval=1.0,
    consumer_auto_offset_reset="earliest",
    stream_buffer_maxsize=131072,
    producer_linger=0.005,
    web_enabled=False,
)
source = app.topic(
    ENV.get("BENCH_SOURCE", "bench-source"), value_type=VehicleEvent, key_serializer="raw"
)
sink = app.topic(ENV.get("BENCH_SINK", "bench-sink"), key_serializer="raw", value_serializer="json")


def on_window_close(key: Any, value: Any) -> None:
    cell, (start, end) = key
    vehicles = len(value or {})
    if vehicles >= K:
        payload = {
            "cell": cell,
            "window_start": int(start * 1000),
            "window_end": int(round(end * 1000)),
            "vehicles": vehicles,
        }
        sink.send_soon(key=cell.encode(), value=payload)


availability = (
    app.Table(
        "availability",
        default=dict,
        on_window_close=on_window_close,
    )
    .tumbling(timedelta(seconds=WINDOW_S), expires=timedelta(seconds=WINDOW_S))
    .relative_to_field(VehicleEvent.ts)  # type: ignore[arg-type]  # a FieldDescriptor at runtime
)

progress = {"seen": 0, "first": 0.0, "cpu0": 0.0}


@app.agent(source)
async def count_available(events: Any) -> None:
    async for event in events:
        if progress["seen"] == 0:
            progress["first"], progress["cpu0"] = time.perf_counter(), time.process_time()
        progress["seen"] += 1
        if event.event_type == "available":
            cell = h3.latlng_to_cell(event.lat, event.lon, 8)
            pseudonym = hmac.new(KEY, event.vehicle_id.encode(), hashlib.sha256).hexdigest()[:32]
            vehicles = availability[cell].value()
            vehicles[pseudonym] = 1
            availability[cell] = vehicles
        if progress["seen"] == EXPECTED:
            _write_result()


def _write_result() -> None:
    elapsed = time.perf_counter() - progress["first"]
    result = {
        "events": EXPECTED,
        "seconds": elapsed,
        "cpu_seconds": time.process_time() - progress["cpu0"],
        "peak_rss_mb": peak_rss_mb(os.getpid()),  # VmHWM: ru_maxrss keeps the parent's peak
    }
    with open(ENV["BENCH_RESULT"], "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    app.main()
