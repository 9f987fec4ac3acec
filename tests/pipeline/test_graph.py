"""Pipelines as graphs of component instances (issue 26).

Each validation error the issue lists, through the installed `tfpipe run` as a user runs it: exit 2, one
line on stderr naming the instance and the fix, no traceback, nothing recorded in MLMD. The standard form
and its graph-form equivalent load to the same graph, and the graph form round-trips through `to_raw()`.
A slow test runs a graph with two independent branches and checks in MLMD that they ran at the same time.
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import tfpipe, tiny_titanic

# tiny_titanic's pipeline.yaml in the graph form: the standard chain, wired by hand.
GRAPH = [
    {"id": "ingest", "type": "ingest", "input": "data.csv"},
    {
        "id": "transform",
        "type": "transform",
        "inputs": {"examples": "ingest.examples", "schema": "ingest.schema"},
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
    {
        "id": "evaluator",
        "type": "evaluator",
        "inputs": {
            "model": "trainer.model",
            "examples": "ingest.examples",
            "schema": "ingest.schema",
            "transform_graph": "transform.transform_graph",
        },
        "slices": ["Sex"],
        "thresholds": {"accuracy": {"lower": 0.1}},
    },
    {"id": "pusher", "type": "pusher", "inputs": {"model": "trainer.model", "blessing": "evaluator.blessing"}},
]

# A user's component file beside the pipeline: a filter whose output is Examples like its input.
CHECKS = textwrap.dedent('''
    from components.contract import Input, Output, component


    @component
    def drop_outliers(examples: Input["Examples"], filtered: Output["Examples"], max_fare: float = 500.0):
        """Keeps the rows whose fare is at most max_fare."""
        raise NotImplementedError("never run by these tests")
''')

# The Titanic CSV's columns, as a pinned tensorflow-metadata Schema (what ingest would infer, less presence).
SCHEMA = "".join(
    f'feature {{\n  name: "{name}"\n  type: {kind}\n}}\n'
    for name, kind in [
        ("PassengerId", "INT"),
        ("Survived", "INT"),
        ("Pclass", "INT"),
        ("Name", "BYTES"),
        ("Sex", "BYTES"),
        ("Age", "FLOAT"),
        ("SibSp", "INT"),
        ("Parch", "INT"),
        ("Ticket", "BYTES"),
        ("Fare", "FLOAT"),
        ("Cabin", "BYTES"),
        ("Embarked", "BYTES"),
    ]
)


def graph_pipeline(folder: Path, edit=None, name: str = "tiny") -> Path:
    """tiny_titanic's folder with pipeline.yaml rewritten in the graph form; `edit(instances by id)` breaks it."""
    config = tiny_titanic(folder, name=name)
    (folder / "checks.py").write_text(CHECKS)
    instances = copy.deepcopy(GRAPH)
    if edit is not None:
        edit({i["id"]: i for i in instances}, instances)
    config.write_text(yaml.safe_dump({"name": name, "root": "root", "components": instances}, sort_keys=False))
    return config


def refused(folder: Path, instance: str, *fix: str) -> str:
    """`tfpipe run pipeline.yaml` refuses the file: exit 2, one line naming `instance` and saying `fix`, no
    traceback, and no MLMD store written."""
    done = tfpipe("run", "pipeline.yaml", cwd=folder, timeout=300)
    err = done.stderr
    assert done.returncode == 2, (done.returncode, err[-3000:])
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("tfpipe: error: "), line
    assert "Traceback" not in err and "Traceback" not in done.stdout, err
    assert instance in line, line
    for words in fix:
        assert words in line, f"{words!r} not in {line!r}"
    root = folder / "root"
    assert not root.exists() or not list(root.rglob("metadata.sqlite*")), sorted(root.rglob("*"))
    assert not list(folder.rglob("metadata.sqlite*"))
    return line


