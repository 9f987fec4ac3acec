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
from pipeline.metadata import MetadataStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
pytestmark = pytest.mark.slow


def _shipped(tmp_path_factory, example: str, steps: int) -> dict:
    """A copy of a shipped example, byte for byte, with train_steps shortened in place; run as a user runs it."""
    folder = tmp_path_factory.mktemp(example) / example
    shutil.copytree(EXAMPLES / example, folder, ignore=shutil.ignore_patterns("tfpipe_root", "__pycache__"))
    yaml_path = folder / "pipeline.yaml"
    text = yaml_path.read_text()
    doc = yaml.safe_load(text)
    trainer = doc["trainer"] if "trainer" in doc else next(c for c in doc["components"] if c["type"] == "trainer")
    shipped_steps = trainer["train_steps"]
    yaml_path.write_text(text.replace(f"train_steps: {shipped_steps}\n", f"train_steps: {steps}\n"))
    assert main(["run", str(yaml_path)]) == 0
    url = str(folder / "tfpipe_root" / example / "metadata.sqlite")
    store = MetadataStore(url)
    [run] = store.runs(example)
    return {
        "folder": folder,
        "yaml": yaml_path,
        "store": store,
        "url": url,
        "pipeline": example,
        "run_id": run["run"].split(".", 1)[1],
        "run": run["run"],
        "components": [c for c, _, _ in run["executions"]],
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return _shipped(tmp_path_factory, "titanic", 300)


@pytest.fixture(scope="module")
def penguin(tmp_path_factory):
    return _shipped(tmp_path_factory, "penguin", 300)


def _reproduce_then_run_again(shipped, capfd):
    """`tfpipe reproduce` says identical; the next ordinary run is fully cached and still blessed."""
    store = shipped["store"]
    capfd.readouterr()
    # The run spelt as the console and the Prefect UI print it: <pipeline>/<run id>.
    label = f"{shipped['pipeline']}/{shipped['run_id']}"
    assert main(["reproduce", label, "--config", str(shipped["yaml"])]) == 0
    out = capfd.readouterr().out
    assert "verdict: identical" in out and "different" not in out, out
    assert out.startswith(f"reproduced {label} as {shipped['pipeline']}/"), out
    assert main(["run", str(shipped["yaml"])]) == 0
    printed = capfd.readouterr().out.splitlines()[0]  # "run <pipeline>/<run id>", pasted into diff as is
    assert printed.startswith(f"run {shipped['pipeline']}/"), printed
    assert main(["diff", label, printed.split()[1], "--config", str(shipped["yaml"])]) == 0
    assert capfd.readouterr().out.startswith(f"a: {label}\nb: {printed.split()[1]}\n")
    runs = store.runs(shipped["pipeline"])
    assert len(runs) == 3
    last = store.run_executions(runs[-1]["run"])
    # (instances that do not depend on each other run side by side: their order may differ from run to run)
    assert sorted((e["component"], e["state"]) for e in last) == sorted((c, "CACHED") for c in shipped["components"])
    [evaluator] = [e for e in last if e["component"] == "evaluator"]
    blessing = store.outputs_of(evaluator["id"])["blessing"]
    assert blessing.properties["blessed"] in (True, 1, "True"), blessing.properties
    original = store.run_executions(shipped["run"])
    assert [e["id"] for e in original] != [e["id"] for e in last]
    # the cached run reused the original run's outputs, not the reproduction's
    assert {a.id for a in store.outputs_of(last[0]["id"]).values()} == {
        a.id for a in store.outputs_of(original[0]["id"]).values()
    }
    return out


def test_every_execution_records_a_manifest(recorded):
    store = recorded["store"]
    executions = store.run_executions(recorded["run"])
    assert [e["component"] for e in executions] == [
        "ingest",
        "statistics",
        "example_validator",
        "transform",
        "trainer",
        "evaluator",
        "pusher",
    ]
    by = {e.component: e for e in executions}
    m = executions[0]["manifest"]
    assert len(m["code"]["git_commit"]) == 40 and isinstance(m["code"]["dirty"], bool)
    assert m["libraries"]["python"] == platform.python_version()
    assert {"tensorflow", "tf-keras", "tensorflow-transform", "apache-beam", "prefect", "ml-metadata"} <= set(
        m["libraries"]
    )
    assert m["hardware"]["devices"][0].startswith("CPU") and m["determinism"] == {"exact": True}
    trainer = next(c for c in m["config"]["components"] if c["id"] == "trainer")  # the graph form, paths resolved
    assert (
        m["seeds"]["trainer.seed"] == 42
        and trainer["train_steps"] == 300
        and trainer["inputs"]
        == {
            "transformed_examples": "transform.transformed_examples",
            "transform_graph": "transform.transform_graph",
            "schema": "ingest.schema",
        }
    )
    csv = str(recorded["folder"] / "data" / "train.csv")
    assert list(m["input_files"]) == [csv] and len(m["input_files"][csv]) == 64
    assert set(m["user_modules"]) == {"transform.module", "trainer.module"}
    assert "components/ingest.py" in m["step_code"] and "schemas/split.py" in m["step_code"]
    trainer_code = by["trainer"]["manifest"]["step_code"]
    assert "components/estimator/heads.py" in trainer_code and "components/ingest.py" not in trainer_code
    model_run = store.outputs_of(by["trainer"]["id"])["model_run"]
    assert model_run.properties["replicas"] == 1 and model_run.properties["strategy"] == "none"


def test_reproduce_of_the_shipped_titanic_example_is_identical_and_leaves_production_cached(recorded, capfd):
    _reproduce_then_run_again(recorded, capfd)
    store = recorded["store"]
    original, again = [store.run_executions(r["run"]) for r in store.runs("titanic")[:2]]
    for a, b in zip(original, again):
        outs_a, outs_b = store.outputs_of(a["id"]), store.outputs_of(b["id"])
        for name in ("examples", "transform_graph", "transformed_examples", "model", "model_run"):
            if name in outs_a:
                assert outs_a[name].uri != outs_b[name].uri
                assert outs_a[name].properties["fingerprint"] == outs_b[name].properties["fingerprint"], name
    # the reproduction pushed beside the run, not into the pipeline's serving folder
    assert len(list((recorded["folder"] / "tfpipe_root" / "titanic" / "serving").iterdir())) == 1


def test_reproduce_of_the_shipped_penguin_example_is_identical_and_leaves_production_cached(penguin, capfd):
    """The penguin example is a graph with two user components (checks.py): a filter between ingest and
    transform, and a model card after the evaluator. They are reproduced, and cached, like the rest."""
    ran = penguin["components"]  # in the order they started: independent instances run side by side
    assert sorted(ran) == [
        "card",
        "evaluator",
        "filter",
        "ingest",
        "pusher",
        "statistics",
        "trainer",
        "transform",
        "validator",
    ]
    for before, after in (
        ("ingest", "filter"),
        ("filter", "transform"),
        ("validator", "transform"),
        ("transform", "trainer"),
        ("evaluator", "card"),
        ("evaluator", "pusher"),
    ):
        assert ran.index(before) < ran.index(after), ran
    out = _reproduce_then_run_again(penguin, capfd)
    assert any(line.split()[:3] == ["card", "card", "identical"] for line in out.splitlines()), out
    assert any(line.split()[:3] == ["filter", "filtered", "identical"] for line in out.splitlines()), out


def test_the_penguin_examples_user_components_as_a_user_sees_them(penguin, capfd):
    """Their artifacts are in the lineage; `tfpipe component <id>` runs each alone (cached: nothing changed;
    --no-cache: a new execution of that instance only)."""
    store, yaml_path = penguin["store"], str(penguin["yaml"])
    [made] = [e for e in store.run_executions(penguin["run"]) if e.component == "card"]
    card = store.outputs_of(made.id)["card"]
    text = (Path(card.uri) / "model_card.md").read_text()
    assert text.startswith("# Penguin species classifier") and "| accuracy |" in text
    assert main(["lineage", str(card.id), "--metadata", penguin["url"]]) == 0
    lines = capfd.readouterr().out.splitlines()
    for label in ("penguins.csv", "ingest #", "filter #", "transform #", "trainer #", "evaluator #", "card #"):
        assert any(label in line for line in lines), (label, lines)
    [made] = [e for e in store.run_executions(penguin["run"]) if e.component == "filter"]
    filtered = store.outputs_of(made.id)["filtered"]
    counts = json.loads(filtered.properties["counts"])
    # 344 penguins, two of them without measurements
    assert sum(counts.values()) == 342 and sum(json.loads(filtered.properties["dropped"]).values()) == 2
    for instance in ("filter", "card"):
        before = len(store.runs("penguin"))
        assert main(["component", instance, "--config", yaml_path]) == 0
        runs = store.runs("penguin")
        assert len(runs) == before + 1 and [(c, s) for c, s, _ in runs[-1]["executions"]] == [(instance, "CACHED")]
        assert main(["component", instance, "--config", yaml_path, "--no-cache"]) == 0
        assert [(c, s) for c, s, _ in store.runs("penguin")[-1]["executions"]] == [(instance, "COMPLETE")]


def _pushed_path(recorded) -> str:
    store = recorded["store"]
    [pusher] = [e for e in store.run_executions(recorded["run"]) if e.component == "pusher"]
    return store.outputs_of(pusher["id"])["pushed_model"].properties["pushed_destination"]


def test_lineage_of_the_pushed_model_reaches_the_raw_file(recorded, capfd, tmp_path):
    pushed = _pushed_path(recorded)
    assert main(["lineage", pushed, "--metadata", recorded["url"]]) == 0
    out = capfd.readouterr().out
    lines = out.splitlines()
    csv = str(recorded["folder"] / "data" / "train.csv")
    assert lines[0].split()[0] == "train.csv" and csv in lines[0]  # the raw file comes first
    for label in (
        "ingest #",
        "Examples #",
        "TransformGraph #",
        "trainer #",
        "Model #",
        "evaluator #",
        "ModelBlessing #",
        "pusher #",
    ):
        assert any(label in line for line in lines), label
    assert next(line for line in lines if line.startswith("*")).split()[1] == "PushedModel"

    svg = tmp_path / "lineage.svg"
    assert main(["lineage", pushed, "--metadata", recorded["url"], "--format", "svg", "-o", str(svg)]) == 0
    texts = " ".join(t for t in ET.parse(svg).getroot().itertext())
    assert "train.csv" in texts and "PushedModel" in texts and "ingest" in texts
    assert main(["lineage", "999999", "--metadata", recorded["url"]]) == 1
    assert "no artifact with id 999999" in capfd.readouterr().err


def test_reproduce_after_an_input_change_names_the_file(recorded, capfd):
    store, run = recorded["store"], recorded["run_id"]
    csv = recorded["folder"] / "data" / "train.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-20]) + "\n")  # someone trimmed the data
    assert main(["reproduce", run, "--metadata", recorded["url"]]) == 1
    out = capfd.readouterr().out
    assert "verdict: different" in out
    ingest_line = next(line for line in out.splitlines() if line.strip().startswith("ingest") and "examples" in line)
    assert "different" in ingest_line and "likely cause: [1]" in ingest_line
    assert f"  [1] input file {csv} changed (sha256 " in out
    runs = [r["run"] for r in store.runs("titanic")]
    assert main(["diff", runs[0], runs[-1], "--metadata", recorded["url"]]) == 0
    out = capfd.readouterr().out
    assert f"input file {csv} changed" in out and "metric " in out
