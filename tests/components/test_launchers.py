"""The local launcher with real processes (small Python programs standing in for TensorFlow tasks): TF_CONFIG
per task, log lines by role, restarts of the whole cluster when a task dies, one line when they run out, no
restart on a user's error, and a stop that reaches every task. Plus `trainer.cluster` checked at load."""

import json
import logging
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from components import launchers
from components import stop as stop_lib
from components.errors import ClusterError, ConfigError, Stopped
from components.launchers import Job, Task
from pipeline.config import ConfigFileError, load_config
from tests.conftest import tiny_titanic

# Each task: notes its start in the shared folder (role, index, pid, TF_CONFIG), then does what `behaviour`
# says for its role and start number.
PROGRAM = textwrap.dedent(
    """
    import json, os, signal, sys, time
    workdir, behaviour = sys.argv[1], json.loads(sys.argv[2])
    cfg = json.loads(os.environ["TF_CONFIG"])
    name = f"{cfg['task']['type']}:{cfg['task']['index']}"
    starts = [f for f in os.listdir(workdir) if f.startswith(name + "-")]
    with open(os.path.join(workdir, f"{name}-{len(starts)}"), "w") as f:
        json.dump({"pid": os.getpid(), "tf_config": cfg}, f)
    print(f"hello from {name}, start {len(starts)}", flush=True)
    what = behaviour.get(f"{name}#{len(starts)}", behaviour.get(name, "exit0"))
    if what == "sigkill_later":  # after the other tasks noted their start
        time.sleep(1)
    if what.startswith("sigkill"):
        os.kill(os.getpid(), signal.SIGKILL)
    if what == "user_error":
        print("tfpipe-task-error: ConfigError: label 'survived' is not among the features", flush=True)
        sys.exit(3)
    if what == "exit0_later":  # after the other tasks noted their start
        time.sleep(1)
    if what == "serve":
        while True:
            time.sleep(1)
    if what == "train_until_sigterm":
        def stop(signum, frame):
            open(os.path.join(workdir, f"{name}-got-sigterm"), "w").close()
            sys.exit(143)
        signal.signal(signal.SIGTERM, stop)
        while True:
            time.sleep(0.1)
    sys.exit(0)
    """
)


def _job(tmp_path: Path, tasks: list[Task], behaviour: dict, max_restarts: int = 2, finishers=None) -> Job:
    program = tmp_path / "task.py"
    program.write_text(PROGRAM)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Job(
        what="trainer",
        tasks=tasks,
        command=lambda task: [sys.executable, str(program), str(work), json.dumps(behaviour)],
        finishers=finishers or (lambda task: task.role in ("chief", "worker")),
        workdir=str(work),
        log=logging.getLogger("tfpipe.trainer"),
        resume_note=lambda: "the checkpoint at step 7",
        max_restarts=max_restarts,
    )


def _starts(job: Job, name: str) -> list[dict]:
    work = Path(job.workdir)
    return [json.loads((work / f"{name}-{i}").read_text()) for i in range(len(list(work.glob(f"{name}-[0-9]*"))))]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.slow  # real processes (small Python programs, ~1 s each)
def test_each_task_gets_its_tf_config_and_its_lines_reach_the_log_by_role(tmp_path, caplog):
    tasks = [Task("worker", 0), Task("worker", 1)]
    job = _job(tmp_path, tasks, {})
    with caplog.at_level(logging.INFO, logger="tfpipe"):
        outcome = launchers.LocalLauncher().run(job)
    assert outcome.restarts == 0
    lines = [r.getMessage() for r in caplog.records]
    assert "[worker:0] hello from worker:0, start 0" in lines and "[worker:1] hello from worker:1, start 0" in lines
    cfg0, cfg1 = (_starts(job, f"worker:{i}")[0]["tf_config"] for i in range(2))
    assert cfg0["cluster"] == cfg1["cluster"] and cfg0["task"] == {"type": "worker", "index": 0}
    addresses = cfg0["cluster"]["worker"]
    assert len(set(addresses)) == 2 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert [t.port for t in outcome.tasks] == [int(a.rsplit(":", 1)[1]) for a in addresses]


