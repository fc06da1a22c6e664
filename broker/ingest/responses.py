"""How the push API answers: JSON bodies with the request id, and refusals of a whole request.

Shared by the native endpoint (``broker.ingest.gateway``: ``{request_id, error, message}``)
and MDS Agency (``broker.ingest.agency``: MDS's error message, its own media type), so both
set the same headers: ``X-Request-Id`` always, ``WWW-Authenticate`` on 401, the refusal's own
headers (``Retry-After``), and a closed connection after 408 and 413 (the rest of the body was
never read, so the connection cannot be reused).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from broker.ingest.body import RequestRefused

_log = logging.getLogger(__name__)


def json_response(
    status: int, body: dict[str, Any], request_id: str, content_type: str | None = None
) -> web.Response:
    """``body`` as JSON (``application/json`` unless another type is given), with the id."""
    response = web.json_response(body, status=status)
    if content_type is not None:
        response.headers["Content-Type"] = content_type
    response.headers["X-Request-Id"] = request_id
    return response


def refusal(
    refused: RequestRefused,
    request_id: str,
    body: dict[str, Any],
    content_type: str | None = None,
) -> web.Response:
    """The answer to a refused request: ``body`` with the refusal's status and headers."""
    response = json_response(refused.status, body, request_id, content_type)
    if refused.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="respublica"'
    response.headers.update(refused.headers)
    if refused.status in (408, 413):
        response.force_close()  # the rest of the body is not read: do not reuse the connection
    _log.info("request %s refused: %d %s", request_id, refused.status, refused.code)
    return response
