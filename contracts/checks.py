"""Semantic checks of a contract: contradictions a well-formed YAML file can still contain.

Each check is a small generator over one rule, yielding ``Issue(path, message)``. Checks that
need a stream's schema skip streams whose schema could not be loaded (that is reported once,
by the resolver). Messages name the rule, never a value from the contract or its data.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from fractions import Fraction

from contracts.avro import AvroField
from contracts.durations import format_duration
from contracts.errors import Issue
from contracts.model import (
    NOISY_MEASURES,
    NUMERIC_MEASURES,
    Contract,
    DistinctMeasure,
    FieldDimension,
    GridDimension,
    H3Dimension,
    MeanMeasure,
    Noise,
    QuantilesMeasure,
    RoundDimension,
    Stream,
    SumMeasure,
    View,
)
from contracts.territory_checks import check_territory, check_zones_in_territory

H3_MAX_RESOLUTION = 15
ROUND_MAX_DECIMALS = 10
RESERVED_COLUMNS = frozenset({"window_start", "window_end", "contract_id", "view"})
ZERO = timedelta(0)


Check = Callable[[Contract, datetime], Iterator[Issue]]
Schema = dict[str, AvroField]


def run_checks(contract: Contract, now: datetime) -> list[Issue]:
    """Every issue found by every check, in a stable order."""
    return [issue for check in CHECKS for issue in check(contract, now)]


# --- contract-level rules -------------------------------------------------------------------


def check_validity(contract: Contract, now: datetime) -> Iterator[Issue]:
    """The period must run forwards and not be over already (data would never flow)."""
    validity = contract.validity
    if validity.end <= validity.start:
        yield Issue("validity.end", "must be after validity.start")
    elif validity.end <= now:
        yield Issue("validity.end", "the contract has expired (end is in the past)")


def check_key_policy(contract: Contract, now: datetime) -> Iterator[Issue]:
    """Keys must outlive their epoch, or pseudonyms of the current epoch could not be computed."""
    policy = contract.pseudonymisation
    if policy.rotation <= ZERO:
        yield Issue("pseudonymisation.rotation", "must be longer than zero")
    elif policy.key_retention < policy.rotation:
        yield Issue("pseudonymisation.key_retention", "must be at least the rotation period")


def check_key_outlives_windows(contract: Contract, now: datetime) -> Iterator[Issue]:
    """A key must live until every window that uses it is released, or late events are lost."""
    retention = contract.pseudonymisation.key_retention
    streams = {stream.name: stream for stream in contract.streams}
    for i, view in enumerate(contract.views):
        stream = streams.get(view.stream)
        if stream is None:
            continue
        if retention < view.window + stream.allowed_lateness + view.delay:
            message = "shorter than the window + allowed lateness + delay of this view"
            yield Issue(f"views[{i}].window", f"pseudonymisation.key_retention is {message}")


def check_unique_names(contract: Contract, now: datetime) -> Iterator[Issue]:
    """Stream and view names become topic names, so each must be unique."""
    yield from _unique("streams", [stream.name for stream in contract.streams])
    yield from _unique("views", [view.name for view in contract.views])


def _unique(kind: str, names: list[str]) -> Iterator[Issue]:
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            first = f"{kind}[{seen[name]}]"
            yield Issue(f"{kind}[{index}].name", f"duplicate name (first used by {first})")
        seen.setdefault(name, index)


def check_consumers(contract: Contract, now: datetime) -> Iterator[Issue]:
    """A consumer may only be granted views that exist."""
    names = [view.name for view in contract.views]
    for i, consumer in enumerate(contract.consumers):
        for j, view in enumerate(consumer.views):
            if view not in names:
                message = f"no view of this name in the contract{_listed('views', names)}"
                yield Issue(f"consumers[{i}].views[{j}]", message)


# --- streams ------------------------------------------------------------------------------


def check_stream_fields(contract: Contract, now: datetime) -> Iterator[Issue]:
    """The fields given roles (event time, subject, event id, location) exist with fit types."""
    for i, stream in enumerate(contract.streams):
        schema = _schema(stream)
        if schema is None:
            continue
        yield from _stream_roles(f"streams[{i}]", stream, schema)


def _stream_roles(path: str, stream: Stream, schema: Schema) -> Iterator[Issue]:
    event_time = schema.get(stream.event_time)
    if event_time is None:
        yield Issue(f"{path}.event_time", _not_in_schema(stream.event_time, schema))
    elif event_time.nullable or event_time.types != {"long"}:
        yield Issue(f"{path}.event_time", "must be a non-null long (ms since epoch UTC)")
    subject = schema.get(stream.subject)
    if subject is None:
        yield Issue(f"{path}.subject", _not_in_schema(stream.subject, schema))
    elif subject.nullable or not subject.types <= {"string", "int", "long"}:
        yield Issue(f"{path}.subject", "must be a non-null string or integer field")
    if stream.event_id is not None:
        yield from _exists(f"{path}.event_id", stream.event_id, schema)
    if stream.location is not None:
        for axis in ("lat", "lon"):
            yield from _numeric(f"{path}.location.{axis}", getattr(stream.location, axis), schema)


def check_stream_durations(contract: Contract, now: datetime) -> Iterator[Issue]:
    """Raw retention of zero would delete events before the workers read them."""
    for i, stream in enumerate(contract.streams):
        if stream.retention <= ZERO:
            yield Issue(f"streams[{i}].retention", "must be longer than zero")


# --- views --------------------------------------------------------------------------------


def check_view_stream(contract: Contract, now: datetime) -> Iterator[Issue]:
    """A view reads one stream of the same contract."""
    names = [stream.name for stream in contract.streams]
    for i, view in enumerate(contract.views):
        if view.stream not in names:
            message = f"no stream of this name in the contract{_listed('streams', names)}"
            yield Issue(f"views[{i}].stream", message)


def check_view_fields(contract: Contract, now: datetime) -> Iterator[Issue]:
    """Every field a view names exists in its stream's schema, with a type that fits."""
    for i, view, _stream, schema in _views_with_schema(contract):
        yield from _view_fields(f"views[{i}]", view, schema)


