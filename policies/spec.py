"""A view of a contract, reduced to plain values and small functions (``ViewSpec``).

Both the streaming path (``aggregate``/``window``) and the batch ``oracle`` read a ``ViewSpec``;
neither reads the pydantic contract directly, so tests can also build specs by hand. The
group-by dimensions are compiled to ``locate(record) -> value`` functions over the
``generalise`` primitives; a spatial dimension raises ``OutsideTerritory`` for a point it
cannot place (no location, outside the territory, in no zone).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import h3

from contracts.links import linked_set_of
from policies.base import PolicyError, Record
from policies.generalise import Area, Grid, Territory, ZoneIndex, coordinates, round_coordinate
from policies.minimise import Minimiser

Locate = Callable[[Record], Any]
MEASURE_KINDS = ("count", "distinct_subjects", "distinct", "sum", "mean", "quantiles")
NOISY_KINDS = ("count", "distinct_subjects", "distinct", "sum")


@dataclass(frozen=True, slots=True)
class DimensionSpec:
    """One group-by step: the published name, the fields it reads, and how it locates."""

    name: str
    reads: tuple[str, ...]
    locate: Locate


@dataclass(frozen=True, slots=True)
class MeasureSpec:
    """One measure; ``field`` for distinct/sum/mean/quantiles, ``q`` for quantiles."""

    name: str
    kind: str
    field: str | None = None
    q: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class NoiseSpec:
    """Differential-privacy noise of a view (see ``policies.noise``)."""

    mechanism: str
    epsilon: float
    budget: float
    period_ms: int
    max_groups: int = 1
    """Groups of one window a subject's events may count in (the first ones, in offset order)."""
    max_contributions: int = 1
    """Events of one subject counted per group and window (the first ones, in offset order)."""
    value_bound: float | None = None
    """Noised sums clamp every value into ``[-value_bound, value_bound]``."""
    margin: int = 0
    """A group is released when its noisy subject count reaches ``k + margin``."""


