"""``respublica web``: the aiohttp application (read-only: every route but one is a GET).

Pages are static files (``static/``) whose scripts fetch JSON; nothing is fetched from another
origin (Content-Security-Policy ``default-src 'self'``, a configured tile server excepted).

Routes:

* ``/`` the views this principal may read (``access.py``), with links to the auditor pages;
* ``/views/<c>/<v>`` a view's map, slider, table and downloads (``static/view.html``);
* ``/audit/<c>`` the auditor page (``static/audit.html``), ``/audit/<c>/report.html`` the
  full public audit report;
* ``/api/views``, ``/api/views/<c>/<v>`` (terms and released windows),
  ``/api/views/<c>/<v>/windows/<start>`` (one window's groups with geometry),
  ``/api/events`` (server-sent events: one ``release`` per new or changed window,
  ``streams.py``), ``GET /api/audit/<c>`` (the last audit; the first one starts it) and
  ``POST /api/audit/<c>`` (run it again);
* ``/exports/<c>/<v>.<csv|geojson|parquet|meta.json>``: the ``respublica export`` files;
* ``/healthz``: ``ok`` once the catalogue of readable views is known.

A view the principal may not read is a 404, the same as a view that does not exist. Requests
for another host name or from another site are refused (``guard.py``); answers whose cost
grows with a view's history are built off the event loop once per version (``builds.py``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from kafka.errors import KafkaError

from broker.analysts.export import export
from broker.analysts.export.table import metadata
from broker.audit.render_html import CSS as REPORT_CSS
from broker.kafka.public_reader import read_view
from broker.kafka.settings import KafkaSettings
from broker.threads import in_daemon_thread
from broker.web import payload
from broker.web.access import ViewRef, readable_views, visible_topics
from broker.web.auditor import AuditDesk
from broker.web.builds import Builds, BuildsBusy
from broker.web.feed import ViewFeed, Window
from broker.web.guard import allowed_hosts, host_and_site_guard
from broker.web.streams import RETRY_AFTER_S, Hub, StreamGate, StreamLimits, serve_events
from contracts.errors import RespublicaError
from contracts.model import Contract

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
EXPORTS = {
    "csv": ("csv", "text/csv"),
    "geojson": ("geojson", "application/geo+json"),
    "parquet": ("parquet", "application/vnd.apache.parquet"),
}
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class WebConfig:
    """How ``respublica web`` runs."""

    host: str = "127.0.0.1"
    port: int = 8090
    tile_url: str | None = None
    """``https://tiles.example/{z}/{x}/{y}.png``: a raster tile layer under the map."""
    tile_attribution: str | None = None
    catalogue_refresh_s: float = 60.0
    allowed_hosts: tuple[str, ...] = ()
    """``NAME[:PORT]`` values of ``Host`` accepted besides the loopback names (``guard.py``)."""
    streams: StreamLimits = StreamLimits()
    export_builds: int = 2
    """Export files built at once; one more request that needs a build gets 503."""


class WebState:
    """What the routes share: the contracts, the readable views and their feeds."""

    def __init__(self, kafka: KafkaSettings, contracts: Iterable[Contract], config: WebConfig):
        self.kafka = kafka
        self.config = config
        self.contracts = {c.id: c for c in contracts}
        self.views: dict[tuple[str, str], ViewRef] = {}
        self.feeds: dict[tuple[str, str], ViewFeed] = {}
        self.hub = Hub(config.streams.queue_size)
        self.gate = StreamGate(config.streams)
        self.audits = AuditDesk(kafka)
        self.exports: Builds[bytes] = Builds(
            "web-export", threads=config.export_builds, slots=config.export_builds
        )
        self.summaries: Builds[dict[str, Any]] = Builds("web-summary")
        self.ready = False

    def refresh(self, loop: asyncio.AbstractEventLoop, topics: set[str]) -> None:
        """Follow the views the broker now lists for this principal; drop the others."""
        refs = {
            (r.contract.id, r.view.name): r for r in readable_views(self.contracts.values(), topics)
        }
        for key in set(self.feeds) - set(refs):
            self.feeds.pop(key).stop(timeout_s=0)
        for key, ref in refs.items():
            if key not in self.feeds:
                feed = ViewFeed(self.kafka, ref.contract, ref.view, self._announce(loop, key))
                self.feeds[key] = feed
                feed.start()
        self.views = refs
        self.ready = True

    def _announce(
        self, loop: asyncio.AbstractEventLoop, key: tuple[str, str]
    ) -> Callable[[Window], None]:
        def announce(window: Window) -> None:
            event = {"contract": key[0], "view": key[1], "start": window[0], "end": window[1]}
            loop.call_soon_threadsafe(self.hub.publish, event)

        return announce

    def stop(self) -> None:
        """Stop every feed and the build pools."""
        for feed in self.feeds.values():
            feed.stop(timeout_s=2)
        self.exports.close()
        self.summaries.close()

    def feed(self, request: web.Request) -> ViewFeed:
        """The feed a ``<c>/<v>`` route names, or 404 (unknown or not readable alike)."""
        key = (request.match_info["contract"], request.match_info["view"])
        if key not in self.views:
            raise web.HTTPNotFound(text="no such view for this principal\n")
        return self.feeds[key]

    def contract(self, request: web.Request) -> Contract:
        """A contract with at least one readable view, or 404."""
        contract_id = request.match_info["contract"]
        if not any(c == contract_id for c, _ in self.views):
            raise web.HTTPNotFound(text="no such contract for this principal\n")
        return self.contracts[contract_id]


