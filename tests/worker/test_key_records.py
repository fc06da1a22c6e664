"""Key records on the real, secure broker: what a super-user forges or copies is never obeyed.

The session runs as the admin super-user, whom the broker lets write any topic: exactly the
party the authentication of key records (``broker/worker/keyrecords.py``) is there to stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaProducer

from broker.kafka.clients import KafkaKeysLog, WorkerClients, read_topic
from broker.kafka.settings import as_settings
from broker.kafka.topics import keys_topic
from broker.worker.keyrecords import MasterKeys, RejectReason, seal_record
from broker.worker.keystore import KeyStore
from contracts.model import Contract
from policies.pseudonymise import KeyDestroyedError
from tests.worker.support import MASTER_KEY, ROOT, WorkerProcess, metric_value, wait_for

pytestmark = pytest.mark.integration
KEK = MasterKeys(bytes.fromhex(MASTER_KEY))
NEW_KEY = "22" * 32


@pytest.fixture
def store_factory(kafka_bootstrap: str) -> Iterator[Callable[..., KeyStore]]:
    """Key stores on a contract's real key topic, as the admin; their clients closed after."""
    logs: list[KafkaKeysLog] = []

    def make(contract: Contract, masters: MasterKeys = KEK, **options: object) -> KeyStore:
        log = KafkaKeysLog(
            WorkerClients(as_settings(kafka_bootstrap), "test"), keys_topic(contract)
        )
        logs.append(log)
        return KeyStore(contract.id, log, masters, f"w{len(logs)}", **options)  # type: ignore[arg-type]

    yield make
    for log in logs:
        log.close()


def _write(producer: KafkaProducer, topic: str, key: str, value: bytes | None) -> None:
    producer.send(topic, key=key.encode(), value=value).get(timeout=30)


def test_forged_altered_and_replayed_key_records_are_ignored_and_counted(
    contract_factory: Callable[..., Contract],
    store_factory: Callable[..., KeyStore],
    producer_factory: Callable[..., KafkaProducer],
    kafka_bootstrap: str,
) -> None:
    a, b = contract_factory("micromobility"), contract_factory("micromobility")
    admin = producer_factory()
    key_a = store_factory(a).ring.key(a.id, 5)
    # Replayed: contract A's sealed key, copied verbatim into B's topic.
    clients = WorkerClients(as_settings(kafka_bootstrap), "test")
    (record,) = read_topic(clients, keys_topic(a))
    _write(admin, keys_topic(b), record.key.decode(), record.value)
    # Forged floor (the old, unsealed form) and a record in the old sealed-ring format.
    _write(admin, keys_topic(b), "floor|999999", b'{"epoch": 999999}')
    _write(admin, keys_topic(b), "pseudonym|6|old", b"RPK1" + os.urandom(60))
    # Altered: a genuine-looking record of A whose ciphertext had one bit flipped.
    genuine = seal_record(KEK, a.id, "pseudonym|7|evil", epoch=7, key=b"e" * 32)
    _write(admin, keys_topic(a), "pseudonym|7|evil", genuine[:-5] + bytes([genuine[-5] ^ 1]))
    _write(admin, keys_topic(a), record.key.decode(), None)  # a tombstone of A's live key

    rejected_b: list[RejectReason] = []
    store_b = store_factory(b, on_reject=rejected_b.append)
    assert store_b.ring.key(b.id, 5) != key_a  # B drew its own key for epoch 5
    assert store_b.ring.key(b.id, 8)  # the forged floor destroyed nothing
    assert rejected_b == [RejectReason.AUTHENTICATION, RejectReason.FORMAT, RejectReason.FORMAT]

    rejected_a: list[RejectReason] = []
    store_a = store_factory(a, on_reject=rejected_a.append)
    assert store_a.ring.key(a.id, 7) != b"e" * 32
    assert store_a.ring.key(a.id, 5) == key_a
    assert rejected_a == [RejectReason.AUTHENTICATION, RejectReason.TOMBSTONE]


def test_a_worker_ignores_a_forged_floor_and_counts_it(
    contract_factory: Callable[..., Contract],
    worker_factory: Callable[..., WorkerProcess],
    producer_factory: Callable[..., KafkaProducer],
) -> None:
    contract = contract_factory("micromobility")
    admin = producer_factory()
    _write(admin, keys_topic(contract), "floor|999999", b'{"epoch": 999999}')
    forged = seal_record(MasterKeys(os.urandom(32)), contract.id, "floor|999998", epoch=999998)
    _write(admin, keys_topic(contract), "floor|999998", forged)
    worker = worker_factory([contract], "keys-1")
    worker.start()
    rejected: dict[str, float] = {}

    def counted() -> bool:
        assert worker.alive(), worker.log_tail()
        if not worker.healthy():
            return False
        text = worker.metrics()
        for reason in RejectReason:
            rejected[reason.value] = metric_value(
                text,
                "respublica_key_records_rejected_total",
                contract=contract.id,
                reason=reason.value,
            )
        return rejected["format"] >= 1

    wait_for(counted, 90, "the worker counting the forged floor")
    assert rejected == {"format": 1, "unknown-master-key": 1, "authentication": 0, "tombstone": 0}
    assert worker.terminate() == 0, worker.log_tail()


def test_rotate_master_reseals_every_live_key_for_a_worker_with_only_the_new_key(
    contract_factory: Callable[..., Contract],
    store_factory: Callable[..., KeyStore],
    kafka_bootstrap: str,
) -> None:
    contract = contract_factory("micromobility")
    old = store_factory(contract)
    keys = {epoch: old.ring.key(contract.id, epoch) for epoch in (1, 2, 3)}
    noise = old.noise_key()
    old.progress("availability", 2, ["availability"])  # destroys epoch 1
    env = dict(os.environ, RESPUBLICA_MASTER_KEY=MASTER_KEY, RESPUBLICA_NEW_MASTER_KEY=NEW_KEY)
    assert contract.source is not None
    command = [sys.executable, "-m", "broker.cli", "keys", "rotate-master"]
    args = ["--contracts", str(contract.source), "--bootstrap", kafka_bootstrap]
    done = subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (
        f"{contract.id}: 5 re-sealed, 0 tombstoned" in done.stdout
    )  # 2 keys, noise, floor, progress

    rejected: list[RejectReason] = []
    new = store_factory(contract, MasterKeys(bytes.fromhex(NEW_KEY)), on_reject=rejected.append)
    assert new.ring.key(contract.id, 2) == keys[2]
    assert new.ring.key(contract.id, 3) == keys[3]
    assert new.noise_key() == noise
    with pytest.raises(KeyDestroyedError):
        new.ring.key(contract.id, 1)
    assert set(rejected) == {RejectReason.UNKNOWN_MASTER_KEY}  # the originals, until compacted
