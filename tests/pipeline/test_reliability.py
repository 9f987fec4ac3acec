"""A pipeline killed with SIGKILL mid-training: the next run marks it FAILED and resumes from its checkpoint.
Credentials stay out of what tfpipe prints and records."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from pipeline.metadata import MetadataStore, connection_config, redact
from tests.conftest import copy_of

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _tfpipe(log: Path, *args, env=None):
    # Its own session: killing the group also kills the Prefect server it started, as a lost machine would.
    env = dict(env or os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


@pytest.mark.slow
def test_killed_training_is_marked_failed_and_the_rerun_resumes(tmp_path, prefect_server):
    """Both runs talk to the session's Prefect server (as a team's runs would) instead of each starting
    Prefect's temporary one: what is killed is the run's process group, and what is checked is MLMD, the
    checkpoints and the resumed model, all as before. (The temporary server's own fate under kills and
    signals is what the SIGTERM/SIGINT and killed-server tests below cover.)"""
    doc = yaml.safe_load((EXAMPLES / "titanic" / "pipeline.yaml").read_text())
    doc["ingest"]["input"] = str(EXAMPLES / "titanic" / "data" / "train.csv")
    for section in ("transform", "trainer"):
        doc[section]["module"] = str(EXAMPLES / "titanic" / doc[section]["module"])
    doc["trainer"].update(train_steps=2000, checkpoint_steps=200)
    doc["root"] = str(tmp_path / "root")
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(doc))

    proc = _tfpipe(tmp_path / "first.log", "run", str(config), env=prefect_server["env"])
    deadline = time.time() + 300
    staging = tmp_path / "root" / "trainer" / "model_run"
    # The `checkpoint` state file, not a checkpoint's .index: the index is written first, and a kill
    # between the two leaves a checkpoint nothing names, so the rerun would rightly start from step 0.
    while time.time() < deadline and not list(staging.glob("*.staging/checkpoint")):
        time.sleep(0.05)
    assert list(staging.glob("*.staging/checkpoint")), "training never checkpointed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    [dead] = store.executions("trainer")
    assert dead.state == "RUNNING"  # nobody could record the kill yet

    rerun = _tfpipe(tmp_path / "rerun.log", "run", str(config), env=prefect_server["env"])
    try:
        rerun.wait(timeout=600)
    finally:
        os.killpg(rerun.pid, signal.SIGKILL) if rerun.poll() is None else None
    err = (tmp_path / "rerun.log").read_text()
    assert rerun.returncode == 0, err[-3000:]
    [dead, done] = store.executions("trainer")
    assert dead.state == "FAILED"
    assert "died" in dead.properties.get("error", "")
    assert done.state == "COMPLETE"
    assert {a.state for a in store.outputs_of(dead.id).values()} == {"ABANDONED"}
    assert not any(Path(a.uri).exists() for a in store.outputs_of(dead.id).values())
    assert "resuming from" in err and "restored" in err
    assert [e.state for e in store.executions("transform")] == ["COMPLETE", "CACHED"]
    metrics = store.latest_live(doc["name"], "evaluator")["evaluation"].properties
    assert metrics["metric:accuracy"] >= 0.78
    run = store.latest_live(doc["name"], "trainer")["model_run"]
    assert run.properties["global_step"] == 2000.0


def test_credentials_never_shown():
    url = "postgresql://tfpipe:s3cret@db.example:5432/mlmd"
    assert redact(url) == "postgresql://tfpipe:***@db.example:5432/mlmd"
    assert "s3cret" not in redact(url)
    os.environ["TFPIPE_METADATA_PASSWORD"] = "fromenv"
    try:
        assert connection_config("postgresql://tfpipe@db.example/mlmd").postgresql.password == "fromenv"
        assert connection_config("mysql://root@db.example/mlmd").mysql.password == "fromenv"
    finally:
        del os.environ["TFPIPE_METADATA_PASSWORD"]


def _small_titanic(tmp_path, rows=120, **trainer) -> Path:
    """The Titanic example on its first rows, into tmp_path/root: a whole pipeline in well under a minute."""
    csv = tmp_path / "titanic.csv"
    csv.write_text("\n".join((EXAMPLES / "titanic" / "data" / "train.csv").read_text().splitlines()[: rows + 1]) + "\n")
    doc = yaml.safe_load((EXAMPLES / "titanic" / "pipeline.yaml").read_text())
    doc["ingest"]["input"] = str(csv)
    for section in ("transform", "trainer"):
        doc[section]["module"] = str(EXAMPLES / "titanic" / doc[section]["module"])
    doc["trainer"].update(trainer)
    doc["evaluator"] = {"thresholds": {"accuracy": {"lower": 0.0}}}  # bless whatever a tiny run learns
    doc["root"] = str(tmp_path / "root")
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(doc))
    return config


def _finish(proc, log: Path, timeout=600) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


def _state(execution) -> str:
    return execution.state


@pytest.mark.slow
def test_killed_transform_publishes_nothing_and_the_rerun_replaces_it(tmp_path, prefect_server):
    """On the session's Prefect server instead of a temporary one per run (see the killed-training test)."""
    config = _small_titanic(tmp_path, rows=891)
    proc = _tfpipe(tmp_path / "first.log", "run", str(config), env=prefect_server["env"])
    staging = tmp_path / "root" / "transform" / "transformed_examples"
    deadline = time.time() + 300
    while time.time() < deadline and not list(staging.glob("*.staging")):
        time.sleep(0.05)
    time.sleep(3)  # Beam is analyzing and writing by now
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    [dead] = store.executions("transform")
    assert _state(dead) == "RUNNING"
    outputs = store.outputs_of(dead.id)
    assert {a.state for a in outputs.values()} == {"PENDING"}  # never LIVE: nobody may read them
    assert not any(Path(a.uri).exists() for a in outputs.values())

    rerun = _tfpipe(
        tmp_path / "rerun.log", "component", "transform", "--config", str(config), env=prefect_server["env"]
    )
    _finish(rerun, tmp_path / "rerun.log")
    dead, done = store.executions("transform")
    assert _state(dead) == "FAILED" and {a.state for a in store.outputs_of(dead.id).values()} == {"ABANDONED"}
    assert not list(staging.parent.parent.glob("*/*.staging"))  # the dead run's partial output is gone
    assert _state(done) == "COMPLETE"
    new = store.outputs_of(done.id)
    assert {a.state for a in new.values()} == {"LIVE"} and all(Path(a.uri).is_dir() for a in new.values())
    assert store.inputs_of(done.id)["examples"].id == store.inputs_of(dead.id)["examples"].id


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.0, 3.0])
def test_sigterm_during_transform_is_the_same_one_line_stop_whenever_it_lands(tmp_path, prefect_server, after):
    """SIGTERM as Beam starts its analysis, and a few seconds into it: each time exit 143, the one `tfpipe:
    stopped:` line (not an error blamed on the user's code, not Prefect's crash report), no traceback, and
    the transform FAILED as stopped with nothing of it published."""
    config = _small_titanic(tmp_path, rows=891)
    log = tmp_path / "run.log"
    proc = _tfpipe(log, "run", str(config), env=prefect_server["env"])
    deadline = time.time() + 300
    while time.time() < deadline and "transform: analyzing" not in log.read_text():
        time.sleep(0.05)
    time.sleep(after)
    proc.send_signal(signal.SIGTERM)  # to tfpipe alone, as a container runtime does
    try:
        proc.wait(timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    text = log.read_text()
    assert proc.returncode == 143, text[-3000:]
    [stop] = [line for line in text.splitlines() if line.startswith("tfpipe: stopped: ")]
    assert stop.startswith("tfpipe: stopped: transform stopped by SIGTERM"), stop
    assert "Traceback" not in text and "Crash detected" not in text and "your code" not in text, text[-3000:]
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    [stopped] = store.executions("transform")
    assert _state(stopped) == "FAILED" and stopped.custom.get("stopped", "") == "SIGTERM"
    assert not [a for a in store.outputs_of(stopped.id).values() if a.state == "LIVE"]
    assert not list((tmp_path / "root" / "transform").glob("*/*"))  # no staging folder, no published output


_SLOW_PUSH = """
import sys
from components.pusher import push
push(sys.argv[1], True, sys.argv[2], sys.argv[3])
"""


def test_killed_pusher_leaves_no_model_version_and_the_next_push_is_whole(tmp_path):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    for i in range(20000):  # enough files that the copy takes seconds
        (model / "variables" / f"shard-{i}").write_bytes(b"w" * 64)
    base, out = tmp_path / "serving", tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_PUSH, str(model), str(base), str(out)], cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and not list(base.glob(".tmp-*/variables/shard-1*")):
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    [half] = list(base.glob(".tmp-*"))
    assert 0 < len(list(half.rglob("shard-*"))) < 20000, "the kill did not land mid-copy"
    assert [p for p in base.iterdir() if p.name.isdigit()] == []  # a server sees no version at all

    from components.pusher import push

    doc = push(str(model), True, str(base), str(out))
    assert [p.name for p in base.iterdir()] == [str(doc["version"])]  # whole, and the half-copy cleaned away
    assert len(list((base / str(doc["version"]) / "variables").iterdir())) == 20000


