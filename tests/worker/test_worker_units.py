"""The worker's stages and key store without Kafka: in-memory logs stand in for topics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broker.kafka.internal import CONTROL_HEADER, END_OF_STREAM_MARK, Checkpoint
from broker.kafka.publish import ReleaseEncoder, canonical_json, decode_public, public_schemas
from broker.worker.keyrecords import (
    KeyRecordRejected,
    MasterKeys,
    RejectReason,
    open_record,
    seal_record,
)
from broker.worker.keystore import ROLL_AFTER_S, KeyStore, KeyStoreError, parse_master_key
from broker.worker.merge import MergeStage
from broker.worker.metrics import WorkerMetrics
from broker.worker.partials import PartialsStage, RawRecord
from contracts.model import Contract
from policies.compile import compile_contract
from policies.pseudonymise import KeyDestroyedError, KeyRing
from tests.worker.support import (
    encode_raw,
    expected_windows,
    mobility_events,
    oracle_windows,
    unique_contract,
)

KEK = MasterKeys(bytes(range(32)))


class MemoryLog:
    """A ``KeysLog`` (and a partials topic) as a list."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None]] = []

    def read_from(self, offset: int) -> list[tuple[int, str, bytes | None]]:
        return [(i, k, v) for i, (k, v) in enumerate(self.records) if i >= offset]

    def append(self, key: str, value: bytes | None) -> None:
        self.records.append((key, value))


@pytest.fixture(scope="module")
def mobility(tmp_path_factory: pytest.TempPathFactory) -> Contract:
    return unique_contract(
        Path(tmp_path_factory.mktemp("contracts")), "micromobility", partitions=2
    )


def test_master_key_accepts_hex_and_base64_only() -> None:
    assert parse_master_key("ab" * 32) == bytes([0xAB]) * 32
    assert parse_master_key("q" * 43 + "=") == parse_master_key("q" * 43 + "=")
    for bad in ("ab" * 31, "not a key", ""):
        with pytest.raises(KeyStoreError) as caught:
            parse_master_key(bad)
        assert bad not in str(caught.value) or bad == ""


def test_sealed_key_opens_only_with_its_master_key_contract_and_name() -> None:
    blob = seal_record(KEK, "c", "pseudonym|3|w", epoch=3, key=b"k" * 32)
    assert open_record(KEK, "c", "pseudonym|3|w", blob).key == b"k" * 32
    refusals = [
        (RejectReason.UNKNOWN_MASTER_KEY, MasterKeys(bytes(32)), "c", "pseudonym|3|w"),
        (RejectReason.AUTHENTICATION, KEK, "d", "pseudonym|3|w"),  # another contract
        (RejectReason.AUTHENTICATION, KEK, "c", "pseudonym|4|w"),  # another epoch
        (RejectReason.AUTHENTICATION, KEK, "c", "pseudonym|3|x"),  # another writer
        (RejectReason.FORMAT, KEK, "c", "pseudonym|x|w"),
    ]
    for reason, masters, contract, name in refusals:
        with pytest.raises(KeyRecordRejected) as caught:
            open_record(masters, contract, name, blob)
        assert caught.value.reason is reason
    altered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(KeyRecordRejected) as caught:
        open_record(KEK, "c", "pseudonym|3|w", altered)
    assert caught.value.reason is RejectReason.AUTHENTICATION


def test_two_workers_adopt_the_first_key_written() -> None:
    log = MemoryLog()
    first, second = KeyStore("c", log, KEK, "w1"), KeyStore("c", log, KEK, "w2")
    # Both miss epoch 7; the second writes its candidate before the first reads the log.
    log.append("pseudonym|7|w2", seal_record(KEK, "c", "pseudonym|7|w2", epoch=7, key=b"2" * 32))
    assert first.ring.key("c", 7) == b"2" * 32
    assert second.ring.key("c", 7) == b"2" * 32
    assert [k for k, _ in log.records] == ["pseudonym|7|w2"]  # nobody wrote a rival
    third = KeyStore("c", log, KEK, "w3")
    assert third.ring.key("c", 8) != b"2" * 32
    assert KeyStore("c", log, KEK, "w4").ring.key("c", 8) == third.ring.key("c", 8)
    assert first.noise_key() == second.noise_key()


def test_keys_are_destroyed_only_when_every_view_has_passed() -> None:
    log = MemoryLog()
    store = KeyStore("c", log, KEK, "w1")
    for epoch in (1, 2, 3):
        store.ring.key("c", epoch)
    assert store.progress("a", 3, ["a", "b"]) == 0  # view b has not reported
    assert store.progress("b", 2, ["a", "b"]) == 1  # every view is past epoch 1 only
    with pytest.raises(KeyDestroyedError):
        store.ring.key("c", 1)
    assert store.ring.key("c", 2)
    other = KeyStore("c", log, KEK, "w2")
    other.refresh()
    with pytest.raises(KeyDestroyedError):
        other.ring.key("c", 1)
    assert other.ring.key("c", 3) == store.ring.key("c", 3)
    assert any(k.startswith("pseudonym|1|w1.") and v is None for k, v in log.records)  # tombstoned


