"""A real Prefect server and process worker: `tfpipe deploy` makes a scheduled deployment, runs triggered
through the API complete with their lineage in MLMD, cached components show as Cached, and the Prefect UI
(headless Chromium) shows the run's component task runs and its metrics artifact."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.metadata import MetadataStore
from tests.conftest import tiny_titanic

ROOT = Path(__file__).resolve().parents[2]
TITANIC = ROOT / "examples" / "titanic"
OUTPUT = ROOT / "tests" / "output"
pytestmark = pytest.mark.slow


def test_deployment_runs_on_a_worker_and_shows_in_the_ui(prefect_server, tmp_path):
    server = prefect_server
    api, env = server["api"], server["env"]
    project = tmp_path / "project"
    project.mkdir()
    for module in ("preprocessing.py", "model.py"):
        shutil.copy(TITANIC / module, project / module)
    (project / "train.csv").write_text(
        "\n".join((TITANIC / "data" / "train.csv").read_text().splitlines()[:121]) + "\n"
    )
    (project / "pipeline.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "deployed",
                "ingest": {"input": "train.csv"},
                "transform": {"module": "preprocessing.py"},
                "trainer": {"module": "model.py", "label": "survived", "raw_label": "Survived", "train_steps": 50},
                "evaluator": {"slices": ["Sex"], "thresholds": {"accuracy": {"lower": 0.5}}},
            }
        )
    )
    root = tmp_path / "root"

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "deploy",
            str(project / "pipeline.yaml"),
            "--pool",
            "tfpipe-test",
            "--cron",
            "0 3 * * *",
            "--root",
            str(root),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "deployment tfpipe/deployed" in done.stdout and "schedule '0 3 * * *' UTC" in done.stdout
    deployment = api("/deployments/name/tfpipe/deployed")
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 3 * * *"]
    assert deployment["parameters"]["overrides"] == {"root": str(root)}
    assert deployment["work_pool_name"] == "tfpipe-test"

    worker_log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "tfpipe-test"],
        cwd=ROOT,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        first = api(f"/deployments/{deployment['id']}/create_flow_run", {})
        run = api.wait(first["id"])
        assert run["state"]["type"] == "COMPLETED", (tmp_path / "worker.log").read_text()[-4000:]
        # (a file in the standard form without data validation sections: the five standard instances)
        assert api.task_states(first["id"]) == dict.fromkeys(
            ["ingest", "transform", "trainer", "evaluator", "pusher"], "Completed"
        )
        # The run graph's edges: each step's task run names the task runs it waited for (the UI draws them).
        tasks = api("/task_runs/filter", {"flow_runs": {"id": {"any_": [first["id"]]}}})
        ids = {t["name"]: t["id"] for t in tasks}
        waited = {
            t["name"]: {i["id"] for i in t["task_inputs"].get("wait_for", []) if i.get("input_type") == "task_run"}
            for t in tasks
        }
        assert waited["transform"] == {ids["ingest"]} and waited["pusher"] == {ids["trainer"], ids["evaluator"]}

        # A per-run parameter: this run re-runs only the pusher; the rest is reused and shows as Cached.
        second = api(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"no_cache": ["pusher"]}})
        assert api.wait(second["id"])["state"]["type"] == "COMPLETED"
        assert api.task_states(second["id"]) == {
            "ingest": "Cached",
            "transform": "Cached",
            "trainer": "Cached",
            "evaluator": "Cached",
            "pusher": "Completed",
        }
    finally:
        # Clean-up, not the test: Prefect's worker shutdown took over 60 s once on a loaded 2-core VM.
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()

    # A scheduled run shows what a CLI run shows: tfpipe's step, progress and summary lines are in the flow
    # run's logs, read back through Prefect's API (as the UI reads them).
    logs = api("/logs/filter", {"logs": {"flow_run_id": {"any_": [first["id"]]}}, "limit": 200})
    ours = [entry["message"] for entry in logs if entry["name"].startswith("tfpipe")]
    for expected in ("ingest: COMPLETE", "trainer: step 50/50", "evaluator: COMPLETE", "pusher: COMPLETE"):
        assert any(expected in message for message in ours), (expected, ours)

    artifacts = {a["key"]: a for a in api("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [first["id"]]}}})}
    assert set(artifacts) == {"deployed-metrics", "deployed-pushed-model", "deployed-lineage"}
    metrics = artifacts["deployed-metrics"]["data"]
    assert re.search(r"\| accuracy \| [\d.]+ \| lower 0.5 \| - \| pass \|", metrics), metrics
    assert "| Sex=female |" in metrics and "| Sex=male |" in metrics  # the slice table
    assert "BLESSED" in artifacts["deployed-metrics"]["description"]
    flow_run = api(f"/flow_runs/{first['id']}")
    name, run_id = flow_run["name"].split("/")
    assert name == "deployed" and "deployed" in flow_run["tags"]
    # The runs list shows each run's tags: the verdict and the headline metric (the thresholded one) among them.
    assert "blessed" in flow_run["tags"] and any(re.fullmatch(r"accuracy [\d.]{6}", t) for t in flow_run["tags"])
    assert run_id in metrics and run_id in artifacts["deployed-lineage"]["data"]  # tfpipe's run id, shown
    assert str(root / "serving") in artifacts["deployed-pushed-model"]["data"]

    # MLMD holds the deployed run's lineage: the pushed model back to the CSV the deployment read.
    store = MetadataStore(str(root / "metadata.sqlite"))
    first_run, second_run = store.runs("deployed")
    assert [s for _, s, _ in first_run["executions"]] == ["COMPLETE"] * 5
    assert [s for _, s, _ in second_run["executions"]] == ["CACHED"] * 4 + ["COMPLETE"]
    ingest = store.run_executions(first_run["run"])[0]
    assert list(ingest["manifest"]["input_files"]) == [str(project / "train.csv")]
    for e in store.run_executions(first_run["run"]):
        assert f"#{e['id']}" in artifacts["deployed-lineage"]["data"]  # the summary lists each MLMD execution

    # A run of another pipeline on the same server: its flow run is told apart by name.
    other = tiny_titanic(tmp_path / "other", name="other")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "component", "ingest", "--config", str(other)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {r["name"].split("/")[0]: r for r in api("/flow_runs/filter", {})}
    assert {"deployed", "other"} <= set(runs) and "other" in runs["other"]["tags"]  # a CLI run is tagged too
    names = {pipeline: r["name"] for pipeline, r in runs.items()}

    _ui_shows_the_run(server["ui"], first["id"], [flow_run["name"], names["other"]])


def _ui_shows_the_run(ui: str, flow_run_id: str, run_names: list) -> None:
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.goto(f"{ui}/runs")
        for name in run_names:  # two pipelines' runs, each named <pipeline>/<run id>
            page.get_by_text(name).first.wait_for(timeout=60_000)
        # The deployed run's verdict and headline metric, as tags on its row.
        page.get_by_text(re.compile(r"^accuracy 0\.\d{4}$")).first.wait_for(timeout=60_000)
        page.screenshot(path=str(OUTPUT / "prefect_ui_flow_runs.png"), full_page=True)
        page.goto(f"{ui}/runs/flow-run/{flow_run_id}")
        page.get_by_text("Task Runs", exact=True).first.click()
        for component in ("ingest", "transform", "trainer", "evaluator", "pusher"):
            page.get_by_text(component, exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(OUTPUT / "prefect_ui_task_runs.png"), full_page=True)
        page.get_by_text("Artifacts", exact=True).first.click()
        page.get_by_text("deployed-metrics").first.click()
        page.get_by_text("lower 0.5").first.wait_for(timeout=60_000)  # the metrics table, thresholds and all
        page.get_by_text("Sex=female").first.wait_for(timeout=60_000)  # and the slice table
        page.screenshot(path=str(OUTPUT / "prefect_ui_metrics.png"), full_page=True)
        browser.close()
    assert (OUTPUT / "prefect_ui_metrics.png").stat().st_size > 10_000


def test_prefect_deploy_reads_deploy_prefect_yaml(prefect_server):
    server = prefect_server
    env = dict(server["env"], TFPIPE_HOME=str(ROOT))
    subprocess.run(
        [sys.executable, "-m", "prefect", "work-pool", "create", "tfpipe", "--type", "process"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", "deploy/prefect.yaml", "--all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    api = server["api"]
    nightly = api("/deployments/name/tfpipe/titanic-nightly")
    weekly = api("/deployments/name/tfpipe/penguin-weekly")
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 3 * * *"]
    assert [s["schedule"]["cron"] for s in weekly["schedules"]] == ["0 4 * * 1"]
    assert nightly["parameters"]["config_path"] == "examples/titanic/pipeline.yaml"
    assert weekly["parameters"]["no_cache"] is True and weekly["work_pool_name"] == "tfpipe"
    assert nightly["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)
