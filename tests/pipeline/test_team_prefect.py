"""Prefect as a team runs it: a Prefect server on PostgreSQL, two process workers on one work pool, a tag
concurrency limit of one training at a time, and the MLMD store on PostgreSQL, shared by every run.

What it proves, against the machine's PostgreSQL (127.0.0.1:5432, trust auth; a database for the Prefect
server and one for MLMD, both made for this test and dropped after it):
- `tfpipe deploy` deploys two different pipelines (the Titanic model and a smaller variant, 120 rows each)
  to the pool; `prefect concurrency-limit create tfpipe-training 1` is the team's limit;
- four runs are created through the API as the scheduler creates them (Scheduled, due now), two per
  deployment, and the two workers (`--limit 2` each) take them: each worker runs at least one;
- all four flow runs end COMPLETED;
- from the Prefect API: the four trainer task runs carry the `tfpipe-training` tag the trainer's declaration
  holds, and no two of them overlapped in time, while at least one trainer was ready (its task run created)
  before another had ended, so it waited for the slot; other steps of different runs did run at the same
  time, and the flow runs overlapped;
- MLMD on PostgreSQL holds every execution of every run: five per run (the standard chain), each COMPLETE
  or CACHED, the trainer COMPLETE in all four (the deployments re-run it), nothing RUNNING or FAILED, and
  its runs are exactly the flow runs' `<pipeline>/<run id>`.

Time: 9 to 13 minutes on this 2-core machine shared with other work (load average 7 to 14); most of it is
four transforms side by side and then four trainings in turn, as the limit wants. It has not been timed on a
quiet machine.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from pipeline.metadata import MetadataStore
from tests.conftest import _psql
from tests.pipeline.conftest import prefect_server_at

ROOT = Path(__file__).resolve().parents[2]
TITANIC = ROOT / "examples" / "titanic"
STEPS = ["ingest", "transform", "trainer", "evaluator", "pusher"]
POOL = "team"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _pipeline(folder: Path, name: str, hidden_units: list) -> Path:
    """A user's Titanic pipeline folder: 120 rows, 20 training steps."""
    folder.mkdir(parents=True)
    for module in ("preprocessing.py", "model.py"):
        shutil.copy(TITANIC / module, folder / module)
    (folder / "train.csv").write_text("\n".join((TITANIC / "data" / "train.csv").read_text().splitlines()[:121]) + "\n")
    (folder / "pipeline.yaml").write_text(
        yaml.safe_dump(
            {
                "name": name,
                "ingest": {"input": "train.csv"},
                "transform": {"module": "preprocessing.py"},
                "trainer": {
                    "module": "model.py",
                    "label": "survived",
                    "raw_label": "Survived",
                    "train_steps": 20,
                    "params": {"hidden_units": hidden_units},
                },
                "evaluator": {"thresholds": {"accuracy": {"lower": 0.1}}},
            }
        )
    )
    return folder / "pipeline.yaml"


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
    return done


