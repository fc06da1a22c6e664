"""The partials topic's record value (``broker.kafka.internal.encode_partials``): every field
of every partial survives the round trip, for the measures of every example contract."""

from __future__ import annotations

import pytest

from broker.bench.preload import load_source
from broker.kafka.internal import decode_partials, encode_partials
from contracts import examples_dir
from policies.aggregate import Partial
from policies.compile import compile_contract
from policies.pseudonymise import KeyRing
from policies.testing import partition_of

EVENTS = 3_000


def _partials(example: str) -> list[list[Partial]]:
    """Every view's drained partials of each of two sources, over simulated events."""
    source = load_source(examples_dir() / f"{example}.yaml", EVENTS)
    contract = source.contract
    out = []
    for name, view in compile_contract(contract, keyring=KeyRing(), noise_key=b"n" * 32).items():
        stream = contract.stream(contract.view(name).stream)
        rows = source.events.get(stream.name, [])
        for p in range(2):
            mine = [(i, r) for i, r in enumerate(rows) if partition_of(r[stream.subject], 2) == p]
            agg = view.partition_state(f"p{p}")
            agg.process(mine)
            out.append(agg.drain_closed(final=True))
    return out


@pytest.mark.parametrize("example", ["micromobility", "navigation", "rentals"])
def test_every_field_of_every_partial_survives(example: str) -> None:
    batches = [b for b in _partials(example) if b]
    assert batches
    for parts in batches:
        value = encode_partials(parts[0].source, parts)
        assert value == encode_partials(parts[0].source, parts)  # a replay writes the same
        back = decode_partials(value)
        assert [p.to_dict() for p in back] == [p.to_dict() for p in parts]
        assert all(isinstance(p.group, tuple) for p in back)


def test_every_measure_field_survives() -> None:
    # No example has a quantile (``values``): a partial with every field set, by hand.
    part = Partial(900_000, ("8a1f", None, 3), "p1")
    part.through, part.events = 41, 5
    part.subjects = {"b" * 32, "a" * 32}
    part.distinct = {"trips": {"t2", "t1"}}
    part.sums = {"distance": [12.5, 2.0]}
    part.counts = {"distance": 2}
    part.values = {"battery": [0.25, 1.0, 0.5]}
    empty = Partial(0, (), "p1")
    (back, back_empty) = decode_partials(encode_partials("p1", [part, empty]))
    assert back.to_dict() == part.to_dict()
    assert back.key == part.key
    assert back_empty.to_dict() == empty.to_dict()