@dataclass(frozen=True, slots=True)
class LinkedView:
    """One view of a linked set (``contracts.links``): how it groups and its k."""

    view: str
    dimensions: tuple[DimensionSpec, ...]
    k: int


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """Everything the core needs to compute one view, in ms and plain names."""

    contract: str
    view: str
    time_field: str
    subject_field: str
    window_ms: int
    time_bucket_ms: int
    lateness_ms: int
    rotation_ms: int
    k: int
    dimensions: tuple[DimensionSpec, ...]
    measures: tuple[MeasureSpec, ...]
    filter_field: str | None = None
    filter_values: tuple[Any, ...] = ()
    delay_ms: int = 0
    noise: NoiseSpec | None = None
    pseudonymised: tuple[str, ...] = field(default=())
    event_id_field: str | None = None
    """The stream's event id: each id counts at most once per (subject, window) of the view."""
    linked: tuple[LinkedView, ...] = ()
    """The views released together with this one (itself included, in contract order): their
    windows share one suppression decision (``policies.secondary``). Empty when unlinked."""

    def __post_init__(self) -> None:
        if self.window_ms <= 0 or self.window_ms % self.time_bucket_ms:
            msg = f"view {self.view}: window must be a positive multiple of time_bucket"
            raise PolicyError(msg)
        if self.k < 2:
            msg = f"view {self.view}: k must be at least 2"
            raise PolicyError(msg)
        if self.linked and self.noise is not None:
            msg = f"view {self.view}: a noised view is never released with linked views"
            raise PolicyError(msg)
        if self.linked and self.link_index < 0:
            msg = f"view {self.view}: its linked views must include itself"
            raise PolicyError(msg)
        for m in self.measures:
            if m.kind == "distinct" and m.field not in self.pseudonymised:
                msg = f"view {self.view}: measure {m.name} counts a field not pseudonymised"
                raise PolicyError(msg)
            if self.noise is not None and m.kind not in NOISY_KINDS:
                msg = f"view {self.view}: measure {m.name} ({m.kind}) cannot be noised"
                raise PolicyError(msg)

    @property
    def link_index(self) -> int:
        """This view's place in ``linked`` (-1 when unlinked)."""
        names = [v.view for v in self.linked]
        return names.index(self.view) if self.view in names else -1

    def minimiser(self) -> Minimiser:
        """The only fields this view ever reads (default deny); a linked view also reads what
        the views released with it group by, to place each event in their groups too."""
        reads = [r for d in self.dimensions for r in d.reads]
        reads += [r for v in self.linked for d in v.dimensions for r in d.reads]
        fields = [m.field for m in self.measures]
        return Minimiser.of(
            [
                self.time_field,
                self.subject_field,
                self.event_id_field,
                self.filter_field,
                *reads,
                *fields,
            ]
        )

    def passes(self, record: Record) -> bool:
        """The view's filter (``field in values``); True when there is none."""
        return self.filter_field is None or record.get(self.filter_field) in self.filter_values

    def filter_set(self) -> frozenset[Any] | tuple[Any, ...]:
        """The filter values as a set for fast membership (tuple if unhashable)."""
        try:
            return frozenset(self.filter_values)
        except TypeError:
            return self.filter_values

    def numeric_fields(self) -> tuple[str, ...]:
        """Fields summed or averaged, in first-use order."""
        wanted = (m.field for m in self.measures if m.kind in ("sum", "mean") and m.field)
        return tuple(dict.fromkeys(wanted))

    def quantile_fields(self) -> tuple[str, ...]:
        """Fields whose every value is kept for exact quantiles."""
        return tuple(
            dict.fromkeys(m.field for m in self.measures if m.kind == "quantiles" and m.field)
        )

    def distinct_fields(self) -> tuple[str, ...]:
        """Pseudonymised fields counted by ``distinct`` measures."""
        return tuple(
            dict.fromkeys(m.field for m in self.measures if m.kind == "distinct" and m.field)
        )


def ms(value: timedelta) -> int:
    """A duration in whole milliseconds."""
    return (value.days * 86_400 + value.seconds) * 1000 + value.microseconds // 1000


def field_dimension(name: str, field_name: str) -> DimensionSpec:
    """Group by a field's value as is."""
    return DimensionSpec(name, (field_name,), lambda r: r.get(field_name))


def round_dimension(name: str, field_name: str, decimals: int) -> DimensionSpec:
    """Group by a numeric field rounded to ``decimals`` places."""
    return DimensionSpec(
        name, (field_name,), lambda r: round_coordinate(r.get(field_name), decimals)
    )


def _placed(
    territory: Territory | None, lat_f: str, lon_f: str, cell: Callable[[float, float], Any]
) -> Locate:
    """Wrap a cell function with coordinate validation and the territory check."""
    if territory is None:
        west, south, east, north = -180.0, -90.0, 180.0, 90.0
        exact_box = True
    else:
        west, south, east, north = territory.area.bbox
        exact_box = territory.area.region.is_box

    def checked(lat: Any, lon: Any) -> Any:
        flat, flon = coordinates(lat, lon)
        if territory is not None:
            territory.check(flat, flon)
        return cell(flat, flon)

    if not exact_box:
        return lambda record: checked(record.get(lat_f), record.get(lon_f))

    def locate(record: Record) -> Any:
        lat, lon = record.get(lat_f), record.get(lon_f)
        # Fast path for the common valid point in a box territory: the very answer
        # ``territory.check`` would give (``Region.contains`` of a box is the closed box).
        if (
            type(lat) is float
            and type(lon) is float
            and south <= lat <= north
            and west <= lon <= east
        ):
            return cell(lat, lon)
        return checked(lat, lon)

    return locate


