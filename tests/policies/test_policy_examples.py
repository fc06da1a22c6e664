"""The bundled example contracts, compiled and run: streamed releases equal the oracle's."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import Contract, examples_dir, load_contracts
from policies.base import PolicyError
from policies.compile import compile_contract
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing
from policies.spec import ms
from policies.testing import arrival_order, run_stream
from tests.policies.harness import T0, seeded_ring

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CENTRES = {  # a small area inside each territory, so groups reach k
    "lyon-micromobility": (45.7640, 4.8357),
    "bordeaux-navigation": (44.8400, -0.5800),
    "paris-str": (48.8600, 2.3400),
}
SUBJECT_FIELDS = ("vehicle_id", "reporter_id", "registration_number")
TIME_FIELDS = ("timestamp", "end_time", "period_start")


@pytest.fixture(scope="module")
def contracts() -> dict[str, Contract]:
    return {c.id: c for c in load_contracts([examples_dir()], now=NOW)}


def synthetic(contract: Contract, n: int, seed: int) -> list[dict[str, Any]]:
    """Records carrying every field any example stream reads (the views ignore the rest)."""
    rng = random.Random(seed)
    lat0, lon0 = CENTRES[contract.id]
    span = 3 * max(ms(v.window) for v in contract.views)
    records = []
    for i in range(n):
        subject = f"raw-subject-{rng.randrange(40):03d}"
        t = T0 + rng.randrange(span)
        record: dict[str, Any] = {
            "event_id": f"e{i}",
            "event_type": rng.choice(["available", "trip_start"]),
            "type": rng.choice(["JAM", "HAZARD"]),
            "lat": lat0 + rng.uniform(-0.004, 0.004),
            "lon": lon0 + rng.uniform(-0.004, 0.004),
            "start_lat": lat0,
            "start_lon": lon0,
            "end_lat": lat0 + 0.001,
            "end_lon": lon0,
            "duration_s": rng.randrange(60, 900),
            "delay_s": rng.uniform(0, 300),
            "length_m": rng.uniform(10, 900),
            "listing_url": f"https://raw.example/{rng.randrange(60)}",
            "nights": rng.randrange(1, 8),
            "guests": rng.randrange(1, 5),
        }
        record.update(dict.fromkeys(SUBJECT_FIELDS, subject))
        record.update(dict.fromkeys(TIME_FIELDS, t))
        records.append(record)
    return records


@pytest.mark.parametrize("contract_id", sorted(CENTRES))
@pytest.mark.parametrize(("partitions", "seed"), [(1, 1), (4, 2)])
def test_example_contract_streamed_equals_oracle(
    contracts: dict[str, Contract], contract_id: str, partitions: int, seed: int
) -> None:
    contract = contracts[contract_id]
    noise_key = bytes(range(32))
    pipelines = compile_contract(contract, keyring=seeded_ring(contract.id), noise_key=noise_key)
    records = synthetic(contract, 600, seed)
    published = 0
    for name, pipeline in pipelines.items():
        stream = contract.stream(contract.view(name).stream)
        arrived = arrival_order(records, stream.event_time, ms(stream.allowed_lateness), seed)
        run = run_stream(pipeline, arrived, stream.subject, partitions=partitions, batch=50)
        # The oracle reads the raw topic in the order the stream does: a noised view keeps
        # each subject's first contributions.
        expected = evaluate(
            contract,
            {s.name: arrived for s in contract.streams},
            keyring=seeded_ring(contract.id),
            noise_key=noise_key,
        )
        assert run.releases == expected[name], name
        published += sum(len(r.groups) for r in run.releases)
        raw = {r[stream.subject] for r in records} | {r["listing_url"] for r in records}
        text = repr([r.to_dict() for r in run.releases])
        assert not any(value in text for value in raw)
    assert published > 0  # the synthetic load is dense enough to publish something


def test_compile_needs_a_noise_key_for_noisy_views(contracts: dict[str, Contract]) -> None:
    with pytest.raises(PolicyError):
        compile_contract(contracts["bordeaux-navigation"], keyring=KeyRing())


def test_pipelines_read_only_named_fields(contracts: dict[str, Contract]) -> None:
    pipelines = compile_contract(contracts["lyon-micromobility"], keyring=KeyRing())
    assert pipelines["availability"].fields == {
        "timestamp",
        "vehicle_id",
        "event_id",  # read only to count each event once
        "event_type",
        "lat",
        "lon",
    }
