"""``respublica web`` against hostile clients: other host names and sites, stream floods.

The real application on 127.0.0.1, authenticated to the session's broker (it lists the
readable views in the background); plain HTTP clients play the hostile page and the flood.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from broker.kafka.settings import KafkaSettings
from broker.web.guard import HostError, allowed_host, allowed_hosts
from broker.web.streams import StreamLimits
from tests.web.support import until, web_client

pytestmark = pytest.mark.integration
NAVIGATION = {
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Dest": "document",
}


async def test_only_its_own_host_names_are_answered(kafka_settings: KafkaSettings) -> None:
    async with web_client(kafka_settings, [], allowed_hosts=("analytics.city.example",)) as (
        client,
        _,
    ):
        port = client.port
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"[::1]:{port}",
            "Analytics.City.Example",
        ):
            answer = await client.get("/api/views", headers={"Host": host})
            assert answer.status == 200, host
            assert answer.headers["Cache-Control"] == "no-store"
        # A rebound name (the attacker's domain now pointing at 127.0.0.1), another port, none.
        for host in (
            f"rebind.attacker.example:{port}",
            "analytics.city.example:8443",
            f"127.0.0.1:{port + 1}",
            "",
        ):
            answer = await client.get("/api/views", headers={"Host": host})
            assert answer.status == 421, host
            assert "rebind" not in await answer.text()
        # A probe of an orchestrator reaches /healthz by the pod's address.
        answer = await client.get("/healthz", headers={"Host": "10.1.2.3:8090"})
        assert answer.status in (200, 503)


async def test_cross_site_requests_are_refused_but_a_link_still_opens_a_page(
    kafka_settings: KafkaSettings,
) -> None:
    async with web_client(kafka_settings, []) as (client, _):
        own = f"http://127.0.0.1:{client.port}"
        refused = [
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "https://attacker.example"},
            {"Origin": "null"},
            {"Origin": f"http://127.0.0.1:{client.port}.attacker.example"},
            {**NAVIGATION, "Sec-Fetch-Dest": "iframe"},
        ]
        for headers in refused:
            for path in ("/api/views", "/api/events", "/exports/c/v.csv"):
                answer = await client.get(path, headers=headers)
                assert answer.status == 403, (path, headers)
        for headers in (
            {"Sec-Fetch-Site": "same-origin", "Origin": own},
            {"Sec-Fetch-Site": "none"},
            {},
        ):
            assert (await client.get("/api/views", headers=headers)).status == 200, headers
        # A link from another site opens the index page (a static file); its data stays closed.
        assert (await client.get("/", headers=NAVIGATION)).status == 200
        assert (await client.get("/api/views", headers=NAVIGATION)).status == 403
        # Starting an audit is a POST, refused from another site whatever it names.
        answer = await client.post("/api/audit/c", headers={"Origin": "https://attacker.example"})
        assert answer.status == 403


def test_allowed_host_values_are_checked() -> None:
    assert allowed_host("Analytics.City.Example:443") == "analytics.city.example:443"
    assert allowed_host("[2001:db8::1]:8090") == "[2001:db8::1]:8090"
    for bad in ("", "a b", "http://x", "x:0", "x:70000", "x/y", "-x"):
        with pytest.raises(HostError):
            allowed_host(bad)
    assert "[::1]:8090" in allowed_hosts("::1", 8090)
    assert "10.0.0.5:8090" in allowed_hosts("10.0.0.5", 8090)


async def _open(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    answer = await session.get(url + "/api/events")
    if answer.status == 200:
        assert await answer.content.readuntil(b"\n\n") == b"retry: 2000\n\n"
    return answer


async def test_event_streams_are_capped_in_all_and_per_peer(kafka_settings: KafkaSettings) -> None:
    limits = StreamLimits(total=3, per_peer=2, lifetime_s=600)
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with (
        web_client(kafka_settings, [], streams=limits) as (client, _),
        aiohttp.ClientSession(connector=other) as second,
    ):
        url = f"http://127.0.0.1:{client.port}"
        first = client.session
        held = [await _open(first, url), await _open(first, url)]
        assert [a.status for a in held] == [200, 200]
        refused = await _open(first, url)  # a third from the same address
        assert refused.status == 503 and refused.headers["Retry-After"].isdigit()
        held.append(await _open(second, url))  # another address still gets one...
        assert held[-1].status == 200
        refused = await _open(second, url)  # ...up to the total
        assert refused.status == 503
        began = time.monotonic()
        assert (await client.get("/healthz")).status in (200, 503)
        assert time.monotonic() - began < 1.0
        for answer in held:
            answer.close()


async def test_an_event_stream_ends_after_its_lifetime_and_frees_its_place(
    kafka_settings: KafkaSettings,
) -> None:
    limits = StreamLimits(total=1, per_peer=1, lifetime_s=1.0)
    async with web_client(kafka_settings, [], streams=limits) as (client, _):
        url = f"http://127.0.0.1:{client.port}"
        answer = await _open(client.session, url)
        assert answer.status == 200
        await asyncio.wait_for(answer.content.read(), 10)  # the server ended it
        assert answer.content.at_eof()
        again = await _open(client.session, url)
        assert again.status == 200
        again.close()


async def test_a_stream_too_slow_for_its_queue_ends_so_the_page_reconnects(
    kafka_settings: KafkaSettings,
) -> None:
    limits = StreamLimits(queue_size=5)
    async with web_client(kafka_settings, [], streams=limits) as (client, state):
        answer = await _open(client.session, f"http://127.0.0.1:{client.port}")
        assert answer.status == 200
        # More releases than the queue holds before the stream's task runs again.
        for start in range(10):
            state.hub.publish({"contract": "c", "view": "v", "start": start, "end": start + 1})
        rest = await asyncio.wait_for(answer.content.read(), 10)  # ends, not keep-alives forever
        assert rest.count(b"event: release") <= 5
        await until(lambda: not state.hub._subscriptions, 5, "the stream to be forgotten")