@pytest.mark.slow  # a real `tfpipe component` run through Prefect
def test_passwords_never_reach_logs_prefect_or_mlmd(tmp_path, pg_url, prefect_server):
    """Against the session's Prefect server (not a temporary one of its own): the password is this test's alone,
    so the server's whole home (its database, logs and task results) is what is searched for it."""
    password = f"Pw-{os.getpid()}-{uuid.uuid4().hex[:8]}-never-shown"
    config = _small_titanic(tmp_path, rows=60)
    prefect_home = prefect_server["home"]
    env = dict(prefect_server["env"], TF_CPP_MIN_LOG_LEVEL="2")
    url = pg_url.replace("postgres@", f"postgres:{password}@")  # trust auth: any password is accepted
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "component", "ingest", "--config", str(config), "--metadata", url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "postgres:***@" in done.stdout or "postgres@" in done.stdout
    assert password not in done.stdout + done.stderr
    # Prefect's database (flow parameters, logs, task results) and every file the run wrote
    searched = 0
    for f in [*prefect_home.rglob("*"), *(tmp_path / "root").rglob("*")]:
        try:
            assert password.encode() not in f.read_bytes(), f
            searched += 1
        except (IsADirectoryError, FileNotFoundError):  # a folder, or a journal the live server just removed
            pass
    assert searched > 3
    store = MetadataStore(pg_url)
    name = yaml.safe_load(config.read_text())["name"]
    mine = [e for e in store.executions("ingest") if e.properties.get("pipeline", "") == name]
    assert mine
    records = [*mine, *store.store.get_artifacts(), *store.store.get_contexts()]
    assert not [r for r in records if password in str(r)]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_four_pipelines_at_once_lose_no_record(tmp_path, backend, prefect_server, pg_url):
    config = _small_titanic(tmp_path, rows=80, train_steps=20)
    name = f"conc{os.getpid()}{backend}{int(time.time())}"
    config.write_text(config.read_text().replace("name: titanic", f"name: {name}"))
    url = str(tmp_path / "root" / "metadata.sqlite") if backend == "sqlite" else pg_url
    if backend == "postgresql":
        # The team's store exists before its pipelines run (the module's database is new: four first uses at
        # once race to create MLMD's tables, which is not what this test is about).
        MetadataStore(url)
    # One Prefect server for the four, as a team would have.
    procs = [
        _tfpipe(
            tmp_path / f"run{i}.log", "run", str(config), "--metadata", url, "--no-cache", env=prefect_server["env"]
        )
        for i in range(4)
    ]
    for i, proc in enumerate(procs):
        _finish(proc, tmp_path / f"run{i}.log", timeout=900)
    store = MetadataStore(url)
    runs = store.runs(name)
    assert len(runs) == 4
    nodes = load_config(config).nodes  # the shipped example's instances (with its data validation)
    assert all([(c, s) for c, s, _ in run["executions"]] == [(c, "COMPLETE") for c in nodes] for run in runs)
    mine = [e for e in store.executions() if e.properties.get("pipeline", "") == name]
    assert len(mine) == 4 * len(nodes) and {_state(e) for e in mine} == {"COMPLETE"}
    outputs = [a for e in mine for a in store.outputs_of(e.id).values()]
    made = 4 * sum(len(n.component.outputs) for n in nodes.values())
    assert len(outputs) == made and {a.state for a in outputs} == {"LIVE"}
    assert len({a.uri for a in outputs}) == made and all(Path(a.uri).is_dir() for a in outputs)
    # Every wired input event of every execution; besides them, only what a resolver found (another run's
    # push, as a baseline, when one finished first: the four race).
    inputs = {e.id: store.inputs_of(e.id) for e in mine}
    for e in mine:
        wired = set(nodes[e.component].wiring)
        resolved = {n for n, s in nodes[e.component].component.inputs.items() if s.resolver}
        assert wired <= set(inputs[e.id]) <= wired | resolved, (e.component, sorted(inputs[e.id]))
    # The four train the same model (same data and seed): a push that finds it in serving adds no version, so
    # there are 1 to 4 versions (pushes that ran at once each made one), and every record names a whole one.
    pushes = [a.properties["pushed_destination"] for a in outputs if a.type == "PushedModel"]
    assert len(pushes) == 4 and 1 <= len(set(pushes)) <= 4
    assert all((Path(p) / "saved_model.pb").exists() for p in pushes)


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_sigterm_stops_training_with_a_checkpoint_and_the_rerun_resumes_from_it(
    tmp_path, sig, machine_to_itself, tiny_master
):
    """What Kubernetes and Prefect workers send (SIGTERM, to tfpipe alone), and Ctrl-C (SIGINT, to the
    terminal's whole process group, Prefect's temporary server included): the step stops within seconds,
    recorded as stopped by the signal, with a checkpoint at the step it reached; the next run resumes there.
    From a copy of the tiny pipeline already run once: what runs before the trainer is cached."""
    config = copy_of(tiny_master, tmp_path / "p") / "pipeline.yaml"
    doc = yaml.safe_load(config.read_text())
    doc["trainer"].update(train_steps=200_000, checkpoint_steps=500)
    config.write_text(yaml.safe_dump(doc))
    root = config.parent / "root"
    staging = root / "trainer" / "model_run"
    # The stop is timed: no other test beside it (under xdist). Taken before the run starts, not once it
    # trains: a training of 200k steps waiting for the machine would slow the test it waits for.
    with machine_to_itself():
        proc = _tfpipe(tmp_path / "first.log", "run", str(config))
        deadline = time.time() + 300
        # The `checkpoint` state file, not a checkpoint's .index: the index is written first, and a kill
        # between the two leaves a checkpoint nothing names, so the rerun would rightly start from step 0.
        while time.time() < deadline and not list(staging.glob("*.staging/checkpoint")):
            time.sleep(0.05)
        assert list(staging.glob("*.staging/checkpoint")), "training never checkpointed"
        time.sleep(1)
        sent = time.time()
        if sig == "SIGTERM":
            proc.send_signal(signal.SIGTERM)  # to tfpipe alone, as a container runtime does
        else:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=60)
        finally:
            os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        took = time.time() - sent
    first = (tmp_path / "first.log").read_text()
    assert proc.returncode == 143 and took < 10, (took, first[-3000:])
    assert f"tfpipe: stopped: training stopped by {sig} at step" in first and "Traceback" not in first

    store = MetadataStore(str(root / "metadata.sqlite"))
    [_, stopped] = store.executions("trainer")  # the copied run's, and this one
    assert _state(stopped) == "FAILED" and stopped.custom.get("stopped", "") == sig
    assert f"stopped by {sig}" in stopped.properties.get("error", "")
    step = int(first.split(f"training stopped by {sig} at step ")[1].split(";")[0])
    [left] = staging.glob("*.staging")
    assert (left / f"model.ckpt-{step}.index").is_file()  # a checkpoint at the step reached, not the last due one

    # The same run again, shortened only by what is left: it adopts the checkpoints and resumes.
    proc = _tfpipe(tmp_path / "rerun.log", "run", str(config))
    time.sleep(0)
    rerun = tmp_path / "rerun.log"
    deadline = time.time() + 300
    while time.time() < deadline and "resuming from the checkpoint" not in rerun.read_text():
        time.sleep(0.2)
    text = rerun.read_text()
    assert f"resuming from the checkpoint at step {step}" in text, text[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # 200k steps is not the point; the resume is
    proc.wait()


def _consistent(root: Path, settled: bool = True) -> None:
    """MLMD and the disk agree: every LIVE output whole at its URI, no serving version without a LIVE push
    record, nothing at the URI of an output that is not LIVE; and, once settled, nothing RUNNING (a full
    disk can leave an execution RUNNING when even its FAILED record cannot be written: the next run
    recovers it, as after a crash)."""
    from pipeline.manifest import damage

    store = MetadataStore(str(root / "metadata.sqlite"))
    if settled:
        assert not [e for e in store.executions() if _state(e) == "RUNNING"]
    live = [a for a in store.artifacts() if a.state == "LIVE"]
    for a in live:
        assert Path(a.uri).is_dir(), a.uri
        if a.properties.get("files"):
            assert damage(a.uri, json.loads(a.properties["files"])) is None, a.uri
    recorded = {a.properties.get("pushed_destination") for a in live if a.type == "PushedModel"}
    serving = root / "serving"
    for version in serving.iterdir() if serving.is_dir() else []:
        assert version.name.startswith(".tmp-") or str(version) in recorded, f"{version} has no LIVE record"
    for a in store.artifacts():
        if a.state != "LIVE":
            assert not Path(a.uri).exists(), f"{a.uri} is {a.state} but on disk"


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("room", [1_200_000, 700_000], ids=["at_the_pusher", "in_the_transform"])
def test_a_full_disk_leaves_mlmd_and_the_disk_consistent_and_the_next_run_completes(tmp_path, prefect_server, room):
    """Both runs on the session's Prefect server (whose database is not on the full disk) instead of each
    starting a temporary one; the full disk is the pipeline root's, as before. With room for most of a run,
    the pusher or its record meets the full disk; with less, the transform does (inside Beam and TensorFlow,
    which wrap the error and log their own tracebacks): one line either way."""
    config = _small_titanic(tmp_path, train_steps=100)
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(root)], check=True)
    try:
        filler = root / "filler"
        free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize  # a whole run takes about 1.4 MB
        subprocess.run(["fallocate", "-l", str(free - room), str(filler)], check=True)
        proc = _tfpipe(tmp_path / "full.log", "run", str(config), env=prefect_server["env"])
        proc.wait(timeout=600)
        text = (tmp_path / "full.log").read_text()
        assert proc.returncode == 1, text[-3000:]
        assert "tfpipe: error: no space left on the device" in text, text[-3000:]
        assert "Traceback" not in text, text[-5000:]
        _consistent(root, settled=False)
        filler.unlink()
        text = _finish(
            _tfpipe(tmp_path / "again.log", "run", str(config), env=prefect_server["env"]), tmp_path / "again.log"
        )
        _consistent(root)
        pushed = next(line for line in text.splitlines() if line.startswith("pushed model:")).split()[2]
        assert (Path(pushed) / "saved_model.pb").is_file()
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.slow
@pytest.mark.quiet
def test_a_temporary_prefect_server_killed_mid_run_is_started_again_and_the_run_completes(tmp_path):
    """Prefect's temporary server dies (OOM killer, a stray kill) while training: the run goes on, with its
    summary and exit 0, instead of retrying a dead server for minutes and exiting 1."""
    config = _small_titanic(tmp_path, train_steps=3000, checkpoint_steps=500)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_UI_API_URL")}
    proc = _tfpipe(tmp_path / "run.log", "run", str(config), env=env)
    staging = tmp_path / "root" / "trainer" / "model_run"
    deadline = time.time() + 300
    while time.time() < deadline and not list(staging.glob("*.staging/checkpoint")) and proc.poll() is None:
        time.sleep(0.05)
    servers = [p for p in _children(proc.pid) if "uvicorn" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(servers) == 1, (_children(proc.pid), (tmp_path / "run.log").read_text()[-3000:])
    os.kill(servers[0], signal.SIGKILL)
    started = time.time()
    text = _finish(proc, tmp_path / "run.log", timeout=300)
    assert time.time() - started < 120, text[-3000:]
    assert (
        "Prefect's temporary server on http://127.0.0.1:" in text
        and "exited (code -9) during the run; starting it again" in text
    ), text[-3000:]
    assert "pushed model:" in text and "Traceback" not in text
