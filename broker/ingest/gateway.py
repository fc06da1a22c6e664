"""The HTTP push gateway: providers POST batches of events, validated into raw or DLQ topics.

``POST /v1/contracts/{contract}/streams/{stream}/events`` takes a JSON array
(``application/json``) or one JSON object per line (``application/x-ndjson``). Every item
goes through the same ``StreamValidator`` as the Kafka ingest path; valid items are written
to ``raw.<c>.<s>``, rejected ones to ``dlq.<c>.<s>`` (original bytes plus reason headers).
The answer comes only after Kafka acknowledged the whole batch: 200 with the accepted count
and, per rejected item, ``{index, reason, field}``. Whole-request problems get a status and
an error code: 400 malformed body, 401 missing or unknown token, 403 contract not granted to
the token, 404 unknown contract or stream, 413 body or batch too large, 415 content type,
503 Kafka did not acknowledge (retry; see ``broker.kafka.writer`` on duplicates).

Nothing from the request body, the URL's unknown ids or the token ever reaches a log line,
a response, a DLQ header or a metric label: responses carry reason codes and field paths.
``GET /healthz`` and ``GET /metrics`` (Prometheus text of an explicit registry) complete it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
)

from broker.ingest.auth import Authenticator, ProviderGrant
from broker.kafka.reasons import Reason
from broker.kafka.schema_registry import add_schema_routes
from broker.kafka.writer import BatchWriter, KafkaUnavailable, OutRecord
from broker.metrics import metrics_for
from connectors.base import Accepted, Rejected
from connectors.dedup import DuplicateFilter
from connectors.ingest import wall_clock_ms
from connectors.metrics import IngestMetrics
from connectors.validate import (
    DEFAULT_FUTURE_SKEW,
    DEFAULT_MAX_BYTES,
    Router,
    StreamValidator,
    dlq_record,
)
from contracts.model import Contract

CONNECTOR = "gateway"
EVENTS_ROUTE = "/v1/contracts/{contract}/streams/{stream}/events"
JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
_log = logging.getLogger(__name__)


def _no_constants(name: str) -> Any:
    msg = "NaN and Infinity are not JSON"
    raise ValueError(msg)


# Strict like the validator's own decoder: NaN, Infinity and -Infinity are refused.
_JSON = json.JSONDecoder(parse_constant=_no_constants)


@dataclass(frozen=True)
class GatewayConfig:
    """What the gateway serves and its limits."""

    contracts: tuple[Contract, ...]
    providers: tuple[ProviderGrant, ...]
    max_batch: int = 5000
    max_body_bytes: int = 16 * 1024 * 1024
    max_item_bytes: int = DEFAULT_MAX_BYTES
    future_skew: timedelta = DEFAULT_FUTURE_SKEW


class JournaledDuplicateFilter(DuplicateFilter):
    """A duplicate filter that can forget the ids of a batch Kafka did not acknowledge.

    Without this, a retried batch would be rejected as duplicates of itself and its events
    would land in the DLQ instead of ``raw.``. The journal is per request: validation of one
    request runs without an ``await``, so requests never interleave inside it.
    """

    def __init__(self, horizon: timedelta) -> None:
        super().__init__(horizon)
        self.journal: list[Hashable] | None = None

    def seen(self, event_id: Hashable, *, event_time_ms: int, now_ms: int) -> bool:
        """As ``DuplicateFilter.seen``, noting new ids in the open journal."""
        duplicate = super().seen(event_id, event_time_ms=event_time_ms, now_ms=now_ms)
        if not duplicate and self.journal is not None:
            self.journal.append(event_id)
        return duplicate


@dataclass
class BatchOutcome:
    """The records to write for one request and what to tell the provider."""

    records: list[OutRecord] = field(default_factory=list)
    accepted: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)
    reasons: Tally[Reason] = field(default_factory=Tally)
    new_ids: list[Hashable] = field(default_factory=list)

    def reject(
        self, rejected: Rejected, dead_letter: OutRecord, index: int, line: int | None
    ) -> None:
        """Count a rejected item, queue its DLQ record, describe it for the provider."""
        self.records.append(dead_letter)
        self.reasons[rejected.reason] += 1
        entry: dict[str, Any] = {
            "index": index,
            "reason": rejected.reason.value,
            "field": rejected.field_path,
        }
        if line is not None:
            entry["line"] = line
        self.rejections.append(entry)


class RequestRefused(Exception):  # noqa: N818 - control flow to one error response
    """A whole-request problem: status, stable code and a value-free message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