@pytest.mark.slow  # real processes (small Python programs, ~1 s each)
def test_hosts_and_fixed_ports_come_from_the_config(tmp_path):
    tasks = [Task("chief", 0, "10.1.2.3", 2222), Task("worker", 0, "worker-0.example", None)]
    job = _job(tmp_path, tasks, {"chief:0": "exit0"}, finishers=lambda t: True)
    launchers.LocalLauncher().run(job)
    cluster = _starts(job, "chief:0")[0]["tf_config"]["cluster"]
    assert cluster["chief"] == ["10.1.2.3:2222"]
    assert cluster["worker"][0].startswith("worker-0.example:") and cluster["worker"][0] != "worker-0.example:None"


@pytest.mark.slow  # real processes (small Python programs, ~1 s each)
def test_a_dead_task_restarts_the_cluster_which_then_finishes(tmp_path, caplog):
    tasks = [Task("chief", 0), Task("worker", 0), Task("ps", 0)]
    behaviour = {
        "worker:0#0": "sigkill_later",
        "ps:0": "serve",
        "worker:0": "serve",
        "chief:0": "serve",
        "chief:0#1": "exit0_later",
    }
    job = _job(tmp_path, tasks, behaviour, finishers=lambda t: t.role == "chief")
    with caplog.at_level(logging.INFO, logger="tfpipe"):
        outcome = launchers.LocalLauncher().run(job)
    assert outcome.restarts == 1
    # The whole cluster started again (a new chief, ps and worker), each time on fresh ports.
    for name in ("chief:0", "worker:0", "ps:0"):
        assert len(_starts(job, name)) == 2, name
    ports = [s["tf_config"]["cluster"]["ps"] for s in _starts(job, "chief:0")]
    assert ports[0] != ports[1]
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warning == (
        "trainer: task worker:0 killed by SIGKILL; restarting the cluster (restart 1 of 2): "
        "training resumes from the checkpoint at step 7"
    )
    # Servers are stopped once the chief is done: none of the processes is left.
    assert all(_gone(s["pid"]) for name in ("chief:0", "worker:0", "ps:0") for s in _starts(job, name))


@pytest.mark.slow  # real processes (small Python programs, ~1 s each)
def test_restarts_run_out_in_one_line(tmp_path):
    job = _job(tmp_path, [Task("worker", 0), Task("worker", 1)], {"worker:1": "sigkill", "worker:0": "serve"}, 1)
    with pytest.raises(ClusterError) as e:
        launchers.LocalLauncher().run(job)
    assert str(e.value) == (
        "trainer: task worker:1 killed by SIGKILL and the cluster has no restarts left (max_restarts: 1); "
        "the checkpoint at step 7 is kept: run again to resume, or raise max_restarts"
    )
    assert len(_starts(job, "worker:1")) == 2  # the first start and one restart
    assert all(_gone(s["pid"]) for s in _starts(job, "worker:0"))


@pytest.mark.slow  # real processes (small Python programs, ~1 s each)
def test_a_task_s_user_error_is_not_restarted(tmp_path):
    job = _job(tmp_path, [Task("worker", 0), Task("worker", 1)], {"worker:0": "user_error", "worker:1": "serve"})
    with pytest.raises(ConfigError, match=r"^label 'survived' is not among the features$"):
        launchers.LocalLauncher().run(job)
    assert len(_starts(job, "worker:0")) == 1


@pytest.mark.slow  # real processes (small Python programs, ~1 s each)
def test_a_stop_reaches_every_task_training_tasks_first(tmp_path):
    tasks = [Task("chief", 0), Task("worker", 0), Task("ps", 0)]
    behaviour = {"chief:0": "train_until_sigterm", "worker:0": "serve", "ps:0": "serve"}
    job = _job(tmp_path, tasks, behaviour, finishers=lambda t: t.role == "chief")
    asked = threading.Timer(3.0, stop_lib.request, args=("SIGTERM",))
    asked.start()
    started = time.monotonic()
    try:
        with pytest.raises(Stopped, match=r"training stopped by SIGTERM: the cluster's 3 tasks are stopped; the ch"):
            launchers.LocalLauncher().run(job)
    finally:
        asked.cancel()
        stop_lib.clear()
    assert time.monotonic() - started < 3.0 + 10
    assert (Path(job.workdir) / "chief:0-got-sigterm").exists()  # it could write its checkpoint
    assert all(_gone(_starts(job, name)[0]["pid"]) for name in ("chief:0", "worker:0", "ps:0"))


