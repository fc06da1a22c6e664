"""The contract model: one frozen pydantic class per concept of a data-sharing contract.

The YAML format is documented in ``docs/design.md`` and ``docs/contracts.md``. These models
check the *shape* of a contract; the semantic rules (fields exist in the schema, subjects are
never published, k >= 2, ...) live in ``contracts/checks.py`` and run in the loader, which
also attaches what lives in other files (Avro schemas, zone and territory polygons). Build
contracts with ``contracts.load_contracts`` or ``contracts.parse_contract``.

Python attribute names follow the YAML keys except where a key is a Python keyword or would
shadow a pydantic method: ``schema`` -> ``Stream.schema_ref``, ``in`` -> ``Filter.values``,
``property`` -> ``ZonesDimension.property_name``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    model_validator,
)

from contracts.avro import AvroField, record_fields
from contracts.durations import format_duration, parse_duration
from contracts.geometry import MultiPolygon, Zone, bbox_polygon

CONTRACT_ID_PATTERN = r"^[a-z][a-z0-9-]{1,62}$"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
PARTY_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
PRINCIPAL_PATTERN = r"^(User|Group):[^\s,]+$"
# Upper bounds of numbers that reach Avro longs, Kafka configs or float arithmetic: a contract
# with k = 2**63 would load and then fail when its first report is encoded.
MAX_K = 1_000_000
MAX_VERSION = 2**31 - 1
MAX_CONTRIBUTION_BOUND = 1_000_000  # noise.max_groups, noise.max_contributions
MAX_EPSILON = 1_000_000  # far above any meaningful ε; keeps the budget arithmetic finite
MAX_DURATION_CHARS = 32


def _to_timedelta(value: Any) -> Any:
    """Durations come from YAML as ISO 8601 strings; Python callers may pass a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and len(value) > MAX_DURATION_CHARS:
        msg = f"must be an ISO 8601 duration of at most {MAX_DURATION_CHARS} characters"
        raise ValueError(msg)
    try:
        return parse_duration(value)
    except OverflowError:  # P99999999999D: more days than a timedelta holds
        msg = "is too long: a duration is at most 999999999 days"
        raise ValueError(msg) from None


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_timedelta),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
FieldName = Annotated[str, Field(min_length=1)]
Text = Annotated[str, Field(min_length=1)]
Scalar = str | int | float | bool
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Party(_Model):
    """A provider (platform) or beneficiary (public authority)."""

    id: Annotated[str, Field(pattern=PARTY_ID_PATTERN)]
    name: Text
    contact: str | None = None


class Validity(_Model):
    """The period in which data flows: ``start <= t < end`` (UTC-aware datetimes)."""

    start: AwareDatetime
    end: AwareDatetime


class Territory(_Model):
    """Where events may come from: a ``bbox`` or a ``polygon`` (file path or inline GeoJSON)."""

    bbox: tuple[Finite, Finite, Finite, Finite] | None = None
    polygon: str | dict[str, Any] | None = None
    _polygons: MultiPolygon | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _exactly_one_shape(self) -> Territory:
        if (self.bbox is None) == (self.polygon is None):
            msg = "give exactly one of bbox or polygon"
            raise ValueError(msg)
        return self

    @property
    def polygons(self) -> MultiPolygon:
        """The resolved area as GeoJSON-like MultiPolygon coordinates, ``(lon, lat)`` pairs."""
        if self.bbox is not None:
            return bbox_polygon(self.bbox)
        if self._polygons is None:
            msg = "territory polygon not resolved: load the contract with load_contracts()"
            raise RuntimeError(msg)
        return self._polygons

    def _bind(self, polygons: MultiPolygon) -> None:
        self._polygons = polygons


class PseudonymisationPolicy(_Model):
    """Key policy: one key per ``rotation`` epoch, destroyed after ``key_retention``."""

    rotation: Duration
    key_retention: Duration


class Location(_Model):
    """The fields holding an event's position, checked against the territory."""

    lat: FieldName
    lon: FieldName