STATE: web.AppKey[WebState] = web.AppKey("state", WebState)
CSP: web.AppKey[str] = web.AppKey("csp", str)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json(data: Any) -> web.Response:
    return web.json_response(data, dumps=_dumps, headers=NO_STORE)


def _busy() -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(
        text="busy building other files: try again later\n",
        headers={"Retry-After": str(RETRY_AFTER_S), **NO_STORE},
    )


def _page(name: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.FileResponse:
        if "contract" in request.match_info and "view" in request.match_info:
            request.app[STATE].feed(request)
        elif "contract" in request.match_info:
            request.app[STATE].contract(request)
        return web.FileResponse(STATIC / name)

    return handler


async def _views(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rows = []
    for (contract_id, view_name), ref in state.views.items():
        released = state.feeds[(contract_id, view_name)].book.count()
        rows.append(
            {
                "contract": contract_id,
                "contract_title": ref.contract.title,
                "view": view_name,
                "description": ref.view.description,
                "windows": released,
                "error": state.feeds[(contract_id, view_name)].error,
            }
        )
    return _json({"principal": state.kafka.username, "views": rows})


async def _view(request: web.Request) -> web.Response:
    state = request.app[STATE]
    feed = state.feed(request)

    def build() -> dict[str, Any]:
        return payload.view_summary(feed.contract, feed.view, feed.book.windows())

    key = (feed.contract.id, feed.view.name)
    body = dict(await state.summaries.get(key, feed.book.version, build))
    body["error"] = feed.error
    body["tiles"] = {"url": state.config.tile_url, "attribution": state.config.tile_attribution}
    body["exports"] = {
        fmt: f"/exports/{feed.contract.id}/{feed.view.name}.{fmt}"
        for fmt in (*EXPORTS, "meta.json")
    }
    return _json(body)


async def _window(request: web.Request) -> web.Response:
    feed = request.app[STATE].feed(request)
    try:
        start = int(request.match_info["start"])
    except ValueError:
        raise web.HTTPNotFound(text="a window is named by its start in ms\n") from None
    released = feed.book.window(start)
    if released is None:
        raise web.HTTPNotFound(text="no released window starts then\n")
    return _json(payload.window_groups(feed.contract, feed.view, released))


async def _events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    return await serve_events(request, state.hub, state.gate, state.config.streams)


async def _export(request: web.Request) -> web.Response:
    state = request.app[STATE]
    feed = state.feed(request)
    fmt = request.match_info["format"]
    key = (feed.contract.id, feed.view.name, fmt)
    try:
        body = await state.exports.get(
            key, feed.book.version, lambda: _export_bytes(state.kafka, feed, fmt)
        )
    except BuildsBusy:
        raise _busy() from None
    except (RespublicaError, KafkaError) as exc:
        # The class name only: a Kafka error's text may quote what the broker returned.
        log.warning(
            "cannot export %s: %s", feed.contract.topic_public(feed.view), type(exc).__name__
        )
        raise web.HTTPServiceUnavailable(
            text="cannot read the view now: try again later\n",
            headers={"Retry-After": str(RETRY_AFTER_S), **NO_STORE},
        ) from None
    if fmt == "meta.json":
        return web.Response(body=body, content_type="application/json", headers=NO_STORE)
    suffix, content_type = EXPORTS[fmt]
    name = f"{feed.contract.id}.{feed.view.name}.{suffix}"
    return web.Response(
        body=body,
        content_type=content_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"', **NO_STORE},
    )


def _export_bytes(kafka: KafkaSettings, feed: ViewFeed, fmt: str) -> bytes:
    """The file ``respublica export`` writes (read from the topic, as it does)."""
    contents = read_view(kafka, feed.contract, feed.view)
    if fmt == "meta.json":
        return _dumps(metadata(contents)).encode()
    suffix = EXPORTS[fmt][0]
    with tempfile.TemporaryDirectory(prefix="respublica-web-") as tmp:
        out = Path(tmp) / f"export.{suffix}"
        export(contents, out, fmt)
        return out.read_bytes()


async def _audit(request: web.Request) -> web.Response:
    """GET: the last audit (the first GET starts one); POST: run it again."""
    state = request.app[STATE]
    contract = state.contract(request)
    result = state.audits.result(contract, refresh=request.method == "POST")
    return _json(result.to_json())


async def _audit_html(request: web.Request) -> web.Response:
    state = request.app[STATE]
    page = state.audits.html(state.contract(request))
    if page is None:
        raise web.HTTPNotFound(text="no audit has run yet: open the auditor page first\n")
    # The report's own inline style, allowed by its hash (it loads nothing else).
    policy = request.app[CSP].replace("style-src 'self'", f"style-src '{REPORT_STYLE}'")
    return web.Response(
        text=page,
        content_type="text/html",
        headers={"Content-Security-Policy": policy, **NO_STORE},
    )


async def _healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not state.ready:
        return web.Response(status=503, text="starting\n")
    return web.Response(text="ok\n")


REPORT_STYLE = "sha256-" + base64.b64encode(hashlib.sha256(REPORT_CSS.encode()).digest()).decode()


def _csp(config: WebConfig) -> str:
    images = "'self' data:"
    if config.tile_url:
        parts = urlsplit(config.tile_url)
        images += f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; img-src " + images + "; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault("Content-Security-Policy", request.app[CSP])
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def _catalogue(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    loop = asyncio.get_running_loop()

    async def refresh_forever() -> None:
        while True:
            try:
                topics = await in_daemon_thread(visible_topics, state.kafka, name="web-listing")
            except Exception as exc:  # noqa: BLE001 - keep the last catalogue, say why
                log.warning("cannot list the readable views: %s", type(exc).__name__)
            else:
                state.refresh(loop, topics)
            # Until the broker has answered once, ask again soon (it may be starting too).
            await asyncio.sleep(state.config.catalogue_refresh_s if state.ready else 5.0)

    task = loop.create_task(refresh_forever())
    yield
    task.cancel()
    state.stop()


def make_web_app(
    kafka: KafkaSettings, contracts: Iterable[Contract], config: WebConfig
) -> web.Application:
    """The application; it follows the readable views from startup to cleanup."""
    hosts = allowed_hosts(config.host, config.port, config.allowed_hosts)
    app = web.Application(middlewares=[_headers, host_and_site_guard(hosts)])
    app[STATE] = WebState(kafka, contracts, config)
    app[CSP] = _csp(config)
    app.cleanup_ctx.append(_catalogue)
    get = app.router.add_get
    get("/", _page("index.html"))
    get("/views/{contract}/{view}", _page("view.html"))
    get("/audit/{contract}", _page("audit.html"))
    get("/audit/{contract}/report.html", _audit_html)
    get("/api/views", _views)
    get("/api/views/{contract}/{view}", _view)
    get("/api/views/{contract}/{view}/windows/{start}", _window)
    get("/api/events", _events)
    get("/api/audit/{contract}", _audit)
    app.router.add_post("/api/audit/{contract}", _audit)
    get("/exports/{contract}/{view}.{format:csv|geojson|parquet|meta\\.json}", _export)
    get("/healthz", _healthz)
    app.router.add_static("/static", STATIC, follow_symlinks=False)
    return app
