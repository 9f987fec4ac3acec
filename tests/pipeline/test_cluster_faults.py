"""Faults of a trainer cluster (trainer.cluster, the local launcher), with real processes: a worker killed with
SIGKILL is restarted and training resumes from the checkpoint; with no restarts left, one line and the
trainer FAILED in MLMD; SIGTERM to `tfpipe run` stops every task within 10 s, keeps the checkpoint, and the
re-run resumes from it.

Each test starts from a copy of the tiny pipeline already run once (`tiny_master`): ingest, data validation
and transform are cached, so what runs is what the test is about: the trainer on a cluster, and what follows."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.metadata import MetadataStore
from tests.conftest import api_env, copy_of

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _tiny(master: Path, tmp_path: Path, cluster: dict, **trainer) -> Path:
    config = copy_of(master, tmp_path / "p") / "pipeline.yaml"
    doc = yaml.safe_load(config.read_text())
    doc["trainer"].update(trainer, cluster=cluster)
    config.write_text(yaml.safe_dump(doc))
    return config


def _start(config: Path, log: Path, server: dict) -> subprocess.Popen:
    """`tfpipe run` as a user starts it, in a session of its own, against the test session's Prefect server;
    its output into `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(BIN / "tfpipe"), "run", config.name],
            cwd=config.parent,
            env={**os.environ, **api_env(server)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _run_to_the_end(config: Path, log: Path, server: dict) -> tuple[subprocess.Popen, str]:
    """`tfpipe run` until it exits (or 600 s), whatever it left behind killed; its output."""
    proc = _start(config, log, server)
    try:
        proc.wait(timeout=600)
    finally:
        _kill_group(proc)
    return proc, log.read_text()


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _checkpointed(config: Path, proc: subprocess.Popen, log: Path, timeout: float = 400) -> Path:
    """The trainer's staging folder once its `checkpoint` state file names a whole checkpoint of a trained
    step (the chief also saves model.ckpt-0 as training starts)."""
    staging = config.parent / "root" / "trainer" / "model_run"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for state in staging.glob("*.staging/checkpoint"):
            named = re.search(r'^model_checkpoint_path: "model\.ckpt-(\d+)"', state.read_text(), re.M)
            if named and int(named.group(1)) > 0:
                return state.parent
        time.sleep(0.1)
    raise AssertionError(f"training never checkpointed:\n{log.read_text()[-4000:]}")


def _task_pids(log: Path) -> dict[str, int]:
    """{task: pid} of the cluster as last started, from the launcher's line."""
    started = [line for line in log.read_text().splitlines() if "trainer: cluster started (" in line]
    assert started, log.read_text()[-3000:]
    return {name: int(pid) for name, pid in re.findall(r"(\w+:\d+) at \S+ pid (\d+)", started[-1])}


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # dead, not yet reaped


def _store(config: Path) -> MetadataStore:
    return MetadataStore(str(config.parent / "root" / "metadata.sqlite"))


def test_a_worker_killed_mid_training_is_restarted_and_training_resumes_from_the_checkpoint(
    tiny_master, prefect_server, tmp_path
):
    config = _tiny(tiny_master, tmp_path, {"workers": 2}, train_steps=1500, checkpoint_steps=100)
    log = tmp_path / "run.log"
    proc = _start(config, log, prefect_server)
    try:
        _checkpointed(config, proc, log)
        pids = _task_pids(log)
        assert sorted(pids) == ["worker:0", "worker:1"]
        os.kill(pids["worker:1"], signal.SIGKILL)
        proc.wait(timeout=600)
    finally:
        _kill_group(proc)
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    restart = re.search(
        r"trainer: task worker:1 killed by SIGKILL; restarting the cluster \(restart 1 of 2\): "
        r"training resumes from the checkpoint at step (\d+)",
        text,
    )
    assert restart, text[-4000:]
    step = int(restart.group(1))
    assert step >= 100
    # Both workers of the new cluster started from that checkpoint, and training went on to the end.
    after = text[restart.end() :]
    assert re.search(rf"\[worker:0\] restored \S+model\.ckpt-{step} \(global step {step}\)", after), after[-3000:]
    assert re.search(rf"\[worker:1\] restored \S+model\.ckpt-{step} \(global step {step}\)", after), after[-3000:]
    assert "[worker:0] saved checkpoint" in after and "model.ckpt-1500" in after
    assert "evaluation: BLESSED" in text and "Traceback" not in text
    assert all(_gone(pid) for pid in pids.values())

    store = _store(config)
    [_, trainer] = store.executions("trainer")  # the copied run's, and this one
    assert trainer.state == "COMPLETE"
    run = store.outputs_of(trainer.id)["model_run"].properties
    assert run["restarts"] == 1 and run["global_step"] == 1500.0
    assert [e.state for e in store.executions("pusher")] == ["COMPLETE", "COMPLETE"]


def test_with_no_restarts_left_the_step_fails_in_one_line(tiny_master, prefect_server, tmp_path):
    config = _tiny(tiny_master, tmp_path, {"workers": 2, "max_restarts": 0}, train_steps=1500, checkpoint_steps=100)
    log = tmp_path / "run.log"
    proc = _start(config, log, prefect_server)
    try:
        _checkpointed(config, proc, log)
        pids = _task_pids(log)
        os.kill(pids["worker:1"], signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        _kill_group(proc)
    text = log.read_text()
    assert proc.returncode == 1, text[-4000:]
    assert "Traceback" not in text, text[-4000:]
    errors = [line for line in text.splitlines() if line.startswith("tfpipe: ")]
    assert len(errors) == 1, text[-4000:]
    assert re.fullmatch(
        r"tfpipe: error: trainer: task worker:1 killed by SIGKILL and the cluster has no restarts left "
        r"\(max_restarts: 0\); the checkpoint at step \d+ is kept: run again to resume, or raise max_restarts",
        errors[0],
    ), errors[0]
    assert all(_gone(pid) for pid in pids.values())
    store = _store(config)
    [_, trainer] = store.executions("trainer")
    assert trainer.state == "FAILED" and "no restarts left" in trainer.properties["error"]
    assert len(store.executions("evaluator")) == len(store.executions("pusher")) == 1  # the copied run's alone


def test_sigterm_stops_every_task_within_10_s_keeps_the_checkpoint_and_the_rerun_resumes(
    tiny_master, prefect_server, tmp_path, machine_to_itself
):
    config = _tiny(tiny_master, tmp_path, {"workers": 1, "ps": 1}, train_steps=1200, checkpoint_steps=100)
    log = tmp_path / "first.log"
    # The stop is timed: no other test beside it (under xdist). Taken before the cluster starts: waiting for
    # the machine with the cluster training, the 1200 steps could end before the signal is sent.
    with machine_to_itself():
        proc = _start(config, log, prefect_server)
        try:
            staging = _checkpointed(config, proc, log)
            pids = _task_pids(log)
            assert sorted(pids) == ["chief:0", "ps:0", "worker:0"]
            sent = time.time()
            proc.send_signal(signal.SIGTERM)  # to tfpipe alone, as a container runtime does
            while time.time() - sent < 10 and not all(_gone(pid) for pid in pids.values()):
                time.sleep(0.05)
            took = time.time() - sent
            assert all(_gone(pid) for pid in pids.values()), (took, log.read_text()[-3000:])
            proc.wait(timeout=60)
        finally:
            _kill_group(proc)
    text = log.read_text()
    assert took < 10 and proc.returncode == 143, (took, proc.returncode, text[-3000:])
    stopped = re.search(
        r"tfpipe: stopped: training stopped by SIGTERM: the cluster's 3 tasks are stopped; "
        r"the checkpoint at step (\d+) is where it resumes",
        text,
    )
    assert stopped and "Traceback" not in text, text[-3000:]
    step = int(stopped.group(1))
    assert (staging / f"model.ckpt-{step}.index").is_file()
    [_, first] = _store(config).executions("trainer")
    assert first.state == "FAILED" and first.custom.get("stopped") == "SIGTERM"

    # The same run again: it adopts the checkpoints, the new cluster resumes from them and finishes.
    log = tmp_path / "rerun.log"
    proc, text = _run_to_the_end(config, log, prefect_server)
    assert proc.returncode == 0, text[-4000:]
    assert f"trainer: resuming from the checkpoint at step {step}" in text, text[-4000:]
    assert re.search(rf"\[chief:0\] restored \S+model\.ckpt-{step} \(global step {step}\)", text), text[-4000:]
    assert "evaluation: BLESSED" in text
    [_, _, done] = _store(config).executions("trainer")
    assert done.state == "COMPLETE"


def test_a_mistake_every_task_would_meet_again_is_one_line_without_restarts(tiny_master, prefect_server, tmp_path):
    config = _tiny(tiny_master, tmp_path, {"workers": 2}, label="survivd")
    log = tmp_path / "run.log"
    proc, text = _run_to_the_end(config, log, prefect_server)
    assert proc.returncode == 1, text[-4000:]
    assert "Traceback" not in text and "restarting the cluster" not in text, text[-4000:]
    errors = [line for line in text.splitlines() if line.startswith("tfpipe: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "tfpipe: error: trainer: label 'survivd' is not among the transformed features ["
    ), text[-4000:]
    assert len([line for line in text.splitlines() if "trainer: cluster started" in line]) == 1
    [_, trainer] = _store(config).executions("trainer")
    assert trainer.state == "FAILED"


def test_tasks_die_with_a_killed_tfpipe_and_the_next_run_resumes(tiny_master, prefect_server, tmp_path):
    """The tasks run in sessions of their own (a Ctrl-C reaches tfpipe alone), so killing tfpipe's process
    group does not reach them: they go because their parent did (PR_SET_PDEATHSIG)."""
    config = _tiny(tiny_master, tmp_path, {"workers": 2}, train_steps=1500, checkpoint_steps=100)
    log = tmp_path / "run.log"
    proc = _start(config, log, prefect_server)
    try:
        _checkpointed(config, proc, log)
        pids = _task_pids(log)
        os.killpg(proc.pid, signal.SIGKILL)  # tfpipe and all it started in its session, as a lost machine would
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and not all(_gone(pid) for pid in pids.values()):
            time.sleep(0.1)
        assert all(_gone(pid) for pid in pids.values()), log.read_text()[-3000:]
    finally:
        _kill_group(proc)
    log = tmp_path / "rerun.log"
    proc, text = _run_to_the_end(config, log, prefect_server)
    assert proc.returncode == 0, text[-4000:]
    assert "was left RUNNING by a process that died; marked FAILED" in text
    resumed = re.search(r"trainer: resuming from the checkpoint at step (\d+)", text)
    assert resumed and int(resumed.group(1)) >= 100, text[-4000:]
    assert f"(global step {resumed.group(1)})" in text and "evaluation: BLESSED" in text
