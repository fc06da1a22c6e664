"""MDS Provider 2.0: state semantics, vehicles, aligned windows, hourly trips, 202, pages.

Unit tests: the poller against a spec-following local provider (``mds_provider.py``) whose
clock is real, the Outbox on an in-memory writer, and a poller clock that moves on every
read as a real one does (the bug: a poll that chases the clock never ends).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from broker.kafka.serde import decode_body
from connectors import mds
from connectors.base import ConnectorError
from connectors.mds_poller import HOUR_MS, MdsPoller, MdsSettings
from connectors.outbox import Outbox
from connectors.poll import aiohttp_fetch
from connectors.simulate import DEFAULT_START_MS
from connectors.validate import Router
from contracts import Contract
from policies.compile import compile_contract
from policies.pseudonymise import KeyRing
from policies.testing import run_stream
from tests.connectors.mds_provider import SIM_START, TOKEN, ProviderApi, late_contract, now_ms
from tests.ingest.conftest import MemoryWriter

BELLECOUR = {"lat": 45.7578, "lng": 4.832}


class MovingClock:
    """The real clock, as the poller sees it: it moves during a poll. Sleeping is instant."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def now_ms(self) -> int:
        return now_ms()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def trip_end_event(i: int, minute: int) -> dict[str, Any]:
    """A schema-valid MDS 2.0 event: a trip ended, the vehicle is available again."""
    return {
        "device_id": f"2b6c6a0e-0d4f-4f2a-9a6b-5c1f0e3d{i:04x}",
        "provider_id": "d45c942d-4a74-5c86-85b6-b28db00415cb",
        "event_id": f"0c3d9a52-7a5e-4c51-8e16-3f0b6a1a{i:04x}",
        "vehicle_state": "available",
        "event_types": ["trip_end"],
        "timestamp": DEFAULT_START_MS + minute * 60_000,
        "location": BELLECOUR,
        "battery_percent": 80,
        "trip_ids": [f"5f0b4a8e-1b7c-4c2d-9e3f-6a7b8c9d{i:04x}"],
    }


def test_an_available_state_after_trip_end_reaches_the_availability_view(
    examples: dict[str, Contract],
) -> None:
    # MDS 2.0: vehicle_state is the state after the event; event_types only say why.
    vehicle = SimpleNamespace(vehicle_type="scooter_standing", propulsion="electric")
    records = [mds.event_record(trip_end_event(i, 3), vehicle) for i in range(12)]
    assert {r["event_type"] for r in records} == {"available"}
    assert records[0]["trip_id"] == trip_end_event(0, 3)["trip_ids"][0]  # the link is kept
    view = compile_contract(examples["lyon-micromobility"], keyring=KeyRing())["availability"]
    run = run_stream(view, records, "vehicle_id", partitions=1, batch=4)
    assert run.outcome.filtered == 0
    assert [dict(g.measures) for r in run.releases for g in r.groups] == [
        {"events": 12, "vehicles": 12}
    ]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("available", "available"),
        ("reserved", "reserved"),
        ("on_trip", "on_trip"),
        ("stopped", "on_trip"),
        ("non_operational", "unavailable"),
        ("non_contactable", "unavailable"),
        ("removed", "removed"),
        ("missing", "removed"),
        ("elsewhere", "removed"),
    ],
)
def test_every_vehicle_state_has_an_event_type(state: str, expected: str) -> None:
    event = {**trip_end_event(1, 0), "vehicle_state": state, "event_types": ["unspecified"]}
    assert mds.event_record(event, None)["event_type"] == expected


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (["electric"], "electric"),
        (["human", "electric_assist"], "electric_assist"),
        (["human", "electric"], "electric"),
        (["human"], "human"),
        (["combustion_diesel"], "combustion"),
        (["hybrid"], "electric"),
    ],
)
def test_vehicle_propulsion_is_the_motorised_one(types: list[str], expected: str) -> None:
    info = mds.vehicle_info({"vehicle_type": "bicycle", "propulsion_types": types})
    assert (info.vehicle_type, info.propulsion) == ("bicycle", expected)


