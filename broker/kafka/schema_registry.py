"""A read-only part of the Confluent Schema Registry REST API, built from the contracts.

Schema ids are not handed out by a registry: every process derives them from the schema
(``broker.kafka.serde.schema_id``). This module serves those same ids so that any Confluent-aware
tool (``AvroDeserializer``, kcat ``-s avro``, Kafka UIs) can decode ``raw.`` and ``public.``
records by asking ``/schemas/ids/{id}``. Nothing can be registered: schemas change with
contracts, not over HTTP.

Subjects (one version each):

* ``ingest.<c>.<s>-value`` and ``raw.<c>.<s>-value``: the input schema of a stream, under
  the topic providers produce to (so a stock Confluent serializer with ``use.latest.version``
  finds it) and under the validated topic; same schema, same id;
* ``public.<c>.<v>-value``: the release schema of a view (TopicNameStrategy);
* ``public.<c>.<v>-<namespace>.<v>_release`` and ``…-<namespace>.<v>_report``: both schemas
  of a public topic under TopicRecordNameStrategy (the topic also carries suppression reports).

Routes: ``GET /schemas/ids/{id}``, ``/schemas/ids/{id}/subjects``, ``/schemas/ids/{id}/versions``,
``/schemas/types``, ``/subjects``, ``/subjects/{subject}/versions``,
``/subjects/{subject}/versions/{version}`` (``latest``, ``-1`` or ``1``) and ``…/schema``.
Errors use the registry's bodies: ``{"error_code": 40401, "message": "Subject not found"}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from broker.kafka.publish import public_subject, release_schema, report_schema
from broker.kafka.serde import schema_id, subject_name
from contracts.model import Contract

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
VERSION = 1


@dataclass(frozen=True)
class SubjectSchema:
    """One subject's only version: the schema, its id and its JSON text."""

    subject: str
    schema_id: int
    schema: dict[str, Any]

    @property
    def text(self) -> str:
        """The schema as the registry returns it: a JSON string."""
        return json.dumps(self.schema, separators=(",", ":"))


def _fullname(schema: dict[str, Any]) -> str:
    return f"{schema['namespace']}.{schema['name']}"


class SchemaCatalogue:
    """Every subject of some contracts, by name and by schema id (read-only)."""

    def __init__(self, entries: Iterable[SubjectSchema]) -> None:
        self.subjects: dict[str, SubjectSchema] = {}
        self.by_id: dict[int, list[SubjectSchema]] = {}
        for entry in entries:
            if entry.subject in self.subjects:
                continue
            self.subjects[entry.subject] = entry
            self.by_id.setdefault(entry.schema_id, []).append(entry)

    @classmethod
    def from_contracts(cls, contracts: Iterable[Contract]) -> SchemaCatalogue:
        """Input stream schemas and public view schemas (release and report) of the contracts."""
        entries: list[SubjectSchema] = []
        for contract in contracts:
            for stream in contract.streams:
                raw, sid = stream.raw_schema, schema_id(stream.raw_schema)
                entries.append(SubjectSchema(f"{contract.topic_ingest(stream)}-value", sid, raw))
                entries.append(SubjectSchema(subject_name(contract, stream), sid, raw))
            for view in contract.views:
                release, report = release_schema(contract, view), report_schema(contract, view)
                topic = contract.topic_public(view)
                entries.append(
                    SubjectSchema(public_subject(contract, view), schema_id(release), release)
                )
                for schema in (release, report):
                    entries.append(
                        SubjectSchema(f"{topic}-{_fullname(schema)}", schema_id(schema), schema)
                    )
        return cls(entries)


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"error_code": code, "message": message}, status=status, content_type=CONTENT_TYPE
    )


def _ok(body: Any) -> web.Response:
    return web.json_response(body, content_type=CONTENT_TYPE)


