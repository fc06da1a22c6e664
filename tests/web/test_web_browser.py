"""``respublica web`` in a real browser (headless Chromium), as an analyst on the secure broker.

Two contracts, each with its own analyst user and the ACLs ``respublica apply`` makes. The
server runs as contract A's analyst. Its pages must: list A's views and nothing of B's (the
broker decides; B's pages and exports are 404), draw as many shapes as the shown window has
published groups, move with the slider, show a window released while the page is open without
a reload, offer the exports, and never carry a raw subject identifier.

With ``RESPUBLICA_SCREENSHOTS=DIR`` the pages are saved as PNG files in DIR.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient

from broker.cli import main
from broker.deadline import wait_for
from broker.kafka.local import free_port
from broker.kafka.settings import CONFIG_ENV, KafkaSettings
from contracts.model import Contract
from policies.base import Release
from policies.oracle import evaluate
from policies.pseudonymise import KeyRing
from tests.kafka.acl_support import require_scram, wait_until_authenticates, withdraw
from tests.web.support import TileServer, WebServer, browser, publish
from tests.worker.support import (
    delete_topics,
    mobility_events,
    rental_events,
    unique_contract,
)

pytestmark = pytest.mark.integration
FIRST = 5  # availability windows released before the page opens; the 6th comes live
SHOTS = os.environ.get("RESPUBLICA_SCREENSHOTS")


@dataclass
class Site:
    """Two contracts on the broker, their releases, and a web server as A's analyst."""

    a: Contract
    b: Contract
    availability: list[Release]
    trips: list[Release]
    raw_ids: set[str]
    server: WebServer
    configs: dict[str, Path]
    bootstrap: str

    def path(self, contract: Contract, view: str) -> str:
        return f"/views/{contract.id}/{view}"


def _with_analyst(name: str, views: list[str]) -> Any:
    def edit(data: dict[str, Any]) -> None:
        data["consumers"] = [{"principal": f"User:{name}", "views": views}]

    return edit


def _add_user(name: str, out: Path) -> Path:
    assert main(["users", "add", name, "--out", str(out)]) == 0
    wait_until_authenticates(KafkaSettings.load(out))
    return out


@pytest.fixture(scope="module")
def site(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    require_scram(kafka_bootstrap)
    tmp = tmp_path_factory.mktemp("web")
    tag = uuid.uuid4().hex[:6]
    users = {"a": f"web-a-{tag}", "b": f"web-b-{tag}"}
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    a = unique_contract(
        tmp / "a",
        "micromobility",
        edit=_with_analyst(users["a"], ["availability", "origin_destination"]),
    )
    b = unique_contract(
        tmp / "b", "rentals", edit=_with_analyst(users["b"], ["nights_by_district"])
    )
    assert a.source is not None and b.source is not None
    mobility, rentals = mobility_events(3000), rental_events(1000)
    releases = evaluate(a, mobility, keyring=KeyRing())
    rental_releases = evaluate(b, rentals, keyring=KeyRing())
    raw_ids = {
        str(event[contract.stream(stream).subject])
        for contract, streams in ((a, mobility), (b, rentals))
        for stream, events in streams.items()
        for event in events
    }
    configs: dict[str, Path] = {}
    topic_names = [t for c in (a, b) for t in _topic_names(c)]
    server = WebServer(Path(), [a.source, b.source], free_port(), tmp / "web.log")
    try:
        assert main(["apply", str(a.source), str(b.source)]) == 0
        for key, name in users.items():
            configs[key] = _add_user(name, tmp / f"{name}.kafka.yaml")
        publish(kafka_bootstrap, a, "availability", releases["availability"][:FIRST])
        publish(kafka_bootstrap, a, "origin_destination", releases["origin_destination"])
        publish(kafka_bootstrap, b, "nights_by_district", rental_releases["nights_by_district"])
        server = WebServer(configs["a"], [a.source, b.source], free_port(), tmp / "web.log")
        server.start()
        yield Site(
            a,
            b,
            releases["availability"],
            releases["origin_destination"],
            raw_ids,
            server,
            configs,
            kafka_bootstrap,
        )
    finally:
        server.stop()
        for name in users.values():
            main(["users", "remove", name])
        withdraw(kafka_bootstrap, {a.id, b.id})
        delete_topics(kafka_admin, topic_names)


def _topic_names(contract: Contract) -> list[str]:
    from broker.kafka import topics

    return [spec.name for spec in topics.contract_topics(contract)]


@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    driver = browser()
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / name))


def _map_state(driver: Any) -> tuple[str | None, int]:
    """The window the map shows (its start in ms) and how many shapes it draws."""
    from selenium.webdriver.common.by import By

    shown = driver.find_element(By.ID, "map").get_attribute("data-window-start")
    return shown, len(driver.find_elements(By.CSS_SELECTOR, "#map .group"))


