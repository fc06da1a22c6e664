"""The read-only Schema Registry API: ids from the wire format, registry-style errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from broker.ingest.gateway import GatewayConfig, make_app
from broker.kafka.local import free_port
from broker.kafka.publish import ReleaseEncoder, public_subject, release_schema, report_schema
from broker.kafka.schema_registry import make_schema_app
from broker.kafka.serde import Schemas, read_header, schema_id, subject_name
from contracts import Contract, examples_dir, load_contracts
from tests.analysts.conftest import NullWriter
from tests.analysts.rows import NOW

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def contracts() -> list[Contract]:
    return load_contracts([examples_dir()], now=NOW)


async def serve(app: web.Application) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def gateway(contracts: list[Contract]) -> AsyncIterator[TestClient[Any, Any]]:
    """The gateway application itself, with the registry routes ``make_app`` adds."""
    app = make_app(GatewayConfig(contracts=tuple(contracts), providers=()), NullWriter())
    client = await serve(app)
    yield client
    await client.close()


async def get(client: TestClient[Any, Any], path: str) -> tuple[int, Any]:
    response = await client.get(path)
    assert response.content_type == "application/vnd.schemaregistry.v1+json"
    return response.status, await response.json()


async def test_public_schema_ids_match_the_wire_format(
    gateway: TestClient[Any, Any], contracts: list[Contract]
) -> None:
    mobility = next(c for c in contracts if c.id == "lyon-micromobility")
    encoder = ReleaseEncoder(mobility, mobility.view("availability"))
    for schema, registered in (
        (release_schema(mobility, mobility.view("availability")), encoder.group_schema),
        (report_schema(mobility, mobility.view("availability")), encoder.report_schema),
    ):
        sid = read_header(registered.header)
        status, body = await get(gateway, f"/schemas/ids/{sid}")
        assert status == 200
        assert json.loads(body["schema"]) == schema
        assert schema_id(json.loads(body["schema"])) == sid


async def test_subjects_cover_raw_and_public_schemas(
    gateway: TestClient[Any, Any], contracts: list[Contract]
) -> None:
    status, subjects = await get(gateway, "/subjects")
    assert status == 200
    raw_schemas = Schemas.from_contracts(contracts)
    for contract in contracts:
        for stream in contract.streams:
            subject = subject_name(contract, stream)
            assert subject in subjects
            _, version = await get(gateway, f"/subjects/{subject}/versions/latest")
            assert version["id"] == raw_schemas.for_stream(contract, stream).schema_id
            assert json.loads(version["schema"]) == stream.raw_schema
        for view in contract.views:
            subject = public_subject(contract, view)
            assert subject in subjects
            assert await get(gateway, f"/subjects/{subject}/versions") == (200, [1])
            _, version = await get(gateway, f"/subjects/{subject}/versions/1")
            assert version == {
                "subject": subject,
                "version": 1,
                "id": schema_id(release_schema(contract, view)),
                "schema": version["schema"],
            }
            report = report_schema(contract, view)
            record_subject = f"{contract.topic_public(view)}-{report['namespace']}.{report['name']}"
            _, version = await get(gateway, f"/subjects/{record_subject}/versions/latest")
            assert version["id"] == schema_id(report)
            status, raw = await get(gateway, f"/subjects/{record_subject}/versions/1/schema")
            assert (status, raw) == (200, report)


async def test_ingest_subjects_serve_the_input_schema_like_raw(
    gateway: TestClient[Any, Any], contracts: list[Contract]
) -> None:
    """A stock Confluent serializer (``use.latest.version``) looks under ``ingest.<c>.<s>``."""
    _, subjects = await get(gateway, "/subjects")
    for contract in contracts:
        for stream in contract.streams:
            ingest = f"{contract.topic_ingest(stream)}-value"
            assert ingest in subjects
            assert await get(gateway, f"/subjects/{ingest}/versions") == (200, [1])
            _, got = await get(gateway, f"/subjects/{ingest}/versions/latest")
            _, raw = await get(gateway, f"/subjects/{subject_name(contract, stream)}/versions/1")
            assert got == {**raw, "subject": ingest}
            assert json.loads(got["schema"]) == stream.raw_schema
            status, ids = await get(gateway, f"/schemas/ids/{got['id']}/subjects")
            assert status == 200
            assert {ingest, subject_name(contract, stream)} <= set(ids)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/subjects/nope-value/versions", 404, 40401),
        ("/subjects/nope-value/versions/latest", 404, 40401),
        ("/subjects/public.lyon-micromobility.availability-value/versions/2", 404, 40402),
        ("/subjects/public.lyon-micromobility.availability-value/versions/abc", 422, 42202),
        ("/schemas/ids/1", 404, 40403),
        ("/schemas/ids/xyz", 404, 40403),
    ],
)
async def test_errors_have_registry_bodies(
    gateway: TestClient[Any, Any], path: str, status: int, code: int
) -> None:
    got_status, body = await get(gateway, path)
    assert got_status == status
    assert body["error_code"] == code and body["message"]
    assert "abc" not in body["message"] and "nope" not in body["message"]


async def test_standalone_app_serves_the_same_catalogue(
    contracts: list[Contract], gateway: TestClient[Any, Any]
) -> None:
    client = await serve(make_schema_app(contracts))
    try:
        assert await get(client, "/subjects") == await get(gateway, "/subjects")
        assert await get(client, "/schemas/types") == (200, ["AVRO"])
    finally:
        await client.close()


async def test_ids_list_every_subject_holding_the_schema(
    gateway: TestClient[Any, Any], contracts: list[Contract]
) -> None:
    mobility = next(c for c in contracts if c.id == "lyon-micromobility")
    sid = schema_id(release_schema(mobility, mobility.view("availability")))
    status, subjects = await get(gateway, f"/schemas/ids/{sid}/subjects")
    assert status == 200
    assert public_subject(mobility, "availability") in subjects and len(subjects) == 2
    _, versions = await get(gateway, f"/schemas/ids/{sid}/versions")
    assert {v["version"] for v in versions} == {1}


def test_schemas_serve_runs_standalone() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "schemas",
            "serve",
            "--port",
            str(port),
            "--contracts",
            str(examples_dir()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"http://127.0.0.1:{port}/subjects"
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    subjects = json.loads(response.read())
                break
            except OSError:
                assert proc.poll() is None, "schemas serve exited"
                assert time.monotonic() < deadline, "schemas serve did not answer in 30 s"
                time.sleep(0.1)  # polling interval of the readiness loop, not a sync point
        assert "public.lyon-micromobility.availability-value" in subjects
    finally:
        proc.terminate()
        proc.wait(timeout=30)
