"""``respublica simulate``: seeded synthetic provider events, to a file, the gateway or Kafka.

``--start now`` puts the events just before now, within the streams' allowed lateness;
``--contract FILE`` feeds a contract of one's own that has the simulator's streams, placing
the events in its territory (``connectors.simulate.place``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.cli.contracts import add_allow_outside_refs
from broker.cli.delivery import Line, add_destination, deliver
from contracts import examples_dir
from contracts.errors import RespublicaError

if TYPE_CHECKING:
    from contracts import Contract

# The names of connectors.simulate.SIMULATORS, whose package takes a while to import: `--help`
# must stay fast. tests/layout/test_cli_start.py checks that they agree.
SIMULATOR_NAMES = ("mobility", "navigation", "rentals")


def register(commands: Any) -> None:
    sim = commands.add_parser("simulate", help="generate seeded synthetic provider events")
    sim.add_argument("kind", choices=SIMULATOR_NAMES, help="which example contract to feed")
    sim.add_argument("--events", type=int, default=10_000, help="number of good events (10000)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (0)")
    sim.add_argument(
        "--start",
        default=None,
        help="first event time, ISO 8601 with zone (default 2026-06-01T06:00:00Z), or 'now': "
        "the events then end just before now, all within the streams' allowed lateness "
        "(a longer run is compressed in time), ready to push at once",
    )
    sim.add_argument(
        "--size",
        type=int,
        default=None,
        help="vehicles, listings or reporters (default: per simulator)",
    )
    sim.add_argument("--stream", action="append", help="only this stream (repeatable)")
    sim.add_argument(
        "--bad-share",
        type=float,
        default=0.0,
        help="share of bad events mixed in, e.g. 0.05 (default 0)",
    )
    sim.add_argument(
        "--contract",
        help="contract id to send to (default: the example's id), or a contract FILE with "
        "the simulator's streams and schemas: events are then placed in its territory and "
        "sent under its id",
    )
    add_allow_outside_refs(sim)
    add_destination(sim, out=True)
    sim.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from connectors.simulate import SimOptions, parse_start, simulator

    now = args.start == "now"
    start = None if args.start is None else _now_ms() if now else parse_start(args.start)
    options = SimOptions(
        seed=args.seed, size=args.size, **({} if start is None else {"start_ms": start})
    )
    source = simulator(args.kind, options)
    example = _example(source.contract_id)
    contract = _simulated_contract(args, source, example)
    contract_id = contract.id if contract is not example else args.contract or example.id
    records = _placed_records(args, source, example, contract, now)
    lines, tally = _simulated_lines(records, args, contract)
    stats = deliver(lines, args, contract_id, contract)
    bad = ", ".join(f"{k}={n}" for k, n in sorted(tally.items())) or "none"
    print(f"simulate {args.kind}: bad events mixed in: {bad}", file=sys.stderr)
    print(
        stats.summary()
        if stats.statuses or args.to_kafka
        else f"wrote {stats.sent} events in {stats.elapsed_s:.1f}s",
        file=sys.stderr,
    )
    return 0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _simulated_contract(args: argparse.Namespace, source: Any, example: Contract) -> Contract:
    """The example, or the contract FILE ``--contract`` names if it has the simulator's streams.

    A contract id has no ``/`` and no ``.``; anything else is a path.
    """
    from contracts import load_contracts

    ref = args.contract
    if ref is None or ("/" not in ref and "." not in ref):
        return example
    [contract] = load_contracts(
        [Path(ref)], now=datetime.now(UTC), allow_outside=args.allow_outside_refs
    )
    for name in args.stream or source.streams:
        try:
            fields = contract.stream(name).fields
        except KeyError:
            msg = (
                f"{ref}: no stream {name} (the {args.kind} simulator writes "
                f"{', '.join(source.streams)}; choose some with --stream)"
            )
            raise RespublicaError(msg) from None
        if fields != example.stream(name).fields:
            msg = (
                f"{ref}: stream {name} does not have the fields the {args.kind} simulator "
                f"writes; give it the schema of {example.id} ({example.stream(name).schema_ref})"
            )
            raise RespublicaError(msg)
    return contract


def _placed_records(
    args: argparse.Namespace, source: Any, example: Contract, contract: Contract, now: bool
) -> Iterator[Any]:
    """The selected records, moved into ``contract``'s territory and, for ``--start now``,
    onto the wall clock (``connectors.simulate.place``)."""
    from connectors.simulate import take
    from connectors.simulate.place import BoxMap, Retiming, relocated, retimed
    from contracts.geometry import Region

    def selected() -> Iterator[Any]:
        records = take(source.records(), args.events, args.stream or None)
        if contract is example:
            return records
        box = BoxMap(*(Region.of(c.territory.polygons).bbox for c in (example, contract)))
        return relocated(records, box, source.position_fields)

    if not now:
        return selected()
    streams = args.stream or source.streams
    lateness = min(contract.stream(s).allowed_lateness for s in streams)
    event_time = {s: contract.stream(s).event_time for s in streams}
    end = _now_ms() - 1000
    timing = Retiming.ending_at(
        (record[event_time[stream]] for stream, record in selected()),
        end,
        int(lateness.total_seconds() * 1000) // 2,
    )
    _say_retiming(timing, lateness)
    return retimed(selected(), timing, source.time_fields)


def _say_retiming(timing: Any, lateness: Any) -> None:
    from connectors.simulate.base import format_ms
    from contracts.durations import format_duration

    first = timing.end_ms - timing.span_ms
    text = f"--start now: events from {format_ms(first)} to {format_ms(timing.end_ms)}"
    if timing.factor < 1:
        text += (
            f" ({timing.simulated_span_ms / 60_000:.1f} min of simulated time compressed into "
            f"{timing.span_ms / 60_000:.1f} min, half the tightest allowed lateness "
            f"{format_duration(lateness)}, so that none is too late when pushed now)"
        )
    print(text, file=sys.stderr)


def _simulated_lines(
    records: Any, args: argparse.Namespace, contract: Contract
) -> tuple[Iterator[Line], Counter[str]]:
    from connectors.simulate import take
    from connectors.simulate.faults import FaultInjector, to_json_line

    tally: Counter[str] = Counter()
    wanted = args.stream or None
    injectors = {s.name: FaultInjector(contract, s.name, seed=args.seed) for s in contract.streams}

    def lines() -> Iterator[Line]:
        for stream, record in take(records, args.events, wanted):
            if not args.bad_share:
                yield stream, to_json_line(record), None
                continue
            for item in injectors[stream].mix([record], share=args.bad_share):
                if item.fault is not None:
                    tally[item.fault.kind.value] += 1
                yield stream, item.payload, None

    return lines(), tally


def _example(contract_id: str) -> Contract:
    from contracts import load_contracts

    contracts = {c.id: c for c in load_contracts([examples_dir()], now=datetime.now(UTC))}
    return contracts[contract_id]
