"""The HTTP push gateway: providers POST batches of events, validated into raw or DLQ topics.

``POST /v1/contracts/{contract}/streams/{stream}/events`` takes a JSON array
(``application/json``) or one JSON object per line (``application/x-ndjson``). Every item
goes through the same ``StreamValidator`` as the Kafka ingest path; valid items are written
to ``raw.<c>.<s>``, rejected ones to ``dlq.<c>.<s>`` (original bytes plus reason headers).
The answer comes only after Kafka acknowledged the whole batch: 200 with the accepted count
and, per rejected item, ``{index, reason, field}`` (plus ``line`` for NDJSON and ``detail``,
a fixed hint, when the validator gives one). Whole-request problems get a status and
an error code: 400 malformed body, 401 missing or unknown token, 403 contract or stream not
granted to the token (``FORBIDDEN``, ``STREAM_NOT_GRANTED``: the same answer whether or not
another tenant's contract or stream exists), 404 a granted contract this gateway does not
serve or an unknown stream of a contract granted whole, 408 body not received in time, 413
body or batch too large, 415 content type or encoding, 429 over the token's rate or
concurrency (with ``Retry-After``), 503 Kafka did not acknowledge (retry; see
``broker.kafka.writer`` on duplicates).

The body is read as a stream and cut into items as it arrives (``broker.ingest.body``); an
item over ``max_item_bytes`` is rejected as PAYLOAD_TOO_LARGE without being held. Items
are validated in slices that yield to the event loop; the producer heals itself after a
failure and ``/healthz`` says the truth about Kafka (``broker.ingest.producer``).

MDS Agency 2.0 clients use their own paths on the same app (``broker.ingest.agency``): the
same tokens, limits, validation and writes, MDS bodies and statuses.

Nothing from the request body, the URL's unknown ids or the token ever reaches a log line,
a response, a DLQ header or a metric label: responses carry reason codes and field paths.
``GET /healthz`` completes it. ``GET /metrics`` (Prometheus text of an explicit registry) is
a separate application, ``make_metrics_app``, served on its own address
(``broker.ingest.server``): a provider reaching the ingest port cannot read the counters of
other tenants.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
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

from broker.ingest.agency import AgencyApi
from broker.ingest.auth import Authenticator, ContractGrant, GatewayConfigError, ProviderGrant
from broker.ingest.body import BodyLimits, RequestRefused, read_items
from broker.ingest.fairuse import FairUse, FairUseLimits, retry_after
from broker.ingest.fleet import DEFAULT_MAX_VEHICLES, FleetRegister
from broker.ingest.framing import Item
from broker.ingest.producer import (
    HealingWriter,
    KafkaHealth,
    WriterFactory,
    probe_forever,
)
from broker.ingest.responses import json_response, refusal
from broker.kafka.probe import PROBE_EVERY_S, PROBE_TIMEOUT_S
from broker.kafka.reasons import Reason, Stage
from broker.kafka.schema_registry import add_schema_routes
from broker.kafka.writer import BatchWriter, KafkaUnavailable, OutRecord
from broker.metrics import metrics_for
from connectors.base import Accepted, Outcome, Rejected
from connectors.dedup import DuplicateFilter
from connectors.heartbeat import heartbeat_records
from connectors.ingest import wall_clock_ms
from connectors.metrics import IngestMetrics
from connectors.validate import (
    DEFAULT_FUTURE_SKEW,
    DEFAULT_MAX_BYTES,
    H_ORIGINAL_BYTES,
    H_ORIGINAL_SHA256,
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
MAX_ITEM_CEILING = 256 * 1024
"""``max_item_bytes`` may not exceed this: far below Kafka's default 1 MiB record limit and
the producer's 512 KiB batch, so no accepted item (nor its dead letter) can be refused by
Kafka and fail a batch."""
SLICE_S = 0.002  # validate for at most this long between yields to the event loop
_TOO_LARGE = Rejected(Reason.PAYLOAD_TOO_LARGE, "", Stage.DECODE)
_UNPARSABLE = frozenset({Reason.MALFORMED_JSON, Reason.INVALID_UTF8})
Answer = Callable[[web.Request, str], Awaitable[web.Response]]
"""A route's work: the request and its id in, the response out (or ``RequestRefused``)."""
Refuse = Callable[[RequestRefused, str], web.Response]
"""How a route words a refusal: the native JSON error, or MDS's error message."""
Check = Callable[[StreamValidator, bytes, int], Outcome]
"""One item's bytes to an outcome (validator, bytes, now in ms): the JSON record as sent, or
an MDS object mapped first (``broker.ingest.agency``)."""


