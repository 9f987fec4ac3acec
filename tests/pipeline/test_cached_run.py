"""A fully cached run is quick: it loads neither TensorFlow nor Beam (bench/cached_run.py times it), and short."""

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench._probe import PROBE
from tests.conftest import tiny_titanic

ROOT = Path(__file__).resolve().parents[2]


def _run(config: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_a_fully_cached_run_loads_neither_tensorflow_nor_beam(tmp_path, prefect_server):
    config = tiny_titanic(tmp_path / "p")
    first = _run(config, prefect_server["env"])
    assert "tensorflow" in first.stdout.splitlines()[-1]  # the probe sees what a run that computes loads
    again = _run(config, prefect_server["env"])
    assert again.stdout.splitlines()[-1] == "loaded: ", again.stdout[-2000:]
    for step in ("ingest", "transform", "trainer", "evaluator", "pusher"):
        assert re.search(rf"^  {step} +CACHED ", again.stdout, re.M), again.stdout[-3000:]
    assert "pushed model:" in again.stdout
    # What the user reads of a cached re-run: the closing table, not each step's reuse again (the log and the
    # Prefect UI keep those lines), in at most 25 lines, the probe's own last line aside.
    printed = again.stdout.splitlines()[:-1] + again.stderr.splitlines()
    assert len(printed) <= 25, "\n".join(printed)
    assert "reusing execution outputs" not in again.stderr


def test_the_flow_does_not_wait_for_the_heartbeat_threads_next_tick():
    # A Prefect private function (the heartbeat context of the sync flow engine): if it moves, this says so.
    from prefect import flow_engine

    import pipeline.flow  # noqa: F401

    assert isinstance(flow_engine._send_heartbeats, functools.partial)
    assert flow_engine._send_heartbeats.keywords == {"join_on_exit": False}
