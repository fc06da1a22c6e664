"""Referenced files stay inside the contract's folder unless the caller allows otherwise.

An absolute path, a ``..`` or a symbolic link that leads out of the folder is refused with the
field path, the reason and the rule, and the file is never opened. The shared ``schemas/``
folder beside the contract's folder (the bundled layout) is allowed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.cli import main
from contracts import ContractError, examples_dir, load_contracts, parse_contract, schemas_dir
from contracts import resolve as resolve_module
from contracts.copies import REFS_DIR, example_data, write_contract

pytestmark = pytest.mark.unit

SENTINEL = "SENTINEL-9c2e"  # in the outside file names: must never appear in a message
ExampleFactory = Callable[[str], dict[str, Any]]
RULE = "a referenced file must be inside the contract's folder or the schemas/ folder beside it"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file the resolver opens."""
    paths: list[Path] = []
    real = resolve_module._read_json

    def spy(path: Path) -> dict[str, Any]:
        paths.append(path)
        return real(path)

    monkeypatch.setattr(resolve_module, "_read_json", spy)
    return paths


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """``<tmp>/deep/contracts/c/`` for the contract, its sibling ``schemas/``, a sibling
    ``other/`` and ``<tmp>/outside/`` with valid copies of the referenced files."""
    folder = tmp_path / "deep" / "contracts" / "c"
    folder.mkdir(parents=True)
    outside = tmp_path / "outside"
    shared, other = folder.parent / "schemas", folder.parent / "other"
    for target in (outside, shared, other, folder / "zones"):
        target.mkdir()
    for schema in schemas_dir().glob("mds_*.avsc"):
        shutil.copy(schema, outside / f"{SENTINEL}-{schema.name}")
        shutil.copy(schema, shared / schema.name)
        shutil.copy(schema, other / schema.name)
        shutil.copy(schema, folder / schema.name)
    zones = examples_dir() / "zones" / "paris-districts.geojson"
    shutil.copy(zones, outside / f"{SENTINEL}.geojson")
    shutil.copy(zones, folder / "zones" / "districts.geojson")
    return {"folder": folder, "outside": outside, "shared": shared, "other": other}


def _micromobility(schema: str, trips: str = "mds_trip.avsc") -> dict[str, Any]:
    data = example_data("micromobility")
    data["streams"][0]["schema"] = schema
    data["streams"][1]["schema"] = trips
    return data


def _write(data: dict[str, Any], folder: Path) -> Path:
    # Not contracts.copies.write_contract: that one would copy outside files in.
    path = folder / "contract.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _problems(path: Path, now: datetime) -> list[tuple[str, str]]:
    with pytest.raises(ContractError) as caught:
        load_contracts([path], now=now)
    assert SENTINEL not in str(caught.value)
    return [(p.path, p.message) for p in caught.value.problems]


def test_an_absolute_path_outside_is_refused_unread(
    layout: dict[str, Path], opened: list[Path], now: datetime
) -> None:
    outside = layout["outside"] / f"{SENTINEL}-mds_vehicle_event.avsc"
    path = _write(_micromobility(str(outside)), layout["folder"])
    [(field, message)] = _problems(path, now)
    assert field == "streams[0].schema"
    assert message.startswith("refused: an absolute path outside the contract's folder; ")
    assert RULE in message and "--allow-outside-refs" in message
    assert outside.resolve() not in [p.resolve() for p in opened]


@pytest.mark.parametrize("ref", ["../../../outside/{S}-mds_vehicle_event.avsc", "../other/{S}"])
def test_dot_dot_out_of_the_folder_is_refused(
    layout: dict[str, Path], opened: list[Path], now: datetime, ref: str
) -> None:
    ref = ref.replace("{S}", f"{SENTINEL}" if "outside" in ref else "mds_vehicle_event.avsc")
    path = _write(_micromobility(ref), layout["folder"])
    [(field, message)] = _problems(path, now)
    assert field == "streams[0].schema"
    assert message.startswith("refused: the path leaves the contract's folder with '..'; ")
    assert opened == [layout["folder"].resolve() / "mds_trip.avsc"]


def test_a_symlink_in_the_folder_that_leads_out_is_refused(
    layout: dict[str, Path], opened: list[Path], now: datetime
) -> None:
    link = layout["folder"] / "linked.avsc"
    link.symlink_to(layout["outside"] / f"{SENTINEL}-mds_vehicle_event.avsc")
    inner = layout["folder"] / "inner.avsc"
    inner.symlink_to(layout["folder"] / "mds_trip.avsc")
    path = _write(_micromobility("linked.avsc", trips="inner.avsc"), layout["folder"])
    [(field, message)] = _problems(path, now)
    assert field == "streams[0].schema"
    assert message.startswith("refused: a symbolic link leads outside the contract's folder; ")
    assert [p.name for p in opened] == ["mds_trip.avsc"]  # inner's target only


