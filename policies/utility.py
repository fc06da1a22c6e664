"""What a contract's views would publish of some events, and of nearby alternatives (pure).

The utility report answers, before a contract is signed, "how much of the data would the city
actually get?". For each view it runs the batch oracle (``policies.oracle.evaluate_view``, the
reference the streamed output equals) on the events, and again on alternatives of that view:

* H3 one resolution coarser and one finer (every H3 dimension of the view),
* windows twice and four times as long (the time bucket unchanged),
* k halved (never below 2: a *weaker* rule, shown for comparison) and doubled,

and counts the events and groups published and suppressed, and the windows released. Each
alternative changes one parameter and keeps every other rule of the view. An alternative the
contract checks refuse (a window no longer a multiple of the bucket, a resolution out of range)
is listed with the check's message instead of numbers.

In: a loaded contract, records per stream (as the worker reads them from ``raw.``), a key ring
and, for noised views, a noise key. Out: ``ViewUtility`` rows. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from contracts.checks import run_checks
from contracts.durations import format_duration
from contracts.model import Contract, H3Dimension, View
from policies.base import OutsideTerritory, Release
from policies.oracle import evaluate_view
from policies.pseudonymise import KeyRing, Pseudonymiser
from policies.spec import ViewSpec, view_spec

Record = dict[str, Any]
AS_SIGNED = "as signed"


@dataclass(frozen=True)
class Outcome:
    """What one variant of a view publishes of the events (or why it was not computed)."""

    label: str
    events_in_view: int = 0
    """Events of the stream that pass the view's filter inside the territory (every variant
    sees the same ones)."""
    events_published: int = 0
    events_suppressed: int = 0
    groups_published: int = 0
    groups_suppressed: int = 0
    windows: int = 0
    refused: str | None = None
    weaker: bool = False

    @property
    def events_bounded(self) -> int:
        """Events of the view left out before counting (contribution bounds, duplicates)."""
        return self.events_in_view - self.events_published - self.events_suppressed

    @property
    def groups(self) -> int:
        """Groups formed, published or not."""
        return self.groups_published + self.groups_suppressed

    def share_events_published(self) -> float | None:
        """Published events / events in the view; None without events."""
        return self.events_published / self.events_in_view if self.events_in_view else None

    def share_groups_published(self) -> float | None:
        """Published groups / groups formed; None without groups."""
        return self.groups_published / self.groups if self.groups else None

    def to_dict(self) -> dict[str, Any]:
        """JSON form, shares included."""
        return {
            "label": self.label,
            "events_in_view": self.events_in_view,
            "events_published": self.events_published,
            "events_suppressed": self.events_suppressed,
            "events_bounded": self.events_bounded,
            "groups_published": self.groups_published,
            "groups_suppressed": self.groups_suppressed,
            "windows": self.windows,
            "share_events_published": self.share_events_published(),
            "share_groups_published": self.share_groups_published(),
            "refused": self.refused,
            "weaker": self.weaker,
        }


@dataclass(frozen=True)
class ViewUtility:
    """One view: its terms and the outcome of the view as signed, then of each alternative."""

    view: str
    stream: str
    terms: str
    outcomes: tuple[Outcome, ...]


def outcome(
    label: str, in_view: int, releases: Iterable[Release], *, weaker: bool = False
) -> Outcome:
    """Sum the suppression reports of a view's releases (``in_view``: events in the view)."""
    rows = list(releases)
    return Outcome(
        label,
        events_in_view=in_view,
        events_published=sum(r.report.events_published for r in rows),
        events_suppressed=sum(r.report.events_suppressed for r in rows),
        groups_published=sum(r.report.groups_published for r in rows),
        groups_suppressed=sum(r.report.groups_suppressed for r in rows),
        windows=len(rows),
        weaker=weaker,
    )


def with_view(contract: Contract, view: View, **changes: Any) -> Contract:
    """The contract with one view's parameters changed (files and the rest as they are)."""
    changed = view.model_copy(update=changes)
    views = tuple(changed if v.name == view.name else v for v in contract.views)
    return contract.model_copy(update={"views": views})


