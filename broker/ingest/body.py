"""Read a push request's body as a stream of items, bounded in bytes, items, time and memory.

``read_items`` pulls the body in chunks of ``CHUNK`` bytes from aiohttp's stream (never the
whole body at once), inflates ``Content-Encoding: gzip`` incrementally (``zlib`` with
``max_length``, so a zip bomb never allocates more than a chunk), cuts items with the
framers of ``broker.ingest.framing``, and refuses as soon as a limit is passed: 413 past
``max_body_bytes`` on the wire or decompressed, or past ``max_items``; 408 when the body has
not arrived within ``timeout_s``; 415 for another content encoding; 400 for a malformed
frame or gzip stream. It yields to the event loop after every chunk, so ``/healthz`` and
other requests never wait on a parse. The server must run with ``auto_decompress=False``
(``broker.ingest.server.SERVER_OPTIONS``): the gateway bounds decompression itself.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from broker.ingest.framing import ArrayFramer, FramingError, Item, LineFramer
from connectors.validate import DLQ_MAX_VALUE_BYTES

CHUNK = 64 * 1024
ENCODINGS = ("identity", "gzip")


class RequestRefused(Exception):  # noqa: N818 - control flow to one error response
    """A whole-request problem: status, stable code, a value-free message, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


@dataclass(frozen=True)
class BodyLimits:
    """What one request body may hold."""

    max_body_bytes: int
    max_items: int
    max_item_bytes: int
    timeout_s: float


async def read_items(request: web.Request, limits: BodyLimits, *, ndjson: bool) -> list[Item]:
    """Every item of the body, or ``RequestRefused`` as soon as a limit is passed."""
    inflater = _encoding(request, limits)
    framer = (LineFramer if ndjson else ArrayFramer)(limits.max_item_bytes, DLQ_MAX_VALUE_BYTES)
    items: list[Item] = []
    wire = 0
    try:
        async with asyncio.timeout(limits.timeout_s):
            while chunk := await request.content.read(CHUNK):
                wire += len(chunk)
                if wire > limits.max_body_bytes:
                    raise _too_large(limits)
                for piece in inflater.inflate(chunk) if inflater else (chunk,):
                    _count(items, framer.feed(piece), limits)
                    await asyncio.sleep(0)  # let /healthz and other requests run
        if inflater is not None:
            inflater.finish()
        _count(items, framer.finish(), limits)
    except TimeoutError:
        msg = f"the body did not arrive within {limits.timeout_s:g} s"
        raise RequestRefused(408, "BODY_TIMEOUT", msg) from None
    except FramingError as bad:
        hint = f"; {bad.hint}" if bad.hint else ""
        raise RequestRefused(400, bad.code, _FRAMING_MESSAGES[ndjson] + hint) from None
    except zlib.error:
        raise RequestRefused(400, "MALFORMED_GZIP", "the body is not valid gzip") from None
    return items


_FRAMING_MESSAGES = {
    False: "the body must be a JSON array of events",
    True: "the body must hold one JSON object per line",
}


def _count(items: list[Item], new: list[Item], limits: BodyLimits) -> None:
    items.extend(new)
    if len(items) > limits.max_items:
        msg = f"a batch holds at most {limits.max_items} events"
        raise RequestRefused(413, "BATCH_TOO_LARGE", msg)


def _too_large(limits: BodyLimits) -> RequestRefused:
    msg = f"the body may hold at most {limits.max_body_bytes} bytes (decompressed too)"
    return RequestRefused(413, "BODY_TOO_LARGE", msg)


def _encoding(request: web.Request, limits: BodyLimits) -> _Inflater | None:
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    if encoding not in ENCODINGS:
        msg = "Content-Encoding may be gzip or identity"
        raise RequestRefused(415, "UNSUPPORTED_ENCODING", msg)
    if request.content_length is not None and request.content_length > limits.max_body_bytes:
        raise _too_large(limits)
    return _Inflater(limits) if encoding == "gzip" else None


class _Inflater:
    """Incremental gzip (several members allowed), refusing past the body limit."""

    def __init__(self, limits: BodyLimits) -> None:
        self.limits = limits
        self.produced = 0
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def inflate(self, data: bytes) -> Iterator[bytes]:
        """Decompressed pieces of at most ``CHUNK`` bytes; ``RequestRefused`` past the limit."""
        while data:
            piece = self._zlib.decompress(data, CHUNK)
            self.produced += len(piece)
            if self.produced > self.limits.max_body_bytes:
                raise _too_large(self.limits)
            if piece:
                yield piece
            if self._zlib.eof:  # another gzip member may follow
                data = self._zlib.unused_data
                if data:
                    self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                data = self._zlib.unconsumed_tail

    def finish(self) -> None:
        """The stream must have ended cleanly (no truncated member)."""
        if not self._zlib.eof:
            raise zlib.error("truncated gzip stream")  # noqa: EM101 - never shown to a client
