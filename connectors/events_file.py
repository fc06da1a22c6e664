"""Events of one contract stream from an NDJSON file, as the worker would read them from raw.

For the utility report (``policies.utility``): each line goes through the ingest validator
(``connectors.validate.StreamValidator``: schema, types, ranges, territory, identifiers,
duplicates) and an accepted event is decoded back from the Avro value written for
``raw.<c>.<s>``, exactly the record a worker folds. Two rules of the live path are left out,
because a report on past or sample data is about the contract's *terms*: lateness (each event
is taken as arriving at its own event time) and the contract's validity period. Rejected lines
are counted by reason; no value of a line is kept or shown.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.kafka.serde import Schemas, decode
from connectors.base import Accepted
from connectors.validate import StreamValidator
from contracts.model import Contract

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass
class StreamEvents:
    """The accepted records of one stream, and the rejected lines by reason code."""

    stream: str
    records: list[dict[str, Any]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)


def timeless(contract: Contract) -> Contract:
    """The contract with a validity period covering any event (for reports on its terms)."""
    validity = contract.validity.model_copy(update={"start": _EARLIEST, "end": _LATEST})
    return contract.model_copy(update={"validity": validity})


def read_events(contract: Contract, stream: str, lines: Iterable[bytes]) -> StreamEvents:
    """Validate and decode each non-blank line of ``lines`` as an event of ``stream``."""
    open_ended = timeless(contract)
    schemas = Schemas.from_contracts([open_ended])
    validator = StreamValidator(open_ended, stream, schemas=schemas)
    time_field = open_ended.stream(stream).event_time
    out = StreamEvents(stream)
    for line in lines:
        if not line.strip():
            continue
        outcome = validator.validate(
            line, now_ms=_arrival(line, time_field), connector="utility", source="file"
        )
        if isinstance(outcome, Accepted):
            out.records.append(decode(outcome.value, schemas)[1])
        else:
            out.rejected[outcome.reason.value] += 1
    return out


def _arrival(line: bytes, time_field: str) -> int:
    """The event's own time (so it is never "late" nor "in the future"); 0 if unreadable."""
    try:
        value = json.loads(line).get(time_field)
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
