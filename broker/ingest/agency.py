"""MDS Agency 2.0 on the gateway: providers push MDS objects; the contract's records come out.

Beside the native endpoint, under one root per contract, ``/mds/agency/contracts/{contract}``
(an MDS client is configured with a base URL; the contract is in it, so one token granted
several contracts uses one base URL each), the Agency paths of MDS 2.0.2
(``agency/README.md``; ``reference/agency.yaml`` of mds-openapi):

* ``POST /vehicles`` (201) and ``PUT /vehicles`` (200): register or update Vehicles, kept in
  memory by ``broker.ingest.fleet`` (type and propulsion only);
* ``GET /vehicles/{device_id}``: whether a device is registered, and as what;
* ``POST /events`` -> ``vehicle_events``, ``POST /trips`` -> ``trips``: each object is mapped
  by ``connectors.mds`` (the one MDS mapping, shared with the Provider pull) with the
  registered vehicle's type and propulsion, then goes through the stream's
  ``StreamValidator``, the duplicate filter, raw or DLQ, exactly as a native item does.

Versioning (``general-information.md``, "Versioning"): a request must ask for
``Accept: application/vnd.mds+json;version=2.0``, else 406 (MDS reads a missing Accept as
Agency 0.3, which is not served); a body is ``application/vnd.mds+json`` (version absent or
``2.0``) or ``application/json``, else 415. Every answer is ``application/vnd.mds+json;
version=2.0``.

Answers are MDS Bulk Responses, ``{version, success, total, failures, request_id}``: 201 (200
for PUT) when some item was stored (or had been: a retried duplicate), else 400, or 404 /
409 when every failure is ``unregistered`` / ``already_registered``. Each failure names the
item by its ``index`` in the array, never by a copy of it as MDS suggests (no value sent by a
provider is ever echoed: BRIEF §6), with the MDS ``error`` (``missing_param``, ``bad_param``,
``unregistered``, ``already_registered``), the MDS fields at fault in ``error_details``, and
our ``reason`` code and ``detail``. Whole-request refusals (401, 403, 404, 406, 408, 413,
415, 429, 503) are MDS Error Messages with our stable codes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

from aiohttp import web
from aiohttp.helpers import parse_mimetype

from broker.ingest.auth import ContractGrant, ProviderGrant
from broker.ingest.body import BodyLimits, RequestRefused, read_items
from broker.ingest.fairuse import FairUse
from broker.ingest.fleet import FleetRegister, Problem
from broker.ingest.framing import Item
from broker.ingest.responses import json_response, refusal
from broker.kafka.reasons import Reason
from connectors import mds
from connectors.base import Outcome, Rejected
from connectors.validate import StreamValidator, parse_json


class Gateway(Protocol):
    """What the Agency routes use of ``broker.ingest.gateway.Gateway`` (a protocol, so this
    module does not import the gateway that imports it)."""

    config: Any
    fair_use: FairUse

    async def handle(
        self, route: str, request: web.Request, answer: Any, refuse: Any
    ) -> web.Response: ...

    def provider(self, request: web.Request) -> ProviderGrant: ...

    def contract(self, provider: ProviderGrant, contract_id: str) -> ContractGrant: ...

    def validator(
        self, provider: ProviderGrant, contract_id: str, stream: str
    ) -> StreamValidator: ...

    def admitted(self, provider: ProviderGrant) -> AbstractAsyncContextManager[None]: ...

    async def store(
        self,
        items: list[Item],
        provider: ProviderGrant,
        validator: StreamValidator,
        request_id: str,
        *,
        check: Any,
        ndjson: bool = False,
    ) -> Any: ...


ROOT = "/mds/agency/contracts/{contract}"
MEDIA = f"{mds.MEDIA_TYPE};version={mds.VERSION}"
SPEC_VERSION = "2.0.2"  # the MDS release whose documents this module follows
CONNECTOR = "gateway"  # the same connector label as the native endpoint (DLQ, metrics)
UNREGISTERED = "the device is not registered: register it with POST /vehicles first"
_log = logging.getLogger(__name__)
_UNPARSABLE = frozenset({Reason.MALFORMED_JSON, Reason.INVALID_UTF8})
# A short, value-free explanation of each reason code (docs/reasons.md has the long one).
DESCRIPTIONS = {
    Reason.MISSING_FIELD: "a required field is missing",
    Reason.WRONG_TYPE: "a value has the wrong type, or is null where it may not be",
    Reason.UNKNOWN_FIELD: "a field the stream does not take",
    Reason.OUT_OF_RANGE: "a number beyond its range",
    Reason.OUTSIDE_TERRITORY: "the position is outside the contract's territory",
    Reason.EVENT_IN_FUTURE: "the time is ahead of the gateway's clock",
    Reason.TOO_LATE: "older than the stream's allowed lateness",
    Reason.CONTRACT_INACTIVE: "the time is outside the contract's validity period",
    Reason.DUPLICATE_EVENT: "this id was already received (nothing to do if this is a retry)",
    Reason.INVALID_IDENTIFIER: "an identifier that is empty or holds control characters",
    Reason.NOT_AN_OBJECT: "the item is not a JSON object",
    Reason.PAYLOAD_TOO_LARGE: "the item is over the gateway's size limit",
    Reason.INTERNAL: "an internal error of the gateway; quote the request id",
}


@dataclass(frozen=True)
class Endpoint:
    """An Agency path that carries MDS objects to one stream of the contract."""

    route: str  # the metrics label
    stream: str
    mapping: Callable[[Mapping[str, Any], mds.VehicleInfo | None], dict[str, Any]]
    sources: Mapping[str, str]  # our field -> the MDS field it comes from


EVENTS = Endpoint("agency_events", "vehicle_events", mds.event_record, mds.EVENT_SOURCES)
TRIPS = Endpoint("agency_trips", "trips", mds.trip_record, mds.TRIP_SOURCES)


class AgencyApi:
    """The Agency routes of one gateway; ``add_routes`` puts them on its application."""

    def __init__(self, gateway: Gateway, fleet: FleetRegister) -> None:
        self.gateway = gateway
        self.fleet = fleet

    def add_routes(self, app: web.Application) -> None:
        """Register the Agency paths under ``ROOT``."""
        app.router.add_post(f"{ROOT}/vehicles", self.post_vehicles)
        app.router.add_put(f"{ROOT}/vehicles", self.put_vehicles)
        app.router.add_get(f"{ROOT}/vehicles/{{device_id}}", self.get_vehicle)
        app.router.add_post(f"{ROOT}/events", self.post_events)
        app.router.add_post(f"{ROOT}/trips", self.post_trips)

    async def post_events(self, request: web.Request) -> web.Response:
        """``POST /events``: MDS 2.0 Events to ``vehicle_events``."""
        return await self.gateway.handle(EVENTS.route, request, self._events, mds_refusal)

    async def post_trips(self, request: web.Request) -> web.Response:
        """``POST /trips``: MDS 2.0 Trips to ``trips``."""
        return await self.gateway.handle(TRIPS.route, request, self._trips, mds_refusal)

    async def post_vehicles(self, request: web.Request) -> web.Response:
        """``POST /vehicles``: register Vehicles (201)."""
        return await self.gateway.handle("agency_vehicles", request, self._register, mds_refusal)

    async def put_vehicles(self, request: web.Request) -> web.Response:
        """``PUT /vehicles``: update registered Vehicles (200)."""
        return await self.gateway.handle("agency_vehicles", request, self._update, mds_refusal)

    async def get_vehicle(self, request: web.Request) -> web.Response:
        """``GET /vehicles/{device_id}``: the registered type and propulsion, or 404."""
        return await self.gateway.handle("agency_vehicles", request, self._vehicle, mds_refusal)

    async def _events(self, request: web.Request, request_id: str) -> web.Response:
        return await self._objects(request, request_id, EVENTS)

    async def _trips(self, request: web.Request, request_id: str) -> web.Response:
        return await self._objects(request, request_id, TRIPS)

    async def _register(self, request: web.Request, request_id: str) -> web.Response:
        return await self._vehicles(request, request_id, update=False)

    async def _update(self, request: web.Request, request_id: str) -> web.Response:
        return await self._vehicles(request, request_id, update=True)

    async def _objects(
        self, request: web.Request, request_id: str, endpoint: Endpoint
    ) -> web.Response:
        gateway = self.gateway
        provider = gateway.provider(request)
        _negotiate(request)
        contract_id = request.match_info["contract"]
        validator = gateway.validator(provider, contract_id, endpoint.stream)
        async with gateway.admitted(provider):
            items = await _items(request, gateway.config.body_limits)
            check = self._check(provider.id, contract_id, endpoint)
            outcome = await gateway.store(items, provider, validator, request_id, check=check)
        failures = [failure(i, r, endpoint.sources) for i, r in outcome.failures]
        duplicates = sum(1 for _, r in outcome.failures if r.reason is Reason.DUPLICATE_EVENT)
        status = bulk_status(outcome.accepted + duplicates, failures, ok=201)
        body = bulk(outcome.accepted, len(items), failures, request_id)
        return json_response(status, body, request_id, MEDIA)

    def _check(
        self, provider: str, contract: str, endpoint: Endpoint
    ) -> Callable[[StreamValidator, bytes, int], Outcome]:
        """The gateway's per-item check: parse, map with the registered vehicle, validate."""

        def check(validator: StreamValidator, data: bytes, now_ms: int) -> Outcome:
            parsed = parse_json(data)
            if isinstance(parsed, Rejected):
                return parsed
            if not isinstance(parsed, Mapping):
                return Rejected.of(Reason.NOT_AN_OBJECT)
            vehicle = self.fleet.lookup(provider, contract, parsed.get("device_id"))
            record = endpoint.mapping(parsed, vehicle.info if vehicle is not None else None)
            result = validator.validate_json(record, now_ms=now_ms, connector=CONNECTOR, source="")
            if (
                vehicle is None
                and isinstance(result, Rejected)
                and result.reason is Reason.MISSING_FIELD
                and result.field_path in ("vehicle_type", "propulsion")
            ):
                # Only a registered vehicle gives these: say so, in the DLQ and the answer.
                return replace(result, detail=UNREGISTERED)
            return result

        return check

    async def _vehicles(
        self, request: web.Request, request_id: str, *, update: bool
    ) -> web.Response:
        gateway = self.gateway
        provider = gateway.provider(request)
        _negotiate(request)
        contract_id = request.match_info["contract"]
        gateway.contract(provider, contract_id)
        async with gateway.admitted(provider):
            items = await _items(request, gateway.config.body_limits)
            gateway.fair_use.charge(provider.id, len(items))
            failures = []
            for index, item in enumerate(items):
                problem = self._vehicle_item(provider.id, contract_id, item, update=update)
                if problem is not None:
                    failures.append(_vehicle_failure(index, problem))
        success = len(items) - len(failures)
        _log.info(
            "request %s: %s vehicles %d %s, %d refused",
            request_id,
            contract_id,
            success,
            "updated" if update else "registered",
            len(failures),
        )
        status = bulk_status(success, failures, ok=200 if update else 201)
        return json_response(
            status, bulk(success, len(items), failures, request_id), request_id, MEDIA
        )

    def _vehicle_item(
        self, provider: str, contract: str, item: Item, *, update: bool
    ) -> Problem | None:
        if item.oversized:
            return Problem("bad_param", ("item",), _describe(Reason.PAYLOAD_TOO_LARGE))
        parsed = parse_json(item.data)
        if isinstance(parsed, Rejected):  # an element that is not JSON: the body is not JSON
            raise RequestRefused(
                400, parsed.reason.value, "the body is not a JSON array of JSON values"
            )
        return self.fleet.register(provider, contract, parsed, update=update)

    async def _vehicle(self, request: web.Request, request_id: str) -> web.Response:
        provider = self.gateway.provider(request)
        _negotiate(request)
        contract_id = request.match_info["contract"]
        self.gateway.contract(provider, contract_id)
        found = self.fleet.lookup(provider.id, contract_id, request.match_info["device_id"])
        if found is None:
            raise RequestRefused(404, "unregistered", "this device_id is not registered")
        vehicle = {
            "vehicle_type": found.vehicle_type,
            "propulsion_types": list(found.propulsion_types),
        }
        body = {"version": SPEC_VERSION, "vehicles": [vehicle], "request_id": request_id}
        return json_response(200, body, request_id, MEDIA)


