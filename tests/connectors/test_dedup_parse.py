"""The one-probe duplicate filter against a plain reference model, and the JSON fast path.

``DuplicateFilter`` keeps an index from id to bucket; whatever the interleaving of ``seen``,
``forget`` and clock advances, it must answer as a naive model that remembers every id with
its expiry. ``parse_json`` skips the decoder's regex passes: it must accept and refuse
exactly what ``json`` (with NaN refused) accepts and refuses.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.kafka.reasons import Reason, Stage
from connectors.base import Rejected
from connectors.dedup import DuplicateFilter
from connectors.validate import parse_json as _parse_json
from tests.connectors.conftest import NOW_MS

pytestmark = pytest.mark.unit
HORIZON_MS = 10_000

_STEP = st.one_of(
    st.tuples(st.just("seen"), st.integers(0, 30), st.integers(-9_000, 0)),
    st.tuples(st.just("forget"), st.integers(0, 30), st.just(0)),
    st.tuples(st.just("tick"), st.just(0), st.integers(0, 4_000)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_STEP, max_size=80))
def test_duplicate_filter_answers_like_a_plain_model(steps: list[tuple[str, int, int]]) -> None:
    dedup = DuplicateFilter(timedelta(milliseconds=HORIZON_MS), buckets=10)
    bucket_ms = 1_000
    model: dict[int, int] = {}  # id -> the end of its bucket (when the filter drops it)
    now = NOW_MS
    for op, event_id, amount in steps:
        if op == "tick":
            now += amount
            model = {i: end for i, end in model.items() if end > now}
        elif op == "forget":
            dedup.forget([event_id])
            model.pop(event_id, None)
        else:
            model = {i: end for i, end in model.items() if end > now}
            event_time = now + amount
            expected = event_id in model
            assert dedup.seen(event_id, event_time_ms=event_time, now_ms=now) is expected
            if not expected:
                model[event_id] = ((event_time + HORIZON_MS) // bucket_ms + 1) * bucket_ms
            assert len(dedup) == len(model)  # expired buckets are dropped on `seen`


def test_a_forgotten_then_refiled_id_survives_the_drop_of_its_old_bucket() -> None:
    dedup = DuplicateFilter(timedelta(seconds=10), buckets=10)
    assert not dedup.seen("a", event_time_ms=NOW_MS - 9_000, now_ms=NOW_MS)
    dedup.forget(["a"])
    assert not dedup.seen("a", event_time_ms=NOW_MS, now_ms=NOW_MS)  # a later bucket
    # The old bucket expires; "a" lives on in its new one.
    assert dedup.seen("a", event_time_ms=NOW_MS, now_ms=NOW_MS + 2_000)
    assert len(dedup) == 1


_JSON_TEXTS = st.one_of(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(json.dumps),
    st.text(alphabet=' \t\n\r{}[]",:0123456789.eE+-truefalsnNaIfiy\\x', max_size=30),
)


def _reference(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    try:
        return json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        return Rejected(Reason.MALFORMED_JSON, "", Stage.DECODE)


@settings(max_examples=500, deadline=None)
@given(
    _JSON_TEXTS,
    st.sampled_from(["", " ", "\n", " \t\r\n"]),
    st.sampled_from(["", " ", "\n", "\r\n ", " x", "}"]),
)
def test_json_fast_path_accepts_and_refuses_like_json(text: str, before: str, after: str) -> None:
    payload = before + text + after
    got, expected = _parse_json(payload.encode("utf-8", "surrogatepass")), _reference(payload)
    if isinstance(expected, Rejected):
        assert got == expected or (isinstance(got, Rejected) and got.reason is Reason.INVALID_UTF8)
    else:
        assert got == expected or (got != got and expected != expected)  # NaN-free: equal
