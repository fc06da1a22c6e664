"""Cut a request body into items as it arrives: NDJSON lines or the elements of a JSON array.

Both framers take bytes in chunks (``feed``) and give back complete items; neither ever holds
more than one item (at most ``max_item_bytes``) plus one chunk. An item over the cap is not
kept: it becomes an ``Item`` with ``oversized`` set, carrying the first ``keep_bytes`` (for
the dead letter), its full size and SHA-256, so the gateway rejects it as
PAYLOAD_TOO_LARGE like any other bad item.

The array framer is our own small scanner rather than an incremental JSON library (ijson
and the like): those give parse events without byte offsets, so they could neither cap an
element by its size before building it, nor hand the validator (and the DLQ) the element's
bytes as sent. It only follows the array's structure (strings, brackets, commas at depth
0); each element is then parsed by the validator's strict decoder. A malformed frame (no
``[``, an empty element, text after ``]``, a truncated body) is ``FramingError``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from broker.kafka.reasons import Reason

_WS = b" \t\r\n"
_NON_WS = re.compile(rb"[^ \t\r\n]")
_STRUCTURE = re.compile(rb'["\[\]{},]')
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
# A whole flat object (no nesting) in one match: most events are flat.
_FLAT_OBJECT = re.compile(rb'\{(?:[^"{}\[\]]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+\}', re.DOTALL)
_VALUE_START = frozenset(b'{"-0123456789tfn')
_QUOTE, _OPEN_OBJ, _OPEN_ARR, _CLOSE_ARR, _COMMA = 34, 123, 91, 93, 44
NDJSON_HINT = (
    "it starts with an object: put the events in [ ], or for one JSON object per line send "
    "Content-Type: application/x-ndjson"
)


class FramingError(Exception):  # noqa: N818 - a whole-body problem, answered 400
    """The body is not a JSON array (or not one object per line): a stable reason code."""

    def __init__(self, code: str, hint: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.hint = hint  # a fixed sentence of ours that says the likely fix


@dataclass(frozen=True, slots=True)
class Item:
    """One element or line: its bytes, or for an oversized one a prefix, size and digest."""

    data: bytes
    line: int | None = None
    oversized: bool = False
    size: int = 0
    sha256: str = ""


class _Oversized:
    """Keeps a prefix, a running hash and the size of an item too large to hold."""

    def __init__(self, keep: int) -> None:
        self.keep, self.prefix, self.size = keep, bytearray(), 0
        self.hash = hashlib.sha256()

    def add(self, data: bytes | memoryview) -> None:
        if len(self.prefix) < self.keep:
            self.prefix += data[: self.keep - len(self.prefix)]
        self.hash.update(data)
        self.size += len(data)

    def item(self, line: int | None) -> Item:
        return Item(bytes(self.prefix), line, True, self.size, self.hash.hexdigest())


class LineFramer:
    """NDJSON: one item per non-blank line (``\\r\\n`` or ``\\n``), numbered from 1."""

    def __init__(self, max_item_bytes: int, keep_bytes: int) -> None:
        self.max_item, self.keep = max_item_bytes, keep_bytes
        self._pending = b""
        self._big: _Oversized | None = None
        self._line = 1

    def feed(self, chunk: bytes) -> list[Item]:
        """The lines completed by ``chunk``."""
        items: list[Item] = []
        pieces = chunk.split(b"\n")
        for piece in pieces[:-1]:
            self._add(piece)
            item = self._end_line()
            if item is not None:
                items.append(item)
        self._add(pieces[-1])
        return items

    def finish(self) -> list[Item]:
        """The last line, if the body did not end with a newline."""
        item = self._end_line()
        return [] if item is None else [item]

    def _add(self, data: bytes) -> None:
        if self._big is not None:
            self._big.add(data)
        elif len(self._pending) + len(data) > self.max_item + 1:  # + 1: a CR still to strip
            self._big = _Oversized(self.keep)
            self._big.add(self._pending)
            self._big.add(data)
            self._pending = b""
        else:
            self._pending += data

    def _end_line(self) -> Item | None:
        line, big, pending = self._line, self._big, self._pending
        self._line, self._big, self._pending = line + 1, None, b""
        if big is not None:
            return big.item(line)
        pending = pending.removesuffix(b"\r")
        if not pending.strip():
            return None
        if len(pending) > self.max_item:
            oversized = _Oversized(self.keep)
            oversized.add(pending)
            return oversized.item(line)
        return Item(pending, line)


class ArrayFramer:
    """A JSON array: one item per element, as the element's bytes (whitespace trimmed)."""

    def __init__(self, max_item_bytes: int, keep_bytes: int) -> None:
        self.max_item, self.keep = max_item_bytes, keep_bytes
        self._buf = b""
        self._start = 0  # where the current element starts in _buf
        self._pos = 0  # how far _buf is scanned
        self._state = "before"  # before | items | after
        self._depth = 0
        self._in_string = False
        self._big: _Oversized | None = None
        self._elements = 0

    def feed(self, chunk: bytes) -> list[Item]:
        """The elements completed by ``chunk``; ``FramingError`` on a malformed frame."""
        if self._state == "after":
            _nothing_after(chunk)
            return []
        self._buf = self._buf[self._start :] + chunk
        self._pos -= self._start
        self._start = 0
        if self._state == "before":
            self._open()
        items: list[Item] = []
        while self._state == "items":
            item = self._scan()
            if item is None:  # more bytes needed, or the array was empty
                break
            items.append(item)
        if self._state == "items":
            self._bound()
        return items

    def finish(self) -> list[Item]:
        """Check the array was closed."""
        if self._state != "after":
            raise FramingError(Reason.MALFORMED_JSON.value)
        return []

    def _open(self) -> None:
        start = _lead(self._buf, 0)
        if start == len(self._buf):
            self._buf = b""
            return
        if self._buf[start] != _OPEN_ARR:
            code = "NOT_AN_ARRAY" if self._buf[start] in _VALUE_START else "MALFORMED_JSON"
            # An object first: NDJSON, or a lone event, sent as a JSON array.
            raise FramingError(code, NDJSON_HINT if self._buf[start] == _OPEN_OBJ else "")
        self._start = self._pos = start + 1
        self._state = "items"

    def _bound(self) -> None:
        """Never hold more than one element's cap: past it, keep a prefix and a digest only."""
        if self._big is None:
            lead = _lead(self._buf, self._start)
            if len(self._buf) - lead <= self.max_item:
                return
            self._start, self._pos = lead, max(lead, self._pos)
            self._big = _Oversized(self.keep)
        self._big.add(self._buf[self._start : self._pos])
        self._start = self._pos

    def _scan(self) -> Item | None:
        """Scan on: an Item at a separator; None when more bytes are needed, or for ``[]``."""
        buf = self._buf
        if self._pos == self._start and self._depth == 0 and not self._in_string:
            flat = _FLAT_OBJECT.match(buf, _lead(buf, self._pos))
            if flat is not None:
                self._pos = flat.end()
        while True:
            if self._in_string:
                self._pos = _STRING_REST.match(buf, self._pos).end()  # type: ignore[union-attr]
                if self._pos < len(buf) and buf[self._pos] == _QUOTE:
                    self._in_string, self._pos = False, self._pos + 1
                    continue
                return None
            found = _STRUCTURE.search(buf, self._pos)
            if found is None:
                self._pos = len(buf)
                return None
            at = found.start()
            char = buf[at]
            self._pos = at + 1
            if char == _QUOTE:
                self._in_string = True
            elif char in b"[{":
                self._depth += 1
            elif char in b"]}" and self._depth > 0:
                self._depth -= 1
            elif char == _CLOSE_ARR or char == _COMMA and self._depth == 0:
                return self._element(at, closing=char == _CLOSE_ARR)
            elif char != _COMMA:  # a "}" at depth 0
                raise FramingError(Reason.MALFORMED_JSON.value)

    def _element(self, end: int, *, closing: bool) -> Item | None:
        raw = self._buf[self._start : end]
        big, self._big = self._big, None
        self._start = self._pos = end + 1
        if closing:
            self._state = "after"
            _nothing_after(self._buf[end + 1 :])
        if big is not None:
            big.add(raw)
            self._elements += 1
            return big.item(None)
        data = raw.strip(_WS)
        if not data:
            if closing and self._elements == 0:
                return None  # []
            raise FramingError(Reason.MALFORMED_JSON.value)
        self._elements += 1
        if len(data) > self.max_item:
            oversized = _Oversized(self.keep)
            oversized.add(data)
            return oversized.item(None)
        return Item(data)


def _nothing_after(rest: bytes) -> None:
    if rest.strip(_WS):
        raise FramingError(Reason.MALFORMED_JSON.value)


def _lead(data: bytes, start: int) -> int:
    """Index of the first non-whitespace byte from ``start`` (``len(data)`` if none)."""
    found = _NON_WS.search(data, start)
    return len(data) if found is None else found.start()
