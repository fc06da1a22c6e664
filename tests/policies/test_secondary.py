"""Secondary suppression as a pure function: known answers, determinism, the exact check."""

from __future__ import annotations

import itertools
import random

import pytest

from policies.secondary import Decision, Span, decide, group_order

pytestmark = pytest.mark.unit

D1, D2 = ("d1",), ("d2",)
C1, C2, C3, C4 = ("c1",), ("c2",), ("c3",), ("c4",)


def subjects(prefix: str, n: int) -> set[str]:
    return {f"{prefix}{i}" for i in range(n)}


def grand_total_atoms() -> dict[tuple, set[str]]:
    """Two districts (all published) and four cells crossing them; c3 holds one subject."""
    return {
        (D1, C1): subjects("a", 6),
        (D1, C2): subjects("b", 5),
        (D2, C2): subjects("c", 2),
        (D2, C3): subjects("d", 1),
        (D2, C4): subjects("e", 9),
    }


def test_a_lone_withheld_cell_under_published_districts_takes_the_smallest_cell_with_it() -> None:
    decision = decide(grand_total_atoms(), [5, 5])
    assert decision.primary == (frozenset(), frozenset({C3}))
    # c1 (6 subjects) is the smallest published group whose addition leaves the withheld
    # union at 7 subjects >= k; c2 holds 7, the districts 11 and 12.
    assert decision.secondary == (frozenset(), frozenset({C1}))
    assert decision.withheld(1) == {C1, C3}


def test_no_secondary_suppression_when_nothing_or_enough_is_withheld() -> None:
    atoms = {(D1, C1): subjects("a", 6), (D2, C2): subjects("b", 7)}
    assert decide(atoms, [5, 5]) == Decision((frozenset(), frozenset()), (frozenset(), frozenset()))
    # Two withheld cells whose union holds 7 subjects: their sum is published (the districts
    # minus the other cells), neither alone is, and 7 >= k.
    enough = {(D1, C1): subjects("a", 6), (D2, C2): subjects("b", 8)}
    enough.update({(D2, C3): subjects("d", 4), (D2, C4): subjects("e", 3)})
    decision = decide(enough, [5, 5])
    assert decision.primary == (frozenset(), frozenset({C3, C4}))
    assert decision.secondary == (frozenset(), frozenset())


def test_the_decision_does_not_depend_on_the_order_of_the_atoms_or_the_subject_names() -> None:
    atoms = grand_total_atoms()
    expected = decide(atoms, [5, 5])
    items = list(atoms.items())
    for seed in range(5):
        random.Random(seed).shuffle(items)
        renamed = {a: {f"x{seed}-{s}" for s in subs} for a, subs in items}
        assert decide(dict(renamed), [5, 5]) == expected


def test_ties_break_on_the_group_values_as_text() -> None:
    atoms = {
        (D1, C1): subjects("a", 1),
        (D1, C2): subjects("b", 5),
        (D1, C3): subjects("c", 5),
    }
    assert decide(atoms, [5, 5]).secondary == (frozenset(), frozenset({C2}))
    assert group_order((None, "b")) < group_order(("a", "b"))


def test_a_parent_whose_children_are_mostly_withheld_is_left_alone_when_they_hide_each_other() -> (
    None
):
    parent = ("p",)
    atoms = {(parent, C1): subjects("a", 3), (parent, C2): subjects("b", 3), (parent, C3): {"c"}}
    decision = decide(atoms, [5, 5])
    # The three children hold 7 subjects together: their sum is published (the parent), but
    # no child, nor any union below k, is determined.
    assert decision.primary == (frozenset(), frozenset({C1, C2, C3}))
    assert decision.secondary == (frozenset(), frozenset())


def test_a_larger_k_in_a_linked_view_withholds_the_same_group_in_the_other() -> None:
    atoms = {(D1, D1): subjects("a", 7), (D2, D2): subjects("b", 12)}
    decision = decide(atoms, [5, 10])
    assert decision.primary == (frozenset(), frozenset({D1}))
    assert decision.secondary == (frozenset({D1}), frozenset())


def test_relations_that_chain_through_a_third_view_are_caught_by_the_exact_check() -> None:
    # Found by the property test: quarters cover only part of a district; the district minus
    # its quarter is exactly the cell outside the quarter, of one subject.
    quarter, district = ("q",), ("z",)
    atoms = {
        (quarter, C1, district): {"s7"},
        (None, C2, district): {"s0"},
        (quarter, C3, district): {"s5"},
    }
    decision = decide(atoms, [2, 2, 2])
    assert decision.primary == (frozenset(), frozenset({C1, C2, C3}), frozenset())
    assert decision.secondary != (frozenset(), frozenset(), frozenset())
    withheld = [decision.withheld(i) for i in range(3)]
    assert quarter in withheld[0] or district in withheld[2]


def test_the_span_is_exact_integer_elimination() -> None:
    span = Span()
    span.add({0: 1, 1: 1, 2: 1})  # a + b + c
    span.add({0: 1, 1: 1})  # a + b
    assert {2: 1} in span  # c = (a + b + c) − (a + b)
    assert {0: 1} not in span
    span.add({0: 1, 3: 1})  # a + d
    assert {3: 1, 1: -1} in span  # d − b = (a + d) − (a + b)
    assert {1: 1, 2: 1, 3: 1} not in span  # b + c + d needs a alone
    assert {1: 1} not in span


@pytest.mark.parametrize("k", [2, 3, 5])
def test_every_withheld_total_below_k_is_undetermined_on_small_random_tables(k: int) -> None:
    rng = random.Random(k)
    for _ in range(200):
        atoms: dict[tuple, set[str]] = {}
        for n in range(rng.randint(2, 9)):
            atom = (("d", rng.randint(0, 2)), ("c", rng.randint(0, 4)))
            atoms.setdefault(atom, set()).update(f"s{n}-{i}" for i in range(rng.randint(1, 4)))
        decision = decide(atoms, [k, k])
        withheld = [decision.withheld(i) for i in range(2)]
        published_rows = Span()
        index = {a: n for n, a in enumerate(atoms)}
        for view in range(2):
            for group in {a[view] for a in atoms} - withheld[view]:
                published_rows.add({index[a]: 1 for a in atoms if a[view] == group})
        for view in range(2):
            for size in (1, 2):
                for combo in itertools.combinations(sorted(withheld[view]), size):
                    people = set().union(*(s for a, s in atoms.items() if a[view] in combo))
                    row = {index[a]: 1 for a in atoms if a[view] in combo}
                    if len(people) < k:
                        assert row not in published_rows, (atoms, decision)