class Stream(_Model):
    """An input stream: its Avro schema and the roles of its fields."""

    name: Name
    schema_ref: str | dict[str, Any] = Field(alias="schema")
    description: str | None = None
    event_time: FieldName
    subject: FieldName
    event_id: FieldName | None = None
    location: Location | None = None
    allowed_lateness: Duration = timedelta(0)
    retention: Duration
    partitions: Annotated[int, Field(ge=1, le=1024)] = 1
    _raw_schema: dict[str, Any] | None = PrivateAttr(default=None)
    _avro_schema: dict[str, Any] | None = PrivateAttr(default=None)

    @property
    def raw_schema(self) -> dict[str, Any]:
        """The Avro schema as written (a JSON object)."""
        if self._raw_schema is None:
            msg = "stream schema not resolved: load the contract with load_contracts()"
            raise RuntimeError(msg)
        return self._raw_schema

    @property
    def avro_schema(self) -> dict[str, Any]:
        """The schema parsed by ``fastavro.parse_schema``, ready for reading and writing."""
        if self._avro_schema is None:
            msg = "stream schema not resolved: load the contract with load_contracts()"
            raise RuntimeError(msg)
        return self._avro_schema

    @property
    def fields(self) -> dict[str, AvroField]:
        """Top-level fields of the schema, by name."""
        return record_fields(self.raw_schema)

    def _bind(self, raw_schema: dict[str, Any], avro_schema: dict[str, Any]) -> None:
        self._raw_schema = raw_schema
        self._avro_schema = avro_schema


class Filter(_Model):
    """Keep only records whose ``field`` is one of the listed values (YAML key ``in``)."""

    field: FieldName
    values: tuple[Scalar, ...] = Field(alias="in", min_length=1)

    def matches(self, record: dict[str, Any]) -> bool:
        """True when the record passes the filter."""
        return record.get(self.field) in self.values


class FieldDimension(_Model):
    """Group by the value of a field, published as is."""

    type: Literal["field"]
    name: Name
    field: FieldName


class H3Dimension(_Model):
    """Group by the H3 cell of a position at a given resolution."""

    type: Literal["h3"]
    name: Name
    lat: FieldName
    lon: FieldName
    resolution: int


class GridDimension(_Model):
    """Group by a square grid cell of ``size_m`` metres (an id of the cell's south-west corner)."""

    type: Literal["grid"]
    name: Name
    lat: FieldName
    lon: FieldName
    size_m: Finite


class ZonesDimension(_Model):
    """Group by the named zone (GeoJSON polygon file) a position falls in."""

    type: Literal["zones"]
    name: Name
    lat: FieldName
    lon: FieldName
    file: Text
    property_name: FieldName = Field(alias="property")
    _zones: tuple[Zone, ...] | None = PrivateAttr(default=None)

    @property
    def zones(self) -> tuple[Zone, ...]:
        """The zones read from ``file``, each with its ``property`` value."""
        if self._zones is None:
            msg = "zones not resolved: load the contract with load_contracts()"
            raise RuntimeError(msg)
        return self._zones

    def _bind(self, zones: tuple[Zone, ...]) -> None:
        self._zones = zones


class RoundDimension(_Model):
    """Group by a numeric field rounded to ``decimals`` decimal places."""

    type: Literal["round"]
    name: Name
    field: FieldName
    decimals: int


Dimension = Annotated[
    FieldDimension | H3Dimension | GridDimension | ZonesDimension | RoundDimension,
    Field(discriminator="type"),
]


class CountMeasure(_Model):
    """Number of records in the group."""

    type: Literal["count"]
    name: Name


class DistinctSubjectsMeasure(_Model):
    """Number of distinct subjects (counted on pseudonyms) in the group."""

    type: Literal["distinct_subjects"]
    name: Name


class DistinctMeasure(_Model):
    """Number of distinct values of a pseudonymised field in the group."""

    type: Literal["distinct"]
    name: Name
    field: FieldName