def test_unknown_type(tmp_path):
    def edit(by_id, _):
        by_id["trainer"]["type"] = "trainr"

    refused(
        graph_pipeline(tmp_path, edit).parent,
        ": trainer: ",
        "unknown type 'trainr'",
        "did you mean 'trainer'?",
        "package.module:function",
    )


def test_unwired_input(tmp_path):
    def edit(by_id, _):
        del by_id["trainer"]["inputs"]["schema"]

    refused(
        graph_pipeline(tmp_path, edit).parent,
        ": trainer: ",
        "input 'schema' (Schema) is not wired",
        "inputs: {schema: <instance>.<output>}",
    )


def test_output_of_another_type(tmp_path):
    def edit(by_id, _):
        by_id["trainer"]["inputs"]["schema"] = "ingest.statistics"

    refused(
        graph_pipeline(tmp_path, edit).parent,
        "trainer: input schema",
        "takes a Schema",
        "ingest.statistics is an ExampleStatistics",
        "wire ingest.schema",
    )


def test_cycle(tmp_path):
    def edit(by_id, instances):
        # Two filters, each reading the other's output: types fit, the order cannot.
        instances.insert(
            1, {"id": "filter_a", "type": "checks.py:drop_outliers", "inputs": {"examples": "filter_b.filtered"}}
        )
        instances.insert(
            2, {"id": "filter_b", "type": "checks.py:drop_outliers", "inputs": {"examples": "filter_a.filtered"}}
        )

    line = refused(graph_pipeline(tmp_path, edit).parent, "filter_a", "cycle", "filter_b")
    assert "filter_a <- filter_b <- filter_a" in line or "filter_b <- filter_a <- filter_b" in line, line
    assert "wire one of these inputs to an instance outside the cycle" in line


def test_unknown_parameter(tmp_path):
    def edit(by_id, _):
        by_id["trainer"]["train_step"] = by_id["trainer"].pop("train_steps")

    refused(
        graph_pipeline(tmp_path, edit).parent, ": trainer.train_step: ", "unknown key", "did you mean 'train_steps'?"
    )


def test_slice_not_in_the_pinned_schema(tmp_path):
    def edit(by_id, _):
        by_id["ingest"]["schema"] = "schema.pbtxt"
        by_id["evaluator"]["slices"] = ["Nope"]

    (tmp_path / "schema.pbtxt").write_text(SCHEMA)
    refused(graph_pipeline(tmp_path, edit).parent, "evaluator", "slices ['Nope']", "schema.pbtxt", "choose from", "Sex")


def test_slice_not_in_the_csv_header_when_the_schema_is_inferred(tmp_path):
    """No pinned schema: the CSV's header already says which columns there will be, so a slice column that is
    not one of them is refused before anything runs, not after training."""

    def edit(by_id, _):
        by_id["evaluator"]["slices"] = ["Sex", "Nope"]

    refused(
        graph_pipeline(tmp_path, edit).parent,
        "evaluator",
        "slices ['Nope']",
        "the input's header",
        "choose from",
        "Pclass",
    )


def test_slice_not_in_the_pinned_schema_behind_a_filter(tmp_path):
    def edit(by_id, instances):
        by_id["ingest"]["schema"] = "schema.pbtxt"
        by_id["evaluator"]["slices"] = ["Nope"]
        by_id["evaluator"]["inputs"]["examples"] = "filter.filtered"
        instances.insert(
            1, {"id": "filter", "type": "checks.py:drop_outliers", "inputs": {"examples": "ingest.examples"}}
        )

    # In-process: the file loads (the check is skipped), so `tfpipe run` would run the pipeline.
    from pipeline.config import ConfigFileError, load_config

    (tmp_path / "schema.pbtxt").write_text(SCHEMA)
    with pytest.raises(ConfigFileError, match=r"evaluator: slices \['Nope'\].*choose from"):
        load_config(graph_pipeline(tmp_path, edit))