def failure(index: int, rejected: Rejected, sources: Mapping[str, str]) -> dict[str, Any]:
    """An MDS Failure Details for a rejected item: by index, MDS error and fields, our reason."""
    fields = mds.source_fields(rejected.field_path, sources) or ["item"]
    if rejected.detail == UNREGISTERED:
        error, fields = "unregistered", ["device_id"]
    elif rejected.reason is Reason.MISSING_FIELD:
        error = "missing_param"
    else:
        error = "bad_param"
    entry: dict[str, Any] = {
        "item": {"index": index},
        "error": error,
        "error_description": _describe(rejected.reason, rejected.detail),
        "error_details": fields,
        "reason": rejected.reason.value,
    }
    if rejected.detail:
        entry["detail"] = rejected.detail
    return entry


def bulk(
    success: int, total: int, failures: list[dict[str, Any]], request_id: str
) -> dict[str, Any]:
    """An MDS Bulk Response (plus the MDS version and our request id)."""
    return {
        "version": SPEC_VERSION,
        "success": success,
        "total": total,
        "failures": failures,
        "request_id": request_id,
    }


def bulk_status(stored: int, failures: list[dict[str, Any]], *, ok: int) -> int:
    """``ok`` if any item is stored, else 404 / 409 when every failure says so, else 400."""
    if stored or not failures:
        return ok
    errors = {f["error"] for f in failures}
    if errors == {"unregistered"}:
        return 404
    if errors == {"already_registered"}:
        return 409
    return 400


