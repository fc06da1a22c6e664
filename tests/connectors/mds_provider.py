"""A local MDS Provider 2.0 API whose clock advances in real time, serving a simulated fleet.

Follows MDS 2.0.2 ``provider/README.md``: ``Accept: application/vnd.mds+json;version=2.0``
or 406; ``/events/recent?start_time=&end_time=`` (both required, at most two weeks back,
else 400; paginated through ``links.next``, ``null`` on the last page); ``/trips?end_time=
YYYY-MM-DDTHH`` (400 without it, 404 for an hour not over, 202 while the hour is not
processed yet, else 200 with every trip ending in it, unpaginated); ``/vehicles`` (paginated)
and ``/vehicles/{device_id}``. Responses carry ``version`` and the MDS media type.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.simulate import DEFAULT_START_MS, SimOptions
from connectors.simulate.mds import MdsFleet
from contracts import Contract, load_contracts
from contracts.copies import example_data, write_contract

MEDIA = "application/vnd.mds+json;version=2.0"
SIM_START = DEFAULT_START_MS + 3_600_000  # 07:00Z, 09:00 in Lyon: the morning rush
TOKEN = "mds-provider-token"  # noqa: S105 - a test token
HOUR_MS = 3_600_000
_HOUR = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ProviderApi:
    """Handlers of the provider; ``requests`` lists every path and query it served."""

    start_ms: int
    page_size: int = 50
    ready_after_ms: int = 0  # /trips answers 202 until the hour ended this long ago
    delay_s: float = 0.0  # each answer waits this long (a slow provider)
    fleet_size: int = 60
    shift_ms: int = 0  # published times = simulated times + shift_ms
    requests: list[str] = field(default_factory=list)
    base: str = ""

    def __post_init__(self) -> None:
        options = SimOptions(seed=7, start_ms=self.start_ms, size=self.fleet_size)
        self.fleet = MdsFleet(options, shift_ms=self.shift_ms)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._checks])
        app.router.add_get("/events/recent", self.events)
        app.router.add_get("/trips", self.trips)
        app.router.add_get("/vehicles", self.vehicles)
        app.router.add_get("/vehicles/{device_id}", self.vehicle)
        return app

    @web.middleware
    async def _checks(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.headers.get("Accept", "").replace(" ", "") != MEDIA:
            return web.json_response({"error": "not_acceptable"}, status=406)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return await handler(request)

    async def events(self, request: web.Request) -> web.Response:
        try:
            start, end = int(request.query["start_time"]), int(request.query["end_time"])
        except (KeyError, ValueError):
            return _bad("start_time and end_time are required")
        now = now_ms()
        if min(start, end) < now - 14 * 24 * HOUR_MS:
            return _bad("more than two weeks ago")
        self.fleet.advance(now)
        items = self.fleet.events_between(start, min(end, now + 1))
        offset = int(request.query.get("offset", "0"))
        page = items[offset : offset + self.page_size]
        following = None
        if offset + self.page_size < len(items):
            following = f"{self.base}/events/recent?start_time={start}&end_time={end}"
            following += f"&offset={offset + self.page_size}"
        return _mds({"events": page, "links": {"next": following}})

    async def trips(self, request: web.Request) -> web.Response:
        hour = request.query.get("end_time", "")
        if not _HOUR.fullmatch(hour):
            return _bad("end_time=YYYY-MM-DDTHH is required")
        start = int(datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC).timestamp() * 1000)
        now = now_ms()
        if start + HOUR_MS > now:
            raise web.HTTPNotFound()  # not yet in the past
        if start + HOUR_MS + self.ready_after_ms > now:
            return web.Response(status=202)
        self.fleet.advance(start + HOUR_MS)
        return _mds({"trips": self.fleet.trips_ending_between(start, start + HOUR_MS)})

    async def vehicles(self, request: web.Request) -> web.Response:
        self.fleet.advance(now_ms())
        listed = list(self.fleet.vehicles.values())
        offset = int(request.query.get("offset", "0"))
        following = None
        if offset + self.page_size < len(listed):
            following = f"{self.base}/vehicles?offset={offset + self.page_size}"
        page = listed[offset : offset + self.page_size]
        return _mds({"vehicles": page, "links": {"next": following}})

    async def vehicle(self, request: web.Request) -> web.Response:
        found = self.fleet.vehicles.get(request.match_info["device_id"])
        if found is None:
            raise web.HTTPNotFound()
        return _mds({"vehicles": [found]})


def _mds(body: dict[str, Any]) -> web.Response:
    response = web.json_response({"version": "2.0.2", **body})
    response.headers["Content-Type"] = MEDIA
    return response


def _bad(reason: str) -> web.Response:
    return web.json_response({"error": "bad_param", "error_description": reason}, status=400)


def late_contract(tmp_path: Path, events: str = "PT6H", trips: str = "PT6H") -> Contract:
    """Micromobility that accepts a catch-up of a few hours (a unique id: its own topics)."""
    data = example_data("micromobility.yaml")
    data["id"] = f"t{uuid.uuid4().hex[:10]}"
    data["streams"][0]["allowed_lateness"] = events
    data["streams"][1]["allowed_lateness"] = trips
    return load_contracts([write_contract(data, tmp_path)], now=datetime.now(UTC))[0]