def alternatives(contract: Contract, view: View) -> list[tuple[str, Contract, bool]]:
    """``(label, contract, weaker)`` for each nearby alternative of ``view``."""
    out: list[tuple[str, Contract, bool]] = []
    resolutions = {d.resolution for d in view.group_by if isinstance(d, H3Dimension)}
    for step, word in ((-1, "coarser"), (1, "finer")):
        if resolutions:
            dims = tuple(
                d.model_copy(update={"resolution": d.resolution + step})
                if isinstance(d, H3Dimension)
                else d
                for d in view.group_by
            )
            shown = ", ".join(str(r + step) for r in sorted(resolutions))
            out.append(
                (f"H3 {word} (resolution {shown})", with_view(contract, view, group_by=dims), False)
            )
    for factor in (2, 4):
        window: timedelta = view.window * factor
        out.append(
            (f"window {format_duration(window)}", with_view(contract, view, window=window), False)
        )
    lower = max(2, view.k // 2)
    if lower < view.k:
        out.append((f"k={lower} (weaker)", with_view(contract, view, k=lower), True))
    out.append((f"k={view.k * 2}", with_view(contract, view, k=view.k * 2), False))
    return out


def _terms(view: View) -> str:
    parts = [f"k={view.k}", f"window {format_duration(view.window)}"]
    resolutions = sorted({d.resolution for d in view.group_by if isinstance(d, H3Dimension)})
    parts += [f"H3 resolution {', '.join(str(r) for r in resolutions)}"] if resolutions else []
    if view.noise is not None:
        parts.append(f"ε {float(view.epsilon_per_window):g} per window")
    return ", ".join(parts)


def _refusal(contract: Contract, view: View) -> str | None:
    index = next(i for i, v in enumerate(contract.views) if v.name == view.name)
    prefix = f"views[{index}]"
    issues = [i for i in run_checks(contract, contract.validity.start) if i.path.startswith(prefix)]
    return (
        None if not issues else f"{issues[0].path.removeprefix(prefix + '.')}: {issues[0].message}"
    )


def view_utility(
    contract: Contract,
    view_name: str,
    records: Iterable[Record],
    *,
    keyring: KeyRing,
    noise_key: bytes | None = None,
    nearby: bool = True,
) -> ViewUtility:
    """The outcome of one view as signed and (``nearby``) of each alternative, on the same
    records."""
    view = contract.view(view_name)
    rows = list(records)
    pseudonymiser = Pseudonymiser(keyring, contract.id)
    in_view = events_in_view(view_spec(contract, view_name), rows)

    def run(variant: Contract, label: str, weaker: bool) -> Outcome:
        refused = _refusal(variant, variant.view(view_name))
        if refused is not None:
            return Outcome(label, refused=refused, weaker=weaker)
        releases = evaluate_view(view_spec(variant, view_name), rows, pseudonymiser, noise_key)
        return outcome(label, in_view, releases, weaker=weaker)

    outcomes = [run(contract, AS_SIGNED, False)]
    if nearby:
        outcomes += [
            run(variant, label, weaker) for label, variant, weaker in alternatives(contract, view)
        ]
    return ViewUtility(view.name, view.stream, _terms(view), tuple(outcomes))


def events_in_view(spec: ViewSpec, records: Iterable[Record]) -> int:
    """Records that pass the view's filter and lie in the territory, as the oracle reads them."""
    minimiser = spec.minimiser()
    count = 0
    for record in records:
        row = minimiser.project(record)
        if not spec.passes(row):
            continue
        try:
            for dimension in spec.dimensions:
                dimension.locate(row)
        except OutsideTerritory:
            continue
        count += 1
    return count


def utility(
    contract: Contract,
    events: Mapping[str, Iterable[Record]],
    *,
    keyring: KeyRing,
    noise_key: bytes | None = None,
    nearby: bool = True,
) -> list[ViewUtility]:
    """Every view of ``contract`` whose stream has events in ``events``, in contract order;
    without ``nearby``, the views as signed only (what the demo prints)."""
    streams = {name: list(records) for name, records in events.items()}
    return [
        view_utility(
            contract,
            v.name,
            streams[v.stream],
            keyring=keyring,
            noise_key=noise_key,
            nearby=nearby,
        )
        for v in contract.views
        if v.stream in streams
    ]
