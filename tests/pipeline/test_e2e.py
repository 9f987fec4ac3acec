"""Both examples through the real Prefect flow: MLMD lineage, the pushed model serving raw tf.Examples,
a fully cached second run, and a preprocessing change re-running transform and everything after it."""

import json
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from pipeline.cli import main
from pipeline.flow import pipeline_flow
from pipeline.metadata import MetadataStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.slow
# The shipped Titanic example's instances, in order: the standard chain with its data validation sections.
TITANIC = ["ingest", "statistics", "example_validator", "transform", "trainer", "evaluator", "pusher"]


def _copy_example(name, tmp_path) -> Path:
    target = tmp_path / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("tfpipe_root", "__pycache__"))
    return target / "pipeline.yaml"


def _states(result) -> dict:
    return {name: info["state"] for name, info in result["components"].items()}


def _example(**values) -> bytes:
    ex = tf.train.Example()
    for key, value in values.items():
        feature = ex.features.feature[key]
        if isinstance(value, str):
            feature.bytes_list.value.append(value.encode())
        elif isinstance(value, int):
            feature.int64_list.value.append(value)
        else:
            feature.float_list.value.append(value)
    return ex.SerializeToString()


def test_titanic_pipeline_end_to_end(tmp_path):
    config = _copy_example("titanic", tmp_path)
    overrides = {"root": str(tmp_path / "root")}
    first = pipeline_flow(str(config), overrides=overrides)
    assert _states(first) == dict.fromkeys(TITANIC, "COMPLETE")

    store = MetadataStore(first["metadata"])
    executions = store.executions()
    assert [e.state for e in executions] == ["COMPLETE"] * len(TITANIC)
    trainer_exec = store.executions("trainer")[0]
    assert set(store.inputs_of(trainer_exec.id)) == {"transformed_examples", "transform_graph", "schema"}
    outputs = store.outputs_of(trainer_exec.id)
    assert {n: a.type for n, a in outputs.items()} == {"model": "Model", "model_run": "ModelRun"}
    assert outputs["model"].uri == str(tmp_path / "root" / "trainer" / "model" / str(trainer_exec.id))
    # Lineage: the pushed model traces back through the evaluator's blessing to the ingested examples.
    pusher_inputs = store.inputs_of(store.executions("pusher")[0].id)
    assert pusher_inputs["model"].id == outputs["model"].id
    assert all(a.state == "LIVE" for a in store.artifacts())

    metrics = json.loads((Path(first["components"]["evaluator"]["uris"]["evaluation"]) / "metrics.json").read_text())
    assert metrics["overall"]["accuracy"] >= 0.80 and metrics["blessed"] is True
    assert {"Sex=male", "Sex=female", "Pclass=1", "Pclass=2", "Pclass=3"} <= set(metrics["slices"])
    push = json.loads((Path(first["components"]["pusher"]["uris"]["pushed_model"]) / "push.json").read_text())
    assert push["pushed"] and Path(push["path"]).parent == Path(first["serving_base"])

    # The served model takes raw examples (no label, a missing Age) and transforms them itself.
    served = tf.saved_model.load(push["path"])
    rows = tf.constant(
        [
            _example(
                Pclass=1,
                Name="Smith, Mrs. Jane",
                Sex="female",
                SibSp=1,
                Parch=0,
                Ticket="PC 1",
                Fare=80.0,
                Embarked="C",
                PassengerId=1,
            ),
            _example(
                Pclass=3,
                Name="Doe, Mr. John",
                Sex="male",
                Age=30.0,
                SibSp=0,
                Parch=0,
                Ticket="A 2",
                Fare=7.25,
                Embarked="S",
                PassengerId=2,
            ),
        ]
    )
    out = served.signatures["serving_default"](inputs=rows)
    assert out["scores"].shape == (2, 2) and out["scores"][0, 1] > 0.5 > out["scores"][1, 1]

    second = pipeline_flow(str(config), overrides=overrides)
    assert set(_states(second).values()) == {"CACHED"}
    assert [e.state for e in store.executions()][len(TITANIC) :] == ["CACHED"] * len(TITANIC)
    assert second["components"]["trainer"]["outputs"] == first["components"]["trainer"]["outputs"]

    # A changed preprocessing_fn: transform and everything downstream run again, ingest does not.
    module = config.parent / "preprocessing.py"
    module.write_text(module.read_text().replace("tft.scale_to_z_score(family)", "tft.scale_to_0_1(family)"))
    third = pipeline_flow(str(config), overrides=overrides)
    assert _states(third) == {
        "ingest": "CACHED",
        "statistics": "CACHED",
        "example_validator": "CACHED",
        "transform": "COMPLETE",
        "trainer": "COMPLETE",
        "evaluator": "COMPLETE",
        "pusher": "COMPLETE",
    }
    third_metrics = json.loads(
        (Path(third["components"]["evaluator"]["uris"]["evaluation"]) / "metrics.json").read_text()
    )
    assert third_metrics["baseline_model"] == push["path"]  # judged against the model pushed before
    # The baseline is an input of the evaluator's execution in MLMD (resolved by the runner, as TFX's
    # resolver does), so the lineage and the cache key see it.
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    [judged] = [e for e in store.run_executions(store.find_run(third["run_id"])) if e.component == "evaluator"]
    baseline = store.inputs_of(judged.id)["baseline"]
    assert baseline.type == "PushedModel" and baseline.properties["pushed_destination"] == push["path"]

    # Other split weights: the last pushed model may have trained on today's eval rows, so it is no baseline.
    fourth = pipeline_flow(
        str(config), overrides={**overrides, "ingest": {**_ingest_section(config), "splits": {"train": 8, "eval": 2}}}
    )
    assert _states(fourth)["ingest"] == "COMPLETE"
    fourth_metrics = json.loads(
        (Path(fourth["components"]["evaluator"]["uris"]["evaluation"]) / "metrics.json").read_text()
    )
    assert fourth_metrics["baseline_model"] is None

    # The CLI reads the same store.
    assert main(["runs", "--config", str(config), "--root", str(tmp_path / "root")]) == 0
    assert main(["artifacts", "--config", str(config), "--root", str(tmp_path / "root"), "--type", "PushedModel"]) == 0


def _ingest_section(config: Path) -> dict:
    import yaml

    return yaml.safe_load(config.read_text())["ingest"]


def test_penguin_pipeline_and_one_component_from_the_cli(tmp_path, capsys):
    config = _copy_example("penguin", tmp_path)
    root = str(tmp_path / "root")
    assert main(["run", str(config), "--root", root]) == 0
    out = capsys.readouterr().out
    assert "pushed model: " + str(tmp_path / "root" / "serving") in out
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    evaluation = store.latest_live("penguin", "evaluator")["evaluation"]
    assert evaluation.properties["metric:accuracy"] >= 0.95
    # One component again, inputs taken from MLMD (the latest LIVE upstream outputs), cache off.
    assert main(["component", "evaluator", "--config", str(config), "--root", root, "--no-cache"]) == 0
    evaluator_runs = store.executions("evaluator")
    assert [e.state for e in evaluator_runs] == ["COMPLETE", "COMPLETE"]
    assert store.inputs_of(evaluator_runs[1].id)["model"].id == store.inputs_of(evaluator_runs[0].id)["model"].id
