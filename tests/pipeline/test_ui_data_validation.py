"""The Prefect UI shows a stopped run's statistics and anomalies: two `tfpipe run`s against a real `prefect
server start` (tiny Titanic data, then the same drop with Age shifted by 20 years), then headless Chromium
opens the run's data-validation artifact, finds the drifted feature's row (bold, its drift and the ERROR) and
takes a screenshot (tests/output/prefect_ui_data_validation.png)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_titanic
from tests.pipeline.test_data_validation import DRIFT, _shift_age, write_drop

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "tests" / "output"
pytestmark = pytest.mark.slow


def _run(folder: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "tfpipe"), "run", "pipeline.yaml"],
        cwd=folder,
        env={k: v for k, v in env.items() if k != "TFPIPE_LOG_LEVEL"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_ui_shows_the_drifted_feature_of_a_stopped_run(prefect_server, tmp_path):
    api, env = prefect_server["api"], prefect_server["env"]
    tiny_titanic(tmp_path)
    instances = [
        {"id": "ingest", "type": "ingest", "input": "data.csv"},
        {"id": "statistics", "type": "statistics", "inputs": {"examples": "ingest.examples"}},
        {
            "id": "validator",
            "type": "example_validator",
            "inputs": {"statistics": "statistics.statistics", "schema": "ingest.schema"},
            "drift": DRIFT,
        },
    ]
    (tmp_path / "pipeline.yaml").write_text(
        yaml.safe_dump({"name": "dvui", "root": "root", "components": instances}, sort_keys=False)
    )
    good = (tmp_path / "data.csv").read_text()
    first = _run(tmp_path, env)
    assert first.returncode == 0, first.stderr[-3000:]
    write_drop(tmp_path, good, _shift_age)
    stopped = _run(tmp_path, env)
    assert stopped.returncode == 1 and "Age drifted" in stopped.stderr, stopped.stderr[-3000:]

    # The same run's statistics as an HTML page, from the store: the previous drop (the validator's baseline)
    # beside the splits, Age marked drifted
    from pipeline.metadata import MetadataStore
    from tests.pipeline.test_stats_html import parse

    run = MetadataStore(str(tmp_path / "root" / "metadata.sqlite")).runs("dvui")[-1]["run"].split(".", 1)[1]
    page_done = subprocess.run(
        [str(Path(sys.executable).parent / "tfpipe"), "stats", run, "--config", "pipeline.yaml", "--html", "p.html"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert page_done.returncode == 0, page_done.stderr[-3000:]
    elements = parse((tmp_path / "p.html").read_text()).elements
    assert ("Age", "previous drop (train)") in {
        (a["data-feature"], a["data-split"]) for _, a in elements if a.get("class") == "histogram"
    }
    sections = {a["data-feature"]: a["class"].split() for tag, a in elements if tag == "section"}
    assert "drifted" in sections["Age"] and "drifted" not in sections["Fare"]

    found = api("/artifacts/filter", {"artifacts": {"key": {"any_": ["dvui-data-validation"]}}, "sort": "CREATED_DESC"})
    assert found and "STOPPED" in found[0]["description"], found
    artifact = found[0]

    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1400})
        page.goto(f"{prefect_server['ui']}/artifacts/artifact/{artifact['id']}")
        # the drifted feature's row in the train split's table: the measure, the verdict, its name in bold
        page.get_by_text("Split train", exact=False).first.wait_for(timeout=60_000)
        rows = page.locator("tr", has_text="(max 0.2)")  # Age: the one drift threshold of 0.2
        rows.first.wait_for(timeout=60_000)
        assert rows.count() == 1, [rows.nth(i).inner_text() for i in range(rows.count())]
        cells = rows.first.locator("td")
        assert cells.first.inner_text().strip() == "Age"
        text = rows.first.inner_text()
        assert "drift 0." in text and "ERROR" in text, text
        weight = "e => Number(getComputedStyle(e.querySelector('*') || e).fontWeight)"
        assert cells.first.evaluate(weight) >= 600
        # a feature that did not drift is there, in plain type
        fare = page.locator("tr", has_text="Fare").first.locator("td").first
        assert fare.inner_text().strip() == "Fare" and fare.evaluate(weight) < 600
        page.screenshot(path=str(OUTPUT / "prefect_ui_data_validation.png"), full_page=True)
        browser.close()
    assert (OUTPUT / "prefect_ui_data_validation.png").stat().st_size > 10_000
