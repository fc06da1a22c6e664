"""A contract in plain language, for a data-protection officer (``respublica contracts show``).

Pure rendering of a loaded ``Contract``: who shares what with whom and why, what comes in,
what goes out of each view and in what generalised form, what never leaves, and who may read.
"""

from __future__ import annotations

import math
import textwrap
from datetime import UTC, datetime

import h3

from contracts.durations import describe_duration
from contracts.links import links
from contracts.model import (
    Contract,
    CountMeasure,
    Dimension,
    DistinctMeasure,
    DistinctSubjectsMeasure,
    FieldDimension,
    GridDimension,
    H3Dimension,
    MeanMeasure,
    Measure,
    Party,
    RoundDimension,
    Stream,
    SumMeasure,
    View,
    ZonesDimension,
)
from contracts.policy_hash import policy_hash

_MECHANISMS = {"geometric": "geometric (discrete Laplace)", "laplace": "Laplace"}


def describe_contract(contract: Contract) -> str:
    """The whole plain-language summary, one section after another."""
    sections = [
        _identity(contract),
        _inputs(contract),
        _outputs(contract),
        _linked(contract),
        _pseudonymisation(contract),
        _readers(contract),
    ]
    return "\n".join(_wrap(line) for line in "\n\n".join(sections).splitlines()) + "\n"


