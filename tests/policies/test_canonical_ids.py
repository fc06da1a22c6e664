"""One canonical form of an identifier: known answers, variants, and the pipeline counting one
subject sent under many spellings as one subject (stream and oracle alike)."""

from __future__ import annotations

import string
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from contracts import Contract, examples_dir, load_contracts
from policies.base import Release
from policies.compile import compile_contract
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing, Pseudonymiser, canonical_id, identifier_problem
from policies.testing import oracle_releases, run_contract, run_stream

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
T = int(datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp() * 1000)  # a window start
MINUTE = 60_000
BELLECOUR = (45.7640, 4.8357)
SPACES = " \u00a0\u2003\t\n"
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
# One vehicle, twelve spellings: spaces, case, zero-width and format characters, fullwidth.
VARIANTS = [
    "veh-0042",
    " veh-0042",
    "VEH-0042",
    "veh-0042\u200b",
    "\ufeffveh-0042",
    "\uff56\uff45\uff48\uff0d\uff10\uff10\uff14\uff12",  # ｖｅｈ－００４２
    "veh-\u00a00042",
    "Veh-0042\t",
    "veh\u00ad-0042",
    "v\u200de\u200ch-0042",
    "VEH-0042 \n",
    "veh-0042\u2060",
]


@pytest.mark.parametrize(
    "variant", [" AbC\u200b", "\uff41\uff42\uff43", "ABC", "a b c", "\ufeffabc", "abc\u00ad"]
)
def test_known_variants_are_one_identifier(variant: str) -> None:
    assert canonical_id(variant) == "abc"


def test_case_folding_merges_sharp_s_and_non_strings_are_text() -> None:
    assert canonical_id("Straße") == canonical_id("STRASSE") == "strasse"
    assert canonical_id(42) == canonical_id(" 42 ") == "42"
    assert canonical_id("e\u200b\u0301") == canonical_id("\u00e9")  # mark kept with its letter


def test_identifier_problems_name_a_reason_not_the_value() -> None:
    assert identifier_problem("veh-0042") is None
    assert identifier_problem(" VEH-0042\t\n") is None  # whitespace is removed, not a problem
    for bad in ("", "\u200b \u00a0", "ab\x07c", "ab\x00", "a\ud800b"):
        reason = identifier_problem(bad)
        assert reason is not None and (not bad or bad not in reason)


def test_pseudonyms_of_variants_are_equal_and_cached_by_raw_value() -> None:
    pz = Pseudonymiser(KeyRing(token_bytes=lambda n: bytes(n)), "c1")
    assert len({pz.pseudonym("f", v, 0) for v in VARIANTS}) == 1
    assert set(pz.table("f", 0)) == set(VARIANTS)  # keyed as received: no NFKC on a hit


# --- property: any variant of an id has the id's canonical form -----------------------------

ID_ALPHABET = string.ascii_letters + string.digits + "-_.éÉßåÅñÑ"


def _fullwidth(c: str) -> str:
    return chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c


ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=16)


def spell(draw: st.DrawFn, original: str) -> str:
    """A random spelling of ``original``: case, fullwidth, normal form, spaces, format chars."""
    chars = []
    for c in original:
        case = draw(st.sampled_from(["keep", "upper", "lower"]))
        c = c.upper() if case == "upper" else c.lower() if case == "lower" else c
        chars.append("".join(map(_fullwidth, c)) if draw(st.booleans()) else c)
    variant = "".join(chars)
    form = draw(st.sampled_from([None, "NFC", "NFD", "NFKC", "NFKD"]))
    if form is not None:
        variant = unicodedata.normalize(form, variant)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(variant)))
        noise = draw(st.sampled_from(SPACES + ZERO_WIDTH + "\u00ad"))
        variant = variant[:at] + noise + variant[at:]
    return variant


@st.composite
def spellings(draw: st.DrawFn, size: int = 1) -> tuple[str, list[str]]:
    original = draw(ids)
    return original, [spell(draw, original) for _ in range(size)]


@settings(max_examples=300, deadline=None)
@given(spellings())
def test_every_variant_has_the_canonical_form_of_its_id(drawn: tuple[str, list[str]]) -> None:
    original, [variant] = drawn
    assert canonical_id(variant) == canonical_id(original)
    assert canonical_id(canonical_id(variant)) == canonical_id(original)  # idempotent


# --- the pipeline: stream and oracle count one subject under many spellings once ------------


@pytest.fixture(scope="module")
def contract() -> Contract:
    [lyon] = load_contracts([examples_dir() / "micromobility.yaml"], now=NOW)
    return lyon


def vehicle_event(vehicle: str, i: int) -> dict[str, Any]:
    lat, lon = BELLECOUR
    return {
        "event_id": f"evt-{i:04d}",  # every event its own id: only the subject varies
        "vehicle_id": vehicle,
        "provider_id": "p",
        "vehicle_type": "scooter_standing",
        "propulsion": "electric",
        "event_type": "available",
        "timestamp": T + i * 1000,
        "lat": lat,
        "lon": lon,
        "battery_pct": 80,
        "trip_id": None,
    }


def _vehicles(releases: list[Release]) -> list[int]:
    return [g.measures["vehicles"] for r in releases for g in r.groups]


def _both(contract: Contract, records: list[dict[str, Any]]) -> tuple[list[Release], ...]:
    ring = KeyRing()
    events = {"vehicle_events": records, "trips": []}
    streamed = run_contract(contract, events, keyring=ring, partitions=3, batch=2)
    batch = evaluate(contract, events, keyring=ring)
    return streamed["availability"].releases, batch["availability"]


def test_one_vehicle_under_twelve_spellings_is_suppressed_at_k10(contract: Contract) -> None:
    streamed, batch = _both(contract, [vehicle_event(v, i) for i, v in enumerate(VARIANTS)])
    assert streamed == batch
    [release] = streamed
    assert release.groups == ()
    assert (release.report.groups_suppressed, release.report.events_suppressed) == (1, 12)


def test_the_spellings_count_as_one_of_k_distinct_vehicles(contract: Contract) -> None:
    others = [vehicle_event(f"scooter-{i:02d}", 100 + i) for i in range(9)]
    records = [vehicle_event(v, i) for i, v in enumerate(VARIANTS)] + others
    streamed, batch = _both(contract, records)
    assert streamed == batch
    assert _vehicles(streamed) == _vehicles(batch) == [10]  # 9 + 1, exactly k


@settings(max_examples=40, deadline=None)
@given(spellings(size=11), st.integers(1, 4))
def test_variants_of_one_id_are_one_subject_streamed_and_in_batch(
    contract: Contract, drawn: tuple[str, list[str]], partitions: int
) -> None:
    original, variants = drawn
    assume(not canonical_id(original).startswith("scooter-"))  # the nine others stay others
    records = [vehicle_event(s, i) for i, s in enumerate([original, *variants])]
    others = [vehicle_event(f"scooter-{i:02d}", 100 + i) for i in range(9)]
    view = compile_contract(contract, keyring=KeyRing())["availability"]
    for events, expected in ((records, []), (records + others, [10])):
        run = run_stream(view, events, "vehicle_id", partitions=partitions, batch=3)
        oracle = oracle_releases(view, events)
        assert run.releases == oracle
        assert _vehicles(run.releases) == _vehicles(oracle) == expected