def _view_fields(path: str, view: View, schema: Schema) -> Iterator[Issue]:
    if view.filter is not None:
        yield from _exists(f"{path}.filter.field", view.filter.field, schema)
    for j, field in enumerate(view.pseudonymise):
        yield from _exists(f"{path}.pseudonymise[{j}]", field, schema)
    for j, dim in enumerate(view.group_by):
        where = f"{path}.group_by[{j}]"
        if isinstance(dim, FieldDimension):
            yield from _exists(f"{where}.field", dim.field, schema)
        elif isinstance(dim, RoundDimension):
            yield from _numeric(f"{where}.field", dim.field, schema)
        else:
            yield from _numeric(f"{where}.lat", dim.lat, schema)
            yield from _numeric(f"{where}.lon", dim.lon, schema)
    for j, measure in enumerate(view.measures):
        if isinstance(measure, NUMERIC_MEASURES):
            yield from _numeric(f"{path}.measures[{j}].field", measure.field, schema)
        elif isinstance(measure, DistinctMeasure):
            yield from _exists(f"{path}.measures[{j}].field", measure.field, schema)


def check_no_clear_identifiers(contract: Contract, now: datetime) -> Iterator[Issue]:
    """The subject and pseudonymised fields never leave as values (default deny, BRIEF §6)."""
    for i, view, stream, _schema in _views_with_schema(contract):
        protected = {stream.subject, *view.pseudonymise}
        for j, dim in enumerate(view.group_by):
            if isinstance(dim, FieldDimension | RoundDimension) and dim.field in protected:
                where = f"views[{i}].group_by[{j}].field"
                yield Issue(where, _clear_message(dim.field, stream))
        for j, measure in enumerate(view.measures):
            if isinstance(measure, NUMERIC_MEASURES) and measure.field in protected:
                where = f"views[{i}].measures[{j}].field"
                yield Issue(where, _clear_message(measure.field, stream))


def _clear_message(field: str, stream: Stream) -> str:
    if field == stream.subject:
        return "the subject field may never be published"
    return "a pseudonymised field may never be published in clear"


def check_distinct_pseudonymised(contract: Contract, now: datetime) -> Iterator[Issue]:
    """``distinct`` counts pseudonyms, so its field must be listed in ``pseudonymise``."""
    for i, view in enumerate(contract.views):
        for j, measure in enumerate(view.measures):
            if isinstance(measure, DistinctMeasure) and measure.field not in view.pseudonymise:
                where = f"views[{i}].measures[{j}].field"
                yield Issue(where, "distinct needs a field listed in the view's pseudonymise")