def _wait_window(driver: Any, release: Release) -> None:
    start = str(release.window.start)
    wait_for(lambda: _map_state(driver)[0] == start, 30, f"the map to show window {start}")


def _assert_no_raw_id(text: str, raw_ids: set[str]) -> None:
    leaked = sorted(i for i in raw_ids if len(i) >= 6 and i in text)
    assert not leaked, f"{len(leaked)} raw identifier(s) on the page"


def test_the_index_lists_only_what_the_broker_lets_the_analyst_read(
    site: Site, chrome: Any
) -> None:
    from selenium.webdriver.common.by import By

    chrome.get(site.server.url + "/")
    wait_for(
        lambda: len(chrome.find_elements(By.CSS_SELECTOR, "a.view-link")) > 0,
        30,
        "the list of views",
    )
    links = {
        e.get_attribute("pathname") for e in chrome.find_elements(By.CSS_SELECTOR, "a.view-link")
    }
    assert links == {site.path(site.a, "availability"), site.path(site.a, "origin_destination")}
    assert site.b.id not in chrome.page_source
    _shot(chrome, "web-index.png")
    # B's pages, data and files do not exist for A's analyst; A's do.
    for path in (
        site.path(site.b, "nights_by_district"),
        f"/api/views/{site.b.id}/nights_by_district",
        f"/exports/{site.b.id}/nights_by_district.csv",
        f"/audit/{site.b.id}",
    ):
        status, _ = site.server.get(path)
        assert status == 404, path
    assert site.server.get(site.path(site.a, "availability"))[0] == 200
    # And B's analyst sees B's view only (the same contracts given to the server).
    other = WebServer(
        site.configs["b"],
        [site.a.source, site.b.source],  # type: ignore[list-item]
        free_port(),
        site.server.log_path.with_name("web-b.log"),
    )
    other.start()
    try:
        names = {(v["contract"], v["view"]) for v in other.json("/api/views")["views"]}
        assert names == {(site.b.id, "nights_by_district")}
        assert other.get(f"/api/views/{site.a.id}/availability")[0] == 404
    finally:
        other.stop()


