"""``respublica contracts utility``: what each view would publish of some events, and nearby
alternatives (``policies/utility.py``), before a contract is signed."""

from __future__ import annotations

import argparse
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.errors import RespublicaError

if TYPE_CHECKING:
    from connectors.events_file import StreamEvents
    from contracts.model import Contract
    from policies.utility import Outcome, ViewUtility


def report(args: argparse.Namespace, search: list[Path]) -> int:
    """Print the report for ``args.contract`` (found in ``search``) on ``args.events``."""
    from contracts.cli import find_contract
    from policies.pseudonymise import KeyRing
    from policies.utility import utility

    contract = find_contract(
        args.contract,
        search,
        now=datetime.now(UTC),
        allow_outside=args.allow_outside_refs,
    )
    loaded = [_read(contract, spec) for spec in args.events]
    events = {s.stream: s.records for s in loaded}
    # Fresh keys: pseudonyms and noise of this report are never those of a live release.
    results = utility(contract, events, keyring=KeyRing(), noise_key=secrets.token_bytes(32))
    if args.format == "json":
        print(json.dumps(_json(contract, loaded, results), indent=2, ensure_ascii=False))
    else:
        print("\n".join(_text(contract, loaded, results)))
    return 0


def _read(contract: Contract, spec: str) -> StreamEvents:
    from connectors.events_file import read_events

    names = [s.name for s in contract.streams]
    stream, sep, file = spec.partition("=")
    if not sep:
        if len(names) != 1:
            msg = f"--events {spec}: say which stream, STREAM=FILE (streams: {', '.join(names)})"
            raise RespublicaError(msg)
        stream, file = names[0], spec
    if stream not in names:
        listed = ", ".join(names)
        msg = f"--events: contract {contract.id} has no stream {stream!r} (streams: {listed})"
        raise RespublicaError(msg)
    try:
        with Path(file).open("rb") as handle:
            return read_events(contract, stream, handle)
    except OSError as exc:
        msg = f"cannot read {file} ({exc.strerror or type(exc).__name__})"
        raise RespublicaError(msg) from exc


def _share(part: int, whole: int) -> str:
    return f"{part:,} of {whole:,} ({part / whole:.1%})" if whole else "none"


def _line(o: Outcome) -> str:
    if o.refused is not None:
        return f"    {o.label:<28} not allowed by the contract checks: {o.refused}"
    bounded = f", {o.events_bounded:,} over contribution bounds" if o.events_bounded else ""
    return (
        f"    {o.label:<28} events {_share(o.events_published, o.events_in_view):<28} "
        f"groups {_share(o.groups_published, o.groups):<26} {o.windows:,} windows{bounded}"
    )


def _text(contract: Contract, loaded: list[StreamEvents], results: list[ViewUtility]) -> list[str]:
    lines = [f"{contract.id} ({contract.provider.name} → {contract.beneficiary.name})"]
    for s in loaded:
        rejected = ", ".join(f"{r} {n:,}" for r, n in s.rejected.most_common())
        lines.append(
            f"  {s.stream}: {len(s.records):,} events accepted"
            + (f", {sum(s.rejected.values()):,} rejected ({rejected})" if rejected else "")
        )
    for view in results:
        lines.append(f"  view {view.view} ({view.terms}): published of the events in the view")
        lines += [_line(o) for o in view.outcomes]
    lines.append(
        "  (lateness and the validity period are not applied: the report is about the terms; "
        "a weaker alternative protects less)"
    )
    return lines


def _json(
    contract: Contract, loaded: list[StreamEvents], results: list[ViewUtility]
) -> dict[str, Any]:
    return {
        "contract": contract.id,
        "streams": [
            {"stream": s.stream, "accepted": len(s.records), "rejected": dict(s.rejected)}
            for s in loaded
        ],
        "views": [
            {
                "view": v.view,
                "stream": v.stream,
                "terms": v.terms,
                "outcomes": [o.to_dict() for o in v.outcomes],
            }
            for v in results
        ],
    }
