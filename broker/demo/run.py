"""``respublica demo``: the whole story end to end, on a real broker, in about two minutes.

1. a Kafka broker (``KAFKA_BOOTSTRAP``, or a throw-away local one) and the three example
   contracts' topics (``respublica apply``);
2. a policy worker (a real ``respublica worker`` process) and the HTTP gateway (the real
   gateway application, served on 127.0.0.1 in this process so that its clock can follow the
   simulated day: a day of events is pushed in a minute, and "too late" / "in the future"
   keep their meaning relative to the data);
3. a simulated day per vertical, with a share of bad records of every kind, pushed over HTTP
   in batches: the scooter operator is an MDS Agency 2.0 client (``broker.demo.agency``:
   it registers its fleet, then pushes spec-shaped Events and Trips to the gateway's Agency
   endpoint); the others push the contract's records to the native endpoint; then the
   documented end-of-stream record, so the last windows close;
4. the summary per contract, with the utility report of each view on the accepted events (as
   ``respublica contracts utility`` computes it, ``policies.utility``), and ``out/``: CSV and
   GeoJSON per view, an audit report per contract, a PNG map of scooter availability; with
   ``--keep``, the address of the web map (``respublica web``, ``demo/keep.py``).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from broker.analysts.export import export
from broker.analysts.map import cell_means, describe_map, render
from broker.deadline import wait_for
from broker.demo.agency import AgencyPusher, AgencyTally, MdsDay, simulate_fleet, vehicle_infos
from broker.demo.batches import batches
from broker.demo.keep import demo_cluster, keep_services, next_steps
from broker.ingest.auth import ContractGrant, ProviderGrant, hash_token
from broker.ingest.gateway import GatewayConfig, make_app
from broker.kafka import catalogue, topics
from broker.kafka.clients import end_of_stream
from broker.kafka.local import free_port_pair
from broker.kafka.public_reader import read_view
from broker.kafka.settings import KafkaSettings
from broker.kafka.writer import KafkaBatchWriter, ProducerSettings
from broker.processes import BenchError, Child
from connectors.simulate import SimOptions, simulator, take
from connectors.simulate.faults import FaultInjector
from contracts import load_contracts
from contracts.copies import example_data, write_contract
from contracts.model import Contract
from policies.pseudonymise import KeyRing
from policies.utility import Outcome, ViewUtility, utility

RELEASE_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Vertical:
    """One example contract and how much of its day to simulate."""

    kind: str
    contract_file: str
    events: int
    agency: bool = False  # pushed as MDS Agency 2.0 objects (events: Events and Trips)


VERTICALS = (
    Vertical("mobility", "micromobility.yaml", 150_000, agency=True),
    Vertical("navigation", "navigation.yaml", 55_000),
    Vertical("rentals", "rentals.yaml", 12_000),
)


@dataclass
class Tally:
    """What happened to one contract's events."""

    sent: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    accepted_records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    agency: AgencyTally | None = None


@dataclass
class Days:
    """The simulated data: the contract's records per stream, or an MDS provider's day."""

    native: dict[str, dict[str, list[dict[str, Any]]]]
    agency: dict[str, MdsDay]

    @property
    def count(self) -> int:
        """Events (records, or MDS Events and Trips) over every contract."""
        native = sum(len(r) for d in self.native.values() for r in d.values())
        return native + sum(day.count for day in self.agency.values())


class ReplayClock:
    """The gateway's "now": the latest event time of the batch being pushed."""

    def __init__(self) -> None:
        self.now_ms = 0

    def __call__(self) -> int:
        return self.now_ms


_shown: dict[str, int] = {}