def _messages(api, flow_run_id: str) -> list[str]:
    """The flow run's log lines, as the server keeps them (what the UI shows): why a run failed."""
    logs = api("/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
    return [f"{entry['name']}: {entry['message'][-1500:]}" for entry in logs]


def _t(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _overlap(a: dict, b: dict) -> bool:
    return _t(a["start_time"]) < _t(b["end_time"]) and _t(b["start_time"]) < _t(a["end_time"])


@pytest.fixture
def prefect_db():
    """A PostgreSQL database of this test's own for the Prefect server, dropped after it."""
    name = f"tfpipe_prefect_team_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{name}"')
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_workers_four_scheduled_runs_one_training_at_a_time(tmp_path, prefect_db, pg_url):
    home = tmp_path / "prefect"
    home.mkdir()
    settings = {
        "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db,
        # A task run denied a slot asks again after this long (Prefect's default is 10 s; tiny steps here).
        "PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    with prefect_server_at(home, **settings) as server:
        api, env = server["api"], server["env"]
        pipelines = {
            "team-titanic": _pipeline(tmp_path / "titanic", "team-titanic", [32, 16]),
            "team-small": _pipeline(tmp_path / "small", "team-small", [8]),
        }
        for name, config in pipelines.items():
            # Every run of the deployment records into the shared MLMD store, and retrains (the others may be
            # reused): four real trainings, which would run at once without the limit.
            out = _cli(
                env, "pipeline.cli", "deploy", str(config), "--pool", POOL, "--cron", "0 3 * * *", "--root",
                str(tmp_path / f"root-{name}"), "--metadata", pg_url, "--no-cache", "trainer",
            )  # fmt: skip
            assert f"deployment tfpipe/{name}" in out.stdout
        _cli(env, "prefect", "concurrency-limit", "create", "tfpipe-training", "1")
        assert api("/concurrency_limits/tag/tfpipe-training")["concurrency_limit"] == 1

        logs = {w: tmp_path / f"worker-{w}.log" for w in ("a", "b")}
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", f"worker-{w}"]
                + ["--limit", "2", "--type", "process"],
                cwd=ROOT,
                env=env,
                stdout=open(log, "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for w, log in logs.items()
        ]
        try:
            deadline = time.time() + 180
            while {w["name"] for w in api(f"/work_pools/{POOL}/workers/filter", {})} != {"worker-a", "worker-b"}:
                assert time.time() < deadline and all(w.poll() is None for w in workers), [
                    p.read_text()[-2000:] for p in logs.values()
                ]
                time.sleep(1)

            runs = []
            for name in pipelines:
                deployment = api(f"/deployments/name/tfpipe/{name}")
                for _ in range(2):  # as the scheduler makes them: Scheduled, due now
                    created = api(f"/deployments/{deployment['id']}/create_flow_run", {})
                    assert created["state"]["type"] == "SCHEDULED"
                    runs.append(created["id"])
            finished = {r: api.wait(r, timeout=780) for r in runs}
            worker_logs = {w: p.read_text() for w, p in logs.items()}
            states = {r: f["state"]["type"] for r, f in finished.items()}
            assert set(states.values()) == {"COMPLETED"}, {
                r: (f["state"].get("message"), _messages(api, r)[-15:]) for r, f in finished.items()
            }
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()

        # Both workers took runs, and between them all four.
        # (Both may try one run: the server lets one of them have it, and the other logs that it aborted.)
        took = {
            w: set(re.findall(r"submitting flow run '([0-9a-f-]+)'", text))
            - set(re.findall(r"Aborted submission of flow run '([0-9a-f-]+)'", text))
            for w, text in worker_logs.items()
        }
        assert all(took.values()) and set().union(*took.values()) == set(runs), took

        tasks = api("/task_runs/filter", {"flow_runs": {"id": {"any_": runs}}, "limit": 200})
        assert sorted(t["name"] for t in tasks) == sorted(STEPS * 4)
        trainers = sorted((t for t in tasks if t["name"] == "trainer"), key=lambda t: t["start_time"])
        assert all("tfpipe-training" in t["tags"] for t in trainers)
        assert not any("tfpipe-training" in t["tags"] for t in tasks if t["name"] != "trainer")
        for earlier, later in itertools.pairwise(trainers):
            assert _t(earlier["end_time"]) <= _t(later["start_time"]), ("trainings overlapped", earlier, later)
        # The limit did something: a trainer was ready while another trained, and waited for the slot.
        assert any(_t(later["created"]) < _t(earlier["end_time"]) for earlier, later in itertools.pairwise(trainers)), [
            (t["created"], t["start_time"], t["end_time"]) for t in trainers
        ]
        # ... while the rest ran side by side: flow runs overlapped, and so did other steps of different runs.
        others = [t for t in tasks if t["name"] != "trainer"]
        assert any(
            a["flow_run_id"] != b["flow_run_id"] and _overlap(a, b)
            for i, a in enumerate(others)
            for b in others[i + 1 :]
        )
        flows = list(finished.values())
        assert any(_overlap(a, b) for i, a in enumerate(flows) for b in flows[i + 1 :])

    # MLMD on PostgreSQL holds every execution of every run, nothing lost.
    store = MetadataStore(pg_url)
    flow_names = {f["name"] for f in finished.values()}
    assert len(flow_names) == 4
    recorded = set()
    for name in pipelines:
        runs_of = store.runs(name)
        assert len(runs_of) == 2, runs_of
        for run in runs_of:
            assert [c for c, _, _ in run["executions"]] == STEPS, run
            assert {s for _, s, _ in run["executions"]} <= {"COMPLETE", "CACHED"}, run
            assert {c: s for c, s, _ in run["executions"]}["trainer"] == "COMPLETE", run
            recorded.add(run["run"].replace(".", "/", 1))
    assert recorded == flow_names
    every = store.executions()
    assert len(every) == 20 and {e.state for e in every} <= {"COMPLETE", "CACHED"}
