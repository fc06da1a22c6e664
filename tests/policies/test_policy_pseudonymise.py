"""Pseudonyms and the key ring: known answers, domains, rotation, crypto-shredding."""

from __future__ import annotations

import itertools

import pytest

from policies.pseudonymise import (
    KeyDestroyedError,
    KeyRing,
    KeyRingError,
    Pseudonymiser,
    canonical_id,
    epoch_of,
    key_id,
)

pytestmark = pytest.mark.unit

FIXED_KEY = bytes(range(32))
KEK = bytes(range(100, 132))


def counting_tokens() -> object:
    """Deterministic distinct "random" bytes: 0x01..., 0x02..., ..."""
    counter = itertools.count(1)

    def token_bytes(n: int) -> bytes:
        return bytes([next(counter) % 256]) * n

    return token_bytes


def fixed_ring() -> KeyRing:
    return KeyRing(token_bytes=lambda n: FIXED_KEY[:n])


def test_known_answer_pseudonym() -> None:
    # HMAC-SHA256(0x00..1f, "lyon-micromobility/vehicle_id" 0x00 "veh-000042")[:16], base32.
    pz = Pseudonymiser(fixed_ring(), "lyon-micromobility")
    assert pz.pseudonym("vehicle_id", "veh-000042", 7) == "xuf2gbi4zowt5mwaca4y7vbjli"


def test_canonical_form_strips_and_stringifies() -> None:
    pz = Pseudonymiser(fixed_ring(), "c1")
    assert canonical_id("  ab \n") == "ab"
    assert pz.pseudonym("f", "  veh-1 ", 0) == pz.pseudonym("f", "veh-1", 0)
    assert pz.pseudonym("f", 42, 0) == pz.pseudonym("f", "42", 0)


def test_pseudonym_is_compact_and_lowercase() -> None:
    value = Pseudonymiser(fixed_ring(), "c1").pseudonym("f", "x", 0)
    assert len(value) == 26 and value == value.lower() and "=" not in value


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("c1", "f", 0), ("c2", "f", 0)),  # another contract
        (("c1", "f", 0), ("c1", "g", 0)),  # another field (pseudonymisation domain)
        (("c1", "f", 0), ("c1", "f", 1)),  # another epoch
    ],
)
def test_pseudonyms_differ_across_domains_and_epochs(a: tuple, b: tuple) -> None:
    ring = KeyRing(token_bytes=counting_tokens())  # type: ignore[arg-type]
    pa = Pseudonymiser(ring, a[0]).pseudonym(a[1], "subject-1", a[2])
    pb = Pseudonymiser(ring, b[0]).pseudonym(b[1], "subject-1", b[2])
    assert pa != pb


def test_same_subject_same_epoch_same_ring_across_processes() -> None:
    ring = KeyRing(token_bytes=counting_tokens())  # type: ignore[arg-type]
    first = Pseudonymiser(ring, "c1").pseudonym("f", "s", 3)
    other_process = KeyRing.from_encrypted_bytes(ring.to_encrypted_bytes(KEK), KEK)
    assert Pseudonymiser(other_process, "c1").pseudonym("f", "s", 3) == first


def test_epoch_of_and_key_id() -> None:
    day = 86_400_000
    assert epoch_of(0, day) == 0
    assert epoch_of(day - 1, day) == 0
    assert epoch_of(day, day) == 1
    assert epoch_of(-1, day) == -1
    assert key_id("lyon-micromobility", 20_454) == "lyon-micromobility:20454"


def test_keys_are_created_on_demand_with_the_token_source() -> None:
    ring = KeyRing(token_bytes=counting_tokens())  # type: ignore[arg-type]
    assert ring.key("c1", 5) == bytes([1]) * 32
    assert ring.key("c1", 5) == bytes([1]) * 32
    assert ring.key("c1", 6) == bytes([2]) * 32
    assert ring.epochs("c1") == [5, 6]


def test_destroy_before_removes_keys_everywhere() -> None:
    ring = KeyRing(token_bytes=counting_tokens())  # type: ignore[arg-type]
    pz = Pseudonymiser(ring, "c1")
    old_key = ring.key("c1", 1)
    old = pz.pseudonym("f", "s", 1)
    held = ring._keys[("c1", 1)]  # the ring's own buffer, to check it is zeroed
    assert ring.destroy_before("c1", 2) == 1
    assert bytes(held) == bytes(32)
    assert ring.epochs("c1") == []
    with pytest.raises(KeyDestroyedError):
        ring.key("c1", 1)
    with pytest.raises(KeyDestroyedError):
        pz.pseudonym("f", "s", 1)  # not served from the pseudonymiser's cache either
    blob = ring.to_encrypted_bytes(KEK)
    reloaded = KeyRing.from_encrypted_bytes(blob, KEK)
    with pytest.raises(KeyDestroyedError):
        reloaded.key("c1", 1)  # the floor survives serialisation: never silently recreated
    assert old_key not in blob
    assert old not in repr(pz.__dict__)


def test_destroy_is_per_contract() -> None:
    ring = KeyRing(token_bytes=counting_tokens())  # type: ignore[arg-type]
    ring.key("c1", 1)
    ring.key("c2", 1)
    ring.destroy_before("c1", 5)
    assert ring.epochs("c2") == [1]


def test_serialisation_is_encrypted_and_nonce_fresh() -> None:
    ring = fixed_ring()
    ring.key("c1", 1)
    tokens = counting_tokens()
    ring._token_bytes = tokens  # type: ignore[assignment]
    a, b = ring.to_encrypted_bytes(KEK), ring.to_encrypted_bytes(KEK)
    assert a != b  # a new nonce each time
    assert FIXED_KEY not in a


def test_wrong_kek_or_tampering_is_refused() -> None:
    ring = fixed_ring()
    ring.key("c1", 1)
    blob = ring.to_encrypted_bytes(KEK)
    with pytest.raises(KeyRingError):
        KeyRing.from_encrypted_bytes(blob, bytes(32))
    with pytest.raises(KeyRingError):
        KeyRing.from_encrypted_bytes(blob[:-1] + bytes([blob[-1] ^ 1]), KEK)
    with pytest.raises(KeyRingError):
        KeyRing.from_encrypted_bytes(b"XXXX" + blob[4:], KEK)
    with pytest.raises(KeyRingError):
        ring.to_encrypted_bytes(b"short")


def test_pseudonymiser_cache_is_bounded() -> None:
    pz = Pseudonymiser(fixed_ring(), "c1", cache_size=10)
    values = [pz.pseudonym("f", f"s{i}", 0) for i in range(50)]
    assert len(pz.table("f", 0)) <= 10
    assert values == [pz.pseudonym("f", f"s{i}", 0) for i in range(50)]