def h3_dimension(
    name: str, lat_f: str, lon_f: str, resolution: int, territory: Territory | None = None
) -> DimensionSpec:
    """Group by H3 cell (v4 hex id) at ``resolution``."""
    cell = functools.partial(h3.latlng_to_cell, res=resolution)  # C-level call, no lambda
    return DimensionSpec(name, (lat_f, lon_f), _placed(territory, lat_f, lon_f, cell))


def grid_dimension(
    name: str,
    lat_f: str,
    lon_f: str,
    size_m: float,
    territory: Territory | None = None,
    ref_lat: float | None = None,
) -> DimensionSpec:
    """Group by square grid cell; reference latitude = territory centre unless given."""
    if ref_lat is None:
        ref_lat = territory.ref_lat() if territory is not None else 0.0
    grid = Grid(size_m, ref_lat)
    return DimensionSpec(name, (lat_f, lon_f), _placed(territory, lat_f, lon_f, grid.cell))


def zones_dimension(
    name: str,
    lat_f: str,
    lon_f: str,
    zones: Sequence[tuple[str, Any]],
    territory: Territory | None = None,
) -> DimensionSpec:
    """Group by named zone (first containing zone in file order)."""
    index = ZoneIndex(zones)
    return DimensionSpec(name, (lat_f, lon_f), _placed(territory, lat_f, lon_f, index.zone))


def view_spec(contract: Any, view_name: str) -> ViewSpec:
    """Translate one view of a loaded ``contracts.model.Contract`` into a ``ViewSpec``."""
    view = contract.view(view_name)
    stream = contract.stream(view.stream)
    territory = Territory(Area.of("territory", contract.territory.polygons))
    linked = tuple(
        LinkedView(
            name,
            tuple(_dimension(d, territory) for d in contract.view(name).group_by),
            contract.view(name).k,
        )
        for name in linked_set_of(contract, view_name)
    )
    noise = None
    if view.noise is not None:
        n = view.noise
        noise = NoiseSpec(
            n.mechanism,
            n.epsilon,
            n.budget,
            ms(n.period),
            n.max_groups,
            n.max_contributions,
            n.value_bound,
            n.selection_margin,
        )
    return ViewSpec(
        contract=contract.id,
        view=view.name,
        time_field=stream.event_time,
        subject_field=stream.subject,
        window_ms=ms(view.window),
        time_bucket_ms=ms(view.time_bucket),
        lateness_ms=ms(stream.allowed_lateness),
        rotation_ms=ms(contract.pseudonymisation.rotation),
        k=view.k,
        dimensions=tuple(_dimension(d, territory) for d in view.group_by),
        measures=tuple(_measure(m) for m in view.measures),
        filter_field=view.filter.field if view.filter is not None else None,
        filter_values=tuple(view.filter.values) if view.filter is not None else (),
        delay_ms=ms(view.delay),
        noise=noise,
        pseudonymised=tuple(view.pseudonymise),
        event_id_field=stream.event_id,
        linked=linked,
    )


def _dimension(step: Any, territory: Territory) -> DimensionSpec:
    kind = step.type
    if kind == "field":
        return field_dimension(step.name, step.field)
    if kind == "round":
        return round_dimension(step.name, step.field, step.decimals)
    if kind == "h3":
        return h3_dimension(step.name, step.lat, step.lon, step.resolution, territory)
    if kind == "grid":
        return grid_dimension(step.name, step.lat, step.lon, step.size_m, territory)
    if kind == "zones":
        zones = [(str(z.value), z.polygons) for z in step.zones]
        return zones_dimension(step.name, step.lat, step.lon, zones, territory)
    msg = f"unknown group-by step type {kind!r}"
    raise PolicyError(msg)


def _measure(measure: Any) -> MeasureSpec:
    if measure.type not in MEASURE_KINDS:
        msg = f"unknown measure type {measure.type!r}"
        raise PolicyError(msg)
    return MeasureSpec(
        measure.name,
        measure.type,
        getattr(measure, "field", None),
        tuple(getattr(measure, "q", ())),
    )
