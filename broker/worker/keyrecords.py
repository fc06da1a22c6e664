"""The sealed records of ``respublica.<c>.keys``: every value is authenticated under a master key.

The key topic is writable by the contract's worker and by the cluster's super-user, whom the
broker cannot refuse; so no record is obeyed because of where it is, only because it opens
under a master key. Value of every record (pseudonym key, noise key, floor, progress)::

    b"RPK2" ‖ master-key id (8 bytes) ‖ nonce (12 bytes) ‖ AES-256-GCM(master key, payload, AD)
    AD      = b"respublica.keys/2" ‖ 0x00 ‖ contract id ‖ 0x00 ‖ record key
    payload = JSON {"kind", "epoch", "key" (base64, keys only), "order" (re-sealed keys only)}

The record key names the kind and the epoch (``pseudonym|<epoch>|<writer>``, ``noise|<writer>``,
``floor|<epoch>``, ``progress|<view>``), so the contract, kind and epoch are all bound: a record
copied to another contract's topic or under another key fails, and the payload must repeat the
kind and epoch its record key says. The master-key id (HMAC-SHA256 of a fixed label under the
master key, first 8 bytes) says which master key sealed a record, so that workers can hold two
during a rotation (``MasterKeys``) and ``respublica keys rotate-master`` knows what to re-seal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts.errors import RespublicaError
from policies.pseudonymise import KEY_BYTES

MAGIC = b"RPK2"
_AD_LABEL = b"respublica.keys/2"
_ID_LABEL = b"respublica master key id"
ID_BYTES = 8
NONCE_BYTES = 12
KINDS = ("pseudonym", "noise", "floor", "progress")


class RejectReason(StrEnum):
    """Why a key record was ignored (label of ``respublica_key_records_rejected_total``)."""

    FORMAT = "format"
    """Not a record of this format: an older format, an unknown kind, a malformed key."""
    UNKNOWN_MASTER_KEY = "unknown-master-key"
    """Sealed under a master key this process does not hold (or a forged id)."""
    AUTHENTICATION = "authentication"
    """Fails AES-GCM authentication: forged, altered, or moved to another contract or key."""
    TOMBSTONE = "tombstone"
    """A tombstone respublica never writes (of a live key, a floor, progress, noise)."""


class KeyRecordRejected(RespublicaError):
    """A key record that must be ignored; ``reason`` is the closed code (never the value)."""

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(f"key record rejected: {reason.value}")
        self.reason = reason


def master_key_id(master: bytes) -> bytes:
    """The public 8-byte id of a master key (reveals nothing about it)."""
    return hmac.new(master, _ID_LABEL, hashlib.sha256).digest()[:ID_BYTES]


@dataclass(frozen=True)
class MasterKeys:
    """The master key that seals (``current``) and any others still accepted when opening."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if any(len(k) != KEY_BYTES for k in (self.current, *self.previous)):
            msg = "a master key must be 32 bytes (AES-256)"
            raise RespublicaError(msg)

    def by_id(self, key_id: bytes) -> bytes | None:
        """The held master key with this id, if any."""
        for key in (self.current, *self.previous):
            if hmac.compare_digest(master_key_id(key), key_id):
                return key
        return None


@dataclass(frozen=True)
class KeyRecord:
    """An authenticated record: what its key and its sealed payload say."""

    name: str
    kind: str
    epoch: int | None  # pseudonym, floor, progress; None for noise
    key: bytes | None  # pseudonym and noise records
    order: int | None  # set by a re-seal: the offset of the original record
    current: bool  # sealed under the current master key


def parse_name(name: str) -> tuple[str, int | None, str]:
    """``(kind, epoch, rest)`` of a record key; ``KeyRecordRejected(FORMAT)`` if malformed."""
    kind, _, rest = name.partition("|")
    try:
        if kind == "pseudonym":
            epoch_text, sep, writer = rest.partition("|")
            if sep and writer:
                return kind, int(epoch_text), writer
        elif kind == "floor":
            return kind, int(rest), ""
        elif kind in ("noise", "progress") and rest:
            return kind, None, rest
    except ValueError:
        pass
    raise KeyRecordRejected(RejectReason.FORMAT)


def _ad(contract: str, name: str) -> bytes:
    return b"\x00".join((_AD_LABEL, contract.encode(), name.encode()))


def seal_record(
    masters: MasterKeys,
    contract: str,
    name: str,
    *,
    epoch: int | None = None,
    key: bytes | None = None,
    order: int | None = None,
) -> bytes:
    """The value of record ``name`` of ``contract``, sealed under the current master key."""
    kind = parse_name(name)[0]
    payload: dict[str, Any] = {"kind": kind, "epoch": epoch}
    if key is not None:
        payload["key"] = base64.b64encode(key).decode("ascii")
    if order is not None:
        payload["order"] = order
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(masters.current).encrypt(
        nonce, json.dumps(payload).encode(), _ad(contract, name)
    )
    return MAGIC + master_key_id(masters.current) + nonce + sealed


def open_record(masters: MasterKeys, contract: str, name: str, value: bytes) -> KeyRecord:
    """The authenticated content of a record; ``KeyRecordRejected`` if it is not one."""
    kind, epoch, _ = parse_name(name)
    head = len(MAGIC) + ID_BYTES
    if not value.startswith(MAGIC) or len(value) < head + NONCE_BYTES + 16:
        raise KeyRecordRejected(RejectReason.FORMAT)
    master = masters.by_id(value[len(MAGIC) : head])
    if master is None:
        raise KeyRecordRejected(RejectReason.UNKNOWN_MASTER_KEY)
    nonce, sealed = value[head : head + NONCE_BYTES], value[head + NONCE_BYTES :]
    try:
        payload = json.loads(AESGCM(master).decrypt(nonce, sealed, _ad(contract, name)))
    except InvalidTag as exc:
        raise KeyRecordRejected(RejectReason.AUTHENTICATION) from exc
    return _record(name, kind, epoch, payload, current=master == masters.current)


def _record(name: str, kind: str, epoch: int | None, payload: Any, *, current: bool) -> KeyRecord:
    # Only a master-key holder can write a payload at all: a mismatch is a bug, still refused.
    try:
        if not isinstance(payload, dict) or payload.get("kind") != kind:
            raise KeyRecordRejected(RejectReason.FORMAT)
        said = payload.get("epoch")
        said = None if said is None else int(said)
        if epoch is not None and said != epoch:
            raise KeyRecordRejected(RejectReason.FORMAT)
        key = None
        if kind in ("pseudonym", "noise"):
            key = base64.b64decode(payload["key"], validate=True)
            if len(key) != KEY_BYTES:
                raise KeyRecordRejected(RejectReason.FORMAT)
        if kind == "progress" and said is None:
            raise KeyRecordRejected(RejectReason.FORMAT)
        order = payload.get("order")
        order = None if order is None else int(order)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise KeyRecordRejected(RejectReason.FORMAT) from exc
    return KeyRecord(name, kind, said, key, order, current)
