"""Run manifests, bit-identical re-runs on CPU, `tfpipe reproduce`, `tfpipe lineage` and `tfpipe diff`."""

import json
import platform
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from pipeline import flow  # noqa: F401  Prefect sets up its log handlers now, on the session's streams
from pipeline.cli import main
from pipeline.flow import pipeline_flow
from pipeline.metadata import MetadataStore

ROOT = Path(__file__).resolve().parents[2]
TITANIC = ROOT / "examples" / "titanic"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One Titanic run (first 200 rows, 200 steps) in a project folder of its own."""
    folder = tmp_path_factory.mktemp("repro") / "project"
    shutil.copytree(TITANIC, folder, ignore=shutil.ignore_patterns("tfpipe_root", "__pycache__", "data"))
    (folder / "data").mkdir()
    lines = (TITANIC / "data" / "train.csv").read_text().splitlines()[:201]
    (folder / "data" / "train.csv").write_text("\n".join(lines) + "\n")
    doc = yaml.safe_load((folder / "pipeline.yaml").read_text())
    doc["trainer"]["train_steps"] = 200
    doc["evaluator"] = {"thresholds": {"accuracy": {"lower": 0.5}}}
    doc["root"] = str(folder.parent / "root")
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    result = pipeline_flow(str(folder / "pipeline.yaml"))
    store = MetadataStore(result["metadata"])
    return {"folder": folder, "result": result, "store": store, "url": result["metadata"]}


def test_every_execution_records_a_manifest(recorded):
    store, result = recorded["store"], recorded["result"]
    executions = store.run_executions(store.find_run(result["run_id"]))
    assert [e["component"] for e in executions] == ["ingest", "transform", "trainer", "evaluator", "pusher"]
    m = executions[0]["manifest"]
    assert len(m["code"]["git_commit"]) == 40 and isinstance(m["code"]["dirty"], bool)
    assert m["libraries"]["python"] == platform.python_version()
    assert {"tensorflow", "tf-keras", "tensorflow-transform", "apache-beam", "prefect", "ml-metadata"} <= set(m["libraries"])
    assert m["hardware"]["devices"][0].startswith("CPU") and m["determinism"] == {"exact": True}
    assert m["seeds"]["trainer.seed"] == 42 and m["config"]["trainer"]["train_steps"] == 200
    csv = str(recorded["folder"] / "data" / "train.csv")
    assert list(m["input_files"]) == [csv] and len(m["input_files"][csv]) == 64
    assert set(m["user_modules"]) == {"transform.module", "trainer.module"}
    model_run = store.outputs_of(executions[2]["id"])["model_run"]
    assert model_run.properties["replicas"] == 1 and model_run.properties["strategy"] == "none"


def test_reproduce_of_a_seeded_cpu_run_is_bit_identical(recorded, capfd):
    store, run = recorded["store"], recorded["result"]["run_id"]
    assert main(["reproduce", run, "--metadata", recorded["url"]]) == 0
    out = capfd.readouterr().out
    assert "verdict: identical" in out, out
    [original, again] = [store.run_executions(r["run"]) for r in store.runs(recorded["result"]["pipeline"])]
    for a, b in zip(original, again):
        outs_a, outs_b = store.outputs_of(a["id"]), store.outputs_of(b["id"])
        for name in ("examples", "transform_graph", "transformed_examples", "model", "model_run"):
            if name in outs_a:
                assert outs_a[name].uri != outs_b[name].uri
                assert outs_a[name].properties["fingerprint"] == outs_b[name].properties["fingerprint"], name
    # the reproduction pushed beside the run, not into the pipeline's serving folder
    assert len(list((Path(recorded["result"]["serving_base"])).iterdir())) == 1


def test_lineage_of_the_pushed_model_reaches_the_raw_file(recorded, capfd, tmp_path):
    pushed = json.loads((Path(recorded["result"]["components"]["pusher"]["uris"]["pushed_model"]) / "push.json")
                        .read_text())["path"]
    assert main(["lineage", pushed, "--metadata", recorded["url"]]) == 0
    out = capfd.readouterr().out
    lines = out.splitlines()
    csv = str(recorded["folder"] / "data" / "train.csv")
    assert lines[0].split()[0] == "train.csv" and csv in lines[0]  # the raw file comes first
    for label in ("ingest #", "Examples #", "TransformGraph #", "trainer #", "Model #", "evaluator #",
                  "ModelBlessing #", "pusher #"):
        assert any(label in line for line in lines), label
    assert [line for line in lines if line.startswith("*")][0].split()[1] == "PushedModel"

    svg = tmp_path / "lineage.svg"
    assert main(["lineage", pushed, "--metadata", recorded["url"], "--format", "svg", "-o", str(svg)]) == 0
    texts = " ".join(t for t in ET.parse(svg).getroot().itertext())
    assert "train.csv" in texts and "PushedModel" in texts and "ingest" in texts
    assert main(["lineage", "999999", "--metadata", recorded["url"]]) == 1
    assert "no artifact with id 999999" in capfd.readouterr().err


def test_reproduce_after_an_input_change_names_the_file(recorded, capfd):
    store, run = recorded["store"], recorded["result"]["run_id"]
    csv = recorded["folder"] / "data" / "train.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-20]) + "\n")  # someone trimmed the data
    assert main(["reproduce", run, "--metadata", recorded["url"]]) == 1
    out = capfd.readouterr().out
    assert "verdict: different" in out
    ingest_line = next(line for line in out.splitlines() if line.strip().startswith("ingest") and "examples" in line)
    assert "different" in ingest_line and "likely cause: [1]" in ingest_line
    assert f"  [1] input file {csv} changed (sha256 " in out
    runs = [r["run"] for r in store.runs(recorded["result"]["pipeline"])]
    assert main(["diff", runs[0], runs[-1], "--metadata", recorded["url"]]) == 0
    out = capfd.readouterr().out
    assert f"input file {csv} changed" in out and "metric " in out
