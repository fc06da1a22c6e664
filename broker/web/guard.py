"""Who may talk to ``respublica web``: the Host it is reached by, and the site a request comes from.

* **Host.** A page on another site can point its own name at 127.0.0.1 (DNS rebinding) and
  then read this server "same-origin". So a request must name this server in ``Host``:
  ``127.0.0.1:<port>``, ``localhost:<port>``, ``[::1]:<port>``, the bound ``host:port``, or a
  name given with ``--allowed-host NAME[:PORT]`` (the public name behind a reverse proxy; a
  name without a port matches a ``Host`` without one). Anything else: 421 Misdirected Request.
* **Site.** A request a browser makes for another site (``Sec-Fetch-Site: cross-site``, or an
  ``Origin`` that is not one of the allowed hosts) is refused with 403, so another site can
  neither read the answers nor make the server work (exports, audits). A top-level navigation
  to a page (``/``, a view's page, an auditor page: static files) is let through, so a link
  from the city's intranet still opens the page; everything the page then loads is
  same-origin.

``/healthz`` answers whatever the Host (a probe of an orchestrator uses the pod's address); it
says ``ok`` and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from contracts.errors import RespublicaError

PAGES = frozenset({"/", "/views/{contract}/{view}", "/audit/{contract}"})
OPEN = frozenset({"/healthz"})
_HOST = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)(:[0-9]{1,5})?$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HostError(RespublicaError):
    """An ``--allowed-host`` that is not ``NAME[:PORT]``."""


def allowed_host(text: str) -> str:
    """``NAME[:PORT]`` in the form a ``Host`` header is compared with (lower case)."""
    value = text.strip().lower()
    match = _HOST.match(value)
    if match is None or (match.group(2) and not 0 < int(match.group(2)[1:]) < 65536):
        msg = "--allowed-host: expected NAME or NAME:PORT (an IPv6 address in brackets)"
        raise HostError(msg)
    return value


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` values this server answers to."""
    bound = f"[{host}]" if ":" in host else host
    names = ("127.0.0.1", "localhost", "[::1]", bound.lower())
    return frozenset({f"{name}:{port}" for name in names} | {allowed_host(h) for h in extra})


def origin_allowed(origin: str, hosts: frozenset[str]) -> bool:
    """An ``Origin`` header names one of ``hosts`` over http(s)."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() in hosts and not parts.path


def _navigation(request: web.Request) -> bool:
    """A top-level GET navigation to one of the pages (static files, no work done)."""
    resource = request.match_info.route.resource
    return (
        request.method == "GET"
        and request.headers.get("Sec-Fetch-Mode") == "navigate"
        and request.headers.get("Sec-Fetch-Dest", "document") == "document"
        and resource is not None
        and resource.canonical in PAGES
    )


def _refusal(request: web.Request, hosts: frozenset[str]) -> web.HTTPException | None:
    host = request.headers.get("Host", "").lower()
    if host not in hosts:
        return web.HTTPMisdirectedRequest(text="this server does not answer to that host name\n")
    origin = request.headers.get("Origin")
    cross_site = request.headers.get("Sec-Fetch-Site") == "cross-site"
    if origin is not None and not origin_allowed(origin, hosts):
        cross_site = True
    if cross_site and not _navigation(request):
        return web.HTTPForbidden(text="requests from another site are refused\n")
    return None


def host_and_site_guard(hosts: frozenset[str]) -> Middleware:
    """The middleware: 421 for another Host, 403 for a cross-site request."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if resource is None or resource.canonical not in OPEN:
            refusal = _refusal(request, hosts)
            if refusal is not None:
                refusal.headers["Cache-Control"] = "no-store"
                raise refusal
        return await handler(request)

    return guard