def check_measures(contract: Contract, now: datetime) -> Iterator[Issue]:
    """Quantile levels lie strictly between 0 and 1."""
    for i, view in enumerate(contract.views):
        for j, measure in enumerate(view.measures):
            for n, q in enumerate(getattr(measure, "q", ())):
                if not 0.0 < q < 1.0:
                    yield Issue(
                        f"views[{i}].measures[{j}].q[{n}]", "must be between 0 and 1 (exclusive)"
                    )


def check_k(contract: Contract, now: datetime) -> Iterator[Issue]:
    """k = 1 would publish single subjects: suppression needs at least 2."""
    for i, view in enumerate(contract.views):
        if view.k < 2:
            yield Issue(f"views[{i}].k", "must be at least 2")


def check_windows(contract: Contract, now: datetime) -> Iterator[Issue]:
    """Windows tile the time axis with whole buckets, so no bucket straddles two windows."""
    for i, view in enumerate(contract.views):
        if view.time_bucket <= ZERO:
            yield Issue(f"views[{i}].time_bucket", "must be longer than zero")
        elif view.window < view.time_bucket:
            yield Issue(f"views[{i}].window", "must not be shorter than time_bucket")
        elif view.window % view.time_bucket:
            below = view.window // view.time_bucket * view.time_bucket
            nearest = f"{format_duration(below)} or {format_duration(below + view.time_bucket)}"
            message = f"must be a whole multiple of time_bucket ({nearest})"
            yield Issue(f"views[{i}].window", message)


def check_dimensions(contract: Contract, now: datetime) -> Iterator[Issue]:
    """Generalisation parameters stay within what the library and the data can express."""
    for i, view in enumerate(contract.views):
        for j, dim in enumerate(view.group_by):
            where = f"views[{i}].group_by[{j}]"
            if isinstance(dim, H3Dimension) and not 0 <= dim.resolution <= H3_MAX_RESOLUTION:
                yield Issue(f"{where}.resolution", "must be between 0 and 15")
            if isinstance(dim, GridDimension) and dim.size_m <= 0:
                yield Issue(f"{where}.size_m", "must be greater than 0")
            if isinstance(dim, RoundDimension) and not 0 <= dim.decimals <= ROUND_MAX_DECIMALS:
                yield Issue(f"{where}.decimals", "must be between 0 and 10")


def check_output_names(contract: Contract, now: datetime) -> Iterator[Issue]:
    """Dimension and measure names become output columns: unique, not reserved."""
    for i, view in enumerate(contract.views):
        seen: set[str] = set()
        named = [("group_by", j, d.name) for j, d in enumerate(view.group_by)]
        named += [("measures", j, m.name) for j, m in enumerate(view.measures)]
        for part, j, name in named:
            if name in RESERVED_COLUMNS:
                yield Issue(f"views[{i}].{part}[{j}].name", "reserved output column name")
            elif name in seen:
                yield Issue(f"views[{i}].{part}[{j}].name", "duplicate output column in this view")
            seen.add(name)


def check_noise(contract: Contract, now: datetime) -> Iterator[Issue]:
    """ε > 0, bounds ≥ 1, 0 < δ < 1, a value bound for noised sums, and a budget that pays ε
    for every noised measure and the release decision of every window in a period."""
    for i, view in enumerate(contract.views):
        if view.noise is not None:
            yield from _noise(f"views[{i}]", view, view.noise)


