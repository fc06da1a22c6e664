"""The vehicles providers registered through MDS Agency ``/vehicles``, per provider and contract.

MDS 2.0 events and trips carry no vehicle type or propulsion: Agency has the provider register
each vehicle first (``POST /vehicles``, ``PUT /vehicles`` to change it), and the gateway fills
``vehicle_type`` and ``propulsion`` of the records from here (``connectors.mds.VehicleInfo``).

Kept **in memory**, in the gateway process, and nowhere else: only what the contract's streams
need (the device's type and propulsion types, under its canonical id), not the vehicle's
visible ``vehicle_id`` or any other attribute. The consequences, documented for providers in
docs/operators.md: a restarted gateway has forgotten every registration (events of a device
then fail ``unregistered`` until it is registered again), and each gateway of several behind
a load balancer has its own register (register through each, or pin a provider to one). A
Kafka topic would survive restarts, but it would be one more store of raw device ids with its
own retention and ACLs for data the provider can send again in one request.

Bounded: at most ``max_vehicles`` per provider and contract, so a token cannot grow the
gateway's memory without limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors import mds
from policies.pseudonymise import canonical_id, identifier_problem

DEFAULT_MAX_VEHICLES = 100_000
REQUIRED = ("device_id", "provider_id", "vehicle_id", "vehicle_type", "propulsion_types")
"""The Required fields of an MDS 2.0 Vehicle (``data-types.md``, "Vehicles")."""


@dataclass(frozen=True)
class Registered:
    """What the gateway keeps of a registered vehicle: its MDS type and propulsion types,
    and our ``vehicle_type`` and ``propulsion`` from them (``connectors.mds.vehicle_info``)."""

    vehicle_type: str
    propulsion_types: tuple[str, ...]
    info: mds.VehicleInfo


@dataclass(frozen=True)
class Problem:
    """Why a Vehicle was not registered: an MDS error code and the fields at fault."""

    error: str  # bad_param, missing_param, already_registered, unregistered
    fields: tuple[str, ...]
    description: str


class FleetRegister:
    """Registered vehicles by (provider id, contract id) and canonical device id."""

    def __init__(self, max_vehicles: int = DEFAULT_MAX_VEHICLES) -> None:
        self.max_vehicles = max_vehicles
        self._fleets: dict[tuple[str, str], dict[str, Registered]] = {}

    def lookup(self, provider: str, contract: str, device_id: Any) -> Registered | None:
        """The registration of a device, or None (unknown, or not a usable identifier)."""
        if not isinstance(device_id, str) or identifier_problem(device_id) is not None:
            return None
        return self._fleets.get((provider, contract), {}).get(canonical_id(device_id))

    def register(
        self, provider: str, contract: str, vehicle: Any, *, update: bool
    ) -> Problem | None:
        """Register (``update=False``, POST) or update (PUT) one MDS Vehicle; None if done."""
        checked = _checked(vehicle)
        if isinstance(checked, Problem):
            return checked
        key, registered = checked
        fleet = self._fleets.setdefault((provider, contract), {})
        if update and key not in fleet:
            return Problem("unregistered", ("device_id",), "this device_id is not registered")
        if not update and key in fleet:
            msg = "a vehicle with this device_id is already registered (PUT to change it)"
            return Problem("already_registered", ("device_id",), msg)
        if not update and len(fleet) >= self.max_vehicles:
            msg = f"this gateway registers at most {self.max_vehicles} vehicles per contract"
            return Problem("bad_param", ("device_id",), msg)
        fleet[key] = registered
        return None

    def size(self, provider: str, contract: str) -> int:
        """How many vehicles the provider registered for the contract."""
        return len(self._fleets.get((provider, contract), {}))


def _checked(vehicle: Any) -> tuple[str, Registered] | Problem:
    """A Vehicle's canonical device id and what we keep of it, or what is wrong with it."""
    if not isinstance(vehicle, Mapping):
        return Problem("bad_param", ("item",), "NOT_AN_OBJECT: each item must be a JSON object")
    missing = tuple(name for name in REQUIRED if vehicle.get(name) is None)
    if missing:
        return Problem("missing_param", missing, "MISSING_FIELD: a required field is missing")
    device = vehicle["device_id"]
    if not isinstance(device, str) or identifier_problem(device) is not None:
        return Problem("bad_param", ("device_id",), "INVALID_IDENTIFIER: not a usable identifier")
    kind, propulsion = vehicle["vehicle_type"], vehicle["propulsion_types"]
    if not isinstance(kind, str) or kind not in mds.VEHICLE_TYPES:
        msg = "WRONG_TYPE: not an MDS 2.0 vehicle type"
        return Problem("bad_param", ("vehicle_type",), msg)
    if (
        not isinstance(propulsion, list)
        or not propulsion
        or not all(isinstance(p, str) and p in mds.PROPULSION for p in propulsion)
    ):
        msg = "WRONG_TYPE: not a non-empty list of MDS 2.0 propulsion types"
        return Problem("bad_param", ("propulsion_types",), msg)
    info = mds.vehicle_info({"vehicle_type": kind, "propulsion_types": propulsion})
    return canonical_id(device), Registered(kind, tuple(propulsion), info)