def _wrap(line: str, width: int = 100) -> str:
    """Wrap long lines, continuing two spaces deeper than the line's own indent."""
    indent = line[: len(line) - len(line.lstrip())]
    bullet = "  " if line.lstrip().startswith("- ") else ""
    return textwrap.fill(
        line,
        width=width,
        subsequent_indent=indent + bullet + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _identity(contract: Contract) -> str:
    digest = policy_hash(contract)
    lines = [
        f"Contract {contract.id}, version {contract.version}: {contract.title}",
        f"Policy hash: {digest[:16]}",
        f"  (full sha256: {digest})",
    ]
    if contract.source is not None:
        lines.append(f"File: {contract.source}")
    if contract.description:
        lines.append(contract.description.strip())
    lines += [
        "",
        f"Provider (sends the data):      {_party(contract.provider)}",
        f"Beneficiary (receives results): {_party(contract.beneficiary)}",
        f"Legal basis: {contract.legal_basis.strip()}",
        f"Purposes: {'; '.join(contract.purposes)}",
        f"Valid: {_when(contract.validity.start)} until {_when(contract.validity.end)};"
        " no data flows outside this period",
        f"Territory: {_territory(contract)}; events outside it are rejected",
    ]
    if contract.licence:
        lines.append(f"Open-data licence: {contract.licence}")
    if contract.attribution:
        lines.append(f"Attribution: {contract.attribution}")
    return "\n".join(lines)


def _party(party: Party) -> str:
    contact = f", contact {party.contact}" if party.contact else ""
    return f"{party.name} ({party.id}{contact})"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _territory(contract: Contract) -> str:
    territory = contract.territory
    if territory.bbox is not None:
        west, south, east, north = territory.bbox
        width = _km(east - west, (south + north) / 2)
        height = (north - south) * 111.32
        return (
            f"bounding box lon {west}..{east}, lat {south}..{north}"
            f" (about {width:.0f} km × {height:.0f} km)"
        )
    polygons = territory.polygons
    vertices = sum(len(ring) - 1 for polygon in polygons for ring in polygon)
    return f"polygon ({len(polygons)} part(s), {vertices} vertices)"


def _km(degrees_lon: float, lat: float) -> float:
    return degrees_lon * 111.32 * math.cos(math.radians(lat))


# --- input --------------------------------------------------------------------------------


def _inputs(contract: Contract) -> str:
    lines = ["WHAT COMES IN"]
    for stream in contract.streams:
        lines += _stream(contract, stream)
    return "\n".join(lines)


def _stream(contract: Contract, stream: Stream) -> list[str]:
    fields = ", ".join(f"{f.name} ({f.describe()})" for f in stream.fields.values())
    lines = [
        f"  Stream {stream.name}: provider writes to {contract.topic_ingest(stream)}",
        f"    Fields: {fields}",
        f"    Subject: {stream.subject} (identifies a person or vehicle; pseudonymised inside"
        " the broker, never published)",
        f"    Event time: {stream.event_time}; events up to"
        f" {describe_duration(stream.allowed_lateness)} late are still counted",
    ]
    if stream.location is not None:
        lines.append(
            f"    Position: {stream.location.lat}/{stream.location.lon}, checked against the"
            " territory"
        )
    if stream.event_id is not None:
        lines.append(f"    Duplicates: detected by {stream.event_id}")
    lines.append(
        f"    Raw events kept {describe_duration(stream.retention)} on"
        f" {contract.topic_raw(stream)} (internal, workers only); rejected events go to"
        f" {contract.topic_dlq(stream)}"
    )
    return lines


# --- output -------------------------------------------------------------------------------


def _outputs(contract: Contract) -> str:
    lines = ["WHAT GOES OUT (only these aggregates; every other field is dropped)"]
    for view in contract.views:
        lines += _view(contract, view)
    if not contract.views:
        lines.append("  Nothing: the contract has no views.")
    return "\n".join(lines)


def _view(contract: Contract, view: View) -> list[str]:
    stream = contract.stream(view.stream)
    lines = [f"  View {view.name}: published on {contract.topic_public(view)}"]
    if view.description:
        lines.append(f"    {view.description}")
    source = f"    From stream {view.stream}"
    if view.filter is not None:
        values = ", ".join(str(v) for v in view.filter.values)
        source += f", only records whose {view.filter.field} is one of: {values}"
    lines.append(source)
    lines.append("    Grouped by:")
    lines += [f"      - {dim.name}: {_dimension(dim)}" for dim in view.group_by]
    if not view.group_by:
        lines.append("      - nothing (one total per window)")
    lines.append(f"    Time: {_time(view, stream)}")
    lines.append("    Measures:")
    lines += [f"      - {m.name}: {_measure(m, stream)}" for m in view.measures]
    lines.append(
        f"    Minimum group size: k = {view.k}; groups with fewer distinct subjects are"
        " suppressed (and counted as suppressed)"
    )
    lines.append(f"    Noise: {_noise(view)}")
    lines.append(f"    Never leaves through this view: {', '.join(dropped_fields(view, stream))}")
    return lines


def _dimension(dim: Dimension) -> str:
    if isinstance(dim, H3Dimension):
        area = h3.average_hexagon_area(dim.resolution, unit="km^2")
        return (
            f"H3 cell of ({dim.lat}, {dim.lon}), resolution {dim.resolution}"
            f" ({_area(area)} hexagons)"
        )
    if isinstance(dim, GridDimension):
        return f"square grid cell of ({dim.lat}, {dim.lon}), {dim.size_m:g} m side"
    if isinstance(dim, ZonesDimension):
        count = len(dim.zones)
        return (
            f"zone containing ({dim.lat}, {dim.lon}), one of {count} zones from {dim.file},"
            f" published as the zone's '{dim.property_name}' property"
        )
    if isinstance(dim, RoundDimension):
        return f"{dim.field} rounded to {dim.decimals} decimal(s)"
    return f"value of {dim.field}, published as is"


def _area(km2: float) -> str:
    if km2 >= 10:
        return f"≈{km2:,.0f} km²"
    if km2 >= 0.01:
        return f"≈{km2:.2g} km²"
    return f"≈{km2 * 1e6:,.0f} m²"


def _time(view: View, stream: Stream) -> str:
    bucket, window = describe_duration(view.time_bucket), describe_duration(view.window)
    text = f"{stream.event_time} cut to buckets of {bucket}; one result per tumbling window"
    text += f" of {window}"
    if view.delay:
        return f"{text}, published {describe_duration(view.delay)} after the window closes"
    return f"{text}, published when the window closes"


def _measure(measure: Measure, stream: Stream) -> str:
    if isinstance(measure, CountMeasure):
        return "number of records"
    if isinstance(measure, DistinctSubjectsMeasure):
        return f"number of distinct subjects ({stream.subject}), counted on pseudonyms"
    if isinstance(measure, DistinctMeasure):
        return f"number of distinct {measure.field} values, counted on pseudonyms"
    if isinstance(measure, SumMeasure):
        return f"sum of {measure.field}"
    if isinstance(measure, MeanMeasure):
        return f"mean of {measure.field}"
    levels = ", ".join(f"{q:g}" for q in measure.q)
    return f"quantiles {levels} of {measure.field}"


def _noise(view: View) -> str:
    noise = view.noise
    if noise is None:
        return "none (exact values)"
    windows = -(-noise.period // view.window) if view.window else 0
    measures = view.noised_measures
    bound = "" if noise.value_bound is None else f", sum values clamped to ±{noise.value_bound:g}"
    return (
        f"{_MECHANISMS[noise.mechanism]} noise on counts, sums and distinct counts;"
        f" ε = {noise.epsilon:g} per noised measure, {measures} noised measure(s) per window"
        f" + 1 release decision, budget ε = {noise.budget:g} per"
        f" {describe_duration(noise.period)} ({windows} windows per period);"
        f" each subject counts in at most {noise.max_groups} group(s) per window,"
        f" {noise.max_contributions} event(s) per group{bound};"
        f" a group is released when its noisy subject count reaches"
        f" k + {noise.selection_margin} = {view.k + noise.selection_margin}"
        f" (δ = {noise.selection_delta:.2g} per window)"
    )


def dropped_fields(view: View, stream: Stream) -> list[str]:
    """Schema fields that the view never publishes in any form (not even generalised)."""
    used: set[str] = {stream.event_time}  # published only as the window it falls in
    for dim in view.group_by:
        if isinstance(dim, FieldDimension | RoundDimension):
            used.add(dim.field)
        else:
            used.update((dim.lat, dim.lon))
    for measure in view.measures:
        field = getattr(measure, "field", None)
        if isinstance(field, str) and not isinstance(measure, DistinctMeasure):
            used.add(field)  # a distinct count reveals no value of its field
    return [name for name in stream.fields if name not in used]


# --- linked views -------------------------------------------------------------------------


def _linked(contract: Contract) -> str:
    lines = ["LINKED VIEWS (totals that add up across views)"]
    found = links(contract)
    if not found:
        lines.append(
            "  None: no two views publish totals of the same events that add up, so a"
            " suppressed group cannot be derived from another view."
        )
    for link in found:
        lines.append(f"  {link.first} and {link.second}: {link.relation}.")
        lines.append(f"    Both publish: {', '.join(link.measures)}.")
        if link.protected:
            lines.append(
                "    Released together: in each window, more groups are withheld wherever a"
                " suppressed group (or a union of them with fewer than k subjects) could"
                " otherwise be derived by subtraction (secondary suppression); each window's"
                " report counts them apart (groups_secondary)."
            )
        if link.warning is not None:
            lines.append(f"    Warning: {link.warning}.")
    return "\n".join(lines)


# --- keys and readers ---------------------------------------------------------------------


def _pseudonymisation(contract: Contract) -> str:
    policy = contract.pseudonymisation
    return "\n".join(
        [
            "PSEUDONYMISATION",
            f"  Subjects (and fields listed under pseudonymise) are replaced by HMAC-SHA256"
            f" pseudonyms under a key that changes every {describe_duration(policy.rotation)}.",
            f"  Each key is destroyed {describe_duration(policy.key_retention)} after it is"
            " created, so older pseudonyms can never be recomputed.",
            "  Pseudonyms are used only to count distinct subjects and values; they are never"
            " published.",
        ]
    )


def _readers(contract: Contract) -> str:
    lines = ["WHO MAY READ WHAT"]
    for consumer in contract.consumers:
        topics = ", ".join(contract.topic_public(v) for v in consumer.views)
        lines.append(f"  {consumer.principal}: {topics}")
    if not contract.consumers:
        lines.append("  Nobody yet: the contract names no consumers.")
    lines.append(
        "  Raw, dead-letter and internal topics are readable by the broker's workers only."
    )
    return "\n".join(lines)
