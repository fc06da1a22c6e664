"""What a provider can make a pull connector fetch and hold is bounded.

Before: ``aiohttp_fetch`` read any answer whole (a 10 GB feed, or a gzip bomb, ran the
connector out of memory); the MDS poller refused only a ``links.next`` to the page itself, so
A -> B -> A, or a chain that never ends, looped for ever; it sent its bearer token to
whatever host (or ``http://``) ``links.next`` named; a ``/vehicles/{id}`` answer other than
200/404 stopped the connector; and GBFS sent a stale snapshot's vehicles to the DLQ again
on every poll (TOO_LATE each time). Local servers on 127.0.0.1 play the providers.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from connectors.base import ConnectorError
from connectors.mds_poller import MdsPoller, MdsSettings
from connectors.outbox import Outbox
from connectors.poll import Fetch, HttpResponse, ResponseTooLarge, aiohttp_fetch
from connectors.pollers import GbfsPoller, GbfsSettings, rotation_counter
from connectors.validate import H_REASON, Router
from contracts import Contract
from tests.connectors.outbox_support import list_outbox
from tests.connectors.test_gbfs_pull import HOUR_MS, System, raw_records, real_contract
from tests.ingest.conftest import FakeClock, ListSink, MemoryWriter

Routes = Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Routes], Awaitable[str]]]:
    """``await serve({path: handler})`` -> base URL of a local server on 127.0.0.1."""
    servers: list[TestServer] = []

    async def make(routes: Routes) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield make
    for server in servers:
        await server.close()


# ---------------------------------------------------------------- answer size


async def test_an_answer_over_the_cap_is_an_error_not_memory(
    serve: Callable[[Routes], Awaitable[str]],
) -> None:
    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to go by
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    async def bomb(request: web.Request) -> web.Response:
        body = gzip.compress(b"{" + b" " * 1_000_000 + b"}")  # ~1 KB on the wire
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    async def fits(request: web.Request) -> web.Response:
        return web.Response(body=b"z" * 4096)

    base = await serve({"/declared": declared, "/streamed": streamed, "/bomb": bomb, "/fits": fits})
    async with ClientSession() as session:
        fetch = aiohttp_fetch(session, max_bytes=4096)
        for path in ("/declared", "/streamed", "/bomb"):
            with pytest.raises(ResponseTooLarge, match="more than 0.00390625 MiB"):
                await fetch(f"{base}{path}", {})
        assert (await fetch(f"{base}/fits", {})).body == b"z" * 4096


# ---------------------------------------------------------------- MDS pagination


class MdsPages:
    """A provider with no vehicles whose ``/events/recent`` pages link as ``next_of`` says."""

    def __init__(
        self, next_of: Callable[[int, str], str | None], events: list[dict[str, Any]] | None = None
    ) -> None:
        self.next_of = next_of
        self.base = ""
        self.requests: list[str] = []
        self.items = events or []

    def routes(self) -> Routes:
        return {
            "/vehicles": self.vehicles,
            "/vehicles/{device}": self.device,
            "/events/recent": self.events,
        }

    async def vehicles(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        return web.json_response({"version": "2.0.2", "vehicles": [], "links": {"next": None}})

    async def device(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        return web.json_response({"error": "no"}, status=int(request.query.get("status", "403")))

    async def events(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        page = int(request.query.get("page", "0"))
        following = self.next_of(page, self.base)
        body = {"version": "2.0.2", "events": self.items, "links": {"next": following}}
        return web.json_response(body)


def guarded(fetch: Fetch, limit: int = 60) -> Fetch:
    """``fetch``, failing the test (not hanging it) after ``limit`` requests."""
    count = [0]

    async def limited(url: str, headers: Mapping[str, str]) -> HttpResponse:
        count[0] += 1
        if count[0] > limit:
            pytest.fail(f"the poller kept fetching: more than {limit} requests in one poll")
        return await fetch(url, headers)

    return limited


def mds_poller(
    base: str, contract: Contract, tmp_path: Path, fetch: Fetch, **settings: Any
) -> MdsPoller:
    now = int(datetime.now(UTC).timestamp() * 1000)
    clock = FakeClock(now)
    writer = MemoryWriter()
    outbox = Outbox(
        Router([contract]), contract.id, writer=lambda: writer, connector="mds", clock=clock
    )
    options = MdsSettings(
        base_url=base,
        token="the-token",  # noqa: S106 - a test token
        checkpoint=tmp_path / "mds.json",
        since_ms=now - 5 * 60_000,
        lag_ms=0,
        trips=False,
        **settings,
    )
    return MdsPoller(options, guarded(fetch), clock, outbox)


@pytest.mark.parametrize(
    ("next_of", "says"),
    [
        # page 0 -> page 1 -> page 0 (another URL than the one just read: not "the same page")
        (lambda page, _: f"?page={1 - page}&start_time=0", "already read in this poll"),
        (lambda page, _: f"?page={page + 1}", "more than 20 pages"),  # never ends
    ],
    ids=["A->B->A", "endless"],
)
async def test_a_pagination_that_never_ends_is_a_clear_error(
    serve: Callable[[Routes], Awaitable[str]],
    mobility: Contract,
    tmp_path: Path,
    next_of: Callable[[int, str], str | None],
    says: str,
) -> None:
    provider = MdsPages(next_of)
    provider.base = await serve(provider.routes())
    async with ClientSession() as session:
        poller = mds_poller(
            provider.base, mobility, tmp_path, aiohttp_fetch(session), max_pages_per_poll=20
        )
        with pytest.raises(ConnectorError, match=says):
            await poller.poll_once()
    assert len(provider.requests) <= 23


async def test_links_next_to_another_origin_gets_no_token(
    serve: Callable[[Routes], Awaitable[str]], mobility: Contract, tmp_path: Path
) -> None:
    other = MdsPages(lambda page, _: None)
    elsewhere = await serve(other.routes())  # another port: another origin
    provider = MdsPages(lambda page, _: f"{elsewhere}/events/recent?page=1")
    provider.base = await serve(provider.routes())
    async with ClientSession() as session:
        poller = mds_poller(provider.base, mobility, tmp_path, aiohttp_fetch(session))
        with pytest.raises(ConnectorError, match="another scheme, host or port") as raised:
            await poller.poll_once()
    assert other.requests == []
    assert elsewhere not in str(raised.value)


@pytest.mark.parametrize(
    ("base", "link", "allowed"),
    [
        ("https://mds.example/api", "/api/events/recent?page=2", True),
        ("https://mds.example/api", "https://mds.example:443/api/x", True),
        ("https://mds.example/api", "HTTPS://MDS.EXAMPLE/api/x", True),
        ("https://mds.example/api", "http://mds.example/api/x", False),  # downgrade
        ("https://mds.example/api", "https://mds.example:8443/api/x", False),
        ("https://mds.example/api", "https://evil.example/api/x", False),
        ("https://mds.example/api", "//evil.example/api/x", False),
        ("https://mds.example/api", "https://mds.example.evil.example/x", False),
        ("https://mds.example/api", "file:///etc/passwd", False),
        ("https://mds.example/api", "https://mds.example:99999/x", False),
    ],
)
def test_only_the_base_urls_origin_is_followed(
    mobility: Contract, tmp_path: Path, base: str, link: str, allowed: bool
) -> None:
    async def never(url: str, headers: Mapping[str, str]) -> HttpResponse:
        raise AssertionError

    poller = mds_poller(base, mobility, tmp_path, never)
    page = f"{base}/events/recent?page=1"
    if allowed:
        assert poller._next(page, link) is not None
    else:
        with pytest.raises(ConnectorError, match="another scheme, host or port"):
            poller._next(page, link)


@pytest.mark.parametrize("status", [400, 403, 410, 422])
async def test_a_device_lookup_answered_4xx_is_an_unknown_device(
    serve: Callable[[Routes], Awaitable[str]],
    mobility: Contract,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    device = "2b6c6a0e-0d4f-4f2a-9a6b-5c1f0e3d0007"
    event = {"device_id": device, "event_id": "e-1", "vehicle_state": "available"}
    provider = MdsPages(lambda page, _: None, [event, event])
    provider.base = await serve(provider.routes())
    async with ClientSession() as session:
        inner = aiohttp_fetch(session)

        async def with_status(url: str, headers: Mapping[str, str]) -> HttpResponse:
            return await inner(f"{url}?status={status}" if device in url else url, headers)

        poller = mds_poller(provider.base, mobility, tmp_path, with_status)
        with caplog.at_level(logging.DEBUG, logger="connectors"):
            await poller.poll_once()  # two events of the device: one lookup
    assert poller.stats.unknown_devices == 1
    assert [r for r in provider.requests if r.startswith("/vehicles/")] == [
        f"/vehicles/{device}?status={status}"
    ]
    ours = [r for r in caplog.records if r.name.startswith("connectors")]
    assert any("1 device lookups answered 4xx" in r.getMessage() for r in ours)
    assert not [r for r in ours if device in r.getMessage()]


# ---------------------------------------------------------------- GBFS stale snapshot


async def test_a_stale_snapshot_polled_again_adds_nothing_to_the_dlq(
    serve: Callable[[Routes], Awaitable[str]], tmp_path: Path
) -> None:
    clock = FakeClock(int(datetime.now(UTC).timestamp() * 1000) // 1000 * 1000)
    system = System(clock.now_ms)
    system.last_updated_offset_ms = -HOUR_MS  # stuck an hour ago, the same document each poll
    system.base = await serve(system.routes())
    contract, sink = real_contract(tmp_path), ListSink()
    outbox = list_outbox(Router([contract]), contract.id, sink, clock.now_ms, "gbfs")
    settings = GbfsSettings(feed_url=f"{system.base}/gbfs", provider_id="p-1")
    async with ClientSession() as session:
        poller = GbfsPoller(
            settings, aiohttp_fetch(session), clock, outbox, rotation_counter(CollectorRegistry())
        )
        for _ in range(4):
            await poller.poll_once()
        assert [dict(h)[H_REASON] for *_, h in sink.topic("dlq.")] == [b"TOO_LATE"] * 2
        system.last_updated_offset_ms = 0  # fresh again
        await poller.poll_once()
    assert len(sink.topic("dlq.")) == 2
    assert sorted(r["vehicle_id"] for r in raw_records(sink, contract)) == [
        "just-reported",
        "parked-an-hour",
    ]
