"""The interval attacker on hand-made windows: what it pins, and what it must not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.audit.attacker import AttackerError, ViewWindow, attack_window
from broker.audit.attacker import _blocks as attacker_blocks
from policies.secondary import _blocks as secondary_blocks

pytestmark = pytest.mark.unit

D1, D2 = ("d1",), ("d2",)
C1, C2, C3 = ("c1",), ("c2",), ("c3",)
START = 0


def view(name: str, groups: dict, published: set, k: int = 5) -> ViewWindow:
    """``groups``: group → (count, nights, subjects)."""
    truth = {g: {"count": float(c), "sum:nights": float(n)} for g, (c, n, _) in groups.items()}
    return ViewWindow(
        name,
        k,
        {g: truth[g] for g in published},
        truth,
        {g: frozenset(s) for g, (_, _, s) in groups.items()},
    )


# Districts d1 = c1 + c2, d2 = c3; cells cross nothing here, so each district is a block.
ATOMS = [(D1, C1), (D1, C2), (D2, C3)]
DISTRICTS = {D1: (9, 40, {"a", "b", "c", "d", "e", "f"}), D2: (6, 30, {"g", "h", "i", "j", "k"})}
CELLS = {
    C1: (8, 35, {"a", "b", "c", "d", "e"}),
    C2: (1, 5, {"f"}),
    C3: (6, 30, {"g", "h", "i", "j", "k"}),
}


def test_a_cell_withheld_under_a_published_district_is_pinned() -> None:
    found = attack_window(
        START,
        [view("districts", DISTRICTS, {D1, D2}), view("cells", CELLS, {C1, C3})],
        ATOMS,
    )
    assert found.groups == 1
    assert {(p.view, p.measure, p.groups, p.subjects) for p in found.pinned_below_k} == {
        ("cells", "count", 1, 1),
        ("cells", "sum:nights", 1, 1),
    }


def test_two_withheld_cells_are_bounded_but_their_union_is_pinned_and_large_enough() -> None:
    found = attack_window(
        START,
        [view("districts", DISTRICTS, {D1, D2}), view("cells", CELLS, {C3})],
        ATOMS,
    )
    assert found.pinned_below_k == []
    assert {(p.groups, p.subjects) for p in found.pinned} == {(2, 6)}  # c1 ∪ c2 = d1, 6 ≥ k


def test_a_relation_the_data_do_not_hold_is_not_given_to_the_attacker() -> None:
    # An event of c2 that no district places: d1 ≠ c1 + c2, the attacker cannot subtract.
    districts = {D1: (8, 35, {"a", "b", "c", "d", "e"}), D2: DISTRICTS[D2]}
    found = attack_window(
        START,
        [view("districts", districts, {D1, D2}), view("cells", CELLS, {C1, C3})],
        [(D1, C1), (None, C2), (D2, C3)],
    )
    assert found.pinned == []


def test_the_span_test_and_linear_programming_agree_and_zero_sums_use_the_lp() -> None:
    views = [view("districts", DISTRICTS, {D1, D2}), view("cells", CELLS, {C1, C3})]
    assert (
        attack_window(START, views, ATOMS).pinned
        == attack_window(START, views, ATOMS, lp_only=True).pinned
    )
    zero = {**CELLS, C2: (1, 0, {"f"})}
    districts = {**DISTRICTS, D1: (9, 35, DISTRICTS[D1][2])}
    found = attack_window(
        START, [view("districts", districts, {D1, D2}), view("cells", zero, {C1, C3})], ATOMS
    )
    assert {p.measure for p in found.pinned_below_k} == {"count", "sum:nights"}


def test_published_numbers_that_contradict_a_true_relation_are_an_error() -> None:
    cells = view("cells", CELLS, {C1, C3})
    forged = ViewWindow(
        "districts",
        5,
        {D1: {"count": 1.0, "sum:nights": 40.0}, D2: {"count": 6.0, "sum:nights": 30.0}},
        view("districts", DISTRICTS, set()).truth,
        view("districts", DISTRICTS, set()).subjects,
    )
    with pytest.raises(AttackerError):
        attack_window(START, [forged, cells], ATOMS, lp_only=True)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.sampled_from([D1, D2, ("d3",)])),
            st.one_of(st.none(), st.sampled_from([C1, C2, C3, ("c4",)])),
            st.one_of(st.none(), st.sampled_from([("z1",), ("z2",)])),
        ),
        max_size=12,
    ),
    st.sampled_from([(0, 1), (0, 2), (1, 2)]),
)
def test_the_attackers_blocks_are_the_workers_blocks_found_another_way(
    atoms: list[tuple[tuple[str, ...] | None, ...]], pair: tuple[int, int]
) -> None:
    # The audit derives the relations itself (scipy's graph components); the worker's decision
    # uses its own union-find (policies.secondary). Both must join the same groups.
    i, j = pair
    ours = {frozenset(b) for b in attacker_blocks(atoms, i, j)}
    theirs = {frozenset(b) for b in secondary_blocks({a: {"s"} for a in atoms}, i, j)}
    assert ours == theirs