class SumMeasure(_Model):
    """Sum of a numeric field."""

    type: Literal["sum"]
    name: Name
    field: FieldName


class MeanMeasure(_Model):
    """Mean of a numeric field."""

    type: Literal["mean"]
    name: Name
    field: FieldName


class QuantilesMeasure(_Model):
    """Quantiles ``q`` (each strictly between 0 and 1) of a numeric field."""

    type: Literal["quantiles"]
    name: Name
    field: FieldName
    q: tuple[Finite, ...] = Field(min_length=1)


NOISY_MEASURES = (CountMeasure, SumMeasure, DistinctMeasure, DistinctSubjectsMeasure)
"""The measures noise covers; each one spends ε per released window."""

Measure = Annotated[
    CountMeasure
    | DistinctSubjectsMeasure
    | DistinctMeasure
    | SumMeasure
    | MeanMeasure
    | QuantilesMeasure,
    Field(discriminator="type"),
]
FIELD_MEASURES = (DistinctMeasure, SumMeasure, MeanMeasure, QuantilesMeasure)
NUMERIC_MEASURES = (SumMeasure, MeanMeasure, QuantilesMeasure)
SPATIAL_DIMENSIONS = (H3Dimension, GridDimension, ZonesDimension)


class Noise(_Model):
    """Differential-privacy noise on count/sum/distinct measures, with an ε budget per period.

    Each subject's contribution to one window is bounded before anything is computed: at most
    ``max_groups`` groups, at most ``max_contributions`` events in each, and (noised sums) each
    value clamped into ``[-value_bound, value_bound]``. The noise of every measure is scaled to
    the sensitivity these bounds imply, and a group is released only if its noisy count of
    subjects reaches ``k + selection_margin`` (DP partition selection, with ``delta``).
    """

    mechanism: Literal["geometric", "laplace"] = "geometric"
    epsilon: Annotated[float, Field(allow_inf_nan=False, le=MAX_EPSILON)]
    budget: Finite
    period: Duration
    max_groups: Annotated[int, Field(le=MAX_CONTRIBUTION_BOUND)] = 1
    max_contributions: Annotated[int, Field(le=MAX_CONTRIBUTION_BOUND)] = 1
    value_bound: Finite | None = None
    delta: Finite = 1e-6

    @property
    def selection_margin(self) -> int:
        """``m``: a group is released when its noisy subject count reaches ``k + m``.

        The smallest m ≥ 0 with ``max_groups · q^m / (1 + q) <= delta``, ``q = exp(-ε/G)``:
        ``q^m / (1 + q)`` is ``P(Y >= m)`` for the discrete Laplace Y of scale ``G/ε`` drawn
        for the decision, and one subject can tip at most G groups over the threshold.
        """
        if self.epsilon <= 0 or self.max_groups < 1 or not 0 < self.delta < 1:
            return 0
        rate = self.epsilon / self.max_groups
        q = math.exp(-rate)
        # Just below the closed form, then up on the floats the tail is computed with.
        closed = math.log(self.max_groups / (self.delta * (1 + q))) / rate
        margin = max(0, math.floor(closed) - 1)
        while self.max_groups * q**margin / (1 + q) > self.delta:
            margin += 1
        return margin

    @property
    def selection_delta(self) -> float:
        """δ of one window's release decision at ``selection_margin`` (at most ``delta``)."""
        if self.epsilon <= 0 or self.max_groups < 1:
            return 1.0
        q = math.exp(-self.epsilon / self.max_groups)
        return min(1.0, self.max_groups * q**self.selection_margin / (1 + q))


