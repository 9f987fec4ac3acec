"""A pipeline file written before pipelines were graphs runs unchanged: the Titanic example's YAML as it was
shipped then (tests/pipeline/data/titanic_pipeline_before_graphs.yaml, byte for byte), beside the example's
modules and data. It runs as the five standard instances it always meant, is BLESSED, and re-runs cached."""

import shutil
from pathlib import Path

import pytest

from tests.conftest import tfpipe

ROOT = Path(__file__).resolve().parents[2]
OLD = Path(__file__).parent / "data" / "titanic_pipeline_before_graphs.yaml"
pytestmark = pytest.mark.slow


def test_the_titanic_file_from_before_graphs_runs_unchanged_and_is_blessed(prefect_server, tmp_path):
    folder = tmp_path / "titanic"
    shutil.copytree(ROOT / "examples" / "titanic", folder, ignore=shutil.ignore_patterns("tfpipe_root", "__pycache__"))
    # Only the training length is shortened (1000 -> 300 steps, as the reproducibility tests do), in place.
    text = OLD.read_text()
    assert "train_steps: 1000\n" in text
    (folder / "pipeline.yaml").write_text(text.replace("train_steps: 1000\n", "train_steps: 300\n"))
    first = tfpipe("run", "pipeline.yaml", cwd=folder, server=prefect_server)
    assert first.returncode == 0, first.stderr[-3000:]
    lines = first.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:6]] == ["ingest", "transform", "trainer", "evaluator", "pusher"]
    assert "evaluation: BLESSED" in lines and any(line.startswith("pushed model: ") for line in lines)
    again = tfpipe("run", "pipeline.yaml", cwd=folder, server=prefect_server)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [line.split()[:2] for line in again.stdout.splitlines()[1:6]] == [
        [c, "CACHED"] for c in ("ingest", "transform", "trainer", "evaluator", "pusher")
    ]