@dataclass(frozen=True)
class GatewayConfig:
    """What the gateway serves and its limits."""

    contracts: tuple[Contract, ...]
    providers: tuple[ProviderGrant, ...]
    max_batch: int = 5000
    max_body_bytes: int = 16 * 1024 * 1024
    max_item_bytes: int = DEFAULT_MAX_BYTES
    future_skew: timedelta = DEFAULT_FUTURE_SKEW
    body_timeout_s: float = 30.0
    fair_use: FairUseLimits = field(default_factory=FairUseLimits)
    max_connections: int = 512
    max_vehicles: int = DEFAULT_MAX_VEHICLES  # MDS Agency registrations per provider and contract
    probe_every_s: float = PROBE_EVERY_S  # with PROBE_TIMEOUT_S: degraded within 3 s
    heartbeat_interval_s: float = 0.0  # watermark heartbeats to raw (0: none; the CLI: 5 s)
    heartbeat_margin_ms: int = 2_000  # see connectors.heartbeat

    def __post_init__(self) -> None:
        if not 0 < self.max_item_bytes <= MAX_ITEM_CEILING:
            msg = f"max_item_bytes must be between 1 and {MAX_ITEM_CEILING}"
            raise ValueError(msg)
        _check_stream_grants(self.contracts, self.providers)

    @property
    def body_limits(self) -> BodyLimits:
        """What one request body may hold."""
        return BodyLimits(
            self.max_body_bytes, self.max_batch, self.max_item_bytes, self.body_timeout_s
        )


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
    failures: list[tuple[int, Rejected]] = field(default_factory=list)

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
        if rejected.detail:
            entry["detail"] = rejected.detail
        if line is not None:
            entry["line"] = line
        self.rejections.append(entry)
        self.failures.append((index, rejected))