def _noise(path: str, view: View, noise: Noise) -> Iterator[Issue]:
    if noise.epsilon <= 0:
        yield Issue(f"{path}.noise.epsilon", "must be greater than 0")
    elif view.window > ZERO and noise.period > ZERO:
        if shortfall := _budget_shortfall(view, noise):
            yield Issue(f"{path}.noise.budget", shortfall)
    elif noise.budget < noise.epsilon:
        yield Issue(f"{path}.noise.budget", "must be at least epsilon")
    if noise.max_groups < 1:
        yield Issue(f"{path}.noise.max_groups", "must be at least 1")
    if noise.max_contributions < 1:
        yield Issue(f"{path}.noise.max_contributions", "must be at least 1")
    if not 0 < noise.delta < 1:
        yield Issue(f"{path}.noise.delta", "must be between 0 and 1 (exclusive)")
    sums = any(isinstance(m, SumMeasure) for m in view.measures)
    if noise.value_bound is not None and not (0 < noise.value_bound < math.inf):
        yield Issue(f"{path}.noise.value_bound", "must be a finite number greater than 0")
    elif sums and noise.value_bound is None:
        yield Issue(
            f"{path}.noise.value_bound",
            "required with a noised sum: each value is clamped into [-value_bound, value_bound]"
            " so that one subject's share of a sum is bounded",
        )
    if noise.period <= ZERO:
        yield Issue(f"{path}.noise.period", "must be longer than zero")
    if not any(isinstance(m, NOISY_MEASURES) for m in view.measures):
        yield Issue(f"{path}.noise", "no count, sum or distinct measure to add noise to")
    # Noise covers counts, sums and distinct counts only: a mean or quantile would leak
    # exact values beside the noisy ones.
    for j, measure in enumerate(view.measures):
        if isinstance(measure, MeanMeasure | QuantilesMeasure):
            yield Issue(
                f"{path}.measures[{j}]",
                "mean and quantiles cannot be published with noise (exact values)",
            )


def _budget_shortfall(view: View, noise: Noise) -> str | None:
    """Why the budget cannot pay ε for every noised measure of every window in a period."""
    measures = view.noised_measures
    windows = releases_per_period(view)
    # Exact decimals, as the ledger reads them: 0.1 × 3 × 16 is 4.8, not 4.800000000000001.
    needed = view.epsilon_per_window * windows
    if Fraction(repr(noise.budget)) >= needed:
        return None
    return (
        f"budget {noise.budget:g} is below the {float(needed):g} needed: {noise.epsilon:g}"
        f" × ({measures} noised measure{'s' * (measures != 1)} + 1 release decision)"
        f" × {windows} window{'s' * (windows != 1)} per period;"
        f" raise budget to {float(needed):g}, or lower epsilon"
    )


def releases_per_period(view: View) -> int:
    """How many windows of the view start in one noise period (at least one)."""
    if view.noise is None or view.window <= ZERO:
        return 0
    return max(1, -(-view.noise.period // view.window))


# --- helpers ------------------------------------------------------------------------------


def _views_with_schema(contract: Contract) -> Iterator[tuple[int, View, Stream, Schema]]:
    """Views whose stream exists and whose schema loaded; others are reported elsewhere."""
    streams: dict[str, Stream] = {}
    for stream in contract.streams:
        streams.setdefault(stream.name, stream)  # same as Contract.stream(): first one wins
    for i, view in enumerate(contract.views):
        source = streams.get(view.stream)
        schema = _schema(source) if source is not None else None
        if source is not None and schema is not None:
            yield i, view, source, schema


def _schema(stream: Stream) -> Schema | None:
    try:
        return stream.fields
    except RuntimeError:
        return None  # schema failed to load; the resolver already reported why


def _exists(path: str, field: str, schema: Schema) -> Iterator[Issue]:
    if field not in schema:
        yield Issue(path, _not_in_schema(field, schema))


def _not_in_schema(field: str, schema: Schema) -> str:
    """Say the close field name if there is one, else every field of the schema."""
    close = difflib.get_close_matches(field, list(schema), n=1, cutoff=0.6)
    if close:
        return f"field not in the stream's schema (did you mean {close[0]}?)"
    return f"field not in the stream's schema{_listed('fields', list(schema))}"


def _listed(kind: str, names: list[str]) -> str:
    return f" ({kind}: {', '.join(names)})" if names else f" (it has no {kind})"


def _numeric(path: str, field: str, schema: Schema) -> Iterator[Issue]:
    if field not in schema:
        yield Issue(path, _not_in_schema(field, schema))
    elif not schema[field].is_numeric:
        yield Issue(path, "must be a numeric field (int, long, float or double)")


CHECKS: tuple[Check, ...] = (
    check_validity,
    check_territory,
    check_zones_in_territory,
    check_key_policy,
    check_unique_names,
    check_stream_fields,
    check_stream_durations,
    check_view_stream,
    check_view_fields,
    check_no_clear_identifiers,
    check_distinct_pseudonymised,
    check_measures,
    check_k,
    check_windows,
    check_dimensions,
    check_output_names,
    check_noise,
    check_consumers,
    check_key_outlives_windows,
)
