"""Seeded synthetic providers for the three example contracts, and bad-record injection.

In: a seed, a start time and a population size (``SimOptions``). Out: endless, deterministic
``SimRecord(stream, record)`` with records matching the stream's Avro schema. Start reading
at ``base.py``; then ``mobility.py`` (Lyon scooters), ``rentals.py`` (Paris stays),
``navigation.py`` (Bordeaux jams and alerts), ``gbfs.py`` (public feeds with rotating ids),
``mds.py`` (the Lyon fleet as MDS 2.0 Vehicles, Events, Trips), ``faults.py`` and
``mds_faults.py`` (bad payloads, bad MDS Agency items, with the rejection each must get).
"""

from __future__ import annotations

from connectors.simulate.base import (
    DEFAULT_START_MS,
    SimOptions,
    SimRecord,
    Simulator,
    parse_start,
    take,
)
from connectors.simulate.mobility import MobilitySimulator
from connectors.simulate.navigation import NavigationSimulator
from connectors.simulate.rentals import RentalsSimulator

SIMULATORS: dict[str, type[MobilitySimulator | RentalsSimulator | NavigationSimulator]] = {
    "mobility": MobilitySimulator,
    "rentals": RentalsSimulator,
    "navigation": NavigationSimulator,
}


def simulator(name: str, options: SimOptions | None = None) -> Simulator:
    """The simulator called ``name`` (``mobility``, ``rentals``, ``navigation``)."""
    return SIMULATORS[name](options)


__all__ = [
    "DEFAULT_START_MS",
    "SIMULATORS",
    "MobilitySimulator",
    "NavigationSimulator",
    "RentalsSimulator",
    "SimOptions",
    "SimRecord",
    "Simulator",
    "parse_start",
    "simulator",
    "take",
]
