"""Secondary suppression across linked views, checked by the interval attacker.

The measured case of issue 19: the rentals example publishes nights per district and per H3
cell of the same stays over the same 30-day windows. Without secondary suppression, a window
where every district is published gives, by subtraction, the exact month of the one listing
in the suppressed cell. The attacker (``broker.audit.attacker``) must pin it before, and pin
nothing below k after; streamed releases still equal the oracle's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.simulate import SimOptions, simulator, take
from contracts import Contract, examples_dir, load_contracts
from policies.compile import compile_spec
from policies.pseudonymise import KeyRing, Pseudonymiser
from policies.spec import ViewSpec, field_dimension, h3_dimension, view_spec, zones_dimension
from policies.testing import run_stream
from tests.policies.harness import T0, seeded_ring
from tests.policies.linked_harness import (
    COUNT_SUM_SUBJECTS,
    attack,
    linked_specs,
    oracle,
    published_groups,
    truth,
    unlinked,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DEMO_EVENTS = 12_000  # what `respublica demo` pushes for the rentals contract (seed 2026)


@pytest.fixture(scope="module")
def rentals() -> Contract:
    return load_contracts([examples_dir() / "rentals.yaml"], now=NOW)[0]


@pytest.fixture(scope="module")
def demo_stays() -> list[dict[str, Any]]:
    return [
        s.record for s in take(simulator("rentals", SimOptions(seed=2026)).records(), DEMO_EVENTS)
    ]


def rentals_specs(contract: Contract) -> list[ViewSpec]:
    return [view_spec(contract, v.name) for v in contract.views]


def test_the_rentals_views_are_released_together(rentals: Contract) -> None:
    specs = rentals_specs(rentals)
    assert [[v.view for v in s.linked] for s in specs] == [
        ["nights_by_district", "nights_by_cell"]
    ] * 2
    assert [s.link_index for s in specs] == [0, 1]


def test_differencing_districts_and_cells_pins_a_listing_without_secondary_suppression(
    rentals: Contract, demo_stays: list[dict[str, Any]]
) -> None:
    specs = rentals_specs(rentals)
    pz = Pseudonymiser(KeyRing(), rentals.id)
    before = oracle([unlinked(s) for s in specs], demo_stays, pz)
    found = attack(specs, before, truth(specs, demo_stays))
    leaks = found.pinned_below_k
    # The measurement: two windows where all districts are published and one cell of
    # one listing is not; every additive measure of that cell is pinned.
    assert {(p.view, p.subjects) for p in leaks} == {("nights_by_cell", 1)}
    assert len({p.window for p in leaks}) == 2
    assert {p.measure for p in leaks} >= {"count", "sum:nights", "sum:guests"}


def test_secondary_suppression_leaves_nothing_pinned_below_k_on_the_demo_data(
    rentals: Contract, demo_stays: list[dict[str, Any]]
) -> None:
    specs = rentals_specs(rentals)
    pz = Pseudonymiser(KeyRing(), rentals.id)
    after = oracle(specs, demo_stays, pz)
    before = oracle([unlinked(s) for s in specs], demo_stays, pz)
    found = attack(specs, after, truth(specs, demo_stays))
    assert found.groups > 0 and found.targets > 0
    assert found.pinned_below_k == []
    lost = [published_groups(b) - published_groups(a) for b, a in zip(before, after, strict=True)]
    assert sum(lost) == 2  # one more group withheld in each of the two windows at risk
    second = sum(r.report.groups_secondary for found in after for r in found)
    assert second == 2
    for releases in after:  # the report still adds up: published + suppressed = groups
        for release in releases:
            assert release.report.groups_published == len(release.groups)


@pytest.mark.parametrize(("partitions", "seed"), [(1, 1), (2, 7)])
def test_streamed_equals_oracle_for_the_linked_rentals_views(
    rentals: Contract, demo_stays: list[dict[str, Any]], partitions: int, seed: int
) -> None:
    stays = demo_stays[:4000]
    ring = seeded_ring(rentals.id)
    pz = Pseudonymiser(ring, rentals.id)
    specs = rentals_specs(rentals)
    expected = oracle(specs, stays, pz)
    for spec, wanted in zip(specs, expected, strict=True):
        view = compile_spec(spec, keyring=ring, pseudonymiser=pz)
        run = run_stream(
            view,
            stays,
            "registration_number",
            partitions=partitions,
            batch=97,
            closed_only=seed > 1,
            redeliver_seed=seed,
            restart_seed=seed,
        )
        assert run.releases == wanted, spec.view


# --- generated linked views ------------------------------------------------------------------

SOUTH, NORTH, WEST, EAST = 48.80, 48.86, 2.30, 2.40


def _rectangles(lons: list[float], lats: list[float], keep: list[bool]) -> list[tuple[str, Any]]:
    """Zones: the rectangles of a grid cut at ``lons`` × ``lats`` (some left out)."""
    xs, ys = [WEST, *sorted(lons), EAST], [SOUTH, *sorted(lats), NORTH]
    zones = []
    n = 0
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            w, e, s, nn = xs[i], xs[i + 1], ys[j], ys[j + 1]
            if keep[n % len(keep)]:
                ring = ((w, s), (e, s), (e, nn), (w, nn), (w, s))
                zones.append((f"z{i}-{j}", ((ring,),)))
            n += 1
    return zones


@st.composite
def zone_sets(draw: st.DrawFn) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Two zone sets: the second nested in the first, crossing it, or covering less."""
    cut = st.floats(0.05, 0.95)
    lons = [WEST + (EAST - WEST) * draw(cut) for _ in range(draw(st.integers(0, 2)))]
    lats = [SOUTH + (NORTH - SOUTH) * draw(cut) for _ in range(draw(st.integers(0, 2)))]
    outer = _rectangles(lons, lats, [True])
    kind = draw(st.sampled_from(["nested", "crossing", "partial"]))
    more = [WEST + (EAST - WEST) * draw(cut) for _ in range(draw(st.integers(1, 2)))]
    if kind == "nested":
        inner = _rectangles(lons + more, lats, [True])
    elif kind == "crossing":
        inner = _rectangles(more, lats[:1], [True])
    else:
        inner = _rectangles(
            lons + more, lats, draw(st.lists(st.booleans(), min_size=2, max_size=5))
        )
    return outer, inner


