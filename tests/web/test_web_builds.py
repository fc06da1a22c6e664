"""``respublica web``'s costly answers on the real broker: built once per version, off the loop,
a bounded number at a time; the audit re-run is a POST; the report's own style is allowed.

One contract with released availability windows on its public topic; the application runs on
127.0.0.1 as the session's admin (who may also audit).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaAdminClient

from broker.kafka.settings import KafkaSettings
from broker.web import server
from contracts.model import Contract
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing
from tests.web.support import publish, until, web_client
from tests.worker.support import create_topics, delete_topics, mobility_events, unique_contract

pytestmark = pytest.mark.integration
VIEW = "availability"


@dataclass
class Published:
    contract: Contract
    windows: int


@pytest.fixture(scope="module")
def published(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Published]:
    contract = unique_contract(tmp_path_factory.mktemp("web-builds"), "micromobility")
    names = create_topics(kafka_bootstrap, contract)
    try:
        releases = evaluate(contract, mobility_events(800), keyring=KeyRing())[VIEW]
        publish(kafka_bootstrap, contract, VIEW, releases)
        yield Published(contract, len(releases))
    finally:
        delete_topics(kafka_admin, names)


async def _caught_up(client: Any, published: Published) -> bool:
    answer = await client.get("/api/views")
    if answer.status != 200:
        return False
    rows = (await answer.json())["views"]
    return any(r["view"] == VIEW and r["windows"] == published.windows for r in rows)


async def test_exports_are_built_once_per_version_and_a_burst_gets_503(
    kafka_settings: KafkaSettings, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    built: list[str] = []
    real = server._export_bytes

    def held(kafka: KafkaSettings, feed: Any, fmt: str) -> bytes:
        built.append(fmt)
        release.wait(60)
        return real(kafka, feed, fmt)

    monkeypatch.setattr(server, "_export_bytes", held)
    base = f"/exports/{published.contract.id}/{VIEW}"
    async with web_client(kafka_settings, [published.contract], export_builds=1) as (client, state):
        await until(lambda: _caught_up(client, published), 60, "the feed to read the view")
        first = asyncio.ensure_future(client.get(base + ".csv"))
        await until(lambda: built == ["csv"], 30, "the first export to start")
        same = asyncio.ensure_future(client.get(base + ".csv"))  # waits for the same build
        for fmt in ("geojson", "parquet", "meta.json"):
            answer = await client.get(f"{base}.{fmt}")
            assert answer.status == 503, fmt
            assert int(answer.headers["Retry-After"]) > 0
        began = time.monotonic()
        assert (await client.get("/healthz")).status == 200
        assert time.monotonic() - began < 1.0  # the loop is free while files are built
        release.set()
        answers = [await first, await same]
        assert [a.status for a in answers] == [200, 200]
        bodies = [await a.read() for a in answers]
        assert bodies[0] == bodies[1] and bodies[0].count(b"\n") > published.windows
        assert answers[0].headers["Cache-Control"] == "no-store"
        again = await client.get(base + ".csv")  # the view has not changed: from the cache
        assert again.status == 200 and await again.read() == bodies[0]
        assert built == ["csv"] and state.exports.count == 1
        meta = await client.get(base + ".meta.json")
        assert meta.status == 200 and (await meta.json())["licence"] == published.contract.licence
        assert built == ["csv", "meta.json"]


async def test_a_view_summary_is_computed_once_per_version(
    kafka_settings: KafkaSettings, published: Published
) -> None:
    path = f"/api/views/{published.contract.id}/{VIEW}"
    async with web_client(kafka_settings, [published.contract]) as (client, state):
        await until(lambda: _caught_up(client, published), 60, "the feed to read the view")
        first = await (await client.get(path)).json()
        second = await (await client.get(path)).json()
        assert first == second and len(first["windows"]) == published.windows
        assert state.summaries.count == 1


async def test_the_audit_runs_again_only_on_a_post_and_its_report_is_styled(
    kafka_settings: KafkaSettings, published: Published
) -> None:
    path = f"/api/audit/{published.contract.id}"
    async with web_client(kafka_settings, [published.contract]) as (client, state):
        await until(lambda: _caught_up(client, published), 60, "the feed to read the view")
        assert (await (await client.get(path)).json())["running"]  # the first visit starts one

        async def finished() -> bool:
            return not (await (await client.get(path)).json())["running"]

        await until(finished, 180, "the audit")
        done = await (await client.get(path)).json()
        assert done["report"] is not None, done["error"]
        # A GET (a link, an image on another site) never starts another audit.
        again = await (await client.get(path + "?refresh=1")).json()
        assert not again["running"] and again["generated_at"] == done["generated_at"]

        page = await client.get(f"/audit/{published.contract.id}/report.html")
        assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
        html = await page.text()
        style = re.search(r"<style>(.*?)</style>", html, re.DOTALL)
        assert style is not None
        digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
        policy = page.headers["Content-Security-Policy"]
        assert f"style-src 'sha256-{digest}'" in policy and "script-src 'self'" in policy
        assert (
            html == await (await client.get(f"/audit/{published.contract.id}/report.html")).text()
        )

        own = f"http://127.0.0.1:{client.port}"
        rerun = await client.post(path, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})
        assert rerun.status == 200 and (await rerun.json())["running"]
        await until(finished, 180, "the second audit")
