"""``contracts show``: the plain-language summary carries the facts a DPO checks."""

from __future__ import annotations

from datetime import datetime

import pytest

from contracts import ContractError, examples_dir
from contracts.cli import show

pytestmark = pytest.mark.unit

EXPECTED = {
    "lyon-micromobility": [
        "Contract lyon-micromobility, version 1: Shared e-scooters, Lyon metropolis",
        "Provider (sends the data):      ScootCo SAS",
        "Beneficiary (receives results): Métropole de Lyon",
        "Legal basis: Code des transports L1231-17",
        "Purposes: transport planning; public-space management",
        "Valid: 2026-01-01 00:00 UTC until 2031-12-31 23:59 UTC",
        "Territory: bounding box lon 4.77..4.92, lat 45.7..45.81",
        "Subject: vehicle_id",
        "Raw events kept 7 days on raw.lyon-micromobility.vehicle_events",
        "View availability: published on public.lyon-micromobility.availability",
        "only records whose event_type is one of: available",
        "cell: H3 cell of (lat, lon), resolution 7 (≈5.2 km² hexagons)",
        "origin_cell: H3 cell of (start_lat, start_lon), resolution 7 (≈5.2 km² hexagons)",
        "one result per tumbling window of 15 minutes",
        "one result per tumbling window of 2 hours",
        "published 1 hour after the window closes",
        "vehicles: number of distinct subjects (vehicle_id)",
        "mean_duration_s: mean of duration_s",
        "Minimum group size: k = 10",
        "Noise: none (exact values)",
        "Never leaves through this view: event_id, vehicle_id, provider_id",
        "key that changes every 1 day",
        "Each key is destroyed 7 days after",
        "User:lyon-opendata: public.lyon-micromobility.availability",
    ],
    "paris-str": [
        "Ville de Paris",
        "Regulation (EU) 2024/1028",
        "district: zone containing (lat, lon), one of 8 zones",
        "nights: sum of nights",
        "listing_urls: number of distinct listing_url values, counted on pseudonyms",
        "Minimum group size: k = 5",
        "one result per tumbling window of 30 days",
        "Never leaves through this view: event_id, registration_number, listing_url, address",
    ],
    "bordeaux-navigation": [
        "Bordeaux Métropole",
        "Territory: polygon (1 part(s), 6 vertices)",
        "Subject: reporter_id",
        "type: value of type, published as is",
        "Minimum group size: k = 3",
        "ε = 1 per noised measure, 1 noised measure(s) per window + 1 release decision, "
        "budget ε = 96 per 1 day (48 windows per period)",
        "each subject counts in at most 1 group(s) per window, 1 event(s) per group",
        "a group is released when its noisy subject count reaches k + 14 = 17 (δ = 6.1e-07 per "
        "window)",
        "mean_delay_s: mean of delay_s",
    ],
}


@pytest.mark.parametrize("contract_id", sorted(EXPECTED))
def test_show_states_the_key_facts(contract_id: str, now: datetime) -> None:
    text = " ".join(show(contract_id, [examples_dir()], now=now).split())
    for fact in EXPECTED[contract_id]:
        assert " ".join(fact.split()) in text


def test_show_by_path(now: datetime) -> None:
    text = show(str(examples_dir() / "rentals.yaml"), [], now=now)
    assert text.startswith("Contract paris-str, version 1")


def test_show_unknown_id(now: datetime) -> None:
    with pytest.raises(ContractError, match="no contract with id nope"):
        show("nope", [examples_dir()], now=now)
