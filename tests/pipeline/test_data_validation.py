"""Data validation (issue 28) through the installed `tfpipe run`, on tiny Titanic data in the graph form:

    ingest -> statistics -> validator -> transform (its gate input) -> trainer

A second data drop with Age shifted by 20 years, a new Embarked value X, or Fare 40 % missing stops the run at
the validator: exit 1, one line naming the feature and the value, the validator's execution COMPLETE with its
anomalies artifact (blocked), and neither the transform nor the trainer started (checked in MLMD). The next
run with the good data is cached all the way. With severity warn the same drop runs to the end, warning.
The validator's checks themselves are also run in-process on the same data (fast).
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import tfpipe, tiny_titanic

DRIFT = {
    "Age": {"jensen_shannon": 0.2},
    "Fare": {"jensen_shannon": 0.3, "missing_increase": 0.1},
    "Embarked": {"l_infinity": 0.3},
}


def dv_pipeline(folder: Path, severity: dict | None = None) -> Path:
    config = tiny_titanic(folder, name="dv")
    instances = [
        {"id": "ingest", "type": "ingest", "input": "data.csv"},
        {"id": "statistics", "type": "statistics", "inputs": {"examples": "ingest.examples"}},
        {
            "id": "validator",
            "type": "example_validator",
            "inputs": {"statistics": "statistics.statistics", "schema": "ingest.schema"},
            "drift": DRIFT,
            **({"severity": severity} if severity else {}),
        },
        {
            "id": "transform",
            "type": "transform",
            "inputs": {"examples": "ingest.examples", "schema": "ingest.schema", "anomalies": "validator.anomalies"},
            "module": "preprocessing.py",
        },
        {
            "id": "trainer",
            "type": "trainer",
            "inputs": {
                "transformed_examples": "transform.transformed_examples",
                "transform_graph": "transform.transform_graph",
                "schema": "ingest.schema",
            },
            "module": "model.py",
            "label": "survived",
            "raw_label": "Survived",
            "train_steps": 10,
        },
    ]
    config.write_text(yaml.safe_dump({"name": "dv", "root": "root", "components": instances}, sort_keys=False))
    return config


def _shift_age(header, row, i):
    j = header.index("Age")
    if row[j]:
        row[j] = str(float(row[j]) + 20)


def _new_embarked(header, row, i):
    if i % 5 == 0:
        row[header.index("Embarked")] = "X"


def _fare_missing(header, row, i):
    if i % 5 < 2:
        row[header.index("Fare")] = ""


def write_drop(folder: Path, good: str, *edits) -> None:
    rows = list(csv.reader(good.splitlines()))
    for i, row in enumerate(rows[1:]):
        for edit in edits:
            edit(rows[0], row, i)
    with open(folder / "data.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _last_run(folder: Path) -> dict[str, str]:
    from pipeline.metadata import MetadataStore

    store = MetadataStore(str(folder / "root" / "metadata.sqlite"))
    return {component: state for component, state, _ in store.runs("dv")[-1]["executions"]}


def _stopped(done, *words: str) -> str:
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("tfpipe: error: validator: "), line
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for w in words:
        assert w in line, (w, line)
    return line


@pytest.mark.slow
def test_a_bad_drop_stops_at_the_validator_and_good_data_is_cached(prefect_server, tmp_path):
    dv_pipeline(tmp_path)
    good = (tmp_path / "data.csv").read_text()
    first = tfpipe("run", "pipeline.yaml", cwd=tmp_path, server=prefect_server)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "drift and new values are not checked" in first.stderr + first.stdout

    cases = [
        (_shift_age, ("Age drifted", "Jensen-Shannon divergence 0.", "> 0.2", "previous data drop")),
        (_new_embarked, ("Embarked", "'X'", "never in the previous data drop")),
        (_fare_missing, ("Fare is missing in 40%", "0.40 > 0.1")),
    ]
    for edit, words in cases:
        write_drop(tmp_path, good, edit)
        done = tfpipe("run", "pipeline.yaml", cwd=tmp_path, server=prefect_server)
        _stopped(done, *words)
        states = _last_run(tmp_path)
        # The validator's execution is recorded with its anomalies; nothing after it started.
        assert states == {"ingest": "COMPLETE", "statistics": "COMPLETE", "validator": "COMPLETE"}, states

    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from components.example_validator import load_anomalies
    from pipeline.metadata import MetadataStore

    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    blocked = [a for a in store.artifacts("ExampleAnomalies") if a.properties.get("blocked")]
    assert len(blocked) == 3
    fare = load_anomalies(blocked[-1].uri)["train"].anomaly_info["Fare"]
    assert fare.reason[0].type == anomalies_pb2.AnomalyInfo.FEATURE_TYPE_LOW_FRACTION_PRESENT

    # The same bad drop again: the verdict is reused, and still stops the run.
    again = tfpipe("run", "pipeline.yaml", cwd=tmp_path, server=prefect_server)
    _stopped(again, "Fare is missing in 40%")
    assert _last_run(tmp_path) == {"ingest": "CACHED", "statistics": "CACHED", "validator": "CACHED"}

    # The good data again: every step reused, the validator's verdict included (the stopped drops are no
    # baseline, so it is judged as it was the first time).
    (tmp_path / "data.csv").write_text(good)
    done = tfpipe("run", "pipeline.yaml", cwd=tmp_path, server=prefect_server)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(_last_run(tmp_path).values()) == {"CACHED"}, _last_run(tmp_path)
    assert len(_last_run(tmp_path)) == 5


@pytest.mark.slow
def test_with_severity_warn_a_bad_drop_runs_to_the_end_with_warnings(prefect_server, tmp_path):
    dv_pipeline(tmp_path, severity={"default": "warn"})
    good = (tmp_path / "data.csv").read_text()
    assert tfpipe("run", "pipeline.yaml", cwd=tmp_path, server=prefect_server).returncode == 0
    write_drop(tmp_path, good, _shift_age, _new_embarked, _fare_missing)
    done = tfpipe("run", "pipeline.yaml", cwd=tmp_path, server=prefect_server)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    # (the edits move rows between splits: Fare is missing in some 40-55 % of the train split)
    for words in (
        r"warning: Age drifted: Jensen-Shannon divergence 0\.\d+ > 0\.2",
        r"Embarked has value\(s\) 'X'",
        r"warning: Fare is missing in \d+% of split train",
    ):
        assert re.search(words, out), (words, out[-3000:])
    assert _last_run(tmp_path)["trainer"] == "COMPLETE"


def test_validate_in_process_names_the_feature_and_value(tmp_path):
    """The checks on their own (no Prefect, no training): same data passes; each bad drop is one anomaly."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from components.example_validator import ValidatorConfig, load_anomalies, validate
    from components.ingest import IngestConfig, ingest
    from components.statistics import StatisticsConfig, compute
    from schemas.artifacts import Artifact

    tiny_titanic(tmp_path / "src")
    good = (tmp_path / "src" / "data.csv").read_text()

    def stats(name, *edits):
        d = tmp_path / name
        d.mkdir()
        write_drop(d, good, *edits)
        ingest(IngestConfig(input=str(d / "data.csv")), d / "ex", d, d)
        compute(str(d / "ex"), str(d / "stats"), StatisticsConfig())
        return d

    base = stats("base")
    baseline = Artifact(7, "ExampleStatistics", str(base / "stats"))
    config = ValidatorConfig(drift=DRIFT)
    for name, edits, feature, kind in [
        ("same", (), None, None),
        ("age", (_shift_age,), "Age", "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"),
        ("embarked", (_new_embarked,), "Embarked", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"),
        ("fare", (_fare_missing,), "Fare", "FEATURE_TYPE_LOW_FRACTION_PRESENT"),
    ]:
        d = stats(name, *edits)
        found, _ = validate(config, str(d / "stats"), str(d / "schema.pbtxt"), baseline, str(d / "out"))
        assert {i["feature"] for i in found.items} == ({feature} if feature else set()), found.items
        if feature:
            train = load_anomalies(d / "out")["train"]
            info = train.anomaly_info[feature]
            assert [anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason] == [kind]
            assert info.severity == info.ERROR
            assert "statistics artifact 7" in found.items[0]["summary"]
    measured = load_anomalies(tmp_path / "age" / "out")["train"].drift_skew_info
    age = next(m for m in measured if list(m.path.step) == ["Age"])
    assert age.drift_measurements[0].value > 0.2 and age.drift_measurements[0].threshold == pytest.approx(0.2)


def test_an_inferred_domain_lets_another_split_hold_an_unknown_value_only_as_rarely_as_sampling_explains(tmp_path):
    """The string domain ingest infers comes from the train split; an eval value outside it is sampling when it
    is rarer than 3 / (train values), and an anomaly naming it when it is more frequent."""
    from components.example_validator import ValidatorConfig, validate
    from components.ingest import IngestConfig, ingest
    from components.statistics import StatisticsConfig, compute

    def judged(name: str, greens: int):
        d = tmp_path / name
        d.mkdir()
        (d / "train.csv").write_text("color,n\n" + "red,1\nblue,2\n" * 20)  # 40 values: min_domain_mass 0.925
        (d / "eval.csv").write_text("color,n\n" + "red,1\n" * (20 - greens) + "green,2\n" * greens)
        ingest(IngestConfig(input={"train": str(d / "train.csv"), "eval": str(d / "eval.csv")}), d / "ex", d, d)
        compute(str(d / "ex"), str(d / "stats"), StatisticsConfig())
        return validate(ValidatorConfig(), str(d / "stats"), str(d / "schema.pbtxt"), None, str(d / "out"))[0].items

    assert judged("rare", 1) == []  # 5 % of eval's values: within 1 - 0.925
    items = judged("frequent", 4)  # 20 %
    assert [(i["split"], i["feature"], i["type"]) for i in items] == [
        ("eval", "color", "ENUM_TYPE_UNEXPECTED_STRING_VALUES")
    ]
    assert "'green'" in items[0]["summary"] and "the schema's domain" in items[0]["summary"]


def _graph_without_training(folder: Path, schema: str | None = None) -> None:
    ingest = {"id": "ingest", "type": "ingest", "input": "data.csv", **({"schema": schema} if schema else {})}
    instances = [
        ingest,
        {"id": "statistics", "type": "statistics", "inputs": {"examples": "ingest.examples"}},
        {
            "id": "validator",
            "type": "example_validator",
            "inputs": {"statistics": "statistics.statistics", "schema": "ingest.schema"},
        },
    ]
    (folder / "pipeline.yaml").write_text(
        yaml.safe_dump({"name": "dv", "root": "root", "components": instances}, sort_keys=False)
    )


@pytest.mark.slow
def test_tfpipe_schema_round_trips_as_a_pinned_schema_and_a_curated_domain_stops_the_run(prefect_server, tmp_path):
    from components.statistics import load_statistics
    from pipeline.metadata import MetadataStore
    from schemas.schema import infer_schema, load_schema

    tiny_titanic(tmp_path)
    _graph_without_training(tmp_path)
    done = tfpipe("schema", "pipeline.yaml", "--out", "schema.pbtxt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    schema = load_schema(tmp_path / "schema.pbtxt")  # parses as a tensorflow-metadata Schema, comments and all
    features = {f.name: f for f in schema.feature}
    assert list(features["Sex"].string_domain.value) == ["female", "male"]
    assert "C" in features["Embarked"].string_domain.value
    assert features["Age"].presence.min_fraction == 0.0 and features["Age"].presence.min_count == 1
    # Printed, it is the same schema (the header's minute may have turned between the two calls)
    printed = tfpipe("schema", "pipeline.yaml", cwd=tmp_path)
    undated = functools.partial(re.sub, r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "DATE")
    assert printed.returncode == 0
    assert undated(printed.stdout) == undated((tmp_path / "schema.pbtxt").read_text())
    assert undated(printed.stdout) != printed.stdout  # the header does carry when it was inferred

    # Pinned as it is: the run passes the validator
    _graph_without_training(tmp_path, schema="schema.pbtxt")
    done = tfpipe("run", "pipeline.yaml", cwd=tmp_path, server=prefect_server)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _last_run(tmp_path) == {"ingest": "COMPLETE", "statistics": "COMPLETE", "validator": "COMPLETE"}
    # ... and the statistics it made give the same schema again (the rule from TFDV statistics: --statistics)
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    stats = [a for a in store.artifacts("ExampleStatistics") if "statistics" in a.uri][-1]
    assert infer_schema(load_statistics(stats.uri)) == schema
    from_stats = tfpipe("schema", "pipeline.yaml", "--statistics", str(stats.id), cwd=tmp_path)
    assert from_stats.returncode == 0, from_stats.stderr[-3000:]
    assert from_stats.stdout.split("\n", 2)[2] == printed.stdout.split("\n", 2)[2]  # less the comment lines

    # Curated: C is no longer a valid port; the run stops naming it
    text = (tmp_path / "schema.pbtxt").read_text().replace('    value: "C"\n', "", 1)
    (tmp_path / "schema.pbtxt").write_text(text)
    assert (
        "C" not in {f.name: f for f in load_schema(tmp_path / "schema.pbtxt").feature}["Embarked"].string_domain.value
    )
    done = tfpipe("run", "pipeline.yaml", cwd=tmp_path, server=prefect_server)
    line = _stopped(done, "Embarked", "'C'", "the schema's domain")
    assert "split train" in line
    assert _last_run(tmp_path) == {"ingest": "COMPLETE", "statistics": "COMPLETE", "validator": "COMPLETE"}


@pytest.mark.slow  # ~50 s on the loaded 2-core machine: ingest of the full files, TensorFlow's import
@pytest.mark.parametrize("example", ["titanic", "penguin"])
def test_the_shipped_examples_pass_their_own_validator_with_the_inferred_schema(example, tmp_path):
    """A clean re-run of a shipped example (its own data as the previous drop) finds no error: the inferred
    domains, presence and value counts fit every split (the full file, and the tests' 60-row Titanic sample)."""
    from components.example_validator import validate
    from components.ingest import ingest
    from components.statistics import StatisticsConfig, compute
    from pipeline.config import load_config
    from schemas.artifacts import Artifact

    root = Path(__file__).resolve().parents[2] / "examples" / example
    cfg = load_config(root / "pipeline.yaml")
    by_type = {node.component.name: node.params for node in cfg.nodes.values()}
    inputs = [by_type["ingest"]]
    if example == "titanic":
        sample = tmp_path / "sample.csv"
        sample.write_text("\n".join((root / "data" / "train.csv").read_text().splitlines()[:61]) + "\n")
        inputs.append(by_type["ingest"].model_copy(update={"input": str(sample)}))
    for i, params in enumerate(inputs):
        d = tmp_path / str(i)
        ingest(params, d / "ex", d, d)
        compute(str(d / "ex"), str(d / "stats"), StatisticsConfig())
        baseline = Artifact(1, "ExampleStatistics", str(d / "stats"))
        found, _ = validate(
            by_type["example_validator"], str(d / "stats"), str(d / "schema.pbtxt"), baseline, str(d / "o")
        )
        assert [x for x in found.items if x["severity"] == "error"] == [], found.items


def test_a_pinned_domain_is_the_users_word_and_an_inferred_one_still_meets_the_previous_drop(tmp_path):
    """A new value X in a second drop: the schema ingest inferred from that drop has X in its domain, so only
    the previous drop's values catch it; a pinned schema that lists X lets it through."""
    from google.protobuf import text_format

    from components.example_validator import ValidatorConfig, validate
    from components.ingest import IngestConfig, ingest
    from components.statistics import StatisticsConfig, compute
    from schemas.artifacts import Artifact
    from schemas.schema import load_schema

    tiny_titanic(tmp_path / "src")
    good = (tmp_path / "src" / "data.csv").read_text()
    folders = {}
    for name, edits in (("base", ()), ("new", (_new_embarked,))):
        d = folders[name] = tmp_path / name
        d.mkdir()
        write_drop(d, good, *edits)
        ingest(IngestConfig(input=str(d / "data.csv")), d / "ex", d, d)
        compute(str(d / "ex"), str(d / "stats"), StatisticsConfig())
    d = folders["new"]
    schema = load_schema(d / "schema.pbtxt")
    assert "X" in next(f for f in schema.feature if f.name == "Embarked").string_domain.value  # inferred from it
    baseline = Artifact(3, "ExampleStatistics", str(folders["base"] / "stats"))

    def judged(pinned: bool) -> list:
        out = tmp_path / f"out-{pinned}"
        return validate(ValidatorConfig(), str(d / "stats"), str(d / "schema.pbtxt"), baseline, str(out), pinned)[
            0
        ].items

    inferred = judged(pinned=False)
    assert {(i["feature"], i["check"]) for i in inferred} == {("Embarked", "new_values")}, inferred
    assert "'X'" in inferred[0]["summary"] and "previous data drop" in inferred[0]["summary"]
    assert judged(pinned=True) == []
    # and a pinned schema without X stops it, by the schema's own domain
    for f in schema.feature:
        if f.name == "Embarked":
            f.string_domain.value.remove("X")
    (d / "schema.pbtxt").write_text(text_format.MessageToString(schema))
    pinned = judged(pinned=True)
    assert {(i["split"], i["feature"], i["check"]) for i in pinned} >= {("train", "Embarked", "schema")}, pinned