class Gateway:
    """Request handling; build it with ``make_app`` (``app[GATEWAY_KEY]`` gives it back)."""

    def __init__(
        self,
        config: GatewayConfig,
        writer: HealingWriter,
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
        # One request validates on a stream at a time: the dedup journal is per request.
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}
        for key, validator in self.router.validators.items():
            validator.dedup = JournaledDuplicateFilter(validator.stream.allowed_lateness)
            self.locks[key] = asyncio.Lock()
        self.auth = Authenticator(config.providers)
        self.fair_use = FairUse(config.fair_use)
        self.ingest_metrics = IngestMetrics(registry)
        self.ingest_metrics.declare(config.contracts, CONNECTOR)  # at 0 before any request
        families = metrics_for(registry)  # defined once, in broker/metrics.py
        self.latency = families.request_latency
        self.requests = families.http_requests

    async def post_events(self, request: web.Request) -> web.Response:
        """``POST /v1/contracts/{contract}/streams/{stream}/events``."""
        return await self.handle("events", request, self._post_events, _refusal)

    async def handle(
        self, route: str, request: web.Request, answer: Answer, refuse: Refuse
    ) -> web.Response:
        """Run ``answer`` under a new request id; ``refuse`` words a refusal or our own bug.

        Every route of the push API goes through here, so each is timed and counted (route
        and status) the same way, and a bug answers 500 without a value reaching the log.
        """
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        try:
            response = await answer(request, request_id)
        except RequestRefused as refused:
            response = refuse(refused, request_id)
        except Exception as exc:  # a bug of ours: answer 500, log the type only (no values)
            _log.error("request %s failed: %s", request_id, type(exc).__name__)
            internal = RequestRefused(
                500, Reason.INTERNAL.value, "internal error; quote the request id"
            )
            response = refuse(internal, request_id)
        self.latency.labels(route).observe(time.perf_counter() - started)
        self.requests.labels(route, str(response.status)).inc()
        return response

    async def _post_events(self, request: web.Request, request_id: str) -> web.Response:
        provider = self.provider(request)
        validator = self.validator(
            provider, request.match_info["contract"], request.match_info["stream"]
        )
        async with self.admitted(provider):
            ndjson = _content_kind(request)
            items = await read_items(request, self.config.body_limits, ndjson=ndjson)
            outcome = await self.store(
                items, provider, validator, request_id, check=_validate_json, ndjson=ndjson
            )
        body = {
            "request_id": request_id,
            "accepted": outcome.accepted,
            "rejected": outcome.rejections,
        }
        return json_response(200, body, request_id)

    @contextlib.asynccontextmanager
    async def admitted(self, provider: ProviderGrant) -> AsyncIterator[None]:
        """Hold one of the token's request slots, or refuse 429 with ``Retry-After``."""
        wait_s = self.fair_use.enter(provider.id)
        if wait_s is not None:
            msg = "over this token's request rate or number of open requests; retry later"
            headers = {"Retry-After": retry_after(wait_s)}
            raise RequestRefused(429, "TOO_MANY_REQUESTS", msg, headers)
        try:
            yield
        finally:
            self.fair_use.leave(provider.id)

    async def store(
        self,
        items: list[Item],
        provider: ProviderGrant,
        validator: StreamValidator,
        request_id: str,
        *,
        check: Check,
        ndjson: bool = False,
    ) -> BatchOutcome:
        """Validate ``items`` with ``check``, write raw and DLQ records, count; 503 if Kafka
        did not acknowledge (then nothing of the batch counts as seen by the dedup filter)."""
        self.fair_use.charge(provider.id, len(items))
        contract, stream = validator.contract.id, validator.stream.name
        async with self.locks[contract, stream]:
            outcome = await self._validate(validator, items, ndjson, request_id, check)
        try:
            await self.writer.write(outcome.records)
        except KafkaUnavailable:
            _forget(validator, outcome.new_ids)
            msg = "Kafka did not acknowledge the batch; retry it later"
            raise RequestRefused(503, "KAFKA_UNAVAILABLE", msg) from None
        except BaseException:
            _forget(validator, outcome.new_ids)  # not known to be stored: a retry must pass
            raise
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
        return outcome

    def provider(self, request: web.Request) -> ProviderGrant:
        """The provider of the request's bearer token, or 401."""
        provider = self.auth.provider(request.headers.get("Authorization"))
        if provider is None:
            raise RequestRefused(401, "UNAUTHENTICATED", "missing or unknown bearer token")
        return provider

    def contract(self, provider: ProviderGrant, contract_id: str) -> ContractGrant:
        """The provider's grant on a contract this gateway serves: 403, or 404 if not served."""
        grant = _granted(provider, contract_id)
        _served(self.router, contract_id)
        return grant

    def validator(self, provider: ProviderGrant, contract_id: str, stream: str) -> StreamValidator:
        """The validator of a stream the provider may push to (403 or 404 otherwise)."""
        if not _granted(provider, contract_id).covers(stream):
            msg = "this token may not push to this stream of the contract"
            raise RequestRefused(403, "STREAM_NOT_GRANTED", msg)
        _served(self.router, contract_id)
        target = self.router.route(contract_id, stream)
        if isinstance(target, Rejected):
            raise RequestRefused(404, target.reason.value, "no such stream in the contract")
        return target

    async def _validate(
        self,
        validator: StreamValidator,
        items: list[Item],
        ndjson: bool,
        request_id: str,
        check: Check,
    ) -> BatchOutcome:
        """Validate every item, yielding to the event loop every ``SLICE_S``."""
        outcome = BatchOutcome()
        now_ms = self.clock()
        dedup = validator.dedup
        journal: list[Hashable] = []
        if isinstance(dedup, JournaledDuplicateFilter):
            dedup.journal = journal
        try:
            sliced = time.perf_counter()
            for index, item in enumerate(items):
                self._one(validator, item, index, ndjson, outcome, request_id, now_ms, check)
                if time.perf_counter() - sliced > SLICE_S:
                    await asyncio.sleep(0)
                    sliced = time.perf_counter()
        except BaseException:
            _forget(validator, journal)  # nothing of this request will be written
            raise
        finally:
            if isinstance(dedup, JournaledDuplicateFilter):
                dedup.journal = None
        outcome.new_ids = journal
        return outcome

    def _one(
        self,
        validator: StreamValidator,
        item: Item,
        index: int,
        ndjson: bool,
        outcome: BatchOutcome,
        request_id: str,
        now_ms: int,
        check: Check,
    ) -> None:
        result = _TOO_LARGE if item.oversized else check(validator, item.data, now_ms)
        if isinstance(result, Accepted):
            outcome.accepted += 1
            outcome.records.append(
                OutRecord(validator.raw_topic, result.key, result.value, result.headers)
            )
            return
        if not ndjson and result.reason in _UNPARSABLE:
            # An array element that is not JSON: the body is not JSON, as before streaming.
            code = result.reason.value
            raise RequestRefused(400, code, "the body is not a JSON array of JSON values")
        letter = _dead_letter(validator, result, item, f"{request_id}#{index}", now_ms)
        outcome.reject(result, letter, index, item.line if ndjson else None)

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 while Kafka takes writes, 503 with the reason otherwise."""
        kafka = "connected" if self.writer.connected else "not connected"
        health = self.writer.health
        if health.ok:
            return web.json_response({"status": "ok", "kafka": kafka})
        body = {"status": "degraded", "kafka": kafka, "reason": health.reason}
        return web.json_response(body, status=503)

    async def livez(self, request: web.Request) -> web.Response:
        """``GET /livez``: 200 while the process serves, a broker outage included (the
        writer heals itself; a restart would not bring Kafka back)."""
        return web.json_response({"status": "alive"})


GATEWAY_KEY = web.AppKey("gateway", Gateway)


def make_app(
    config: GatewayConfig,
    writer: BatchWriter | WriterFactory,
    *,
    clock: Callable[[], int] = wall_clock_ms,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The aiohttp application of the gateway. ``clock`` gives "now" in ms (tests, replays).

    ``writer`` is a factory of producers (``GatewayProducer``: replaced after a failure,
    checked in the background for ``/healthz``) or one fixed writer (tests). Run the app with
    ``broker.ingest.server.SERVER_OPTIONS``.
    """
    healing = HealingWriter(writer, KafkaHealth())
    gateway = Gateway(config, healing, clock=clock, registry=registry or CollectorRegistry())
    app = web.Application()  # bodies are read as streams, bounded by broker.ingest.body
    app.router.add_post(EVENTS_ROUTE, gateway.post_events)
    AgencyApi(gateway, FleetRegister(config.max_vehicles)).add_routes(app)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/livez", gateway.livez)
    add_schema_routes(app, config.contracts)  # read-only Schema Registry API (analysts)
    probes: list[asyncio.Task[None]] = []

    async def start_probe(_: web.Application) -> None:
        if healing.checkable:
            every = config.probe_every_s
            probe = probe_forever(
                healing,
                every_s=every,
                degraded_every_s=min(1.0, every),
                timeout_s=max(every, PROBE_TIMEOUT_S),
            )
            probes.append(asyncio.get_running_loop().create_task(probe))
        if config.heartbeat_interval_s > 0:
            beats = heartbeats_forever(gateway, config.heartbeat_interval_s)
            probes.append(asyncio.get_running_loop().create_task(beats))

    async def close_writer(_: web.Application) -> None:
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        await healing.close()

    app.on_startup.append(start_probe)
    app.on_cleanup.append(close_writer)
    app[GATEWAY_KEY] = gateway
    return app


