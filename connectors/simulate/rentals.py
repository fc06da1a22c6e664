"""Seeded short-term-rental stays in Paris (contract ``paris-str``, Regulation (EU) 2024/1028).

A pool of listings, denser in the central arrondissements, each with a registration number,
a listing URL and an address. Every listing is booked stay after stay (nights 1..30, mostly
short; guests by unit type; guests' country of residence as ISO 3166-1 alpha-3). One record
per stay on the ``activity`` stream, ordered by ``period_start`` per listing, with up to
two days of disorder overall (platforms report in batches; the stream allows a week).

Registration numbers follow the French scheme that the Regulation lets Member States keep:
the 5-digit INSEE code of the arrondissement, 6 digits, 2 check letters (``75111000123AB``).
"""

from __future__ import annotations

import heapq
import itertools
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from connectors.simulate.base import (
    DAY_MS,
    HOUR_MS,
    BoundedDisorder,
    SimOptions,
    SimRecord,
    cumulative,
    offset_m,
    seeded_random,
    seeded_uuid,
    weighted_index,
)

CONTRACT_ID = "paris-str"
BBOX = (2.22, 48.81, 2.47, 48.91)
MARGIN_DEG = 0.003
DEFAULT_LISTINGS = 2000
MAX_DISORDER_MS = 2 * DAY_MS  # reports come in batches; the stream allows a week
CHECK_IN_HOUR_UTC = 14  # stays start at 16:00 Paris summer time

# (arrondissement, lat, lon, listings weight): Marais, Montmartre and the east are dense.
ARRONDISSEMENTS: tuple[tuple[int, float, float, float], ...] = (
    (1, 48.8625, 2.3364, 3.0),
    (2, 48.8683, 2.3428, 4.0),
    (3, 48.8630, 2.3601, 6.0),
    (4, 48.8543, 2.3576, 5.0),
    (5, 48.8445, 2.3497, 4.0),
    (6, 48.8491, 2.3328, 3.5),
    (7, 48.8562, 2.3121, 2.5),
    (8, 48.8727, 2.3125, 2.5),
    (9, 48.8771, 2.3375, 5.0),
    (10, 48.8762, 2.3607, 6.0),
    (11, 48.8590, 2.3800, 8.0),
    (12, 48.8396, 2.3958, 4.0),
    (13, 48.8283, 2.3623, 3.5),
    (14, 48.8292, 2.3265, 3.5),
    (15, 48.8401, 2.2930, 5.0),
    (16, 48.8603, 2.2760, 4.0),
    (17, 48.8873, 2.3065, 5.5),
    (18, 48.8925, 2.3484, 8.0),
    (19, 48.8871, 2.3849, 4.0),
    (20, 48.8634, 2.4011, 5.0),
)
_ARR_WEIGHTS = cumulative(a[3] for a in ARRONDISSEMENTS)
STREETS = (
    "rue de Rivoli",
    "rue Oberkampf",
    "rue de la Roquette",
    "boulevard Voltaire",
    "rue des Martyrs",
    "rue Lepic",
    "rue du Faubourg Saint-Antoine",
    "rue de Charonne",
    "rue de Belleville",
    "rue Saint-Maur",
    "avenue de Clichy",
    "rue de Vaugirard",
    "rue de Rennes",
    "rue Mouffetard",
    "rue des Rosiers",
    "rue de Turenne",
    "rue Caulaincourt",
    "boulevard de Magenta",
    "rue du Commerce",
    "rue de Passy",
)
UNIT_TYPES = ("entire_home", "private_room", "shared_room", "other")
_UNIT_WEIGHTS = cumulative((82.0, 15.0, 1.5, 1.5))
COUNTRIES = (
    "FRA",
    "USA",
    "GBR",
    "DEU",
    "ESP",
    "ITA",
    "BEL",
    "NLD",
    "CHE",
    "CAN",
    "BRA",
    "JPN",
    "CHN",
    "AUS",
    "PRT",
    "IRL",
    "KOR",
    "ISR",
    "MEX",
    "POL",
)
_COUNTRY_WEIGHTS = cumulative((30, 14, 9, 7, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 1.5, 1.5, 1, 1, 1, 1))
# Nights per stay: most stays are a weekend or a week; the Regulation's range is 1..30.
_NIGHTS = tuple(range(1, 31))
_NIGHT_WEIGHTS = cumulative(30.0 / n**1.3 for n in _NIGHTS)
_MAX_GUESTS = {"entire_home": 6, "private_room": 2, "shared_room": 1, "other": 4}


