"""Short-term-rental activity files (Regulation (EU) 2024/1028) imported row by row.

Two formats, one record per stay:

* CSV with a header naming the ``activity`` schema's fields: ``event_id``,
  ``registration_number``, ``listing_url``, ``address``, ``unit_type``, ``lat``, ``lon``,
  ``period_start`` (``2026-06-01``, an ISO 8601 time with zone, or ms), ``nights`` (or
  ``period_end``, the check-out date), ``guests``, ``guest_country`` (ISO 3166-1 alpha-3);
* JSON: an array of such objects, or ``{"activities": [...]}`` in the shape of the EU
  single digital entry point (``activityId``, ``registrationNumber``, ``url``, ``address``
  object, ``numberOfGuests``, ``countryOfGuests``, ``temporal {startDatetime, endDatetime}``)
  with ``unitType`` and ``location {lat, lon}`` added.

Every row is validated like any event; a bad row is reported as ``row N: REASON at field``
(CSV rows are numbered as in a spreadsheet, the header being row 1; JSON items from 1) and
goes to the DLQ. Reports never include a value from the file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.kafka.reasons import Reason, Stage
from connectors.base import Accepted, Rejected
from connectors.emit import Emitter
from contracts.avro import AvroField
from contracts.model import Stream

DAY_MS = 86_400_000
WHOLE_ROW = ""  # the field path of a problem with the row as a whole
SDEP_NAMES = {
    "activityId": "event_id",
    "registrationNumber": "registration_number",
    "url": "listing_url",
    "unitType": "unit_type",
    "numberOfGuests": "guests",
}


@dataclass(frozen=True)
class RowRejection:
    """A rejected row: its number, reason code and field path. No value."""

    row: int
    reason: str
    field: str

    def __str__(self) -> str:
        where = f" at {self.field}" if self.field else ""
        return f"row {self.row}: {self.reason}{where}"


@dataclass(frozen=True)
class Row:
    """One row of a file: its number, the record read from it or why none could be, and the
    raw row (what goes to the DLQ when it is rejected)."""

    number: int
    record: dict[str, Any] | Rejected
    raw: Mapping[str, Any] | None = None


@dataclass
class ImportReport:
    """What an import did."""

    rows: int = 0
    accepted: int = 0
    rejections: list[RowRejection] = field(default_factory=list)


def import_activity(
    data: bytes, fmt: str, emitter: Emitter, stream: Stream, *, source: str = "rentals-file"
) -> ImportReport:
    """Validate every row of a CSV or JSON file and emit it to raw or the DLQ."""
    report = ImportReport()
    for row in read_rows(data, fmt, stream):
        report.rows += 1
        where = f"{source}#row={row.number}"
        if isinstance(row.record, Rejected):
            emitter.reject(
                stream.name, dict(row.raw) if row.raw is not None else b"", row.record, where
            )
            outcome: Accepted | Rejected = row.record
        else:
            outcome = emitter.emit(stream.name, row.record, where)
        if isinstance(outcome, Accepted):
            report.accepted += 1
        else:
            report.rejections.append(
                RowRejection(row.number, outcome.reason.value, outcome.field_path)
            )
    emitter.flush()
    return report


def read_rows(data: bytes, fmt: str, stream: Stream) -> Iterator[Row]:
    """Every row of the file, with its record or the reason it has none."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        yield Row(1, Rejected(Reason.INVALID_UTF8, "", Stage.DECODE))
        return
    if fmt == "csv":
        yield from _csv_rows(text, stream)
    else:
        yield from _json_rows(text, stream)


def _csv_rows(text: str, stream: Stream) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = stream.fields
    for cells in reader:
        raw = {k if k is not None else "?": v for k, v in cells.items()}
        try:
            yield Row(reader.line_num, _typed(cells, fields, stream), raw)
        except _BadCell as bad:
            yield Row(reader.line_num, Rejected(bad.reason, bad.path, Stage.SCHEMA), raw)