def test_the_map_draws_each_published_group_and_follows_the_slider(site: Site, chrome: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    released = site.availability[:FIRST]
    chrome.get(site.server.url + site.path(site.a, "availability"))
    _wait_window(chrome, released[-1])  # follows the latest release
    assert _map_state(chrome)[1] == len(released[-1].groups)
    assert chrome.find_element(By.ID, "window-count").get_attribute("textContent") == str(FIRST)
    report = chrome.find_element(By.ID, "window-report").text
    suppressed = released[-1].report.groups_suppressed
    assert f"{len(released[-1].groups)} groups published, {suppressed} suppressed" in report
    assert "% of the groups" in report
    ticks = [t.text for t in chrome.find_elements(By.CSS_SELECTOR, "#legend-ticks span")]
    assert len(ticks) == 5 and all(any(ch.isdigit() for ch in t) for t in ticks)
    territory = chrome.find_element(By.CSS_SELECTOR, "#map path.territory")
    assert territory.get_attribute("d")

    slider = chrome.find_element(By.ID, "window-slider")
    slider.send_keys(Keys.HOME)  # the first released window
    _wait_window(chrome, released[0])
    shown, drawn = _map_state(chrome)
    assert drawn == len(released[0].groups) > len(released[-1].groups)
    rows = chrome.find_elements(By.CSS_SELECTOR, "#table tbody tr")
    assert len(rows) == len(released[0].groups)
    _shot(chrome, "web-view.png")
    slider.send_keys(Keys.ARROW_RIGHT)
    _wait_window(chrome, released[1])
    assert _map_state(chrome)[1] == len(released[1].groups)

    downloads = {
        e.get_attribute("data-format"): e.get_attribute("pathname")
        for e in chrome.find_elements(By.CSS_SELECTOR, "a.download")
    }
    assert set(downloads) == {"csv", "geojson", "parquet", "meta.json"}
    status, body = site.server.get(downloads["csv"])
    assert status == 200
    table = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(table) == sum(len(r.groups) for r in released)
    geojson = json.loads(site.server.get(downloads["geojson"])[1])
    assert len(geojson["features"]) == len(table)
    assert site.server.get(downloads["parquet"])[1][:4] == b"PAR1"
    meta = json.loads(site.server.get(downloads["meta.json"])[1])
    assert meta["licence"] == site.a.licence
    licence = chrome.find_element(By.ID, "licence").text
    assert str(site.a.licence) in licence and str(site.a.attribution) in licence


def test_a_window_released_while_the_page_is_open_appears_without_reload(
    site: Site, chrome: Any
) -> None:
    from selenium.webdriver.common.by import By

    chrome.get(site.server.url + site.path(site.a, "availability"))
    _wait_window(chrome, site.availability[FIRST - 1])
    chrome.execute_script("window.__sameDocument = true;")
    wait_for(lambda: "live" in chrome.find_element(By.ID, "live").text, 30, "the event stream")
    new = site.availability[FIRST]
    publish(site.bootstrap, site.a, "availability", [new])
    _wait_window(chrome, new)
    assert chrome.execute_script("return window.__sameDocument === true;")
    assert _map_state(chrome)[1] == len(new.groups)
    assert chrome.find_element(By.ID, "window-count").get_attribute("textContent") == str(FIRST + 1)


def test_no_page_or_answer_carries_a_raw_identifier(site: Site, chrome: Any) -> None:
    texts = []
    for path in ("/", site.path(site.a, "availability")):
        chrome.get(site.server.url + path)
        wait_for(lambda: "…" not in chrome.title, 30, "the page")
        texts.append(chrome.page_source)
    chrome.get(site.server.url + site.path(site.a, "origin_destination"))
    _wait_window(chrome, site.trips[-1])
    assert _map_state(chrome)[1] == len(site.trips[-1].groups)
    texts.append(chrome.page_source)
    _shot(chrome, "web-od.png")
    for view in ("availability", "origin_destination"):
        summary = site.server.json(f"/api/views/{site.a.id}/{view}")
        texts.append(json.dumps(summary))
        for window in summary["windows"]:
            path = f"/api/views/{site.a.id}/{view}/windows/{window['start']}"
            texts.append(site.server.get(path)[1].decode())
        texts.append(site.server.get(f"/exports/{site.a.id}/{view}.csv")[1].decode())
    assert len(texts) > 8
    _assert_no_raw_id("\n".join(texts), site.raw_ids)


def test_the_auditor_page_needs_the_auditor_and_then_shows_the_audit(
    site: Site, chrome: Any
) -> None:
    from selenium.webdriver.common.by import By

    from broker.audit.run import audit

    chrome.get(site.server.url + f"/audit/{site.a.id}")
    wait_for(
        lambda: "may not read the internal topics" in chrome.find_element(By.ID, "error").text,
        60,
        "the analyst's audit to be refused",
    )
    admin = Path(os.environ[CONFIG_ENV])  # the session broker's admin may read everything
    auditor = WebServer(
        admin,
        [site.a.source],  # type: ignore[list-item]
        free_port(),
        site.server.log_path.with_name("web-auditor.log"),
    )
    auditor.start()
    try:
        chrome.get(auditor.url + f"/audit/{site.a.id}")
        wait_for(
            lambda: "Audit run at" in chrome.find_element(By.ID, "verdict").text,
            120,
            "the audit",
        )
        expected = audit(site.a, KafkaSettings.load(admin), audience="public")
        verdict = chrome.find_element(By.ID, "verdict").text
        assert verdict.startswith("OK" if expected["ok"] else "FAILED")
        assert f"{expected['summary']['violations']} violation(s)" in verdict
        headings = [h.text for h in chrome.find_elements(By.CSS_SELECTOR, "#sections h2")]
        assert headings[:3] == [
            "Reconciliation",
            "Privacy budget (ε) per period",
            "Pseudonym keys",
        ]
        _shot(chrome, "web-audit.png")
        status, page = auditor.get(f"/audit/{site.a.id}/report.html")
        assert status == 200 and b"Audit of" in page
    finally:
        auditor.stop()


def test_a_configured_tile_layer_is_drawn_under_the_map(site: Site, chrome: Any) -> None:
    from selenium.webdriver.common.by import By

    with TileServer() as tiles:
        server = WebServer(
            site.configs["a"],
            [site.a.source],  # type: ignore[list-item]
            free_port(),
            site.server.log_path.with_name("web-tiles.log"),
            ["--tile-url", tiles.template, "--tile-attribution", "test tiles"],
        )
        server.start()
        try:
            chrome.get(server.url + site.path(site.a, "availability"))
            wait_for(lambda: _map_state(chrome)[0], 30, "the map")
            images = chrome.find_elements(By.CSS_SELECTOR, "#map g.tiles image")
            assert images
            wait_for(lambda: len(tiles.paths) > 0, 30, "the browser to fetch a tile")
            assert all(p.endswith(".png") and p.count("/") == 3 for p in tiles.paths)
            assert "test tiles" in chrome.find_element(By.ID, "licence").text
        finally:
            server.stop()