def mds_refusal(refused: RequestRefused, request_id: str) -> web.Response:
    """A whole-request refusal as an MDS Error Message (our stable code in ``error``)."""
    body = {
        "error": refused.code,
        "error_description": refused.message,
        "error_details": [refused.code],
        "request_id": request_id,
    }
    return refusal(refused, request_id, body, MEDIA)


def _describe(reason: Reason, detail: str = "") -> str:
    text = f"{reason.value}: {DESCRIPTIONS.get(reason, 'see docs/reasons.md')}"
    return f"{text}; {detail}" if detail else text


def _vehicle_failure(index: int, problem: Problem) -> dict[str, Any]:
    return {
        "item": {"index": index},
        "error": problem.error,
        "error_description": problem.description,
        "error_details": list(problem.fields),
    }


async def _items(request: web.Request, limits: BodyLimits) -> list[Item]:
    """The body's items: a non-empty JSON array of an accepted media type (400, 415)."""
    _check_body_type(request)
    items = await read_items(request, limits, ndjson=False)
    if not items:
        raise RequestRefused(400, "EMPTY_BATCH", "send a JSON array of at least one item")
    return items


def _negotiate(request: web.Request) -> None:
    """406 unless ``Accept`` asks for MDS 2.0 (``general-information.md``, "Versioning")."""
    for part in request.headers.get("Accept", "").split(","):
        kind = parse_mimetype(part.strip())
        if _media(kind) == mds.MEDIA_TYPE and kind.parameters.get("version") == mds.VERSION:
            return
    msg = (
        f"send Accept: {MEDIA}; MDS 2.0 is the only version served "
        "(without a version MDS means Agency 0.3)"
    )
    raise RequestRefused(406, "NOT_ACCEPTABLE", msg)


def _check_body_type(request: web.Request) -> None:
    kind = parse_mimetype(request.headers.get("Content-Type", ""))
    media, version = _media(kind), kind.parameters.get("version")
    if media == "application/json" or (media == mds.MEDIA_TYPE and version in (None, mds.VERSION)):
        return
    msg = f"send Content-Type: {MEDIA} (a JSON array of MDS 2.0 objects)"
    raise RequestRefused(415, "UNSUPPORTED_MEDIA_TYPE", msg)


def _media(kind: Any) -> str:
    suffix = f"+{kind.suffix}" if kind.suffix else ""
    return f"{kind.type}/{kind.subtype}{suffix}".lower()