class View(_Model):
    """What may be published from one stream: a tumbling-window aggregate with k-suppression."""

    name: Name
    stream: Name
    description: str | None = None
    filter: Filter | None = None
    pseudonymise: tuple[FieldName, ...] = ()
    group_by: tuple[Dimension, ...] = ()
    time_bucket: Duration
    window: Duration
    measures: tuple[Measure, ...] = Field(min_length=1)
    k: Annotated[int, Field(le=MAX_K)]
    noise: Noise | None = None
    delay: Duration = timedelta(0)

    @property
    def zones(self) -> dict[str, tuple[Zone, ...]]:
        """Loaded zones of each ``zones`` dimension, keyed by the dimension's name."""
        return {d.name: d.zones for d in self.group_by if isinstance(d, ZonesDimension)}

    @property
    def output_fields(self) -> tuple[str, ...]:
        """Names of the published columns besides the window bounds."""
        return tuple(d.name for d in self.group_by) + tuple(m.name for m in self.measures)

    @property
    def noised_measures(self) -> int:
        """How many of the view's measures noise covers (each spends ε per window)."""
        return sum(isinstance(m, NOISY_MEASURES) for m in self.measures)

    @property
    def epsilon_per_window(self) -> Fraction:
        """ε one released window spends: ε × (noised measures + 1 for the release decision),
        read as exact decimals (0 without noise). Sequential composition over the measures;
        each measure's noise is scaled to the whole window (every group a subject may touch)."""
        if self.noise is None:
            return Fraction(0)
        return Fraction(repr(self.noise.epsilon)) * (self.noised_measures + 1)


class Consumer(_Model):
    """A Kafka principal (``User:name``) allowed to read some views."""

    principal: Annotated[str, Field(pattern=PRINCIPAL_PATTERN)]
    views: tuple[Name, ...] = Field(min_length=1)


class Contract(_Model):
    """A data-sharing contract between one provider and one beneficiary."""

    id: Annotated[str, Field(pattern=CONTRACT_ID_PATTERN)]
    version: Annotated[int, Field(ge=1, le=MAX_VERSION)]
    title: Text
    description: str | None = None
    provider: Party
    beneficiary: Party
    legal_basis: Text
    purposes: tuple[Text, ...] = Field(min_length=1)
    licence: str | None = None
    attribution: str | None = None
    validity: Validity
    territory: Territory
    pseudonymisation: PseudonymisationPolicy
    streams: tuple[Stream, ...] = Field(min_length=1)
    views: tuple[View, ...] = ()
    consumers: tuple[Consumer, ...] = ()
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file the contract was loaded from, if any."""
        return self._source

    def stream(self, name: str) -> Stream:
        """The stream called ``name``; ``KeyError`` if there is none."""
        for stream in self.streams:
            if stream.name == name:
                return stream
        msg = "no such stream in the contract"
        raise KeyError(msg)

    def view(self, name: str) -> View:
        """The view called ``name``; ``KeyError`` if there is none."""
        for view in self.views:
            if view.name == name:
                return view
        msg = "no such view in the contract"
        raise KeyError(msg)

    def views_of(self, stream: str | Stream) -> tuple[View, ...]:
        """The views computed from a stream."""
        name = _name(stream)
        return tuple(view for view in self.views if view.stream == name)

    def topic_ingest(self, stream: str | Stream) -> str:
        """``ingest.<c>.<s>``: untrusted input written by the provider."""
        return f"ingest.{self.id}.{_name(stream)}"

    def topic_raw(self, stream: str | Stream) -> str:
        """``raw.<c>.<s>``: validated events, internal."""
        return f"raw.{self.id}.{_name(stream)}"

    def topic_dlq(self, stream: str | Stream) -> str:
        """``dlq.<c>.<s>``: rejected events with a reason, internal."""
        return f"dlq.{self.id}.{_name(stream)}"

    def topic_public(self, view: str | View) -> str:
        """``public.<c>.<v>``: what the beneficiary reads."""
        return f"public.{self.id}.{_name(view)}"

    def is_active(self, at: datetime) -> bool:
        """True when data may flow at ``at`` (aware datetime): ``start <= at < end``."""
        if at.tzinfo is None:
            msg = "is_active needs a timezone-aware datetime"
            raise ValueError(msg)
        return self.validity.start <= at < self.validity.end

    def _bind_source(self, source: Path | None) -> None:
        self._source = source


def _name(item: str | Stream | View) -> str:
    return item if isinstance(item, str) else item.name