def _json_rows(text: str, stream: Stream) -> Iterator[Row]:
    try:
        doc = json.loads(text)
    except ValueError:
        yield Row(1, Rejected(Reason.MALFORMED_JSON, "", Stage.DECODE))
        return
    items = doc.get("activities") if isinstance(doc, Mapping) else doc
    if not isinstance(items, list):
        yield Row(1, Rejected(Reason.NOT_AN_OBJECT, "", Stage.DECODE))
        return
    for number, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            yield Row(number, Rejected(Reason.NOT_AN_OBJECT, "", Stage.DECODE))
            continue
        try:
            yield Row(number, _from_sdep(item, stream), item)
        except _BadCell as bad:
            yield Row(number, Rejected(bad.reason, bad.path, Stage.SCHEMA), item)


class _BadCell(Exception):  # noqa: N818 - control flow: a cell that cannot be converted
    def __init__(self, path: str, reason: Reason = Reason.WRONG_TYPE) -> None:
        super().__init__(path)
        self.path = path
        self.reason = reason


def _typed(
    row: Mapping[str | None, Any], fields: Mapping[str, AvroField], stream: Stream
) -> dict[str, Any]:
    """CSV cells (strings) converted to the schema's types; empty cells are left out."""
    if None in row:  # more cells than header columns
        raise _BadCell(WHOLE_ROW, Reason.UNKNOWN_FIELD)
    record: dict[str, Any] = {}
    period_end = row.get("period_end")
    for name, cell in row.items():
        if name is None or name == "period_end" or cell is None or cell == "":
            continue
        spec = fields.get(name)
        record[name] = cell if spec is None else _convert(name, cell, spec, stream)
    if "nights" not in record and period_end and "period_start" in record:
        record["nights"] = _nights(record["period_start"], _time_ms("period_end", period_end))
    return record


def _convert(name: str, cell: str, spec: AvroField, stream: Stream) -> Any:
    if name == stream.event_time:
        return _time_ms(name, cell)
    try:
        if spec.is_integer:
            return int(cell)
        if spec.is_numeric:
            return float(cell)
    except ValueError:
        raise _BadCell(name) from None
    return cell


def _from_sdep(item: Mapping[str, Any], stream: Stream) -> dict[str, Any]:
    """An item with our field names or the single digital entry point's, as a record."""
    record = {
        SDEP_NAMES.get(k, k): v
        for k, v in item.items()
        if k not in ("address", "countryOfGuests", "temporal", "location", "areaId")
    }
    address = item.get("address")
    if isinstance(address, Mapping):
        record["address"] = _address_line(address)
    elif address is not None:
        record["address"] = address
    countries = item.get("countryOfGuests")
    if isinstance(countries, list) and countries:
        record["guest_country"] = countries[0]
    _sdep_place_and_time(item, record)
    if isinstance(record.get(stream.event_time), str):
        record[stream.event_time] = _time_ms(stream.event_time, record[stream.event_time])
    return record


def _sdep_place_and_time(item: Mapping[str, Any], record: dict[str, Any]) -> None:
    location = item.get("location")
    if isinstance(location, Mapping):
        record.update({k: location[k] for k in ("lat", "lon") if k in location})
    temporal = item.get("temporal")
    if isinstance(temporal, Mapping) and "startDatetime" in temporal:
        start = _time_ms("temporal.startDatetime", temporal["startDatetime"])
        record["period_start"] = start
        if "endDatetime" in temporal:
            end = _time_ms("temporal.endDatetime", temporal["endDatetime"])
            record["nights"] = _nights(start, end)


def _address_line(address: Mapping[str, Any]) -> str:
    number = f"{address.get('number', '')}{address.get('letter', '') or ''}"
    addition = address.get("addition")
    street = " ".join(str(p) for p in (number, address.get("street"), addition) if p)
    town = " ".join(str(p) for p in (address.get("postalCode"), address.get("city")) if p)
    return ", ".join(p for p in (street, town) if p)


def _time_ms(path: str, value: Any) -> int:
    """A date (midnight UTC), an ISO 8601 time with zone, or ms since the epoch."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _BadCell(path) from None
    if moment.tzinfo is None:
        if len(text) > 10:  # a time without a zone is ambiguous: refuse it
            raise _BadCell(path)
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _nights(start_ms: int, end_ms: int) -> int:
    return round((end_ms - start_ms) / DAY_MS)
