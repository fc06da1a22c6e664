"""Fixtures of the policy tests: a hand-built view, a deterministic key ring, a start time.

The drivers that run views like the runtime would are public: ``policies.testing``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from policies.pseudonymise import KeyRing
from policies.spec import MeasureSpec, ViewSpec, field_dimension, round_dimension

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def rich_spec(
    *, k: int = 2, lateness_ms: int = 10_000, delay_ms: int = 0, noise: Any = None
) -> ViewSpec:
    """A hand-built view exercising every measure and non-spatial dimension."""
    return ViewSpec(
        contract="test-contract",
        view="rich",
        time_field="t",
        subject_field="who",
        window_ms=1_000,
        time_bucket_ms=500,
        lateness_ms=lateness_ms,
        rotation_ms=2_000,
        k=k,
        dimensions=(field_dimension("kind", "kind"), round_dimension("x", "x", 0)),
        measures=(
            MeasureSpec("events", "count"),
            MeasureSpec("people", "distinct_subjects"),
            MeasureSpec("urls", "distinct", "url"),
            MeasureSpec("total", "sum", "v"),
            MeasureSpec("avg", "mean", "v"),
            MeasureSpec("q", "quantiles", "v", (0.5, 0.9)),
        )
        if noise is None
        else (
            MeasureSpec("events", "count"),
            MeasureSpec("people", "distinct_subjects"),
            MeasureSpec("urls", "distinct", "url"),
            MeasureSpec("total", "sum", "v"),
        ),
        filter_field="kind",
        filter_values=("a", "b"),
        delay_ms=delay_ms,
        noise=noise,
        pseudonymised=("url",),
    )


def seeded_ring(contract: str = "test-contract", seed: int = 1) -> KeyRing:
    """A ring with distinct, deterministic keys for every epoch the tests use.

    Keys are created in a fixed epoch order, so two rings built here hold the same key for the
    same epoch (as two workers sharing one key store would) and different keys per epoch.
    """
    counter = itertools.count(seed)
    ring = KeyRing(token_bytes=lambda n: hashlib.sha256(str(next(counter)).encode()).digest()[:n])
    epochs = sorted({T0 // r + i for r in (500, 2_000) for i in range(-2, 24)})
    for epoch in epochs:
        ring.key(contract, epoch)
    return ring


SMALL_VALUES = st.integers(-5, 50)


def rich_events(
    subjects: Sequence[str],
    *,
    span_ms: int = 4_000,
    kinds: Sequence[str] = ("a", "b", "z"),
    xs: Sequence[float] = (0.2, 1.4),
    values: st.SearchStrategy[Any] = SMALL_VALUES,
    urls: Sequence[str] = ("u1", "u2", "u3"),
    extra: dict[str, st.SearchStrategy[Any]] | None = None,
    min_size: int = 10,
    max_size: int = 60,
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Random events of ``rich_spec``'s shape, in input (raw topic) order."""
    fields = {
        "who": st.sampled_from(list(subjects)),
        "t": st.integers(T0, T0 + span_ms),
        "kind": st.sampled_from(list(kinds)),
        "x": st.sampled_from(list(xs)),
        "v": values,
        "url": st.sampled_from(list(urls)),
        **(extra or {}),
    }
    return st.lists(st.fixed_dictionaries(fields), min_size=min_size, max_size=max_size)