def test_a_record_without_vehicle_information_lacks_the_type_for_the_validator(
    examples: dict[str, Contract],
) -> None:
    record = mds.event_record(trip_end_event(1, 0), None)
    assert "vehicle_type" not in record and "propulsion" not in record
    router = Router(examples.values())
    outcome = router.validate_json(
        "lyon-micromobility",
        "vehicle_events",
        record,
        now_ms=record["timestamp"],
        connector="mds",
        source="t",
    )
    assert getattr(outcome, "field_path", None) in ("vehicle_type", "propulsion")


@pytest.fixture
async def provider() -> AsyncIterator[Callable[..., Any]]:
    servers: list[TestServer] = []

    async def make(**options: Any) -> ProviderApi:
        real_start = now_ms() - 5 * HOUR_MS
        api = ProviderApi(start_ms=SIM_START, shift_ms=real_start - SIM_START, **options)
        server = TestServer(api.app(), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        api.base = str(server.make_url("")).rstrip("/")
        return api

    yield make
    for server in servers:
        await server.close()


def poller(
    api: ProviderApi, contract: Contract, tmp_path: Path, session: ClientSession, **kw: Any
) -> tuple[MdsPoller, MemoryWriter]:
    writer = MemoryWriter()
    clock = MovingClock()
    outbox = Outbox(
        Router([contract]), contract.id, writer=lambda: writer, connector="mds", clock=clock
    )
    settings = MdsSettings(
        base_url=api.base,
        token=TOKEN,
        checkpoint=tmp_path / "mds.json",
        since_ms=kw.pop("since_ms", now_ms() - 4 * HOUR_MS - 17_123),
        **kw,
    )
    return MdsPoller(settings, aiohttp_fetch(session), clock, outbox), writer


def raw(writer: MemoryWriter, contract: Contract, stream: str) -> list[dict[str, Any]]:
    schema = Router([contract]).validators[(contract.id, stream)].schema.parsed
    return [decode_body(r.value, schema) for r in writer.topic(contract.topic_raw(stream))]


async def test_a_catch_up_is_a_few_aligned_windows_and_ends_though_the_clock_moves(
    provider: Callable[..., Any], tmp_path: Path
) -> None:
    api = await provider(page_size=40)
    contract = late_contract(tmp_path)
    async with ClientSession() as session:
        mds_poller, writer = poller(api, contract, tmp_path, session)
        started = time.monotonic()
        assert await mds_poller.poll_once() == 60.0
        elapsed = time.monotonic() - started
    windows = [q for q in api.requests if q.startswith("/events/recent") and "offset" not in q]
    bounds = [tuple(int(p.split("=")[1]) for p in q.split("?")[1].split("&")) for q in windows]
    assert 4 <= len(bounds) <= 6  # four hours and a bit, one hour at most per request
    assert all(end - start <= HOUR_MS for start, end in bounds)
    assert all(end % 60_000 == 0 for _, end in bounds)  # on the interval's grid
    assert [s for s, _ in bounds[1:]] == [e for _, e in bounds[:-1]]  # contiguous
    assert any("offset=" in q for q in api.requests)  # links.next was followed
    trips = [q for q in api.requests if q.startswith("/trips")]
    # The hours that are over (four, or three in the minute after an hour starts), once each.
    assert 3 <= len(trips) <= 5 and len(set(trips)) == len(trips)
    assert elapsed < 10
    events = raw(writer, contract, "vehicle_events")
    assert len(events) == len({e["event_id"] for e in events}) > 50
    kinds = {(e["vehicle_type"], e["propulsion"]) for e in events}
    assert kinds == {("scooter_standing", "electric"), ("bicycle", "electric_assist")}
    assert len(raw(writer, contract, "trips")) > 20


async def test_a_trip_hour_not_ready_is_asked_again_at_the_next_poll(
    provider: Callable[..., Any], tmp_path: Path
) -> None:
    api = await provider(ready_after_ms=10 * HOUR_MS)  # every hour answers 202
    contract = late_contract(tmp_path)
    async with ClientSession() as session:
        since = now_ms() - 4 * HOUR_MS
        mds_poller, writer = poller(api, contract, tmp_path, session, since_ms=since)
        await mds_poller.poll_once()
        await mds_poller.poll_once()
    trips = [q for q in api.requests if q.startswith("/trips")]
    assert len(trips) == 2 and trips[0] == trips[1]  # the first hour, again
    assert mds_poller.stats.trips_not_ready == 2
    assert raw(writer, contract, "trips") == []
    assert mds_poller.read_up_to()["trips"] == since - since % HOUR_MS  # not moved on
    assert "trips" not in json.loads((tmp_path / "mds.json").read_text())


async def test_a_second_poll_asks_only_for_the_new_step(
    provider: Callable[..., Any], tmp_path: Path
) -> None:
    api = await provider()
    contract = late_contract(tmp_path)
    async with ClientSession() as session:
        mds_poller, _ = poller(api, contract, tmp_path, session, interval_s=1.0)
        await mds_poller.poll_once()
        before = len(api.requests)
        step = now_ms() // 1000
        while now_ms() // 1000 == step:  # the provider's clock is real: a step passes
            await asyncio.sleep(0.05)
        await mds_poller.poll_once()
    new = [q for q in api.requests[before:] if q.startswith("/events")]
    assert 1 <= len(new) <= 2
    assert not [q for q in api.requests[before:] if q.startswith(("/trips", "/vehicles?"))]


async def test_an_unknown_device_is_looked_up_once(
    provider: Callable[..., Any], tmp_path: Path
) -> None:
    api = await provider()
    contract = late_contract(tmp_path)
    async with ClientSession() as session:
        mds_poller, writer = poller(api, contract, tmp_path, session)
        await mds_poller._refresh_vehicles(now_ms())
        known = dict(mds_poller._vehicles)
        device = next(iter(known))
        del mds_poller._vehicles[device]
        assert await mds_poller._vehicle(device) == known[device]
        assert await mds_poller._vehicle(device) == known[device]
        assert await mds_poller._vehicle("not-a-device") is None
    lookups = [q for q in api.requests if q.startswith("/vehicles/")]
    assert len(lookups) == 2  # each device once


async def test_a_provider_that_does_not_serve_2_0_is_a_clear_error(
    provider: Callable[..., Any], tmp_path: Path
) -> None:
    api = await provider()
    contract = late_contract(tmp_path)
    async with ClientSession() as session:
        mds_poller, _ = poller(api, contract, tmp_path, session)
        mds_poller._headers = lambda: {  # type: ignore[method-assign]
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/vnd.mds+json;version=1.2",
        }
        with pytest.raises(Exception, match="406, the provider does not serve MDS 2.0"):
            await mds_poller.poll_once()


async def test_a_crash_mid_pages_resumes_from_the_checkpoint_without_losing_a_page(
    provider: Callable[..., Any], tmp_path: Path
) -> None:
    api = await provider(page_size=5)
    contract = late_contract(tmp_path)
    since = now_ms() - 2 * HOUR_MS
    async with ClientSession() as session:
        inner = aiohttp_fetch(session)
        crashed: list[str] = []

        async def crash_once(url: str, headers: Any) -> Any:
            if "/events/recent" in url and "offset=15" in url and not crashed:
                crashed.append(url)
                msg = "connection reset (simulated crash)"
                raise ConnectorError(msg)
            return await inner(url, headers)

        first, writer = poller(api, contract, tmp_path, session, since_ms=since, trips=False)
        first.fetch = crash_once
        with pytest.raises(ConnectorError):
            await first.poll_once()
        saved = json.loads((tmp_path / "mds.json").read_text())["events"]
        assert saved["next_url"].endswith("offset=15")
        # A new process: the same checkpoint file, nothing else carried over.
        second, again = poller(api, contract, tmp_path, session, since_ms=since, trips=False)
        await second.poll_once()
    ids = [e["event_id"] for e in raw(writer, contract, "vehicle_events")]
    ids += [e["event_id"] for e in raw(again, contract, "vehicle_events")]
    first_window = next(q for q in api.requests if q.startswith("/events/recent"))
    window = first_window.split("?")[1]  # as the provider saw it
    start, end = (int(p.split("=")[1]) for p in window.split("&"))
    expected = [e["event_id"] for e in api.fleet.events_between(start, end)]
    assert ids[: len(expected)] == expected  # each once, in order, nothing skipped
    assert len(ids) == len(set(ids))
