"""``replay --to-kafka`` keys ingest records by the canonical subject, as the validator keys raw:
every spelling of one subject goes to one partition, in order."""

from __future__ import annotations

import json

import pytest

from connectors.push import _subject_key

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("variant", [" VEH-1", "veh-1\u200b", "\uff56\uff45\uff48-1", "Veh-1\t"])
def test_spellings_of_one_subject_share_a_key(variant: str) -> None:
    def key(value: object) -> bytes | None:
        return _subject_key(json.dumps({"vehicle_id": value}).encode(), "vehicle_id")

    assert key(variant) == key("veh-1") == b"veh-1"
    assert key(["not", "an", "id"]) is None