async def heartbeats_forever(gateway: Gateway, every_s: float) -> None:
    """Every ``every_s``, a watermark heartbeat to every raw partition the gateway writes
    (``connectors.heartbeat``): windows of streams fed only over HTTP close on time in quiet
    hours. The floor is safe because the gateway refuses ``TOO_LATE`` on the same clock."""
    validators = list(gateway.router.validators.values())
    margin_ms = gateway.config.heartbeat_margin_ms
    while True:
        await asyncio.sleep(every_s)
        try:
            await gateway.writer.write(heartbeat_records(validators, gateway.clock(), margin_ms))
        except KafkaUnavailable as exc:  # /healthz already says so; the next beat retries
            _log.debug("heartbeats not written (%s)", type(exc).__name__)


def make_metrics_app(registry: CollectorRegistry) -> web.Application:
    """``GET /metrics``: the Prometheus text of ``registry`` (the gateway's), on its own app.

    It is served on a separate address from the push API, loopback by default: the counters
    carry every tenant's contract ids and volumes.
    """

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
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


def _granted(provider: ProviderGrant, contract_id: str) -> ContractGrant:
    # Grants first: a token learns nothing of contracts it is not granted, not even whether
    # they exist.
    grant = provider.grant(contract_id)
    if grant is None:
        raise RequestRefused(403, "FORBIDDEN", "this token may not push to this contract")
    return grant