def test_each_destroyed_key_is_tombstoned_once_and_forgotten() -> None:
    # Issue 17 (memory): a destruction used to read its own tombstones back as candidates of
    # the destroyed epochs, so every later one tombstoned every key ever destroyed again
    # (appends quadratic in the days run) and the store kept a set per past epoch.
    log = MemoryLog()
    store = KeyStore("c", log, KEK, "w1")
    days = 60
    for epoch in range(days):
        store.ring.key("c", epoch)
        if epoch >= 7:  # a 7-day retention, one epoch destroyed per day
            assert store.progress("a", epoch - 6, ["a"]) == 1  # destroys epoch - 7
    tombstones = [k for k, v in log.records if v is None]
    assert len(tombstones) == len(set(tombstones)) == days - 7
    assert sorted(store._seen.candidates) == list(range(days - 7, days))
    assert sorted(store._seen.winners) == list(range(days - 7, days))
    # a store reading the whole log back holds the same, and tombstones nothing more
    other = KeyStore("c", log, KEK, "w2")
    other.refresh()
    assert sorted(other._seen.candidates) == list(range(days - 7, days))
    assert other.ring.key("c", days - 7) == store.ring.key("c", days - 7)
    assert other.destroy_before(days - 6) == 1
    assert len([k for k, v in log.records if v is None]) == days - 6


def test_a_rotation_keeps_the_winner_and_leaves_destroyed_keys_destroyed() -> None:
    log, new = MemoryLog(), MasterKeys(bytes([7]) * 32, (KEK.current,))
    first, second = KeyStore("c", log, KEK, "w1"), KeyStore("c", log, KEK, "w2")
    keys = {epoch: first.ring.key("c", epoch) for epoch in (1, 2, 3)}
    log.append("pseudonym|3|w2", seal_record(KEK, "c", "pseudonym|3|w2", epoch=3, key=b"x" * 32))
    noise = second.noise_key()
    assert first.destroy_before(2) == 1
    report = KeyStore("c", log, new, "rotation").reseal()
    # epochs 2 and 3, the noise key, the floor; the losing candidate of epoch 3 is tombstoned
    assert (report.resealed, report.tombstoned, report.rejected) == (4, 1, {})
    assert KeyStore("c", log, new, "rotation").reseal().resealed == 0  # idempotent
    rejected: list[RejectReason] = []  # the originals, under the old key, until compacted
    after = KeyStore("c", log, MasterKeys(new.current), "w3", on_reject=rejected.append)
    assert after.ring.key("c", 3) == keys[3] and after.ring.key("c", 2) == keys[2]
    assert after.noise_key() == noise
    with pytest.raises(KeyDestroyedError):
        after.ring.key("c", 1)
    assert set(rejected) == {RejectReason.UNKNOWN_MASTER_KEY}


def test_forged_records_are_counted_and_never_obeyed() -> None:
    log, rejected = MemoryLog(), []
    store = KeyStore("c", log, KEK, "w1", on_reject=rejected.append)
    key = store.ring.key("c", 5)
    live = log.records[0][0]  # pseudonym|5|w1.<nonce>
    log.append("floor|9", b'{"epoch": 9}')  # the old, unsealed floor
    log.append("floor|9", seal_record(MasterKeys(bytes(32)), "c", "floor|9", epoch=9))
    log.append("floor|9", seal_record(KEK, "other", "floor|9", epoch=9))
    log.append(live, None)  # a tombstone of a live key
    log.append("pseudonym|\xff|w1", b"RPK1 an old sealed ring")
    store.refresh()
    assert rejected == [
        RejectReason.FORMAT,
        RejectReason.UNKNOWN_MASTER_KEY,
        RejectReason.AUTHENTICATION,
        RejectReason.TOMBSTONE,
        RejectReason.FORMAT,
    ]
    assert store.ring.key("c", 5) == key
    assert KeyStore("c", log, KEK, "w2").ring.key("c", 5) == key


def test_a_destruction_appends_the_floor_again_once_the_segment_may_roll() -> None:
    now = [0.0]
    log = MemoryLog()
    store = KeyStore("c", log, KEK, "w1", clock=lambda: now[0])
    store.ring.key("c", 1)
    store.destroy_before(2)
    assert not store.roll()
    now[0] = ROLL_AFTER_S
    assert store.roll() and not store.roll()
    assert log.records[-1][0] == "floor|2"


def _stages(
    contract: Contract, metrics: WorkerMetrics, ring: KeyRing
) -> tuple[PartialsStage, MergeStage]:
    views = compile_contract(contract, keyring=ring)  # shared: a restart keeps the keys
    stage1 = PartialsStage(
        contract,
        "vehicle_events",
        {"availability": views["availability"]},
        {"availability": "partials"},
        metrics,
        clock=lambda: 0.0,
    )
    stage2 = MergeStage(
        contract,
        views["availability"],
        ["p0", "p1"],
        "state",
        metrics,
        clock=lambda: datetime(2027, 1, 1, tzinfo=UTC).timestamp(),
    )
    return stage1, stage2


