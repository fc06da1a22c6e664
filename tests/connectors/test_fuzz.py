"""Fuzzing the validation path: every mutated payload is Accepted or Rejected, never a crash.

Seeded byte-level mutations (bit flips, byte changes, truncations, insertions, deletions,
repeats) of valid JSON and valid Confluent Avro, plus hypothesis-generated JSON objects with
values of every JSON type. An accepted payload must re-decode to a record that passes the
checks again; a rejection must carry a real reason and never ``INTERNAL`` (that is a bug).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.kafka.reasons import Reason
from broker.kafka.serde import Schemas, decode, encode
from connectors.base import Accepted, Outcome, Rejected
from connectors.validate import StreamValidator
from contracts import Contract
from tests.connectors.conftest import NOW_MS, vehicle_event

pytestmark = pytest.mark.unit
MUTANTS_PER_FORMAT = 3_000


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        at = rng.randrange(len(buf) + 1) if buf else 0
        if kind == 0 and buf:  # flip one bit
            at = min(at, len(buf) - 1)
            buf[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and buf:  # replace a byte
            buf[min(at, len(buf) - 1)] = rng.randrange(256)
        elif kind == 2:  # truncate
            del buf[at:]
        elif kind == 3:  # insert random bytes
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif kind == 4:  # delete a run
            del buf[at : at + rng.randint(1, 8)]
        else:  # repeat a slice (lengths and varints that point past their data)
            buf[at:at] = buf[max(0, at - 8) : at]
    return bytes(buf)


def _check(outcome: Outcome, schemas: Schemas, recheck: StreamValidator) -> str:
    if isinstance(outcome, Rejected):
        assert isinstance(outcome.reason, Reason)
        assert outcome.reason is not Reason.INTERNAL
        return outcome.reason.value
    assert isinstance(outcome, Accepted)
    sid, record = decode(outcome.value, schemas)
    assert sid == recheck.schema.schema_id
    again = recheck.validate_json(record, now_ms=NOW_MS, connector="fuzz", source="recheck")
    # The re-check may only object to a duplicate id, which the fresh filter cannot know of.
    assert isinstance(again, Accepted), again
    return "ACCEPTED"


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_mutated_payloads_never_crash_the_validator(
    fmt: str, mobility: Contract, schemas: Schemas
) -> None:
    rng = random.Random(20260601 + len(fmt))
    validator = StreamValidator(mobility, "vehicle_events", schemas=schemas)
    entry = validator.schema
    tally: Counter[str] = Counter()
    for i in range(MUTANTS_PER_FORMAT):
        record = vehicle_event(i, trip_id=None if i % 2 else f"trip-{i}")
        good = (
            json.dumps(record).encode()
            if fmt == "json"
            else encode(entry.parsed, entry.schema_id, record)
        )
        outcome = validator.validate(
            _mutate(good, rng), now_ms=NOW_MS, connector="fuzz", source=f"mutant-{i}"
        )
        recheck = StreamValidator(mobility, "vehicle_events", schemas=schemas)
        tally[_check(outcome, schemas, recheck)] += 1
    assert sum(tally.values()) == MUTANTS_PER_FORMAT
    assert len(tally) >= 5  # the mutations reach several stages, not one reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)


@settings(max_examples=400, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from(sorted(vehicle_event(0)) + ["extra"]), json_values, max_size=4
    ),
    drop=st.sets(st.sampled_from(sorted(vehicle_event(0))), max_size=2),
)
def test_json_objects_of_any_shape_are_accepted_or_rejected(
    changes: dict[str, Any], drop: set[str], mobility: Contract, schemas: Schemas
) -> None:
    record = {k: v for k, v in vehicle_event(5).items() if k not in drop}
    record.update(changes)
    validator = StreamValidator(mobility, "vehicle_events", schemas=schemas)
    payload = json.dumps(record).encode()
    recheck = StreamValidator(mobility, "vehicle_events", schemas=schemas)
    _check(
        validator.validate(payload, now_ms=NOW_MS, connector="fuzz", source="h"), schemas, recheck
    )
