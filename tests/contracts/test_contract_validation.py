"""Invalid contracts: one precise problem (file, path, message) per contradiction."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from contracts import ContractError, Problem, load_contracts

pytestmark = pytest.mark.unit

ExampleFactory = Callable[[str], dict[str, Any]]
ContractWriter = Callable[..., Path]
DELETE = object()
QUANTILES_TEXT = {"type": "quantiles", "name": "q", "field": "vehicle_type", "q": [0.5]}
QUANTILES_BAD_Q = {"type": "quantiles", "name": "q", "field": "duration_s", "q": [0.5, 1.5]}
SUBJECT_DIM = {"type": "field", "name": "vid", "field": "vehicle_id"}
URL_DIM = {"type": "field", "name": "url", "field": "listing_url"}
OPEN_RING = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}
TOKYO_LAT_LON = {
    "type": "Polygon",
    "coordinates": [[[35.5, 139.5], [35.5, 139.9], [35.9, 139.9], [35.5, 139.5]]],
}
SHORT_RING = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}
BAD_AVRO = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}
NOT_IN_SCHEMA = "field not in the stream's schema "
VEHICLE_EVENT_FIELDS = (
    "(fields: event_id, vehicle_id, provider_id, vehicle_type, propulsion, event_type, timestamp,"
    " lat, lon, battery_pct, trip_id)"
)
SWAPPED_HINT = (
    "; latitude and longitude look swapped: write [min_lon, min_lat, max_lon, max_lat]"
    " (GeoJSON order)"
)
RELATIVE_RULE = " (a relative path is read from the contract file's folder)"
TOP_LEVEL_KEYS = (
    "id, version, title, description, provider, beneficiary, legal_basis, purposes, licence,"
    " attribution, validity, territory, pseudonymisation, streams, views, consumers"
)
NESTED_AVRO = {
    "type": "record",
    "name": "X",
    "fields": [{"name": "a", "type": {"type": "record", "name": "Y", "fields": []}}],
}


def _set(data: Any, dotted: str, value: Any) -> None:
    """Set (or delete, or append with a trailing ``+``) the item at a dotted path."""
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data[part]
    if last == "+":
        data.append(value)
    elif value is DELETE:
        del data[last]
    elif isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


# (case id, example, edits, expected path, expected message)
# fmt: off
CASES: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("unknown-group-by-field", "micromobility", {"views.0.group_by.0.lat": "latitude"},
     "views[0].group_by[0].lat", NOT_IN_SCHEMA + VEHICLE_EVENT_FIELDS),
    ("unknown-measure-field", "micromobility", {"views.1.measures.2.field": "duration"},
     "views[1].measures[2].field", NOT_IN_SCHEMA + "(did you mean duration_s?)"),
    ("unknown-filter-field", "micromobility", {"views.0.filter.field": "state"},
     "views[0].filter.field", NOT_IN_SCHEMA + VEHICLE_EVENT_FIELDS),
    ("unknown-field-dimension", "navigation", {"views.1.group_by.0.field": "kind"},
     "views[1].group_by[0].field", NOT_IN_SCHEMA +
     "(fields: event_id, reporter_id, timestamp, lat, lon, type, subtype, street, reliability)"),
    ("subject-published", "micromobility", {"views.0.group_by.+": SUBJECT_DIM},
     "views[0].group_by[1].field", "the subject field may never be published"),
    ("pseudonymised-published", "rentals", {"views.0.group_by.+": URL_DIM},
     "views[0].group_by[1].field", "a pseudonymised field may never be published in clear"),
    ("distinct-not-pseudonymised", "rentals", {"views.0.pseudonymise": []},
     "views[0].measures[3].field", "distinct needs a field listed in the view's pseudonymise"),
    ("k-below-2", "micromobility", {"views.0.k": 1}, "views[0].k", "must be at least 2"),
    ("window-shorter-than-bucket", "micromobility", {"views.0.window": "PT10M"},
     "views[0].window", "must not be shorter than time_bucket"),
    ("window-not-multiple", "micromobility", {"views.0.window": "PT20M"},
     "views[0].window", "must be a whole multiple of time_bucket (PT15M or PT30M)"),
    ("window-in-months", "rentals", {"views.0.window": "P1M"}, "views[0].window",
     "years and months have no fixed length; use days (e.g. P30D) or weeks (e.g. P4W)"),
    ("quantiles-on-text", "micromobility", {"views.1.measures.+": QUANTILES_TEXT},
     "views[1].measures[3].field", "must be a numeric field (int, long, float or double)"),
    ("quantile-above-1", "micromobility", {"views.1.measures.+": QUANTILES_BAD_Q},
     "views[1].measures[3].q[1]", "must be between 0 and 1 (exclusive)"),
    ("duplicate-stream", "navigation", {"streams.1.name": "jams", "views.1.stream": "jams",
                                        "views.1.group_by.0.field": "level"},
     "streams[1].name", "duplicate name (first used by streams[0])"),
    ("duplicate-view", "micromobility", {"views.1.name": "availability",
                                         "consumers.0.views": ["availability"]},
     "views[1].name", "duplicate name (first used by views[0])"),
    ("expired", "micromobility", {"validity.end": "2026-03-01T00:00:00Z"},
     "validity.end", "the contract has expired (end is in the past)"),
    ("reversed-validity", "micromobility", {"validity.start": "2032-01-01T00:00:00Z"},
     "validity.end", "must be after validity.start"),
    ("naive-validity", "micromobility", {"validity.start": "2026-01-01T00:00:00"},
     "validity.start", "needs a timezone, e.g. 2026-01-01T00:00:00Z"),
    ("bbox-reversed", "micromobility", {"territory.bbox": [4.92, 45.70, 4.77, 45.81]},
     "territory.bbox", "must be [min_lon, min_lat, max_lon, max_lat] with min < max"),
    ("bbox-latitude", "micromobility", {"territory.bbox": [4.77, -95.0, 4.92, 45.81]},
     "territory.bbox", "latitudes must be within [-90, 90]" + SWAPPED_HINT),
    ("bbox-lat-lon-swapped", "micromobility", {"territory.bbox": [35.5, 139.5, 35.9, 139.9]},
     "territory.bbox", "latitudes must be within [-90, 90]" + SWAPPED_HINT),
    ("bbox-longitude", "micromobility", {"territory.bbox": [-181.0, 45.70, 4.92, 45.81]},
     "territory.bbox", "longitudes must be within [-180, 180]"),
    ("polygon-open", "navigation", {"territory.polygon": OPEN_RING},
     "territory.polygon", "a ring must be closed (first point equal to last)"),
    ("polygon-short", "navigation", {"territory.polygon": SHORT_RING},
     "territory.polygon", "a ring needs at least 4 points (first and last equal)"),
    ("polygon-lat-lon", "navigation", {"territory.polygon": TOKYO_LAT_LON},
     "territory.polygon",
     "latitude must be within [-90, 90] (points are [lon, lat], GeoJSON order)"),
    ("polygon-file-missing", "navigation", {"territory.polygon": "outline.geojson"},
     "territory.polygon", "file not found: tried {dir}/outline.geojson" + RELATIVE_RULE),
    ("bbox-and-polygon", "navigation", {"territory.bbox": [0, 0, 1, 1]},
     "territory", "give exactly one of bbox or polygon"),
    ("consumer-unknown-view", "micromobility", {"consumers.0.views.1": "trips"},
     "consumers[0].views[1]",
     "no view of this name in the contract (views: availability, origin_destination)"),
    ("schema-file-missing", "micromobility", {"streams.0.schema": "missing.avsc"},
     "streams[0].schema", "file not found: tried {dir}/missing.avsc" + RELATIVE_RULE),
    ("schema-invalid", "micromobility", {"streams.0.schema": BAD_AVRO},
     "streams[0].schema", "not a valid Avro schema"),
    ("schema-nested", "micromobility", {"streams.0.schema": NESTED_AVRO},
     "streams[0].schema", "nested records are not supported: flatten the schema"),
    ("epsilon-zero", "navigation", {"views.1.noise.epsilon": 0},
     "views[1].noise.epsilon", "must be greater than 0"),
    ("budget-below-epsilon", "navigation", {"views.1.noise.budget": 0.5},
     "views[1].noise.budget",
     "budget 0.5 is below the 96 needed: 1 × (1 noised measure + 1 release decision) × 48 windows"
     " per period; raise budget to 96, or lower epsilon"),
    ("budget-below-period", "navigation", {"views.1.noise.budget": 50},
     "views[1].noise.budget",
     "budget 50 is below the 96 needed: 1 × (1 noised measure + 1 release decision) × 48 windows"
     " per period; raise budget to 96, or lower epsilon"),
    ("budget-below-measures", "navigation",
     {"views.1.noise.epsilon": 0.1, "views.1.noise.budget": 9.6,
      "views.1.measures.+": {"type": "distinct_subjects", "name": "alerters"}},
     "views[1].noise.budget",
     "budget 9.6 is below the 14.4 needed: 0.1 × (2 noised measures + 1 release decision) × 48"
     " windows per period; raise budget to 14.4, or lower epsilon"),
    ("noise-max-groups", "navigation", {"views.1.noise.max_groups": 0},
     "views[1].noise.max_groups", "must be at least 1"),
    ("noise-max-contributions", "navigation", {"views.1.noise.max_contributions": 0},
     "views[1].noise.max_contributions", "must be at least 1"),
    ("noise-delta", "navigation", {"views.1.noise.delta": 1.0},
     "views[1].noise.delta", "must be between 0 and 1 (exclusive)"),
    ("noised-sum-without-bound", "navigation",
     {"views.1.measures.+": {"type": "sum", "name": "total_reliability", "field": "reliability"},
      "views.1.noise.budget": 288},
     "views[1].noise.value_bound",
     "required with a noised sum: each value is clamped into [-value_bound, value_bound] so that"
     " one subject's share of a sum is bounded"),
    ("noise-mechanism", "navigation", {"views.1.noise.mechanism": "gaussian"},
     "views[1].noise.mechanism", "Input should be 'geometric' or 'laplace'"),
    ("noise-with-mean", "navigation",
     {"views.1.measures.+": {"type": "mean", "name": "mean_reliability", "field": "reliability"}},
     "views[1].measures[1]", "mean and quantiles cannot be published with noise (exact values)"),
    ("key-destroyed-before-release", "micromobility", {"views.1.delay": "P7D"},
     "views[1].window",
     "pseudonymisation.key_retention is shorter than the window + allowed lateness + delay of "
     "this view"),
    ("key-retention-short", "micromobility", {"pseudonymisation.key_retention": "PT12H"},
     "pseudonymisation.key_retention", "must be at least the rotation period"),
    ("view-unknown-stream", "micromobility", {"views.0.stream": "events"},
     "views[0].stream", "no stream of this name in the contract (streams: vehicle_events, trips)"),
    ("event-time-missing", "micromobility", {"streams.0.event_time": "ts"},
     "streams[0].event_time", NOT_IN_SCHEMA + VEHICLE_EVENT_FIELDS),
    ("event-time-not-long", "micromobility", {"streams.0.event_time": "lat"},
     "streams[0].event_time", "must be a non-null long (ms since epoch UTC)"),
    ("subject-missing", "micromobility", {"streams.0.subject": "device_id"},
     "streams[0].subject", NOT_IN_SCHEMA + "(did you mean vehicle_id?)"),
    ("event-id-missing", "micromobility", {"streams.1.event_id": "uuid"},
     "streams[1].event_id", NOT_IN_SCHEMA + "(fields: event_id, trip_id, vehicle_id, vehicle_type,"
     " start_time, end_time, start_lat, start_lon, end_lat, end_lon, distance_m, duration_s)"),
    ("location-missing", "micromobility", {"streams.1.location.lat": "lat"},
     "streams[1].location.lat", NOT_IN_SCHEMA + "(did you mean end_lat?)"),
    ("h3-resolution", "micromobility", {"views.0.group_by.0.resolution": 16},
     "views[0].group_by[0].resolution", "must be between 0 and 15"),
    ("zones-file-missing", "rentals", {"views.0.group_by.0.file": "nope.geojson"},
     "views[0].group_by[0].file", "file not found: tried {dir}/nope.geojson" + RELATIVE_RULE),
    ("zones-property-missing", "rentals", {"views.0.group_by.0.property": "arrondissement"},
     "views[0].group_by[0].property",
     "a feature of the zones file lacks this property; properties every feature has: district"),
    ("unknown-top-level-key", "micromobility", {"owner": "me"},
     "owner", "unknown key; allowed here: " + TOP_LEVEL_KEYS),
    ("unknown-stream-key", "micromobility", {"streams.0.allowed_latency": "PT5M"},
     "streams[0].allowed_latency",
     "unknown key (did you mean allowed_lateness?); allowed here: name, schema, description,"
     " event_time, subject, event_id, location, allowed_lateness, retention, partitions"),
    ("unknown-measure-key", "micromobility", {"views.0.measures.0.field": "x"},
     "views[0].measures[0].field", "unknown key; allowed here: type, name"),
    ("missing-legal-basis", "micromobility", {"legal_basis": DELETE},
     "legal_basis", "required field is missing"),
    ("bad-id", "micromobility", {"id": "Lyon_Mobility"},
     "id", "must match the pattern ^[a-z][a-z0-9-]{1,62}$"),
    ("unknown-measure-type", "micromobility", {"views.0.measures.0.type": "median"},
     "views[0].measures[0]",
     "unknown type; expected one of 'count', 'distinct_subjects', 'distinct', 'sum', 'mean',"
     " 'quantiles'"),
    ("duplicate-output-column", "micromobility", {"views.0.measures.1.name": "events"},
     "views[0].measures[1].name", "duplicate output column in this view"),
]
# fmt: on


@pytest.mark.parametrize(
    ("example", "edits", "path", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_invalid_contract_reports_one_precise_problem(
    example_factory: ExampleFactory,
    write_contract: ContractWriter,
    example: str,
    edits: dict[str, Any],
    path: str,
    message: str,
    now: datetime,
) -> None:
    data = example_factory(example)
    for dotted, value in edits.items():
        _set(data, dotted, value)
    file = write_contract(data)
    message = message.replace("{dir}", str(file.parent))
    with pytest.raises(ContractError) as caught:
        load_contracts([file], now=now)
    assert caught.value.problems == [Problem(str(file), path, message)]
    assert str(caught.value) == f"{file}:{path}: {message}"


def test_budget_check_reads_exact_decimals(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    # 0.1 × 3 × 96 is 28.800000000000004 in floats: the budget 28.8 pays exactly for it
    # (2 noised measures and the release decision, 96 windows).
    data = example_factory("navigation")
    _set(data, "views.1.measures.+", {"type": "distinct_subjects", "name": "alerters"})
    _set(data, "views.1.noise.epsilon", 0.1)
    _set(data, "views.1.noise.budget", 28.8)
    load_contracts([write_contract(data)], now=now)


def test_subject_as_numeric_measure_is_reported(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    data = example_factory("micromobility")
    data["views"][1]["measures"][2]["field"] = "vehicle_id"
    file = write_contract(data)
    with pytest.raises(ContractError) as caught:
        load_contracts([file], now=now)
    where = "views[1].measures[2].field"
    assert Problem(str(file), where, "the subject field may never be published") in (
        caught.value.problems
    )


def test_every_problem_of_every_file_is_reported(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    good = write_contract(example_factory("navigation"), "a-good.yaml")
    bad = example_factory("micromobility")
    bad["views"][0]["k"] = 1
    bad["views"][1]["window"] = "PT30M"
    bad["consumers"][1]["views"] = ["nothing"]
    bad_file = write_contract(bad, "b-bad.yaml")
    twin_file = write_contract(example_factory("navigation"), "c-twin.yaml")
    broken_file = write_contract("id: [unclosed\n", "d-broken.yml")
    write_contract("not a contract", "notes.txt")
    with pytest.raises(ContractError) as caught:
        load_contracts([good.parent], now=now)
    assert caught.value.problems == [
        Problem(str(bad_file), "views[0].k", "must be at least 2"),
        Problem(str(bad_file), "views[1].window", "must not be shorter than time_bucket"),
        Problem(
            str(bad_file),
            "consumers[1].views[0]",
            "no view of this name in the contract (views: availability, origin_destination)",
        ),
        Problem(str(broken_file), "", "not valid YAML (line 2)"),
        Problem(str(twin_file), "id", f"duplicate contract id (also defined in {good})"),
    ]
    assert len(str(caught.value).splitlines()) == 5


def test_missing_paths_and_empty_directories_are_problems(tmp_path: Path, now: datetime) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ContractError) as caught:
        load_contracts([tmp_path / "nope.yaml", empty], now=now)
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("", "file not found"),
        ("", "no *.yaml or *.yml contract in directory"),
    ]


def test_duplicate_yaml_keys_are_refused(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    file = write_contract(example_factory("micromobility"))
    file.write_text(file.read_text(encoding="utf-8") + "version: 2\n", encoding="utf-8")
    with pytest.raises(ContractError, match=r"duplicate key \(line \d+\)"):
        load_contracts([file], now=now)


def test_an_unknown_key_does_not_hide_the_semantic_problems(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    # The issue-21 contract: one stream with a misspelt key and four semantic problems.
    data = example_factory("navigation")
    data["streams"] = data["streams"][1:]
    data["views"] = data["views"][1:]
    data["consumers"] = [{"principal": "User:x", "views": ["alerts_by_type"]}]
    stream = data["streams"][0]
    stream["allowed_latency"] = stream.pop("allowed_lateness")
    view = data["views"][0]
    view["window"] = "PT20M"
    view["noise"]["budget"] = 2
    view["group_by"].append(SUBJECT_DIM | {"field": "reporter_id"})
    file = write_contract(data)
    with pytest.raises(ContractError) as caught:
        load_contracts([file], now=now)
    paths = [problem.path for problem in caught.value.problems]
    assert paths == [
        "streams[0].allowed_latency",
        "views[0].group_by[2].field",
        "views[0].window",
        "views[0].noise.budget",
    ]
    assert "should" not in str(caught.value)  # no raw pydantic text
    assert "raise budget to 144" in str(caught.value)


def test_a_shape_error_inside_the_only_item_does_not_report_the_list_as_empty(
    example_factory: ExampleFactory, write_contract: ContractWriter, now: datetime
) -> None:
    data = example_factory("navigation")
    data["streams"] = data["streams"][:1]
    data["views"] = data["views"][:1]
    data["consumers"] = []
    data["streams"][0]["retention"] = 5
    file = write_contract(data)
    with pytest.raises(ContractError) as caught:
        load_contracts([file], now=now)
    assert [p.path for p in caught.value.problems] == ["streams[0].retention"]
    assert "Tuple" not in str(caught.value)


@pytest.mark.parametrize(
    ("edits", "path", "message"),
    [
        (
            {"territory.bbox": [48.81, 2.22, 48.91, 2.47]},
            "territory.bbox",
            "no zone of views[0].group_by[0] lies inside it, but they would with latitude and"
            " longitude swapped: write [min_lon, min_lat, max_lon, max_lat] (GeoJSON order), or fix"
            " the zones file if its points are [lat, lon]",
        ),
        (
            {"territory.bbox": [4.77, 45.70, 4.92, 45.81]},
            "views[0].group_by[0].file",
            "no zone of the file lies inside the territory",
        ),
    ],
    ids=["bbox-swapped", "zones-elsewhere"],
)
def test_zones_outside_the_territory_are_reported_with_the_likely_cause(
    example_factory: ExampleFactory,
    write_contract: ContractWriter,
    now: datetime,
    edits: dict[str, Any],
    path: str,
    message: str,
) -> None:
    data = example_factory("rentals")
    for dotted, value in edits.items():
        _set(data, dotted, value)
    file = write_contract(data)
    with pytest.raises(ContractError) as caught:
        load_contracts([file], now=now)
    assert caught.value.problems == [Problem(str(file), path, message)]


PARIS = [[[2.22, 48.81], [2.47, 48.81], [2.47, 48.91], [2.22, 48.91], [2.22, 48.81]]]


def test_zones_written_lat_lon_are_reported(
    example_factory: ExampleFactory, write_contract: ContractWriter, tmp_path: Path, now: datetime
) -> None:
    zones = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"district": "all"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[48.81, 2.22], [48.81, 2.47], [48.91, 2.47], [48.81, 2.22]]],
                },
            }
        ],
    }
    (tmp_path / "swapped.geojson").write_text(json.dumps(zones), encoding="utf-8")
    data = example_factory("rentals")
    data["views"][0]["group_by"][0]["file"] = "swapped.geojson"
    # A polygon territory (a bbox would be as likely to be the swapped one).
    data["territory"] = {"polygon": zones["features"][0]["geometry"] | {"coordinates": PARIS}}
    file = write_contract(data)
    with pytest.raises(ContractError) as caught:
        load_contracts([file], now=now)
    assert [(p.path, p.message) for p in caught.value.problems] == [
        (
            "views[0].group_by[0].file",
            "no zone of the file lies inside the territory; its points look like [lat, lon]:"
            " GeoJSON points are [lon, lat]",
        )
    ]