def _served(router: Router, contract_id: str) -> None:
    if contract_id not in router.contracts:
        raise RequestRefused(404, Reason.UNKNOWN_CONTRACT.value, "no such contract")


def _validate_json(validator: StreamValidator, data: bytes, now_ms: int) -> Outcome:
    """The native endpoint's check: the item is the stream's record, as JSON."""
    return validator.validate_json(data, now_ms=now_ms, connector=CONNECTOR, source="")


def _content_kind(request: web.Request) -> bool:
    """True for NDJSON, False for a JSON array; 415 for anything else."""
    kind = request.content_type
    if kind == NDJSON_TYPE:
        return True
    if kind == JSON_TYPE:
        return False
    msg = f"send {JSON_TYPE} (a JSON array) or {NDJSON_TYPE} (one object per line)"
    raise RequestRefused(415, "UNSUPPORTED_MEDIA_TYPE", msg)


def _dead_letter(
    validator: StreamValidator, rejected: Rejected, item: Item, source: str, now_ms: int
) -> OutRecord:
    """The DLQ record of a rejected item: its bytes as sent (a prefix if oversized), and why."""
    _, value, headers = dlq_record(
        item.data,
        rejected,
        contract=validator.contract,
        stream=validator.stream.name,
        connector=CONNECTOR,
        source=source,
        now_ms=now_ms,
    )
    if item.oversized:  # the item was never held whole: its size and digest came with it
        facts = {H_ORIGINAL_BYTES: str(item.size).encode(), H_ORIGINAL_SHA256: item.sha256.encode()}
        headers = [(name, facts.get(name, value)) for name, value in headers]
    return OutRecord(validator.dlq_topic, None, value, headers)


def _check_stream_grants(contracts: Sequence[Contract], providers: Sequence[ProviderGrant]) -> None:
    """A grant naming a stream its (served) contract lacks is a typo that would deny silently."""
    streams = {c.id: {s.name for s in c.streams} for c in contracts}
    for provider in providers:
        for grant in provider.contracts:
            unknown = set(grant.streams or ()) - streams.get(grant.id, set(grant.streams or ()))
            if unknown:
                msg = (
                    f"provider {provider.id}: contract {grant.id} has no stream "
                    f"{', '.join(sorted(unknown))}"
                )
                raise GatewayConfigError(msg)


def _forget(validator: StreamValidator, event_ids: Sequence[Hashable]) -> None:
    if isinstance(validator.dedup, JournaledDuplicateFilter):
        validator.dedup.forget(event_ids)


def _refusal(refused: RequestRefused, request_id: str) -> web.Response:
    body = {"request_id": request_id, "error": refused.code, "message": refused.message}
    return refusal(refused, request_id, body)
