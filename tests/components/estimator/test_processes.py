"""Real processes: a training run killed with SIGKILL resumes; MirroredStrategy matches one device."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def _run(*args, timeout=300):
    proc = subprocess.run(
        [sys.executable, "-m", "tests.components.estimator.train_worker", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(out for out in proc.stdout.splitlines() if out.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :]), proc.stderr


def _ckpt_step(model_dir) -> int:
    latest = tf.train.latest_checkpoint(str(model_dir))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def test_killed_training_resumes_from_last_checkpoint(tmp_path):
    model_dir = tmp_path / "model"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.components.estimator.train_worker", str(model_dir), "100000", "--slow"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while _ckpt_step(model_dir) < 50 and time.time() < deadline:
            time.sleep(0.2)
        assert _ckpt_step(model_dir) >= 50, "training never checkpointed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = _ckpt_step(model_dir)
    result, log = _run(str(model_dir), str(killed_at + 60))
    assert f"restored {model_dir}/model.ckpt-{killed_at}" in log
    assert result["global_step"] == killed_at + 60
    fresh, _ = _run(str(tmp_path / "fresh"), str(killed_at + 60))
    assert result["accuracy"] >= fresh["accuracy"] - 0.05


def test_mirrored_strategy_on_two_devices_matches_one_device(tmp_path):
    one, _ = _run(str(tmp_path / "one"), "60")
    two, log = _run(str(tmp_path / "two"), "60", "--mirrored")
    assert "MirroredStrategy" in log or "mirrored" in log.lower()
    assert two["global_step"] == one["global_step"] == 60
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-4)
    assert two["accuracy"] == pytest.approx(one["accuracy"], abs=1e-6)