@pytest.mark.slow  # real processes (small Python programs, ~1 s each)
def test_a_network_namespace_that_is_not_there_is_one_line_before_any_task_starts(tmp_path):
    # Checked when the cluster starts, not when the file is read: `tfpipe lineage` needs no namespace.
    job = _job(tmp_path, [Task("worker", 0), Task("worker", 1, "10.0.0.2", None, "tfpipe-no-such-ns")], {})
    with pytest.raises(ConfigError, match=r"^worker:1: network namespace 'tfpipe-no-such-ns' does not exist \("):
        launchers.LocalLauncher().run(job)
    assert _starts(job, "worker:0") == []


@pytest.mark.slow  # real processes (small Python programs, ~1 s each)
def test_a_task_that_cannot_start_stops_those_started_before_it(tmp_path):
    job = _job(tmp_path, [Task("worker", 0), Task("worker", 1)], {"worker:0": "serve"})
    command = job.command
    job.command = lambda task: command(task) if task.index == 0 else [str(tmp_path / "no-such-program")]
    with pytest.raises(ConfigError, match=r"^trainer: task worker:1 cannot start: .*no-such-program: No such file"):
        launchers.LocalLauncher().run(job)
    # worker:0 was started (it may have been stopped before it noted so) and is gone: no process runs the program.
    program = str(tmp_path / "task.py").encode()
    running = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if program in proc.joinpath("cmdline").read_bytes() and not _gone(int(proc.name)):
                running.append(proc.name)
        except OSError:
            pass
    assert running == []


def _config(tmp_path: Path, **trainer) -> Path:
    config = tiny_titanic(tmp_path / "p")
    doc = yaml.safe_load(config.read_text())
    doc["trainer"].update(trainer)
    config.write_text(yaml.safe_dump(doc))
    return config


@pytest.mark.parametrize(
    "cluster, message",
    [
        (
            {"workers": 2, "wrkers": 3},
            "trainer.cluster.wrkers: unknown key (did you mean 'workers'?); the keys here are workers, ps, "
            "evaluator, max_restarts, launcher, host, hosts, kubernetes",
        ),
        ({"ps": 1}, "trainer.cluster.workers: required, but not given"),
        ({"workers": 2, "launcher": "kubernetes"}, "launcher kubernetes needs a `kubernetes:` section with at least"),
        ({"workers": 2, "launcher": "slurm"}, "trainer.cluster.launcher: Input should be 'local' or 'kubernetes'"),
        (
            {"workers": 2, "hosts": {"worker": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}},
            "hosts.worker lists 3 place(s), but the cluster has 2 worker task(s) (worker:2)",
        ),
        ({"workers": 3}, "trainer: batch_size 32 does not split evenly over the cluster's 3 workers"),
    ],
)
def test_the_cluster_section_is_checked_before_anything_runs(tmp_path, cluster, message):
    with pytest.raises(ConfigFileError) as e:
        load_config(_config(tmp_path, cluster=cluster))
    assert message in str(e.value)
    assert "Traceback" not in str(e.value)


def test_a_valid_cluster_section_loads_with_its_defaults(tmp_path):
    node = load_config(_config(tmp_path, cluster={"workers": 2, "ps": 1, "evaluator": True})).node("trainer")
    cluster = node.params.cluster
    assert (cluster.max_restarts, cluster.launcher, cluster.host) == (2, "local", "127.0.0.1")
    assert [t.name for t in launchers.tasks_of(cluster)] == ["chief:0", "worker:0", "worker:1", "ps:0", "evaluator:0"]
    # Where the tasks run and how often they may restart do not change the model: not in the cache key.
    moved = load_config(
        _config(tmp_path, cluster={"workers": 2, "ps": 1, "evaluator": True, "max_restarts": 5, "host": "::1"})
    ).node("trainer")
    assert node.component.canonical(node.params) == moved.component.canonical(moved.params)
    other = load_config(_config(tmp_path, cluster={"workers": 2})).node("trainer")
    assert node.component.canonical(node.params) != other.component.canonical(other.params)
