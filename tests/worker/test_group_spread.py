"""The views of several contracts spread over a host's worker processes.

Before: every process used the same client id in every contract's groups, so the round-robin
assignor (which deals partitions to members sorted by member id, ``<client id>-<uuid>``) gave
each contract's first view to the same process and its second to the next: with the three
example contracts (six single-partition partials topics) under four processes, two processes
owned every view and two had none. The assignment is computed here by kafka-python's own
assignor, with member ids as the broker makes them.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from broker.kafka.clients import WorkerClients
from broker.kafka.settings import KafkaSettings

pytestmark = pytest.mark.unit
VIEWS = {
    "lyon-micromobility": ["availability", "origin_destination"],
    "bordeaux-navigation": ["jams", "alerts_by_type"],
    "paris-str": ["nights_by_district", "nights_by_cell"],
}


def _owners(processes: int) -> dict[str, str]:
    """view topic -> worker id of the process the merge groups give it to."""
    kafka = KafkaSettings(bootstrap="127.0.0.1:9092")
    cluster = SimpleNamespace(partitions_for_topic=lambda _topic: {0})
    owners: dict[str, str] = {}
    for contract, views in VIEWS.items():
        topics = [f"respublica.{contract}.partials.{v}" for v in views]
        members, worker_of = [], {}
        for index in range(processes):
            worker = f"host-1.{index}"
            clients = WorkerClients(kafka, f"worker-{worker}")
            member_id = f"{clients.group_client_id(contract)}-{uuid.uuid4()}"
            worker_of[member_id] = worker
            members.append(
                SimpleNamespace(
                    member_id=member_id,
                    group_instance_id=None,
                    metadata=SimpleNamespace(topics=topics),
                )
            )
        assignment = RoundRobinPartitionAssignor.assign(cluster, members)
        for member_id, given in assignment.items():
            for topic, _partitions in given.assignment:
                owners[topic] = worker_of[member_id]
    return owners


@pytest.mark.parametrize("processes", [3, 4, 6])
def test_the_views_of_three_contracts_spread_over_the_processes(processes: int) -> None:
    owners = _owners(processes)
    assert len(owners) == 6
    assert len(set(owners.values())) > 2, owners