@st.composite
def linked_sets(draw: st.DrawFn) -> list[ViewSpec]:
    """Two or three linked views of one stream with random zones, H3 resolutions and k."""
    outer, inner = draw(zone_sets())
    options = {
        "cells": lambda: (h3_dimension("cell", "lat", "lon", draw(st.integers(6, 9))),),
        "fine": lambda: (h3_dimension("cell", "lat", "lon", draw(st.integers(8, 10))),),
        "districts": lambda: (zones_dimension("zone", "lat", "lon", outer),),
        "quarters": lambda: (zones_dimension("zone", "lat", "lon", inner),),
        "kind_cells": lambda: (
            field_dimension("kind", "kind"),
            h3_dimension("cell", "lat", "lon", draw(st.integers(6, 8))),
        ),
        "kinds": lambda: (field_dimension("kind", "kind"),),
        "total": lambda: (),
    }
    names = draw(st.lists(st.sampled_from(sorted(options)), min_size=2, max_size=3, unique=True))
    same_k = draw(st.booleans())
    k0 = draw(st.integers(2, 6))
    views = [(n, options[n](), k0 if same_k else draw(st.integers(2, 6))) for n in names]
    base = ViewSpec(
        contract="test-contract",
        view=names[0],
        time_field="t",
        subject_field="who",
        window_ms=1_000,
        time_bucket_ms=1_000,
        lateness_ms=10_000,
        rotation_ms=2_000,
        k=2,
        dimensions=(),
        measures=COUNT_SUM_SUBJECTS,
        event_id_field="id",
    )
    return linked_specs(base, views)


@st.composite
def stays(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of subjects that mostly stay at home (a listing), some that move."""
    subjects = draw(st.integers(3, 30))
    homes = [
        (draw(st.floats(SOUTH + 1e-4, NORTH - 1e-4)), draw(st.floats(WEST + 1e-4, EAST - 1e-4)))
        for _ in range(subjects)
    ]
    movers = draw(st.sets(st.integers(0, subjects - 1), max_size=max(1, subjects // 5)))
    events = []
    for n in range(draw(st.integers(10, 120))):
        who = draw(st.integers(0, subjects - 1))
        lat, lon = homes[who]
        if who in movers:
            lat = draw(st.floats(SOUTH + 1e-4, NORTH - 1e-4))
            lon = draw(st.floats(WEST + 1e-4, EAST - 1e-4))
        events.append(
            {
                "id": f"e{n}" if draw(st.integers(0, 9)) else "e0",  # some copies of e0
                "who": f"s{who}",
                "t": T0 + draw(st.integers(0, 1_999)),
                "lat": lat,
                "lon": lon,
                "kind": draw(st.sampled_from(["a", "b"])),
                "v": draw(st.integers(1, 20)),
            }
        )
    return events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=linked_sets(), events=stays())
def test_the_attacker_never_pins_a_withheld_group_below_k(
    specs: list[ViewSpec], events: list[dict[str, Any]]
) -> None:
    pz = Pseudonymiser(seeded_ring(), "test-contract")
    releases = oracle(specs, events, pz)
    facts = truth(specs, events)
    found = attack(specs, releases, facts)
    assert found.pinned_below_k == [], found.pinned_below_k
    for spec, found_releases in zip(specs, releases, strict=True):
        for release in found_releases:
            groups = facts.groups.get(release.window.start)
            mine = groups[specs.index(spec)] if groups else {}
            report = release.report
            assert report.groups_published + report.groups_suppressed == len(mine)
            big = sum(1 for c in mine.values() if len(c.subjects) >= spec.k)
            assert report.groups_published + report.groups_secondary == big


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=linked_sets(), events=stays())
def test_the_span_test_agrees_with_linear_programming(
    specs: list[ViewSpec], events: list[dict[str, Any]]
) -> None:
    # Before secondary suppression, so that there is something pinned to agree on.
    pz = Pseudonymiser(seeded_ring(), "test-contract")
    releases = oracle([unlinked(s) for s in specs], events, pz)
    facts = truth(specs, events)
    fast = attack(specs, releases, facts)
    slow = attack(specs, releases, facts, lp_only=True)
    assert (fast.targets, fast.pinned) == (slow.targets, slow.pinned)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=linked_sets(), events=stays(), seed=st.integers(1, 9))
def test_streamed_linked_views_equal_the_oracle(
    specs: list[ViewSpec], events: list[dict[str, Any]], seed: int
) -> None:
    ring = seeded_ring()
    pz = Pseudonymiser(ring, "test-contract")
    expected = oracle(specs, events, pz)
    for spec, wanted in zip(specs, expected, strict=True):
        view = compile_spec(spec, keyring=ring, pseudonymiser=pz)
        run = run_stream(
            view,
            events,
            "who",
            partitions=1 + seed % 3,
            batch=1 + seed,
            closed_only=seed % 2 == 0,
            redeliver_seed=seed,
            restart_seed=seed,
        )
        assert run.releases == wanted, spec.view
