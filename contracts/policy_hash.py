"""A stable fingerprint of what a contract means, carried in record headers and audit reports.

The hash covers every field of the contract (title and description included: they are part of
the signed document, and a hash that ignores some text invites "cosmetic" edits that are not),
with the content of referenced files (Avro schemas, territory and zone geometries) in place of
their paths. It does not depend on YAML formatting, key order, comments, file locations, or
how a duration is spelled (``PT24H`` == ``P1D``): durations are hashed as seconds.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.model import Contract, Stream, ZonesDimension

HASH_FORMAT = "respublica-policy-hash/1"  # bump if the canonical form ever changes


def policy_hash(contract: Contract) -> str:
    """SHA-256 (hex, 64 characters) of the contract's canonical JSON."""
    return hashlib.sha256(canonical_json(contract).encode("utf-8")).hexdigest()


def short_policy_hash(contract: Contract) -> str:
    """The first 16 hex characters of ``policy_hash``: enough for headers and logs."""
    return policy_hash(contract)[:16]


def canonical_json(contract: Contract) -> str:
    """Sorted keys, no whitespace, durations in seconds, references replaced by content."""
    document = {"format": HASH_FORMAT, "contract": canonical_form(contract)}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_form(contract: Contract) -> dict[str, Any]:
    """The contract as plain JSON values, with resolved references."""
    data: dict[str, Any] = _plain(contract.model_dump(mode="python", by_alias=True))
    data["territory"] = {"polygons": _plain(contract.territory.polygons)}
    data["streams"] = [
        _stream(s, d) for s, d in zip(contract.streams, data["streams"], strict=True)
    ]
    for view, view_data in zip(contract.views, data["views"], strict=True):
        for dim, dim_data in zip(view.group_by, view_data["group_by"], strict=True):
            if isinstance(dim, ZonesDimension):
                dim_data["file"] = _plain(
                    [{"value": z.value, "polygons": z.polygons} for z in dim.zones]
                )
    return data


def _stream(stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
    data["schema"] = stream.raw_schema
    return data


def _plain(value: Any) -> Any:
    """JSON-ready values: timedelta -> seconds, datetime -> ISO UTC, tuples -> lists."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
