"""The demo's scooter operator: an MDS 2.0 Agency client of the gateway.

The simulated Lyon fleet (``connectors.simulate.mds.MdsFleet``) publishes what a
spec-following MDS 2.0 provider does: Vehicles, Events (``vehicle_state`` + ``event_types``)
and Trips. The demo registers the fleet (``POST /vehicles``), then pushes the Events and
Trips, with a share of bad items of every kind (``connectors.simulate.mds_faults``), to the
gateway's Agency endpoint, so the availability view is fed by spec-shaped data. What the
batch oracle expects is computed from the accepted items through the same mapping the gateway
uses (``connectors.mds``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from broker.demo.batches import BATCH, batches
from broker.processes import BenchError
from connectors import mds
from connectors.simulate import SimOptions
from connectors.simulate.mds import MdsFleet
from connectors.simulate.mds_faults import AgencyFaults
from contracts.model import Contract

MEDIA = f"{mds.MEDIA_TYPE};version={mds.VERSION}"
PATHS = {"vehicle_events": ("events", "timestamp"), "trips": ("trips", "end_time")}
STEP_MS = 3_600_000


class Clock(Protocol):
    """The gateway's replay clock (``broker.demo.run.ReplayClock``)."""

    now_ms: int


@dataclass
class MdsDay:
    """What the simulated MDS provider publishes: Vehicles, and Events and Trips by stream."""

    vehicles: list[dict[str, Any]]
    objects: dict[str, list[dict[str, Any]]]

    @property
    def count(self) -> int:
        """Events and trips."""
        return sum(len(items) for items in self.objects.values())


def simulate_fleet(seed: int, objects: int) -> MdsDay:
    """The fleet's Events and Trips, hour by hour, until there are at least ``objects``."""
    fleet = MdsFleet(SimOptions(seed=seed))
    until = fleet.options.start_ms
    while len(fleet.events) + len(fleet.trips) < objects:
        until += STEP_MS
        fleet.advance(until)
    return MdsDay(
        list(fleet.vehicles.values()),
        {"vehicle_events": list(fleet.events), "trips": list(fleet.trips)},
    )


@dataclass
class AgencyTally:
    """What the Agency endpoint answered, per stream."""

    vehicles: int = 0
    sent: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the demo's summary."""
        parts = ", ".join(
            f"{self.stored.get(s, 0):,} of {self.sent.get(s, 0):,} {PATHS[s][0]}" for s in PATHS
        )
        return f"  via MDS Agency 2.0: {self.vehicles:,} vehicles registered; stored {parts}"


class AgencyPusher:
    """Pushes one contract's MDS day through the Agency endpoint, counting into a tally."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        token: str,
        contract: Contract,
        clock: Clock,
    ) -> None:
        self.session = session
        self.root = f"{url}/mds/agency/contracts/{contract.id}"
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": MEDIA,
            "Content-Type": MEDIA,
        }
        self.contract = contract
        self.clock = clock
        self.tally = AgencyTally()

    async def register(self, vehicles: list[dict[str, Any]]) -> None:
        """``POST /vehicles`` in batches; every one must be registered."""
        for start in range(0, len(vehicles), BATCH):
            batch = vehicles[start : start + BATCH]
            answer = await self._post("vehicles", json.dumps(batch).encode(), {201})
            if answer["success"] != len(batch):
                msg = f"the gateway registered {answer['success']} of {len(batch)} vehicles"
                raise BenchError(msg)
            self.tally.vehicles += answer["success"]

    async def push(
        self,
        stream: str,
        objects: list[dict[str, Any]],
        vehicles: dict[str, mds.VehicleInfo],
        share: float,
        progress: Callable[[int, int], None],
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Push a stream's objects with faults mixed in; the accepted records and the reasons
        of every failure."""
        path, time_field = PATHS[stream]
        mapping = mds.event_record if stream == "vehicle_events" else mds.trip_record
        span = int(self.contract.stream(stream).allowed_lateness.total_seconds() * 500)
        accepted: list[dict[str, Any]] = []
        reasons: list[str] = []
        done = 0
        mixed = AgencyFaults(stream, seed=7).mix(objects, share=share)
        for batch in batches(mixed, span, time_field):
            times = [i.record[time_field] for i in batch if i.record is not None]
            if times:
                self.clock.now_ms = max(times)
            body = b"[" + b",".join(i.payload for i in batch) + b"]"
            answer = await self._post(path, body, {201, 400, 404})
            failed = {f["item"]["index"] for f in answer["failures"]}
            reasons += [f["reason"] for f in answer["failures"]]
            self.tally.sent[stream] = self.tally.sent.get(stream, 0) + len(batch)
            self.tally.stored[stream] = self.tally.stored.get(stream, 0) + answer["success"]
            accepted += [
                mapping(i.record, vehicles.get(i.record["device_id"]))
                for n, i in enumerate(batch)
                if i.record is not None and n not in failed
            ]
            done += sum(1 for i in batch if i.record is not None)
            progress(done, len(objects))
        return accepted, reasons

    async def _post(self, path: str, body: bytes, expected: set[int]) -> dict[str, Any]:
        async with self.session.post(
            f"{self.root}/{path}", data=body, headers=self.headers
        ) as response:
            answer: dict[str, Any] = await response.json(content_type=None)
            if response.status not in expected:
                msg = f"the gateway answered {response.status} ({answer.get('error')})"
                raise BenchError(msg)
            return answer


def vehicle_infos(vehicles: list[dict[str, Any]]) -> dict[str, mds.VehicleInfo]:
    """Each device's type and propulsion, as the gateway derives them from its registration."""
    return {v["device_id"]: mds.vehicle_info(v) for v in vehicles}