def progress(label: str, done: int, total: int) -> None:
    """A one-line progress bar on stderr (redrawn in place on a terminal, every 10% else)."""
    step = (10 * done // total) if total else 10
    if not sys.stderr.isatty() and _shown.get(label) == step:
        return
    _shown[label] = step
    width = 30
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done >= total or not sys.stderr.isatty() else ""
    sys.stderr.write(f"\r  {label:<34} [{bar}] {done:>8,}/{total:,}{end}")
    sys.stderr.flush()


def demo_contracts(workdir: Path, suffix: str) -> list[Contract]:
    """The examples, copied with absolute file paths (and a run suffix on a shared cluster)."""
    out = []
    for vertical in VERTICALS:
        data = example_data(vertical.contract_file)
        data["id"] += suffix
        path = write_contract(data, workdir, vertical.contract_file)
        out.append(load_contracts([path], now=datetime.now(UTC))[0])
    return out


async def _push_stream(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    clock: ReplayClock,
    contract: Contract,
    stream: str,
    records: list[dict[str, Any]],
    tally: Tally,
    label: str,
    share: float,
) -> None:
    spec = contract.stream(stream)
    # A batch spans at most half the lateness, so its oldest good event is never "too late".
    span = int(spec.allowed_lateness.total_seconds() * 500)
    injector = FaultInjector(contract, stream, seed=7)
    accepted = tally.accepted_records.setdefault(stream, [])
    done = 0
    for batch in batches(injector.mix(records, share=share), span, spec.event_time):
        times = [i.record[spec.event_time] for i in batch if i.record is not None]
        if times:  # each stream's day is replayed on its own clock
            clock.now_ms = max(times)
        body = b"\n".join(i.payload for i in batch)
        async with session.post(
            f"{url}/v1/contracts/{contract.id}/streams/{stream}/events",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        ) as r:
            answer = await r.json()
            if r.status != 200:
                msg = f"the gateway answered {r.status} ({answer.get('error')})"
                raise BenchError(msg)
        refused = {entry["index"] for entry in answer["rejected"]}
        tally.rejected.update(entry["reason"] for entry in answer["rejected"])
        tally.sent += len(batch)
        tally.accepted += answer["accepted"]
        accepted += [
            i.record for n, i in enumerate(batch) if i.record is not None and n not in refused
        ]
        done += sum(1 for i in batch if i.record is not None)
        progress(label, done, len(records))


async def _push_agency(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    clock: ReplayClock,
    contract: Contract,
    day: MdsDay,
    tally: Tally,
    share: float,
) -> None:
    """Register the fleet, then push its Events and Trips through the Agency endpoint."""
    pusher = AgencyPusher(session, url, token, contract, clock)
    await pusher.register(day.vehicles)
    infos = vehicle_infos(day.vehicles)
    for stream, objects in day.objects.items():
        label = f"{contract.id}/{stream} (MDS)"

        def shown(done: int, total: int, label: str = label) -> None:
            progress(label, done, total)

        accepted, reasons = await pusher.push(stream, objects, infos, share, shown)
        tally.accepted_records[stream] = accepted
        tally.rejected.update(reasons)
        tally.accepted += len(accepted)
    tally.sent += sum(pusher.tally.sent.values())
    tally.agency = pusher.tally


async def push_all(
    kafka: KafkaSettings,
    contracts: Sequence[Contract],
    data: Days,
    share: float,
) -> dict[str, Tally]:
    """Serve the gateway on loopback and push every contract's day through it over HTTP."""
    token = secrets.token_urlsafe(24)
    grants = (
        ProviderGrant(
            id="demo-provider",
            token_sha256=hash_token(token),
            contracts=tuple(ContractGrant(id=c.id) for c in contracts),
        ),
    )
    clock = ReplayClock()
    writer = KafkaBatchWriter(ProducerSettings(kafka, role="demo-gateway"))
    app = make_app(
        GatewayConfig(tuple(contracts), grants), writer, clock=clock, registry=CollectorRegistry()
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port_pair()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    tallies = {c.id: Tally() for c in contracts}
    try:
        async with aiohttp.ClientSession() as session:
            for contract in contracts:
                if contract.id in data.agency:
                    await _push_agency(
                        session,
                        f"http://127.0.0.1:{port}",
                        token,
                        clock,
                        contract,
                        data.agency[contract.id],
                        tallies[contract.id],
                        share,
                    )
                    continue
                for stream, records in data.native[contract.id].items():
                    await _push_stream(
                        session,
                        f"http://127.0.0.1:{port}",
                        token,
                        clock,
                        contract,
                        stream,
                        records,
                        tallies[contract.id],
                        f"{contract.id}/{stream}",
                        share,
                    )
    finally:
        await runner.cleanup()
        await writer.close()
    return tallies


def simulate_day(contracts: Sequence[Contract]) -> Days:
    """Each vertical's events from its seeded simulator: split by stream, or an MDS day."""
    days = Days({}, {})
    for vertical, contract in zip(VERTICALS, contracts, strict=True):
        if vertical.agency:
            days.agency[contract.id] = simulate_fleet(2026, vertical.events)
            continue
        streams: dict[str, list[dict[str, Any]]] = {s.name: [] for s in contract.streams}
        for sim in take(simulator(vertical.kind, SimOptions(seed=2026)).records(), vertical.events):
            streams[sim.stream].append(sim.record)
        days.native[contract.id] = streams
    return days


def utility_as_signed(contract: Contract, tally: Tally) -> list[ViewUtility]:
    """What each view publishes of the accepted events, by the batch oracle: the report of
    ``respublica contracts utility`` without its alternatives (fresh keys, as there)."""
    events = {s.name: tally.accepted_records.get(s.name, []) for s in contract.streams}
    return utility(
        contract, events, keyring=KeyRing(), noise_key=secrets.token_bytes(32), nearby=False
    )


def expected_windows(report: list[ViewUtility]) -> dict[str, int]:
    """Windows per view the batch oracle releases (the utility report counts them)."""
    return {view.view: view.outcomes[0].windows for view in report}


def utility_lines(report: list[ViewUtility]) -> list[str]:
    """The utility report, short: per view, the share of its events and groups published."""

    def share(part: int, whole: int) -> str:
        return f"{part:,} of {whole:,} ({part / whole:.1%})" if whole else "none"

    def line(view: str, o: Outcome) -> str:
        return (
            f"    {view:<20} events {share(o.events_published, o.events_in_view)}, "
            f"groups {share(o.groups_published, o.groups)}"
        )

    head = "  utility (published of the accepted events, as `respublica contracts utility`):"
    return [head] + [line(v.view, v.outcomes[0]) for v in report]


def wait_released(
    kafka: KafkaSettings,
    contracts: Sequence[Contract],
    expected: dict[str, dict[str, int]],
    worker: Child,
) -> None:
    """Until every view has published a report for every window the oracle expects."""
    total = sum(n for views in expected.values() for n in views.values())

    def released() -> int:
        worker.check_alive()
        count = sum(
            min(len(read_view(kafka, c, v).reports), n)
            for c in contracts
            for v, n in expected[c.id].items()
        )
        progress("windows released", count, total)
        return count

    wait_for(lambda: released() >= total, RELEASE_TIMEOUT_S, "every window's release", 1.0)


def start_worker(
    kafka: KafkaSettings, contracts: Sequence[Contract], workdir: Path, web_port: int, group: str
) -> Child:
    args = [
        "-m",
        "broker.cli",
        "worker",
        "--worker-id",
        "demo",
        "--group",
        group,
        "--web-port",
        str(web_port),
        "--log-level",
        "warning",
        *[a for c in contracts for a in ("--contracts", str(c.source))],
    ]
    env = {
        "RESPUBLICA_MASTER_KEY": secrets.token_hex(32),
        "TMPDIR": str(workdir),
        **kafka.environ(),
    }
    return Child(args, workdir / "worker.log", env)


def write_outputs(kafka: KafkaSettings, contracts: Sequence[Contract], out: Path) -> list[str]:
    """CSV + GeoJSON per view, the audit report per contract, the availability map."""
    from broker.audit.render import render as render_audit
    from broker.audit.run import audit  # local: the audit pulls in more than the demo needs

    lines = []
    for contract in contracts:
        folder = out / contract.id
        folder.mkdir(parents=True, exist_ok=True)
        for view in contract.views:
            contents = read_view(kafka, contract, view.name)
            for fmt in ("csv", "geojson"):
                export(contents, folder / f"{view.name}.{fmt}", fmt)
            if view.name == "availability":
                means = cell_means(
                    (g.group["cell"] or "", float(g.measures["vehicles"]))
                    for g in contents.groups
                    if g.group.get("cell")
                )
                bbox = contract.territory.bbox or (4.77, 45.70, 4.92, 45.81)
                text = describe_map(contract, view, "vehicles", len(contents.reports))
                render(means, bbox, folder / "availability.png", text)
        report = audit(contract, kafka)
        (folder / "audit.md").write_text(render_audit(report, "md"), encoding="utf-8")
        lines.append(
            f"  audit {contract.id}: {'OK' if report['ok'] else 'VIOLATIONS'} "
            f"({report['summary']['violations']} violation(s), "
            f"{report['summary']['warnings']} warning(s))"
        )
    return lines


def summary(
    kafka: KafkaSettings,
    contracts: Sequence[Contract],
    tallies: dict[str, Tally],
    reports: dict[str, list[ViewUtility]],
) -> list[str]:
    expected = {c.id: expected_windows(reports[c.id]) for c in contracts}
    lines = []
    for contract in contracts:
        tally = tallies[contract.id]
        reasons = ", ".join(f"{r} {n:,}" for r, n in tally.rejected.most_common())
        lines += [
            f"{contract.id} ({contract.provider.name} → {contract.beneficiary.name})",
            f"  ingested {tally.sent:,}: accepted {tally.accepted:,}, "
            f"rejected {sum(tally.rejected.values()):,} ({reasons or 'none'})",
        ]
        if tally.agency is not None:
            lines.append(tally.agency.line())
        for view in contract.views:
            contents = read_view(kafka, contract, view.name)
            suppressed = sum(r.groups_suppressed or 0 for r in contents.reports)
            epsilon = sum(r.epsilon for r in contents.reports)
            equal = len(contents.reports) == expected[contract.id][view.name]
            lines.append(
                f"  {view.name}: {len(contents.reports):,} windows, {len(contents.groups):,} "
                f"groups published, "
                + ("suppressed not published" if view.noise else f"{suppressed:,} suppressed")
                + f" (k={view.k})"
                + (f", ε spent {epsilon:g}" if view.noise else "")
                + ("" if equal else "  [window count differs from the oracle]")
            )
        lines += utility_lines(reports[contract.id])
    return lines


def run_demo(out: Path, bad_share: float = 0.03, *, keep: bool = False) -> int:
    """The whole demo; returns the exit code. ``keep``: leave it running (``demo/keep.py``)."""
    started = time.monotonic()
    workdir = out / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    kept = None
    with demo_cluster(workdir, keep) as (kafka, external, data_dir):
        where = " (configured)" if external else " (local, kept)" if keep else " (local, temporary)"
        print(f"Kafka: {kafka.describe()}{where}")
        contracts = demo_contracts(workdir, f"-demo{secrets.token_hex(2)}" if external else "")
        with topics.TopicAdmin(kafka) as admin:
            applied = topics.apply(admin, topics.plan(admin, contracts))
        published = catalogue.plan_catalogue(kafka, contracts, now=datetime.now(UTC))
        catalogue.publish(kafka, published)  # analysts then need no contract file
        print(f"Applied {len(applied.pending)} topics for {len(contracts)} contracts")
        data = simulate_day(contracts)
        print(f"Simulated {data.count:,} events (plus {bad_share:.0%} bad records of every kind)")
        worker_port, group = free_port_pair(), f"respublica-demo-{secrets.token_hex(3)}"
        worker = start_worker(kafka, contracts, workdir, worker_port, group)
        try:
            tallies = asyncio.run(push_all(kafka, contracts, data, bad_share))
            for contract in contracts:
                end_of_stream(kafka, contract)
            reports = {c.id: utility_as_signed(c, tallies[c.id]) for c in contracts}
            expected = {c.id: expected_windows(reports[c.id]) for c in contracts}
            wait_released(kafka, contracts, expected, worker)
            lines = summary(kafka, contracts, tallies, reports)
            lines += write_outputs(kafka, contracts, out)
            if keep:
                services = (worker, worker_port, group)
                kept = keep_services(kafka, data_dir, contracts, workdir, *services)
        finally:
            if kept is None:
                worker.stop()
    print("\n".join(lines))
    (workdir / "summary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"Files: {out}/ (a folder per contract); done in {time.monotonic() - started:.0f} s")
    print("\n".join(next_steps(kept, out, contracts, external=external)))
    return 0
