"""A pipeline killed with SIGKILL mid-training: the next run marks it FAILED and resumes from its checkpoint.
Credentials stay out of what tfpipe prints and records."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline.metadata import MetadataStore, connection_config, redact

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _tfpipe(log: Path, *args):
    # Its own session: killing the group also kills the Prefect server it started, as a lost machine would.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow
def test_killed_training_is_marked_failed_and_the_rerun_resumes(tmp_path):
    doc = yaml.safe_load((EXAMPLES / "titanic" / "pipeline.yaml").read_text())
    doc["ingest"]["input"] = str(EXAMPLES / "titanic" / "data" / "train.csv")
    for section in ("transform", "trainer"):
        doc[section]["module"] = str(EXAMPLES / "titanic" / doc[section]["module"])
    doc["trainer"].update(train_steps=4000, checkpoint_steps=200)
    doc["root"] = str(tmp_path / "root")
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(doc))

    proc = _tfpipe(tmp_path / "first.log", "run", str(config))
    deadline = time.time() + 300
    staging = tmp_path / "root" / "trainer" / "model_run"
    while time.time() < deadline and not list(staging.glob("*.staging/model.ckpt-*.index")):
        time.sleep(0.05)
    assert list(staging.glob("*.staging/model.ckpt-*.index")), "training never checkpointed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    [dead] = store.executions("trainer")
    assert pb.Execution.State.Name(dead.last_known_state) == "RUNNING"  # nobody could record the kill yet

    rerun = _tfpipe(tmp_path / "rerun.log", "run", str(config))
    try:
        rerun.wait(timeout=600)
    finally:
        os.killpg(rerun.pid, signal.SIGKILL) if rerun.poll() is None else None
    err = (tmp_path / "rerun.log").read_text()
    assert rerun.returncode == 0, err[-3000:]
    [dead, done] = store.executions("trainer")
    assert pb.Execution.State.Name(dead.last_known_state) == "FAILED"
    assert "died" in dead.properties["error"].string_value
    assert pb.Execution.State.Name(done.last_known_state) == "COMPLETE"
    assert {a.state for a in store.outputs_of(dead.id).values()} == {"ABANDONED"}
    assert not any(Path(a.uri).exists() for a in store.outputs_of(dead.id).values())
    assert "resuming from" in err and "restored" in err
    assert [pb.Execution.State.Name(e.last_known_state) for e in store.executions("transform")] == ["COMPLETE", "CACHED"]
    metrics = store.latest_live(doc["name"], "evaluator")["evaluation"].properties
    assert metrics["metric:accuracy"] >= 0.78
    run = store.latest_live(doc["name"], "trainer")["model_run"]
    assert run.properties["global_step"] == 4000.0


def test_credentials_never_shown():
    url = "postgresql://tfpipe:s3cret@db.example:5432/mlmd"
    assert redact(url) == "postgresql://tfpipe:***@db.example:5432/mlmd"
    assert "s3cret" not in redact(url)
    os.environ["TFPIPE_METADATA_PASSWORD"] = "fromenv"
    try:
        assert connection_config("postgresql://tfpipe@db.example/mlmd").postgresql.password == "fromenv"
        assert connection_config("mysql://root@db.example/mlmd").mysql.password == "fromenv"
    finally:
        del os.environ["TFPIPE_METADATA_PASSWORD"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_four_pipelines_at_once_lose_no_record(tmp_path, backend):
    csv = tmp_path / "in.csv"
    csv.write_text("\n".join((EXAMPLES / "titanic" / "data" / "train.csv").read_text().splitlines()[:200]) + "\n")
    name = f"conc{os.getpid()}{backend}{int(time.time())}"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"name": name, "root": str(tmp_path / "root"), "ingest": {"input": str(csv)},
                                      "transform": {"module": str(EXAMPLES / "titanic" / "preprocessing.py")},
                                      "trainer": {"module": str(EXAMPLES / "titanic" / "model.py"),
                                                  "label": "survived", "raw_label": "Survived"}}))
    url = str(tmp_path / "root" / "metadata.sqlite") if backend == "sqlite" else "postgresql://postgres@127.0.0.1:5432/test"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    procs = [subprocess.Popen([sys.executable, "-m", "tests.pipeline.concurrent_ingest", str(config), url, f"p{i}", "3"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and "DONE" in out, err[-3000:]
    store = MetadataStore(url)
    mine = [e for e in store.executions("ingest") if e.properties["pipeline"].string_value == name]
    assert len(mine) == 12 and {pb.Execution.State.Name(e.last_known_state) for e in mine} == {"COMPLETE"}
    outputs = [a for e in mine for a in store.outputs_of(e.id).values()]
    assert len(outputs) == 36 and {a.state for a in outputs} == {"LIVE"}
    assert len({a.uri for a in outputs}) == 36 and all(Path(a.uri).is_dir() for a in outputs)
    assert len(store.runs(name)) == 12