def _raw(
    contract: Contract, records: list[dict[str, Any]], partitions: int
) -> list[list[RawRecord]]:
    out: list[list[RawRecord]] = [[] for _ in range(partitions)]
    for accepted in encode_raw(contract, "vehicle_events", records):
        queue = out[hash(accepted.key) % partitions]
        queue.append(RawRecord(len(queue), accepted.value))
    for queue in out:
        queue.append(RawRecord(len(queue), b"", [(CONTROL_HEADER, END_OF_STREAM_MARK)]))
    return out


def test_stages_with_a_crash_and_a_replay_equal_the_oracle(mobility: Contract) -> None:
    events = mobility_events(3_000, seed=2)
    raw = _raw(mobility, events["vehicle_events"], 2)
    metrics, ring = WorkerMetrics(), KeyRing()
    stage1, stage2 = _stages(mobility, metrics, ring)
    topic: list[tuple[bytes, bytes | None]] = []  # the partials partition
    for p in (0, 1):
        assert stage1.restore(p, {}) == 0
    for p in (0, 1):
        stage1.process(p, raw[p][:700])
        topic += [(r.key, r.value) for r in stage1.checkpoint(p)]
        stage1.process(p, raw[p][700:900])  # folded, never checkpointed: lost in the crash
    # Crash: a new stage-1 restores from the last checkpoints and replays from there.
    stage1, _ = _stages(mobility, metrics, ring)
    last = {
        json.loads(v)["source"]: Checkpoint.from_value("availability", v)
        for k, v in topic
        if k.startswith(b"checkpoint|") and v
    }
    for p in (0, 1):
        resume = stage1.restore(p, {"availability": last.get(f"p{p}")})
        assert resume == 700
        stage1.process(p, raw[p][resume - 50 :])  # a replay from before the checkpoint
        topic += [(r.key, r.value) for r in stage1.checkpoint(p)]
    releases = []
    for offset, (key, value) in enumerate(topic):
        stage2.feed(offset, key, value)
        if offset % 37 == 0 or offset == len(topic) - 1:
            output = stage2.step()
            if output is not None:
                releases += output.releases
                stage2.committed(output)
                state = output.records[-1].value or b""
                assert state == canonical_json(json.loads(state))  # spliced, still sorted
                assert set(json.loads(state)) == {
                    "contract_version",
                    "merger",
                    "policy_hash",
                    "position",
                    "sources",
                }
    assert oracle_windows(releases) == expected_windows(mobility, events, "availability")


def test_undecodable_raw_records_are_counted_and_skipped(mobility: Contract) -> None:
    """A raw record the stage cannot read (no value, another schema id, a bad magic byte,
    damaged body) is counted once and skipped; the records around it fold as without it."""
    events = mobility_events(400, seed=4)
    [raw] = _raw(mobility, events["vehicle_events"], 1)
    good = [RawRecord(r.offset * 5, r.value, r.headers) for r in raw]  # ends with an EOS
    value = good[0].value or b""
    bad: list[bytes | None] = [None, b"\x00\x00\x00\x00\x01" + value[5:], b"\x01" + value[1:]]
    bad += [value[:-3], value + b"\x00", b"", b"\x00"]
    mixed = list(good)
    for n, damaged in enumerate(bad):  # offsets between the good ones, in offset order
        at = 1 + n * 7
        mixed.insert(at, RawRecord(mixed[at - 1].offset + 1, damaged))
    outputs = []
    for batch in (good, mixed):
        metrics = WorkerMetrics()
        stage, _ = _stages(mobility, metrics, KeyRing(token_bytes=lambda n: bytes(n)))
        stage.restore(0, {})
        stage.process(0, batch)
        written = [(r.key, r.value) for r in stage.checkpoint(0, force=True)]
        assert any(key.startswith(b"partials|") for key, _ in written)
        undecodable = metrics.registry.get_sample_value(
            "respublica_worker_undecodable_total",
            {"contract": mobility.id, "stream": "vehicle_events"},
        )
        outputs.append((written, undecodable or 0.0))
    assert outputs[0] == (outputs[1][0], 0.0)
    assert outputs[1][1] == len(bad)


def test_release_records_decode_to_the_release(mobility: Contract) -> None:
    events = mobility_events(2_000, seed=3)
    from policies.oracle import evaluate

    release = evaluate(mobility, events, keyring=KeyRing())["availability"][0]
    records = ReleaseEncoder(mobility, mobility.view("availability")).records(release)
    schemas = public_schemas([mobility])
    *groups, report = records
    assert len(groups) == release.report.groups_published
    key, row = decode_public(report.key, report.value or b"", schemas)
    assert key["report"] is True and row["k"] == 10
    assert row["groups_suppressed"] == release.report.groups_suppressed
    for record in groups:
        key, row = decode_public(record.key, record.value or b"", schemas)
        assert row["window_start"] == key["window_start"] == release.window.start
        assert set(row) == {"window_start", "window_end", "cell", "events", "vehicles"}
        assert row["vehicles"] >= 10
        assert dict(record.headers)["respublica.key_ids"] == ",".join(release.key_ids).encode()