def test_zones_and_territory_files_obey_the_same_rule(
    layout: dict[str, Path], opened: list[Path], now: datetime
) -> None:
    data = example_data("rentals")
    data["streams"][0]["schema"] = str(schemas_dir() / "str_activity.avsc")
    data["views"][0]["group_by"][0]["file"] = str(layout["outside"] / f"{SENTINEL}.geojson")
    data["territory"] = {"polygon": f"../../../outside/{SENTINEL}.geojson"}
    problems = dict(_problems(_write(data, layout["folder"]), now))
    assert set(problems) == {"streams[0].schema", "views[0].group_by[0].file", "territory.polygon"}
    assert all(RULE in message for message in problems.values())
    assert opened == []


def test_files_in_the_folder_and_the_shared_schemas_folder_load(
    layout: dict[str, Path], now: datetime
) -> None:
    data = _micromobility("../schemas/mds_vehicle_event.avsc", trips="./mds_trip.avsc")
    [contract] = load_contracts([_write(data, layout["folder"])], now=now)
    assert contract.stream("trips").raw_schema["name"]
    rentals = example_data("rentals")
    rentals["streams"][0]["schema"] = "../schemas/mds_trip.avsc"
    rentals["views"][0]["group_by"][0]["file"] = "zones/districts.geojson"
    # Loads past the references (the schema does not fit the views: a later, semantic check).
    with pytest.raises(ContractError) as caught:
        load_contracts([_write(rentals, layout["folder"])], now=now)
    assert not [p for p in caught.value.problems if RULE in p.message]


def test_the_bundled_examples_load_as_they_are(now: datetime) -> None:
    assert len(load_contracts([examples_dir()], now=now)) == 3


def test_allow_outside_reads_them(layout: dict[str, Path], now: datetime) -> None:
    outside = layout["outside"] / f"{SENTINEL}-mds_vehicle_event.avsc"
    data = _micromobility(str(outside), trips=f"../../../outside/{SENTINEL}-mds_trip.avsc")
    path = _write(data, layout["folder"])
    [contract] = load_contracts([path], now=now, allow_outside=True)
    assert contract.stream("vehicle_events").raw_schema == json.loads(outside.read_text())
    parsed = parse_contract(data, base_dir=layout["folder"], now=now, allow_outside=True)
    assert parsed.id == contract.id
    with pytest.raises(ContractError, match="absolute path outside"):
        parse_contract(data, base_dir=layout["folder"], now=now)


def test_cli_refuses_by_default_and_allows_with_the_option(
    layout: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    outside = layout["outside"] / f"{SENTINEL}-mds_vehicle_event.avsc"
    path = _write(_micromobility(str(outside)), layout["folder"])
    assert main(["contracts", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "streams[0].schema: refused: an absolute path" in out and SENTINEL not in out
    assert main(["contracts", "validate", "--allow-outside-refs", str(path)]) == 0
    assert "OK: 1 contracts valid" in capsys.readouterr().out


def test_copies_are_self_contained(tmp_path: Path, now: datetime) -> None:
    data = example_data("rentals")
    (tmp_path / "run").mkdir()
    path = write_contract(data, tmp_path / "run")
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    refs = [written["streams"][0]["schema"], written["views"][0]["group_by"][0]["file"]]
    assert refs == [f"{REFS_DIR}/str_activity.avsc", f"{REFS_DIR}/paris-districts.geojson"]
    assert load_contracts([path], now=now)[0].id == "paris-str"
    # A second copy whose file differs under the same name gets its own file.
    other = example_data("rentals")
    changed = tmp_path / "elsewhere" / "paris-districts.geojson"
    changed.parent.mkdir()
    changed.write_text(
        (examples_dir() / "zones" / "paris-districts.geojson").read_text().replace("48.86", "48.87")
    )
    other["id"] = "paris-str-2"
    other["views"][0]["group_by"][0]["file"] = str(changed)
    second = write_contract(other, tmp_path / "run")
    ref = yaml.safe_load(second.read_text())["views"][0]["group_by"][0]["file"]
    assert ref.startswith(f"{REFS_DIR}/paris-districts-") and ref.endswith(".geojson")
    assert len(load_contracts([tmp_path / "run"], now=now)) == 2