class Gateway:
    """Request handling; build it with ``make_app`` (``app[GATEWAY_KEY]`` gives it back)."""

    def __init__(
        self,
        config: GatewayConfig,
        writer: BatchWriter,
        *,
        clock: Callable[[], int],
        registry: CollectorRegistry,
    ) -> None:
        self.config = config
        self.writer = writer
        self.clock = clock
        self.registry = registry
        self.router = Router(
            config.contracts, max_bytes=config.max_item_bytes, future_skew=config.future_skew
        )
        for validator in self.router.validators.values():
            validator.dedup = JournaledDuplicateFilter(validator.stream.allowed_lateness)
        self.auth = Authenticator(config.providers)
        self.ingest_metrics = IngestMetrics(registry)
        families = metrics_for(registry)  # defined once, in broker/metrics.py
        self.latency = families.request_latency
        self.requests = families.http_requests

    async def post_events(self, request: web.Request) -> web.Response:
        """``POST /v1/contracts/{contract}/streams/{stream}/events``."""
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        try:
            body = await self._ingest(request, request_id)
            response = _json_response(200, body, request_id)
        except RequestRefused as refused:
            response = _refusal(refused, request_id)
        except Exception as exc:  # a bug of ours: answer 500, log the type only (no values)
            _log.error("request %s failed: %s", request_id, type(exc).__name__)
            response = _refusal(
                RequestRefused(500, Reason.INTERNAL.value, "internal error; quote the request id"),
                request_id,
            )
        self.latency.labels("events").observe(time.perf_counter() - started)
        self.requests.labels("events", str(response.status)).inc()
        return response

    async def _ingest(self, request: web.Request, request_id: str) -> dict[str, Any]:
        validator = self._authorise(request)
        ndjson = _content_kind(request)
        items = _split(await _read_body(request, self.config.max_body_bytes), ndjson)
        if len(items) > self.config.max_batch:
            msg = f"a batch holds at most {self.config.max_batch} events"
            raise RequestRefused(413, "BATCH_TOO_LARGE", msg)
        outcome = self._validate(validator, items, ndjson, request_id)
        try:
            await self.writer.write(outcome.records)
        except KafkaUnavailable:
            _forget(validator, outcome.new_ids)
            msg = "Kafka did not acknowledge the batch; retry it later"
            raise RequestRefused(503, "KAFKA_UNAVAILABLE", msg) from None
        except BaseException:
            _forget(validator, outcome.new_ids)  # not known to be stored: a retry must pass
            raise
        contract, stream = validator.contract.id, validator.stream.name
        self.ingest_metrics.add(
            contract, stream, CONNECTOR, received=len(items), rejected=outcome.reasons
        )
        _log.info(
            "request %s: %s/%s %d accepted, %d rejected",
            request_id,
            contract,
            stream,
            outcome.accepted,
            len(outcome.rejections),
        )
        return {
            "request_id": request_id,
            "accepted": outcome.accepted,
            "rejected": outcome.rejections,
        }

    def _authorise(self, request: web.Request) -> StreamValidator:
        provider = self.auth.provider(request.headers.get("Authorization"))
        if provider is None:
            raise RequestRefused(401, "UNAUTHENTICATED", "missing or unknown bearer token")
        contract_id = request.match_info["contract"]
        if contract_id not in self.router.contracts:
            raise RequestRefused(404, Reason.UNKNOWN_CONTRACT.value, "no such contract")
        if contract_id not in provider.contracts:
            raise RequestRefused(403, "FORBIDDEN", "this token may not push to this contract")
        target = self.router.route(contract_id, request.match_info["stream"])
        if isinstance(target, Rejected):
            raise RequestRefused(404, target.reason.value, "no such stream in the contract")
        return target

    def _validate(
        self,
        validator: StreamValidator,
        items: list[tuple[int, Any]],
        ndjson: bool,
        request_id: str,
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        now_ms = self.clock()
        dedup = validator.dedup
        journal: list[Hashable] = []
        if isinstance(dedup, JournaledDuplicateFilter):
            dedup.journal = journal
        try:
            for index, (line, item) in enumerate(items):
                result = validator.validate_json(
                    item, now_ms=now_ms, connector=CONNECTOR, source=request_id
                )
                if isinstance(result, Accepted):
                    outcome.accepted += 1
                    outcome.records.append(
                        OutRecord(validator.raw_topic, result.key, result.value, result.headers)
                    )
                else:
                    letter = _dead_letter(validator, result, item, f"{request_id}#{index}", now_ms)
                    outcome.reject(result, letter, index, line if ndjson else None)
        finally:
            if isinstance(dedup, JournaledDuplicateFilter):
                dedup.journal = None
        outcome.new_ids = journal
        return outcome

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: the process answers; says whether Kafka was last reachable."""
        kafka = "connected" if self.writer.connected else "not connected"
        return web.json_response({"status": "ok", "kafka": kafka})

    async def metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics``: Prometheus text exposition of the gateway's registry."""
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


GATEWAY_KEY = web.AppKey("gateway", Gateway)


def make_app(
    config: GatewayConfig,
    writer: BatchWriter,
    *,
    clock: Callable[[], int] = wall_clock_ms,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The aiohttp application of the gateway. ``clock`` gives "now" in ms (tests, replays)."""
    gateway = Gateway(config, writer, clock=clock, registry=registry or CollectorRegistry())
    # aiohttp refuses bigger bodies itself (413) before we read them into memory.
    app = web.Application(client_max_size=config.max_body_bytes)
    app.router.add_post(EVENTS_ROUTE, gateway.post_events)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/metrics", gateway.metrics)
    add_schema_routes(app, config.contracts)  # read-only Schema Registry API (analysts)

    async def close_writer(_: web.Application) -> None:
        await writer.close()

    app.on_cleanup.append(close_writer)
    app[GATEWAY_KEY] = gateway
    return app


class GatewayAccessLogger(AbstractAccessLogger):
    """Access log lines with the route *template*, never the path: unknown contract or
    stream names in a URL are provider input. Use it as the runner's ``access_log_class``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """One line per request: method, route template, status, duration."""
        route = "unmatched"
        match_info = getattr(request, "match_info", None)
        resource = match_info.route.resource if match_info is not None else None
        if resource is not None:
            route = resource.canonical
        self.logger.info("%s %s %d %.1fms", request.method, route, response.status, time * 1000)


def _content_kind(request: web.Request) -> bool:
    """True for NDJSON, False for a JSON array; 415 for anything else."""
    kind = request.content_type
    if kind == NDJSON_TYPE:
        return True
    if kind == JSON_TYPE:
        return False
    msg = f"send {JSON_TYPE} (a JSON array) or {NDJSON_TYPE} (one object per line)"
    raise RequestRefused(415, "UNSUPPORTED_MEDIA_TYPE", msg)


async def _read_body(request: web.Request, limit: int) -> bytes:
    too_large = RequestRefused(413, "BODY_TOO_LARGE", f"the body may hold at most {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None


def _split(body: bytes, ndjson: bool) -> list[tuple[int, Any]]:
    """``(line number, item)`` pairs: raw lines for NDJSON, parsed values for a JSON array."""
    if ndjson:
        lines = body.split(b"\n")
        return [
            (number, line.rstrip(b"\r"))
            for number, line in enumerate(lines, start=1)
            if line.strip()
        ]
    try:
        parsed = _JSON.decode(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestRefused(400, Reason.INVALID_UTF8.value, "the body is not UTF-8") from None
    except (ValueError, RecursionError):
        raise RequestRefused(400, Reason.MALFORMED_JSON.value, "the body is not JSON") from None
    if not isinstance(parsed, list):
        raise RequestRefused(400, "NOT_AN_ARRAY", "the body must be a JSON array of events")
    return [(0, item) for item in parsed]


def _dead_letter(
    validator: StreamValidator, rejected: Rejected, item: Any, source: str, now_ms: int
) -> OutRecord:
    """The DLQ record of a rejected item: its bytes as sent, and why (``dlq_record``)."""
    original = item if isinstance(item, bytes) else _reencode(item)
    _, value, headers = dlq_record(
        original,
        rejected,
        contract=validator.contract,
        stream=validator.stream.name,
        connector=CONNECTOR,
        source=source,
        now_ms=now_ms,
    )
    return OutRecord(validator.dlq_topic, None, value, headers)


def _reencode(item: Any) -> bytes:
    """The DLQ value of an item of a JSON array: the item alone, as compact JSON."""
    try:
        return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )
    except (TypeError, ValueError):
        return b""


def _forget(validator: StreamValidator, event_ids: Sequence[Hashable]) -> None:
    if isinstance(validator.dedup, JournaledDuplicateFilter):
        validator.dedup.forget(event_ids)


def _refusal(refused: RequestRefused, request_id: str) -> web.Response:
    response = _json_response(
        refused.status,
        {
            "request_id": request_id,
            "error": refused.code,
            "message": refused.message,
        },
        request_id,
    )
    if refused.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="respublica"'
    _log.info("request %s refused: %d %s", request_id, refused.status, refused.code)
    return response


def _json_response(status: int, body: dict[str, Any], request_id: str) -> web.Response:
    response = web.json_response(body, status=status)
    response.headers["X-Request-Id"] = request_id
    return response