def test_user_component_function_missing(tmp_path):
    def edit(by_id, instances):
        instances.insert(1, {"id": "filter", "type": "checks.py:missing_fn", "inputs": {"examples": "ingest.examples"}})

    refused(graph_pipeline(tmp_path, edit).parent, ": filter: ", "checks.py:missing_fn", "no function missing_fn()")


def test_user_component_function_missing_names_the_fix(tmp_path):
    def edit(by_id, instances):
        instances.insert(1, {"id": "filter", "type": "checks.py:missing_fn", "inputs": {"examples": "ingest.examples"}})

    # The fix: a function the file has, decorated with @component.
    refused(graph_pipeline(tmp_path, edit).parent, ": filter: ", "drop_outliers")


def test_user_component_file_missing(tmp_path):
    def edit(by_id, instances):
        instances.insert(
            1, {"id": "filter", "type": "nothere.py:drop_outliers", "inputs": {"examples": "ingest.examples"}}
        )

    refused(graph_pipeline(tmp_path, edit).parent, ": filter: ", "nothere.py", "does not exist")


@pytest.mark.parametrize("source", ['raise RuntimeError("boom at import")\n', "def f(:\n"], ids=["raises", "syntax"])
def test_user_component_package_that_fails_to_import(tmp_path, monkeypatch, source):
    package = tmp_path / "site" / "tiny_checks"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "broken.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))

    def edit(by_id, instances):
        instances.insert(
            1, {"id": "filter", "type": "tiny_checks.broken:drop_outliers", "inputs": {"examples": "ingest.examples"}}
        )

    refused(graph_pipeline(tmp_path / "pipeline", edit).parent, ": filter: ", "tiny_checks.broken", "import")


# ---- the two forms ---------------------------------------------------------------------------------------------


def test_standard_and_graph_forms_load_to_the_same_graph(tmp_path):
    from pipeline.config import load_config, parse

    standard = load_config(tiny_titanic(tmp_path / "standard"))
    graph = load_config(graph_pipeline(tmp_path / "graph"))
    assert list(standard.nodes) == list(graph.nodes) == ["ingest", "transform", "trainer", "evaluator", "pusher"]

    def relative(node, folder):  # paths resolve against each file's own folder
        return yaml.safe_load(yaml.safe_dump(node.section()).replace(str(folder.resolve()), "<here>"))

    for node_id, node in standard.nodes.items():
        other = graph.nodes[node_id]
        assert (node.type, node.component.name) == (other.type, other.component.name), node_id
        assert node.wiring == other.wiring, node_id
        assert relative(node, tmp_path / "standard") == relative(other, tmp_path / "graph"), node_id

    # The graph form's to_raw() is a pipeline file that loads to the same config.
    raw = graph.to_raw()
    again = parse(copy.deepcopy(raw), Path(graph.source))
    assert again.to_raw() == raw
    assert list(again.nodes) == list(graph.nodes)
    for node_id, node in graph.nodes.items():
        assert again.nodes[node_id].wiring == node.wiring
        assert again.nodes[node_id].section() == node.section()
    assert (again.root, again.metadata, again.name) == (graph.root, graph.metadata, graph.name)


# ---- two branches at once --------------------------------------------------------------------------------------

BRANCHES = textwrap.dedent("""
    import os
    import time

    from components.contract import Input, Output, component


    def _report(examples, report, who):
        time.sleep(3)
        with open(os.path.join(report, "report.txt"), "w") as f:
            f.write(f"{who} read {examples.uri}\\n")


    @component
    def left(examples: Input["Examples"], report: Output["Report"]):
        _report(examples, report, "left")


    @component
    def right(examples: Input["Examples"], report: Output["Report"]):
        _report(examples, report, "right")
""")