class SchemaRoutes:
    """The request handlers over one ``SchemaCatalogue``."""

    def __init__(self, catalogue: SchemaCatalogue) -> None:
        self.catalogue = catalogue

    def _by_id(self, request: web.Request) -> list[SubjectSchema] | None:
        raw = request.match_info["id"]
        return self.catalogue.by_id.get(int(raw)) if raw.isdigit() else None

    async def schema_by_id(self, request: web.Request) -> web.Response:
        """``GET /schemas/ids/{id}`` → ``{"schema": "<json>"}``."""
        entries = self._by_id(request)
        if not entries:
            return _error(404, 40403, "Schema not found")
        return _ok({"schema": entries[0].text})

    async def subjects_of_id(self, request: web.Request) -> web.Response:
        """``GET /schemas/ids/{id}/subjects`` → the subjects holding that schema."""
        entries = self._by_id(request)
        if not entries:
            return _error(404, 40403, "Schema not found")
        return _ok([e.subject for e in entries])

    async def versions_of_id(self, request: web.Request) -> web.Response:
        """``GET /schemas/ids/{id}/versions`` → ``[{"subject", "version"}]``."""
        entries = self._by_id(request)
        if not entries:
            return _error(404, 40403, "Schema not found")
        return _ok([{"subject": e.subject, "version": VERSION} for e in entries])

    async def types(self, request: web.Request) -> web.Response:
        """``GET /schemas/types`` → ``["AVRO"]``."""
        return _ok(["AVRO"])

    async def subjects(self, request: web.Request) -> web.Response:
        """``GET /subjects`` → every subject, sorted."""
        return _ok(sorted(self.catalogue.subjects))

    async def versions(self, request: web.Request) -> web.Response:
        """``GET /subjects/{subject}/versions`` → ``[1]``."""
        if request.match_info["subject"] not in self.catalogue.subjects:
            return _error(404, 40401, "Subject not found")
        return _ok([VERSION])

    def _version(self, request: web.Request) -> SubjectSchema | web.Response:
        entry = self.catalogue.subjects.get(request.match_info["subject"])
        if entry is None:
            return _error(404, 40401, "Subject not found")
        version = request.match_info["version"]
        if version in ("latest", "-1", str(VERSION)):
            return entry
        if version.lstrip("-").isdigit():
            return _error(404, 40402, "Version not found")
        return _error(
            422,
            42202,
            "The specified version is not a valid version id: use a positive integer or 'latest'",
        )

    async def version(self, request: web.Request) -> web.Response:
        """``GET /subjects/{subject}/versions/{version}`` → subject, version, id, schema."""
        found = self._version(request)
        if isinstance(found, web.Response):
            return found
        return _ok(
            {
                "subject": found.subject,
                "version": VERSION,
                "id": found.schema_id,
                "schema": found.text,
            }
        )

    async def version_schema(self, request: web.Request) -> web.Response:
        """``GET /subjects/{subject}/versions/{version}/schema`` → the schema itself."""
        found = self._version(request)
        if isinstance(found, web.Response):
            return found
        return _ok(found.schema)


def add_schema_routes(app: web.Application, contracts: Iterable[Contract]) -> SchemaRoutes:
    """Serve the schemas of ``contracts`` on ``app`` (read-only registry routes)."""
    routes = SchemaRoutes(SchemaCatalogue.from_contracts(contracts))
    app.router.add_get("/schemas/types", routes.types)
    app.router.add_get("/schemas/ids/{id}", routes.schema_by_id)
    app.router.add_get("/schemas/ids/{id}/subjects", routes.subjects_of_id)
    app.router.add_get("/schemas/ids/{id}/versions", routes.versions_of_id)
    app.router.add_get("/subjects", routes.subjects)
    app.router.add_get("/subjects/{subject}/versions", routes.versions)
    app.router.add_get("/subjects/{subject}/versions/{version}", routes.version)
    app.router.add_get("/subjects/{subject}/versions/{version}/schema", routes.version_schema)
    return routes


def make_schema_app(contracts: Iterable[Contract]) -> web.Application:
    """A stand-alone application serving only the registry routes."""
    app = web.Application()
    add_schema_routes(app, contracts)
    return app