@dataclass(slots=True, frozen=True)
class Listing:
    """One rental unit on the platform."""

    registration_number: str
    listing_url: str
    address: str
    unit_type: str
    lat: float
    lon: float


class RentalsSimulator:
    """Endless stays of a seeded listing pool; see the module docstring."""

    contract_id: str = CONTRACT_ID
    streams: tuple[str, ...] = ("activity",)
    time_fields: ClassVar[dict[str, tuple[str, ...]]] = {"activity": ("period_start",)}
    position_fields: ClassVar[dict[str, tuple[tuple[str, str], ...]]] = {
        "activity": (("lat", "lon"),)
    }

    def __init__(self, options: SimOptions | None = None) -> None:
        self.options = options or SimOptions()
        self._rng = seeded_random(self.options.seed)
        self._disorder = BoundedDisorder(seeded_random(self.options.seed + 1), MAX_DISORDER_MS)
        size = self.options.size or DEFAULT_LISTINGS
        self._registered: set[str] = set()
        self.listings = [self._new_listing(i) for i in range(size)]

    def records(self) -> Iterator[SimRecord]:
        """One activity record per stay, by first night (bounded disorder across listings).

        Every call starts over from the seed, so two calls give the same records.
        """
        return type(self)(self.options)._run()

    def _run(self) -> Iterator[SimRecord]:
        first_day = self.options.start_ms - self.options.start_ms % DAY_MS
        agenda: list[tuple[int, int, int]] = []
        seq = itertools.count()
        for index in range(len(self.listings)):
            start = self._check_in(first_day + self._rng.randrange(0, 14) * DAY_MS)
            heapq.heappush(agenda, (start, next(seq), index))
        while True:
            clock, _, index = heapq.heappop(agenda)
            nights = self._stay(self.listings[index], clock)
            gap_days = int(self._rng.expovariate(1 / 3.0))  # ~60-70% occupancy
            heapq.heappush(agenda, (clock + (nights + gap_days) * DAY_MS, next(seq), index))
            yield from self._disorder.release(clock)

    def _check_in(self, day_ms: int) -> int:
        return day_ms + CHECK_IN_HOUR_UTC * HOUR_MS

    def _stay(self, listing: Listing, period_start: int) -> int:
        rng = self._rng
        nights = _NIGHTS[weighted_index(rng, _NIGHT_WEIGHTS)]
        guests = rng.randint(1, _MAX_GUESTS[listing.unit_type])
        record: dict[str, Any] = {
            "event_id": seeded_uuid(rng),
            "registration_number": listing.registration_number,
            "listing_url": listing.listing_url,
            "address": listing.address,
            "unit_type": listing.unit_type,
            "lat": listing.lat,
            "lon": listing.lon,
            "period_start": period_start,
            "nights": nights,
            "guests": guests,
            "guest_country": COUNTRIES[weighted_index(rng, _COUNTRY_WEIGHTS)],
        }
        subject = listing.registration_number
        self._disorder.push(period_start, subject, SimRecord("activity", record))
        return nights

    def _new_listing(self, index: int) -> Listing:
        rng = self._rng
        arrondissement, lat, lon, _ = ARRONDISSEMENTS[weighted_index(rng, _ARR_WEIGHTS)]
        lat, lon = self._inside(*offset_m(lat, lon, rng.gauss(0, 500), rng.gauss(0, 500)))
        postcode = f"750{arrondissement:02d}"
        street = STREETS[rng.randrange(len(STREETS))]
        return Listing(
            registration_number=self._registration_number(arrondissement),
            listing_url=f"https://staybnb.example/rooms/{10_000_000 + index * 7919 % 9_000_000}",
            address=f"{rng.randint(1, 180)} {street}, {postcode} Paris",
            unit_type=UNIT_TYPES[weighted_index(rng, _UNIT_WEIGHTS)],
            lat=round(lat, 6),
            lon=round(lon, 6),
        )

    def _registration_number(self, arrondissement: int) -> str:
        """A number unique in the pool: a collision would merge two units into one subject."""
        while True:
            letters = "".join(self._rng.choice(string.ascii_uppercase) for _ in range(2))
            number = f"751{arrondissement:02d}{self._rng.randrange(10**6):06d}{letters}"
            if number not in self._registered:
                self._registered.add(number)
                return number

    @staticmethod
    def _inside(lat: float, lon: float) -> tuple[float, float]:
        west, south, east, north = BBOX
        return (
            min(max(lat, south + MARGIN_DEG), north - MARGIN_DEG),
            min(max(lon, west + MARGIN_DEG), east - MARGIN_DEG),
        )
