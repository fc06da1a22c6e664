"""Pseudonym and noise keys shared by every worker, on the compacted ``respublica.<c>.keys`` topic.

Workers must agree on keys (the same subject must get the same pseudonym on every worker), yet
keys are random (so that destroying one really shreds its pseudonyms). Agreement without a
leader: "first record wins". A worker that needs a key nobody wrote yet appends a *candidate*
under a key unique to itself (``pseudonym|<epoch>|<writer>``), reads the log to its end, and
adopts the candidate of the lowest *order* (its offset; a re-sealed copy keeps the offset of
its original). Every worker that reads past its own candidate sees the same lowest order, and
compaction never removes a live candidate (their keys differ), so the choice is stable.

Every value is sealed and authenticated under the master key, with the contract and the
record key as associated data (``broker.worker.keyrecords``); a record that does not open is
ignored and counted (``on_reject``), never obeyed: a forged floor destroys nothing.

Destruction (crypto-shredding) is driven by event time. Each view's merger reports its
progress (``progress``: the epoch below which keys are past retention at the view's lowest
source watermark); once every view of the contract has passed an epoch, ``destroy_before``
appends ``floor|<epoch>`` and tombstones every candidate of older epochs, and any worker
reading a floor destroys its own copies too. Using the *lowest* watermark of *every* view
means no source can still fold an event that needs a destroyed key unless that event is late
anyway (given ``key_retention >= window``). Records (all values sealed)::

    pseudonym|<epoch>|<writer>  32-byte key of (contract, epoch)            (tombstoned later)
    noise|<writer>              32-byte noise key of the contract
    floor|<epoch>               every key of an epoch below it is destroyed
    progress|<view>             the view no longer needs keys below the sealed epoch
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from broker.kafka.topics import KEYS_SEGMENT_MS
from broker.worker.keyrecords import (
    KeyRecord,
    KeyRecordRejected,
    MasterKeys,
    RejectReason,
    open_record,
    parse_name,
    seal_record,
)
from contracts.errors import RespublicaError
from policies.pseudonymise import KEY_BYTES, KeyDestroyedError, KeyRing

MASTER_KEY_ENV = "RESPUBLICA_MASTER_KEY"
NEW_MASTER_KEY_ENV = "RESPUBLICA_NEW_MASTER_KEY"
# Kafka rolls a segment, making its tombstones cleanable, only when a record arrives after
# segment.ms: a worker that learnt of a destruction appends the floor again after this long.
ROLL_AFTER_S = KEYS_SEGMENT_MS / 1000 + 60
_log = logging.getLogger(__name__)


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


def _read_key_file(key_file: Path) -> bytes:
    try:
        data = key_file.read_bytes()
    except OSError as exc:
        msg = f"cannot read the master key file {key_file} ({type(exc).__name__})"
        raise KeyStoreError(msg) from exc
    return data if len(data) == KEY_BYTES else parse_master_key(data.decode("ascii", "replace"))


def load_master_key(key_file: Path | None = None, env: str = MASTER_KEY_ENV) -> bytes:
    """The key-encryption key: ``key_file`` first, else the variable ``env``."""
    if key_file is not None:
        return _read_key_file(key_file)
    text = os.environ.get(env)
    if not text:
        msg = f"no master key: set {env} (32 bytes, hex or base64) or pass its key file"
        raise KeyStoreError(msg)
    return parse_master_key(text)


def load_master_keys(
    key_file: Path | None = None, new_key_file: Path | None = None, *, require_new: bool = False
) -> MasterKeys:
    """The master key, and the new one during a rotation (``$RESPUBLICA_NEW_MASTER_KEY``).

    With a new key, records are sealed under it and opened under either (docs/security.md).
    """
    old = load_master_key(key_file)
    if new_key_file is None and not os.environ.get(NEW_MASTER_KEY_ENV):
        if require_new:
            msg = f"no new master key: set {NEW_MASTER_KEY_ENV} or pass --new-master-key-file"
            raise KeyStoreError(msg)
        return MasterKeys(old)
    new = load_master_key(new_key_file, NEW_MASTER_KEY_ENV)
    return MasterKeys(new) if new == old else MasterKeys(new, (old,))


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


@dataclass(frozen=True)
class _Winner:
    """The adopted candidate so far: lowest order wins."""

    order: int
    key: bytes
    name: str


@dataclass
class _Seen:
    """What the log holds so far, reduced: winners by epoch, all candidates, the floor."""

    offset: int = 0
    winners: dict[int, _Winner] = field(default_factory=dict)
    candidates: dict[int, set[str]] = field(default_factory=dict)
    noise: _Winner | None = None
    floor: int | None = None
    progress: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ResealReport:
    """What ``KeyStore.reseal`` did to the live records of one contract."""

    resealed: int
    tombstoned: int
    already_current: int
    rejected: dict[str, int]


class KeyStore:
    """The keys of one contract: pseudonym keys per epoch, one noise key, destruction floor."""

    def __init__(
        self,
        contract: str,
        log: KeysLog,
        masters: MasterKeys,
        writer: str,
        *,
        on_reject: Callable[[RejectReason], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.contract = contract
        self.ring = SharedKeyRing(self._resolve)
        self._log = log
        self._masters = masters
        self._writer = writer
        self._seen = _Seen()
        self._lock = threading.RLock()  # the raw loop and the merger loop share a store
        self._on_reject = on_reject
        self._clock = clock
        self._roll_at: float | None = None
        self.destroyed = 0
        self.rejected: Counter[str] = Counter()

    def refresh(self) -> None:
        """Read what other workers appended; adopt their keys and floors."""
        with self._lock:
            for offset, key, value in self._log.read_from(self._seen.offset):
                self._apply(offset, key, value)
                self._seen.offset = offset + 1
            self._apply_floor()

    def _reject(self, reason: RejectReason, offset: int) -> None:
        self.rejected[reason.value] += 1
        _log.warning(
            "ignored record %d of the key topic of %s (%s)", offset, self.contract, reason.value
        )
        if self._on_reject is not None:
            self._on_reject(reason)

    def _apply(self, offset: int, name: str, value: bytes | None) -> None:
        try:
            if value is None:
                self._tombstone(name)
                return
            record = open_record(self._masters, self.contract, name, value)
        except KeyRecordRejected as exc:
            self._reject(exc.reason, offset)
            return
        seen = self._seen
        epoch = record.epoch if record.epoch is not None else 0
        order = offset if record.order is None else record.order
        if record.kind == "floor":
            seen.floor = epoch if seen.floor is None else max(seen.floor, epoch)
        elif record.kind == "progress":
            view = parse_name(name)[2]
            seen.progress[view] = max(epoch, seen.progress.get(view, epoch))
        elif record.key is not None and record.kind == "noise":
            if seen.noise is None or order < seen.noise.order:
                seen.noise = _Winner(order, record.key, name)
        elif record.key is not None:
            seen.candidates.setdefault(epoch, set()).add(name)
            winner = seen.winners.get(epoch)
            alive = seen.floor is None or epoch >= seen.floor
            if alive and (winner is None or order < winner.order):
                seen.winners[epoch] = _Winner(order, record.key, name)

    def _tombstone(self, name: str) -> None:
        """Only tombstones of dead candidates are ours; any other is counted (and ignored)."""
        try:
            kind, epoch, _ = parse_name(name)
        except KeyRecordRejected:
            kind, epoch = "", None
        if kind != "pseudonym" or epoch is None:
            raise KeyRecordRejected(RejectReason.TOMBSTONE)
        seen = self._seen
        winner = seen.winners.get(epoch)
        live = seen.floor is None or epoch >= seen.floor
        if live and winner is not None and winner.name == name:  # no floor shredded it
            raise KeyRecordRejected(RejectReason.TOMBSTONE)
        # Tombstoned already: no longer a candidate to tombstone. (Adding it back made every
        # destruction tombstone every key ever destroyed again, issue 17.)
        names = seen.candidates.get(epoch)
        if names is not None:
            names.discard(name)
            if not names:
                del seen.candidates[epoch]

    def _apply_floor(self) -> None:
        floor = self._seen.floor
        if floor is not None and floor > (self.ring.destroyed_before(self.contract) or -(2**63)):
            self.destroyed += self.ring.destroy_before(self.contract, floor)
            for old in [e for e in self._seen.winners if e < floor]:
                del self._seen.winners[old]  # even our copies go: nothing to open later
            self._roll_at = self._clock() + ROLL_AFTER_S

    def _append(self, name: str, *, epoch: int | None = None, key: bytes | None = None) -> None:
        self._log.append(
            name, seal_record(self._masters, self.contract, name, epoch=epoch, key=key)
        )

    def _resolve(self, contract: str, epoch: int) -> bytes:
        with self._lock:
            self.refresh()
            if self._seen.floor is not None and epoch < self._seen.floor:
                msg = f"key {contract}:{epoch} was destroyed"
                raise KeyDestroyedError(msg)
            if epoch not in self._seen.winners:
                # A name never used before, even by this process: an append that timed out
                # may still land, and must not be replaced under the same compacted key.
                name = f"pseudonym|{epoch}|{self._writer}.{secrets.token_hex(4)}"
                self._append(name, epoch=epoch, key=secrets.token_bytes(KEY_BYTES))
                self.refresh()
            winner = self._seen.winners.get(epoch)
            if winner is None:
                msg = f"the key of {contract}:{epoch} just written cannot be read back"
                raise KeyStoreError(msg)
            return winner.key

    def oldest_epoch(self) -> int | None:
        """The oldest epoch whose pseudonym key this process still holds (None: no key yet)."""
        with self._lock:
            return min(self.ring.epochs(self.contract), default=None)

    def noise_key(self) -> bytes:
        """The contract's noise secret (created once, by whichever worker writes first)."""
        with self._lock:
            self.refresh()
            if self._seen.noise is None:
                writer = f"{self._writer}.{secrets.token_hex(4)}"  # see _resolve
                self._append(f"noise|{writer}", key=secrets.token_bytes(KEY_BYTES))
                self.refresh()
            if self._seen.noise is None:
                msg = f"the noise key of {self.contract} just written cannot be read back"
                raise KeyStoreError(msg)
            return self._seen.noise.key

    def progress(self, view: str, epoch: int, views: Collection[str]) -> int:
        """Record that ``view`` needs no key below ``epoch``; shred what no view needs.

        Returns how many keys this call destroyed.
        """
        with self._lock:
            if epoch <= self._seen.progress.get(view, -(2**63)):
                return 0
            self._append(f"progress|{view}", epoch=epoch)
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
            self._append(f"floor|{epoch}", epoch=epoch)
            for old in sorted(e for e in self._seen.candidates if e < epoch):
                for key in sorted(self._seen.candidates.pop(old)):
                    self._log.append(key, None)  # tombstone: compaction drops the sealed key
                self._seen.winners.pop(old, None)
            before = self.destroyed
            self.refresh()
            return self.destroyed - before

    def roll(self) -> bool:
        """Append the floor again once ``ROLL_AFTER_S`` has passed since a destruction.

        Kafka rolls the active segment only when a record arrives after ``segment.ms``; until
        then the tombstones of a destruction cannot be compacted, and the sealed keys they
        shred stay on disk. Returns whether a record was appended.
        """
        with self._lock:
            floor = self._seen.floor
            if self._roll_at is None or floor is None or self._clock() < self._roll_at:
                return False
            self._roll_at = None
            self._append(f"floor|{floor}", epoch=floor)
            return True

    def _live(self, record: KeyRecord) -> bool:
        seen = self._seen
        if record.kind == "pseudonym":
            winner = seen.winners.get(record.epoch if record.epoch is not None else 0)
            return winner is not None and winner.name == record.name
        if record.kind == "noise":
            return seen.noise is not None and seen.noise.name == record.name
        return True

    def reseal(self) -> ResealReport:
        """Seal every live record still under another master key under the current one.

        Keys below the floor and losing candidates are tombstoned, never re-sealed (destroyed
        keys stay destroyed); a record that does not open is left alone and reported; a
        re-sealed key keeps the order of its original, so the same candidate still wins.
        """
        with self._lock:
            self.refresh()
            latest: dict[str, tuple[int, bytes | None]] = {}
            for offset, name, value in self._log.read_from(0):
                latest[name] = (offset, value)
            counts: Counter[str] = Counter()
            rejected: Counter[str] = Counter()
            for name, (offset, value) in sorted(latest.items(), key=lambda item: item[1][0]):
                if value is None:
                    continue
                try:
                    record = open_record(self._masters, self.contract, name, value)
                except KeyRecordRejected as exc:
                    rejected[exc.reason.value] += 1
                    continue
                if not self._live(record):
                    self._log.append(name, None)
                    counts["tombstoned"] += 1
                elif record.current:
                    counts["current"] += 1
                else:
                    order = offset if record.order is None else record.order
                    sealed = seal_record(
                        self._masters,
                        self.contract,
                        name,
                        epoch=record.epoch,
                        key=record.key,
                        order=order,
                    )
                    self._log.append(name, sealed)
                    counts["resealed"] += 1
            self.refresh()
            return ResealReport(
                counts["resealed"], counts["tombstoned"], counts["current"], dict(rejected)
            )
