"""Screenshots of a running ``respublica web`` for docs/, in headless Chromium.

    python -m tests.web.screenshots http://127.0.0.1:8090 docs/

Takes the index, the first three views found (each at its window with the most published
groups) and the first contract's auditor page (once its audit has run).
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from broker.deadline import wait_for
from tests.web.support import browser

BUSIEST = """
const windows = JSON.parse(arguments[0]).windows;
let best = 0;
windows.forEach((w, i) => { if (w.groups_published > windows[best].groups_published) best = i; });
const slider = document.getElementById("window-slider");
slider.value = String(best);
slider.dispatchEvent(new Event("input"));
return String(windows[best].start);
"""


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - a local server
        return json.loads(answer.read())


def shoot(base: str, out: Path, views: list[tuple[str, str, str]]) -> list[Path]:
    """Save the pages; ``views`` is ``(contract, view, file name)``."""
    driver = browser(1400, 1000)
    saved = []
    try:
        driver.get(base + "/")
        wait_for(lambda: "view-link" in driver.page_source, 30, "the index")
        saved.append(out / "web-index.png")
        driver.save_screenshot(str(saved[-1]))
        for contract, view, name in views:
            summary = _get(f"{base}/api/views/{contract}/{view}")
            driver.get(f"{base}/views/{contract}/{view}")
            wait_for(
                lambda: driver.execute_script(
                    "return document.getElementById('map').dataset.windowStart"
                ),
                30,
                "the map",
            )
            start = driver.execute_script(BUSIEST, json.dumps(summary))
            wait_for(
                lambda s=start: (
                    driver.execute_script(
                        "return document.getElementById('map').dataset.windowStart"
                    )
                    == s
                ),
                30,
                "the busiest window",
            )
            saved.append(out / name)
            driver.save_screenshot(str(saved[-1]))
        contract = views[0][0]
        driver.get(f"{base}/audit/{contract}")
        wait_for(
            lambda: "Audit run at" in driver.page_source or "could not run" in driver.page_source,
            600,
            "the audit",
        )
        saved.append(out / "web-audit.png")
        driver.save_screenshot(str(saved[-1]))
    finally:
        driver.quit()
    return saved


def main(argv: list[str]) -> int:
    base, out = argv[0].rstrip("/"), Path(argv[1])
    listed = _get(f"{base}/api/views")["views"]
    wanted = ("availability", "origin_destination", "nights_by_district", "jams")
    names = {
        "availability": "web-view.png",
        "origin_destination": "web-od.png",
        "nights_by_district": "web-zones.png",
        "jams": "web-jams.png",
    }
    views = [(v["contract"], v["view"], names[v["view"]]) for v in listed if v["view"] in wanted]
    for path in shoot(base, out, views):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