@pytest.mark.slow
def test_independent_branches_run_at_once(prefect_server, tmp_path):
    from pipeline.metadata import MetadataStore

    folder = tmp_path / "branches"
    tiny_titanic(folder, name="branches")
    (folder / "branches.py").write_text(BRANCHES)
    (folder / "pipeline.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "branches",
                "root": "root",
                "components": [
                    {"id": "ingest", "type": "ingest", "input": "data.csv", "label": "Survived"},
                    {"id": "left", "type": "branches.py:left", "inputs": {"examples": "ingest.examples"}},
                    {"id": "right", "type": "branches.py:right", "inputs": {"examples": "ingest.examples"}},
                ],
            },
            sort_keys=False,
        )
    )
    done = tfpipe("run", "pipeline.yaml", cwd=folder, server=prefect_server)
    assert done.returncode == 0, done.stderr[-5000:]

    store = MetadataStore(str(folder / "root" / "metadata.sqlite"))
    names = {t.id: t.name for t in store.store.get_execution_types()}
    by_name = {}
    for e in store.store.get_executions():
        by_name.setdefault(names[e.type_id].removeprefix("tfpipe."), []).append(e)
    assert sorted(by_name) == ["ingest", "left", "right"], by_name
    [left], [right] = by_name["left"], by_name["right"]
    for e in (left, right):
        assert e.last_known_state == e.COMPLETE, e
    # RUNNING from create to last update (the update that made it COMPLETE); each slept 3 s.
    spans = [(e.create_time_since_epoch, e.last_update_time_since_epoch) for e in (left, right)]
    assert all(end - start >= 3000 for start, end in spans), spans
    assert max(s for s, _ in spans) < min(e for _, e in spans), f"the branches ran one after the other: {spans}"
    for branch in ("left", "right"):
        [report] = (folder / "root" / branch / "report").glob("*/report.txt")
        assert report.read_text().startswith(branch)

    again = tfpipe("run", "pipeline.yaml", cwd=folder, server=prefect_server)
    assert again.returncode == 0, again.stderr[-5000:]
    store = MetadataStore(str(folder / "root" / "metadata.sqlite"))
    last = store.runs("branches")[-1]["executions"]
    assert sorted((c, s) for c, s, _ in last) == [("ingest", "CACHED"), ("left", "CACHED"), ("right", "CACHED")], last


# ---- slots a component holds (a Prefect concurrency limit's tag) -----------------------------------------------

HOLDING = CHECKS + textwrap.dedent('''

    @component(holds=("training",))
    def fit_side_model(examples: Input["Examples"], model: Output["Model"]):
        """A user's own training step: it takes a training slot, as the trainer does."""
        raise NotImplementedError("never run by these tests")
''')


def _with_side_model(by_id, instances):
    instances.insert(1, {"id": "side", "type": "checks.py:fit_side_model", "inputs": {"examples": "ingest.examples"}})


def test_the_trainer_and_a_users_component_declare_the_training_slot_they_hold(tmp_path):
    """The flow tags a component's task run with the slots its declaration holds, whatever its name: the
    trainer's and a user's `@component(holds=("training",))` alike; the others hold none."""
    from pipeline.config import load_config
    from pipeline.flow import task_for

    config = graph_pipeline(tmp_path, _with_side_model)
    (tmp_path / "checks.py").write_text(HOLDING)
    cfg = load_config(config)
    tags = {i: set(task_for(node.component).tags) for i, node in cfg.nodes.items()}
    assert tags == {
        "ingest": set(),
        "side": {"tfpipe-training"},
        "transform": set(),
        "trainer": {"tfpipe-training"},
        "evaluator": set(),
        "pusher": set(),
    }


def test_a_slot_that_is_no_plain_name_is_refused_in_one_line(tmp_path):
    config = graph_pipeline(tmp_path, _with_side_model)
    (tmp_path / "checks.py").write_text(HOLDING.replace('holds=("training",)', 'holds=("GPU slot",)'))
    refused(config.parent, ": side: ", "holds=('GPU slot',)", "lowercase name")
