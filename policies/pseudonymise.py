"""Keyed pseudonyms: HMAC-SHA256 under a random key per (contract, epoch).

``pseudonym = base32(HMAC-SHA256(K[contract, epoch], domain ‖ 0x00 ‖ canonical_id(value))[:16])``
with ``domain = f"{contract}/{field}"`` (the EDPB "pseudonymisation domain": the same subject
gets unrelated pseudonyms in two contracts or two fields), lower-case, no padding: 26 chars,
128 bits. ``canonical_id`` is the one form of an identifier that the stream, the oracle, the
audit and the validator all use: ``42``, ``" 42 "`` and ``"４２"`` are one subject.

Keys are random (never derived from a master secret) so that destroying one epoch's key makes
that epoch's pseudonyms impossible to recompute, by us or anyone (crypto-shredding).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import unicodedata
import weakref
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from policies.base import PolicyError

KEY_BYTES = 32
_BLOB_MAGIC = b"RPK1"
_BLOB_AAD = b"respublica-keyring/v1"
_NONCE_BYTES = 12
PSEUDONYM_BYTES = 16

TokenBytes = Callable[[int], bytes]


class KeyDestroyedError(PolicyError):
    """The key of this epoch was destroyed; its pseudonyms can never be computed again."""


class KeyRingError(PolicyError):
    """A serialised key ring could not be read (wrong KEK, corrupted or foreign blob)."""


def epoch_of(event_time_ms: int, rotation_ms: int) -> int:
    """The key epoch of an event time: ``floor(t / rotation)``."""
    return event_time_ms // rotation_ms


def key_id(contract: str, epoch: int) -> str:
    """The public, stable identifier of a key (goes in record headers and releases)."""
    return f"{contract}:{epoch}"


def canonical_id(value: object) -> str:
    """The canonical form of an identifier, hashed and counted in place of the value.

    ``str(value)`` → Unicode NFKC → case folded (``str.casefold``) → NFKC again (case folding
    can leave non-NFKC text) → every whitespace character (``str.isspace``) and every format
    character (category Cf: zero-width space and joiners, BOM, bidi marks, soft hyphen...)
    removed, anywhere in the string → NFKC once more if anything was removed (a removed
    character between a letter and its combining mark would leave the pair uncomposed).

    Folding and removing only ever merge identifiers, so a distinct count can only go down:
    the safe direction for k. ASCII text takes a shortcut with the same result (NFKC leaves
    it as is, case folding is ``lower``, ASCII has no format character).
    """
    text = value if type(value) is str else str(value)
    if text.isascii():
        return "".join(text.lower().split())
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    kept = "".join(c for c in text if not c.isspace() and unicodedata.category(c) != "Cf")
    return kept if len(kept) == len(text) else unicodedata.normalize("NFKC", kept)


def identifier_problem(value: object) -> str | None:
    """Why ``value`` cannot identify anything, in a few words that never quote it; or None.

    A control character (category Cc other than whitespace, or a surrogate, Cs) is refused
    rather than kept or removed; an identifier whose canonical form is empty is no identifier.
    """
    text = value if type(value) is str else str(value)
    if text.isprintable():  # cheap screen: Cc and Cs are never printable
        if text.isascii():  # printable ASCII: the space is all that canonical_id removes
            return None if text.strip() else "empty once canonical"
    else:
        for c in text:
            category = unicodedata.category(c)
            if category == "Cs" or (category == "Cc" and not c.isspace()):
                return "contains a control character"
    return None if canonical_id(text) else "empty once canonical"


class KeyRing:
    """Random 256-bit keys per (contract, epoch), created on demand, destroyable.

    ``token_bytes`` is injectable so tests are deterministic; in production it is
    ``secrets.token_bytes``. Keys are held in ``bytearray`` so destruction can zero them.
    """

    def __init__(self, *, token_bytes: TokenBytes = secrets.token_bytes) -> None:
        self._token_bytes = token_bytes
        self._keys: dict[tuple[str, int], bytearray] = {}
        self._floor: dict[str, int] = {}
        self._listeners: weakref.WeakSet[Pseudonymiser] = weakref.WeakSet()

    def key(self, contract: str, epoch: int) -> bytes:
        """The key of (contract, epoch), created if new; ``KeyDestroyedError`` if destroyed."""
        if epoch < self._floor.get(contract, -(2**63)):
            msg = f"key {key_id(contract, epoch)} was destroyed"
            raise KeyDestroyedError(msg)
        found = self._keys.get((contract, epoch))
        if found is None:
            found = bytearray(self._token_bytes(KEY_BYTES))
            if len(found) != KEY_BYTES:
                msg = "token source returned a key of the wrong length"
                raise PolicyError(msg)
            self._keys[(contract, epoch)] = found
        return bytes(found)

    def epochs(self, contract: str) -> list[int]:
        """Epochs of ``contract`` whose key is currently held."""
        return sorted(e for c, e in self._keys if c == contract)

    def destroyed_before(self, contract: str) -> int | None:
        """The epoch below which every key of ``contract`` is destroyed, if any."""
        return self._floor.get(contract)

    def destroy_before(self, contract: str, epoch: int) -> int:
        """Destroy (zero and forget) every key of ``contract`` older than ``epoch``.

        Returns how many keys were destroyed. Asking for one of them later raises
        ``KeyDestroyedError``; the floor is kept in the serialised form too.
        """
        self._floor[contract] = max(epoch, self._floor.get(contract, epoch))
        doomed = [ce for ce in self._keys if ce[0] == contract and ce[1] < epoch]
        for ce in doomed:
            key = self._keys.pop(ce)
            key[:] = bytes(len(key))
        for listener in list(self._listeners):
            listener.forget_before(contract, epoch)
        return len(doomed)

    def watch(self, pseudonymiser: Pseudonymiser) -> None:
        """Let a pseudonymiser drop its cached pseudonyms when keys are destroyed."""
        self._listeners.add(pseudonymiser)

    def to_encrypted_bytes(self, kek: bytes) -> bytes:
        """AES-256-GCM encryption of the ring under ``kek``; fresh random nonce each time."""
        payload = {
            "v": 1,
            "floors": self._floor,
            "keys": [
                [c, e, base64.b64encode(bytes(k)).decode("ascii")]
                for (c, e), k in sorted(self._keys.items())
            ],
        }
        nonce = self._token_bytes(_NONCE_BYTES)
        sealed = _aead(kek).encrypt(nonce, json.dumps(payload).encode(), _BLOB_AAD)
        return _BLOB_MAGIC + nonce + sealed

    @classmethod
    def from_encrypted_bytes(
        cls, blob: bytes, kek: bytes, *, token_bytes: TokenBytes = secrets.token_bytes
    ) -> KeyRing:
        """Read a ring written by ``to_encrypted_bytes``; ``KeyRingError`` if it cannot."""
        if not blob.startswith(_BLOB_MAGIC):
            msg = "not a respublica key ring (bad magic)"
            raise KeyRingError(msg)
        nonce = blob[len(_BLOB_MAGIC) : len(_BLOB_MAGIC) + _NONCE_BYTES]
        try:
            plain = _aead(kek).decrypt(nonce, blob[len(_BLOB_MAGIC) + _NONCE_BYTES :], _BLOB_AAD)
        except InvalidTag as exc:
            msg = "key ring authentication failed (wrong key or corrupted)"
            raise KeyRingError(msg) from exc
        return cls._from_payload(json.loads(plain), token_bytes)

    @classmethod
    def _from_payload(cls, payload: dict[str, Any], token_bytes: TokenBytes) -> KeyRing:
        if payload.get("v") != 1:
            msg = "unsupported key ring format version"
            raise KeyRingError(msg)
        ring = cls(token_bytes=token_bytes)
        ring._floor = {str(c): int(e) for c, e in payload["floors"].items()}
        for contract, epoch, encoded in payload["keys"]:
            ring._keys[(str(contract), int(epoch))] = bytearray(base64.b64decode(encoded))
        return ring


def _aead(kek: bytes) -> AESGCM:
    if len(kek) != KEY_BYTES:
        msg = "the key-encryption key must be 32 bytes (AES-256)"
        raise KeyRingError(msg)
    return AESGCM(kek)


class Pseudonymiser:
    """Pseudonyms of one contract, with a bounded cache per (field, epoch).

    The cache maps raw values to pseudonyms, so it is as sensitive as the records themselves;
    it is bounded (cleared when full) and dropped as soon as the epoch's key is destroyed.
    """

    def __init__(self, keyring: KeyRing, contract: str, *, cache_size: int = 200_000) -> None:
        self.keyring = keyring
        self.contract = contract
        self._cache_size = cache_size
        self._tables: dict[tuple[str, int], dict[str, str]] = {}
        keyring.watch(self)

    def pseudonym(self, field: str, value: object, epoch: int) -> str:
        """The pseudonym of ``canonical_id(value)`` for ``field`` in ``epoch``."""
        table = self.table(field, epoch)
        raw = value if type(value) is str else str(value)
        found = table.get(raw)
        if found is None:
            found = self.compute(field, raw, epoch, table)
        return found

    def table(self, field: str, epoch: int) -> dict[str, str]:
        """The live cache for (field, epoch): value as received (``str``) → pseudonym.

        Keyed by the raw text so that a hit costs one dict probe and no Unicode
        normalisation; two spellings of one identifier are two keys with one pseudonym.
        """
        table = self._tables.get((field, epoch))
        if table is None:
            self.keyring.key(self.contract, epoch)  # fail fast on a destroyed epoch
            table = self._tables[(field, epoch)] = {}
        return table

    def compute(self, field: str, raw: str, epoch: int, table: dict[str, str]) -> str:
        """The pseudonym of ``canonical_id(raw)``, cached in ``table`` under ``raw`` itself."""
        key = self.keyring.key(self.contract, epoch)
        message = f"{self.contract}/{field}".encode() + b"\x00" + canonical_id(raw).encode()
        digest = hmac.digest(key, message, "sha256")[:PSEUDONYM_BYTES]
        found = base64.b32encode(digest).decode("ascii").rstrip("=").lower()
        if len(table) >= self._cache_size:
            table.clear()
        table[raw] = found
        return found

    def key_id(self, epoch: int) -> str:
        """The key id of ``epoch`` for this contract."""
        return key_id(self.contract, epoch)

    def forget_before(self, contract: str, epoch: int) -> None:
        """Drop cached pseudonyms of destroyed epochs (called by the key ring)."""
        if contract != self.contract:
            return
        for fe in [fe for fe in self._tables if fe[1] < epoch]:
            self._tables.pop(fe).clear()
