"""ISO 8601 duration parsing and formatting."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts.durations import describe_duration, format_duration, parse_duration

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT0S", timedelta(0)),
        ("PT15M", timedelta(minutes=15)),
        ("PT1H", timedelta(hours=1)),
        ("PT90M", timedelta(minutes=90)),
        ("PT1.5S", timedelta(seconds=1.5)),
        ("P1D", timedelta(days=1)),
        ("P30D", timedelta(days=30)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("P2W", timedelta(weeks=2)),
        ("PT1H30M15S", timedelta(hours=1, minutes=30, seconds=15)),
    ],
)
def test_parses_fixed_length_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P1M", "years and months have no fixed length"),
        ("P1Y", "years and months have no fixed length"),
        ("P", "must be an ISO 8601 duration"),
        ("PT", "must be an ISO 8601 duration"),
        ("P1DT", "must be an ISO 8601 duration"),
        ("15m", "must be an ISO 8601 duration"),
        ("-PT1H", "must be an ISO 8601 duration"),
        ("", "must be an ISO 8601 duration"),
    ],
)
def test_rejects_other_strings(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_duration(text)
    assert len(text) < 4 or text not in str(caught.value)  # never echo the input


def test_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="must be an ISO 8601 duration string"):
        parse_duration(900)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text", "words"),
    [
        (timedelta(0), "PT0S", "none"),
        (timedelta(minutes=15), "PT15M", "15 minutes"),
        (timedelta(days=1), "P1D", "1 day"),
        (timedelta(days=1, hours=2), "P1DT2H", "1 day 2 hours"),
        (timedelta(hours=24), "P1D", "1 day"),
    ],
)
def test_formats_and_describes(value: timedelta, text: str, words: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(format_duration(value)) == value
    assert describe_duration(value) == words
