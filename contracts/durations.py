"""ISO 8601 durations (``PT15M``, ``P1D``, ``P2W``) as ``datetime.timedelta``.

Only fixed-length units are accepted: weeks, days, hours, minutes, seconds. Months and years
have no fixed length, so a tumbling window of "one month" cannot be a ``timedelta``; contracts
use ``P28D``/``P30D`` instead. Messages never repeat the input (it comes from a contract file).
"""

from __future__ import annotations

import re
from datetime import timedelta

_WEEKS = re.compile(r"^P(?P<weeks>\d+)W$")
_DURATION = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration string; raise ``ValueError`` with a value-free message."""
    if not isinstance(text, str):
        msg = "must be an ISO 8601 duration string such as PT15M or P1D"
        raise ValueError(msg)
    weeks = _WEEKS.fullmatch(text)
    if weeks:
        return timedelta(weeks=int(weeks["weeks"]))
    match = _DURATION.match(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        msg = "must be an ISO 8601 duration such as PT15M, PT1H, P1D or P2W"
        raise ValueError(msg)
    if match["years"] or match["months"]:
        msg = "years and months have no fixed length; use days (e.g. P30D) or weeks (e.g. P4W)"
        raise ValueError(msg)
    return timedelta(
        days=int(match["days"] or 0),
        hours=int(match["hours"] or 0),
        minutes=int(match["minutes"] or 0),
        seconds=float(match["seconds"] or 0),
    )


def format_duration(value: timedelta) -> str:
    """Render a ``timedelta`` as the shortest ISO 8601 duration (``P1DT2H``, ``PT0S``)."""
    total = value.total_seconds()
    if total < 0:
        msg = "negative durations cannot be written in ISO 8601"
        raise ValueError(msg)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    date_part = f"{int(days)}D" if days else ""
    time_part = "".join(
        f"{_number(amount)}{unit}"
        for amount, unit in ((hours, "H"), (minutes, "M"), (seconds, "S"))
        if amount
    )
    if not date_part and not time_part:
        return "PT0S"
    return "P" + date_part + (f"T{time_part}" if time_part else "")


def describe_duration(value: timedelta) -> str:
    """Plain words for people: ``15 minutes``, ``1 day``, ``1 day 12 hours``."""
    total = int(value.total_seconds())
    if total == 0:
        return "none"
    parts = []
    for size, unit in ((86_400, "day"), (3_600, "hour"), (60, "minute"), (1, "second")):
        amount, total = divmod(total, size)
        if amount:
            parts.append(f"{amount} {unit}{'' if amount == 1 else 's'}")
    return " ".join(parts)


def _number(amount: float) -> str:
    """Write whole numbers without a trailing ``.0``."""
    return str(int(amount)) if float(amount).is_integer() else f"{amount:g}"
