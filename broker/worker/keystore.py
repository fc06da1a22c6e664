"""Pseudonym and noise keys shared by every worker, on the compacted ``respublica.<c>.keys`` topic.

Workers must agree on keys (the same subject must get the same pseudonym on every worker), yet
keys are random (so that destroying one really shreds its pseudonyms). Agreement without a
leader: "first record wins". A worker that needs a key nobody wrote yet appends a *candidate*
under a key unique to itself (``pseudonym|<epoch>|<writer>``), reads the log to its end, and
adopts the candidate with the lowest offset. Every worker that reads past its own candidate
sees the same lowest offset, and compaction never removes a candidate (their keys differ), so
the choice is stable forever. Values are sealed with AES-256-GCM under the key-encryption key
(``KeyRing.to_encrypted_bytes`` of a one-key ring).

Destruction (crypto-shredding) is driven by event time. Each view's merger reports its
progress (``progress``: the epoch below which keys are past retention at the view's lowest
source watermark); once every view of the contract has passed an epoch, ``destroy_before``
appends ``floor|<epoch>`` and tombstones every candidate of older epochs, and any worker
reading a floor destroys its own copies too. Using the *lowest* watermark of *every* view
means no source can still fold an event that needs a destroyed key unless that event is late
anyway (given ``key_retention >= window``). Records::

    pseudonym|<epoch>|<writer>  sealed 32-byte key of (contract, epoch)   (tombstoned later)
    noise|<writer>              sealed 32-byte noise key of the contract
    floor|<epoch>               {"epoch": n}: every key of an epoch below n is destroyed
    progress|<view>             {"epoch": n}: the view no longer needs keys below epoch n
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from contracts.errors import RespublicaError
from policies.pseudonymise import KEY_BYTES, KeyDestroyedError, KeyRing, KeyRingError

MASTER_KEY_ENV = "RESPUBLICA_MASTER_KEY"
_NOISE_EPOCH = 0


class KeyStoreError(RespublicaError):
    """The key-encryption key or the key topic could not be used (never quotes key material)."""


class KeysLog(Protocol):
    """The append-only log the store lives on (a Kafka partition, or a list in tests)."""

    def read_from(self, offset: int) -> list[tuple[int, str, bytes | None]]:
        """``(offset, key, value)`` of every record at or after ``offset``, up to the end."""
        ...

    def append(self, key: str, value: bytes | None) -> None:
        """Write one record durably (returns once acknowledged)."""
        ...


def parse_master_key(text: str) -> bytes:
    """A 32-byte key from 64 hex digits or base64; ``KeyStoreError`` otherwise."""
    text = text.strip()
    decoded: bytes | None = None
    try:
        decoded = (
            bytes.fromhex(text)
            if len(text) == 2 * KEY_BYTES
            else base64.b64decode(text, validate=True)
        )
    except (ValueError, binascii.Error):
        decoded = None
    if decoded is None or len(decoded) != KEY_BYTES:
        msg = "the master key must be 32 bytes, written as 64 hex digits or in base64"
        raise KeyStoreError(msg)
    return decoded


def load_master_key(key_file: Path | None = None) -> bytes:
    """The key-encryption key: ``--master-key-file`` first, else ``$RESPUBLICA_MASTER_KEY``."""
    if key_file is not None:
        try:
            data = key_file.read_bytes()
        except OSError as exc:
            msg = f"cannot read the master key file {key_file} ({type(exc).__name__})"
            raise KeyStoreError(msg) from exc
        return data if len(data) == KEY_BYTES else parse_master_key(data.decode("ascii", "replace"))
    text = os.environ.get(MASTER_KEY_ENV)
    if not text:
        msg = (
            f"no master key: set {MASTER_KEY_ENV} (32 bytes, hex or base64) "
            "or pass --master-key-file"
        )
        raise KeyStoreError(msg)
    return parse_master_key(text)


def seal(kek: bytes, owner: str, epoch: int, key: bytes) -> bytes:
    """One key, encrypted as a one-key ``KeyRing`` blob (AES-256-GCM, fresh nonce)."""

    def token_bytes(n: int) -> bytes:  # the ring asks once for the key, then for a nonce
        return key if n == KEY_BYTES else secrets.token_bytes(n)

    ring = KeyRing(token_bytes=token_bytes)
    ring.key(owner, epoch)
    return ring.to_encrypted_bytes(kek)


def unseal(blob: bytes, kek: bytes, owner: str, epoch: int) -> bytes:
    """The key sealed by ``seal``; ``KeyStoreError`` for a wrong KEK or a foreign blob."""
    try:
        ring = KeyRing.from_encrypted_bytes(blob, kek, token_bytes=_refuse)
    except KeyRingError as exc:
        msg = f"a sealed key of {owner} cannot be opened: {exc} (is the master key right?)"
        raise KeyStoreError(msg) from exc
    if epoch not in ring.epochs(owner):
        msg = f"a sealed key of {owner} holds another key than its record says"
        raise KeyStoreError(msg)
    return ring.key(owner, epoch)


def _refuse(n: int) -> bytes:
    msg = "keys are never created locally: they come from the shared key store"
    raise KeyStoreError(msg)


class SharedKeyRing(KeyRing):
    """A ``KeyRing`` whose missing keys come from the shared store instead of being drawn."""

    def __init__(self, resolve: Callable[[str, int], bytes]) -> None:
        super().__init__(token_bytes=_refuse)
        self._resolve = resolve

    def key(self, contract: str, epoch: int) -> bytes:
        """The key of (contract, epoch), fetched from (or created in) the shared store."""
        floor = self.destroyed_before(contract)
        if (contract, epoch) not in self._keys and (floor is None or epoch >= floor):
            self._keys[(contract, epoch)] = bytearray(self._resolve(contract, epoch))
        return super().key(contract, epoch)

    def adopt(self, contract: str, epoch: int, key: bytes) -> None:
        """Hold a key read from the store (first record wins, so it never changes)."""
        self._keys.setdefault((contract, epoch), bytearray(key))


@dataclass
class _Seen:
    """What the log holds so far, reduced: winners by epoch, all candidates, the floor."""

    offset: int = 0
    winners: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # epoch -> (offset, blob)
    candidates: dict[int, set[str]] = field(default_factory=dict)
    noise: tuple[int, bytes] | None = None
    floor: int | None = None
    progress: dict[str, int] = field(default_factory=dict)


class KeyStore:
    """The keys of one contract: pseudonym keys per epoch, one noise key, destruction floor."""

    def __init__(self, contract: str, log: KeysLog, kek: bytes, writer: str) -> None:
        self.contract = contract
        self.ring = SharedKeyRing(self._resolve)
        self._log = log
        self._kek = kek
        self._writer = writer
        self._seen = _Seen()
        self._lock = threading.RLock()  # the raw loop and the merger loop share a store
        self.destroyed = 0

    def refresh(self) -> None:
        """Read what other workers appended; adopt their keys and floors."""
        with self._lock:
            for offset, key, value in self._log.read_from(self._seen.offset):
                self._apply(offset, key, value)
                self._seen.offset = offset + 1
            self._apply_floor()

    def _apply(self, offset: int, key: str, value: bytes | None) -> None:
        kind, _, rest = key.partition("|")
        seen = self._seen
        if kind == "floor" and value is not None:
            epoch = int(rest)
            seen.floor = epoch if seen.floor is None else max(seen.floor, epoch)
        elif kind == "progress" and value is not None:
            epoch = int(json.loads(value)["epoch"])
            seen.progress[rest] = max(epoch, seen.progress.get(rest, epoch))
        elif kind == "noise" and value is not None and seen.noise is None:
            seen.noise = (offset, value)
        elif kind == "pseudonym":
            epoch = int(rest.partition("|")[0])
            seen.candidates.setdefault(epoch, set()).add(key)
            if value is not None and epoch not in seen.winners:
                seen.winners[epoch] = (offset, value)

    def _apply_floor(self) -> None:
        floor = self._seen.floor
        if floor is not None and floor > (self.ring.destroyed_before(self.contract) or -(2**63)):
            self.destroyed += self.ring.destroy_before(self.contract, floor)
            for old in [e for e in self._seen.winners if e < floor]:
                del self._seen.winners[old]  # even sealed copies go: nothing to unseal later

    def _resolve(self, contract: str, epoch: int) -> bytes:
        with self._lock:
            self.refresh()
            if self._seen.floor is not None and epoch < self._seen.floor:
                msg = f"key {contract}:{epoch} was destroyed"
                raise KeyDestroyedError(msg)
            if epoch not in self._seen.winners:
                candidate = seal(self._kek, contract, epoch, secrets.token_bytes(KEY_BYTES))
                self._log.append(f"pseudonym|{epoch}|{self._writer}", candidate)
                self.refresh()
            return unseal(self._seen.winners[epoch][1], self._kek, contract, epoch)

    def oldest_epoch(self) -> int | None:
        """The oldest epoch whose pseudonym key this process still holds (None: no key yet)."""
        with self._lock:
            return min(self.ring.epochs(self.contract), default=None)

    def noise_key(self) -> bytes:
        """The contract's noise secret (created once, by whichever worker writes first)."""
        owner = f"{self.contract}/noise"
        with self._lock:
            self.refresh()
            if self._seen.noise is None:
                blob = seal(self._kek, owner, _NOISE_EPOCH, secrets.token_bytes(KEY_BYTES))
                self._log.append(f"noise|{self._writer}", blob)
                self.refresh()
            assert self._seen.noise is not None  # noqa: S101 - our own append is read back
            return unseal(self._seen.noise[1], self._kek, owner, _NOISE_EPOCH)

    def progress(self, view: str, epoch: int, views: Collection[str]) -> int:
        """Record that ``view`` needs no key below ``epoch``; shred what no view needs.

        Returns how many keys this call destroyed.
        """
        with self._lock:
            if epoch <= self._seen.progress.get(view, -(2**63)):
                return 0
            self._log.append(f"progress|{view}", json.dumps({"epoch": epoch}).encode())
            self.refresh()
            needed = [self._seen.progress.get(v) for v in views]
            if any(e is None for e in needed):
                return 0
            return self.destroy_before(min(e for e in needed if e is not None))

    def destroy_before(self, epoch: int) -> int:
        """Shred every key of an epoch below ``epoch``; returns how many this call destroyed."""
        with self._lock:
            self.refresh()
            if self._seen.floor is not None and epoch <= self._seen.floor:
                return 0
            self._log.append(f"floor|{epoch}", f'{{"epoch": {epoch}}}'.encode())
            for old in sorted(e for e in self._seen.candidates if e < epoch):
                for key in sorted(self._seen.candidates.pop(old)):
                    self._log.append(key, None)  # tombstone: compaction drops the blob
                self._seen.winners.pop(old, None)
            before = self.destroyed
            self.refresh()
            return self.destroyed - before
