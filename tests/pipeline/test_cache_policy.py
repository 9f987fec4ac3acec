"""The cache cannot go stale: an edit to any tfpipe source file a step runs, or to a helper module the
user's module imports, re-runs that step and everything downstream; nothing else does. Each run is the
real CLI, in a process of its own, over a copy of tfpipe's source tree that the test edits."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.metadata import MetadataStore

ROOT = Path(__file__).resolve().parents[2]
TITANIC = ROOT / "examples" / "titanic"
pytestmark = pytest.mark.slow
COMPONENTS = ("ingest", "transform", "trainer", "evaluator", "pusher")


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_server):
    base = tmp_path_factory.mktemp("cache")
    src = base / "src"
    for package in ("components", "pipeline", "schemas", "examples"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "tfpipe_root"))
    folder = base / "project"
    folder.mkdir()
    lines = (TITANIC / "data" / "train.csv").read_text().splitlines()[:121]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    shutil.copy(TITANIC / "model.py", folder / "model.py")
    # The user's preprocessing imports a helper module that lives beside it.
    (folder / "helpers.py").write_text((TITANIC / "preprocessing.py").read_text())
    (folder / "preprocessing.py").write_text("from helpers import preprocessing_fn  # noqa: F401\n")
    (folder / "pipeline.yaml").write_text(
        "name: cachetest\ningest:\n  input: train.csv\ntransform:\n  module: preprocessing.py\n"
        "trainer:\n  module: model.py\n  label: survived\n  raw_label: Survived\n  train_steps: 30\n"
    )
    return {
        "src": src,
        "folder": folder,
        "env": prefect_server["env"],
        "store": str(folder / "tfpipe_root" / "cachetest" / "metadata.sqlite"),
    }


def _run(project) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(project["folder"] / "pipeline.yaml")],
        cwd=project["src"],
        env=project["env"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    store = MetadataStore(project["store"])
    last = store.run_executions(store.runs("cachetest")[-1]["run"])
    return {e["component"]: e["state"] for e in last}


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


def test_edits_rerun_the_step_that_runs_the_code_and_everything_after_it(project):
    """A first run, then five, each after one edit. A re-run with nothing changed is not a run of its own: the
    edit to the runner (in no step's key) must leave every step CACHED, which a plain re-run would have to too."""
    src = project["src"]
    assert _run(project) == dict.fromkeys(COMPONENTS, "COMPLETE")

    _edit(src / "components" / "estimator" / "heads.py")  # the Estimator engine: the trainer runs it
    assert _run(project) == {
        "ingest": "CACHED",
        "transform": "CACHED",
        "trainer": "COMPLETE",
        "evaluator": "COMPLETE",
        "pusher": "COMPLETE",
    }

    _edit(project["folder"] / "helpers.py")  # a module the user's preprocessing.py imports
    assert _run(project) == {
        "ingest": "CACHED",
        "transform": "COMPLETE",
        "trainer": "COMPLETE",
        "evaluator": "COMPLETE",
        "pusher": "COMPLETE",
    }

    _edit(src / "components" / "evaluator.py")  # one component's module: it and what reads its outputs
    assert _run(project) == {
        "ingest": "CACHED",
        "transform": "CACHED",
        "trainer": "CACHED",
        "evaluator": "COMPLETE",
        "pusher": "COMPLETE",
    }

    _edit(src / "pipeline" / "runner.py")  # the runner is in no component's key: editing it re-runs nothing
    assert _run(project) == dict.fromkeys(COMPONENTS, "CACHED")

    _edit(src / "schemas" / "types.py")  # the data contract: ingest runs it
    assert _run(project) == dict.fromkeys(COMPONENTS, "COMPLETE")


_USER_COMPONENT = """
import json
from pathlib import Path

from components.contract import Input, Output, component


@component
def {name}({inputs}, out: Output["Note"], word: str = "{name}"):
    \"\"\"Writes a note naming what it read.\"\"\"
    (Path(out) / "note.txt").write_text(json.dumps([word, {uris}]))
"""


def test_editing_a_user_component_reruns_it_and_its_downstream_only(project):
    """A graph of user components beside ingest: `count` <- ingest, `summary` <- count, `sibling` <- ingest.
    Editing count's file re-runs count and summary; ingest upstream and the sibling beside it stay cached."""
    folder = project["folder"] / "graph"
    folder.mkdir()
    shutil.copy(project["folder"] / "train.csv", folder / "train.csv")
    for name, inputs in (("count", "examples"), ("summary", "note"), ("sibling", "examples")):
        kind = "Examples" if inputs == "examples" else "Note"
        (folder / f"{name}.py").write_text(
            _USER_COMPONENT.format(name=name, inputs=f'{inputs}: Input["{kind}"]', uris=f"{inputs}.uri")
        )
    (folder / "pipeline.yaml").write_text(
        "name: graphcache\ncomponents:\n"
        "  - {id: ingest, type: ingest, input: train.csv, label: Survived}\n"
        "  - {id: count, type: count.py:count, inputs: {examples: ingest.examples}}\n"
        "  - {id: summary, type: summary.py:summary, inputs: {note: count.out}}\n"
        "  - {id: sibling, type: sibling.py:sibling, inputs: {examples: ingest.examples}}\n"
    )

    def run() -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "run", str(folder / "pipeline.yaml")],
            cwd=project["src"],
            env=project["env"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        store = MetadataStore(str(folder / "tfpipe_root" / "graphcache" / "metadata.sqlite"))
        return {c: state for c, state, _ in store.runs("graphcache")[-1]["executions"]}

    everything = ("ingest", "count", "summary", "sibling")
    assert run() == dict.fromkeys(everything, "COMPLETE")
    assert run() == dict.fromkeys(everything, "CACHED")
    _edit(folder / "count.py")
    assert run() == {"ingest": "CACHED", "count": "COMPLETE", "summary": "COMPLETE", "sibling": "CACHED"}
