"""A shared MLMD store whose password lives in a Prefect Secret block: MariaDB checks it for real."""

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from components.errors import ConfigError
from pipeline import flow  # noqa: F401  Prefect sets up its log handlers now, on the session's streams
from pipeline.flow import pipeline_flow
from pipeline.metadata import PASSWORD_ENV, MetadataStore
from tests.conftest import mariadb as _mariadb
from tests.pipeline.test_reliability import _small_titanic

USER = "tfpipe_secret"


@pytest.fixture
def password(mysql_db):
    """A MariaDB user that can only log in with a fresh password, on the module's own database."""
    pw = f"pw-{uuid.uuid4().hex}"
    for host in ("%", "localhost"):
        _mariadb(
            f"CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{pw}'; "
            f"ALTER USER '{USER}'@'{host}' IDENTIFIED BY '{pw}'; "
            f"GRANT ALL PRIVILEGES ON `{mysql_db}`.* TO '{USER}'@'{host}';"
        )
    saved = os.environ.pop(PASSWORD_ENV, None)
    yield pw
    os.environ.pop(PASSWORD_ENV, None)
    if saved is not None:
        os.environ[PASSWORD_ENV] = saved


def test_store_password_from_a_prefect_secret_block(tmp_path, password, mysql_db):
    from prefect.blocks.system import Secret

    block = f"mlmd-{uuid.uuid4().hex[:8]}"
    url = f"mysql://{USER}@127.0.0.1:3306/{mysql_db}"
    config = _small_titanic(tmp_path, rows=40)
    doc = yaml.safe_load(config.read_text())
    doc.update(metadata=url, metadata_secret=block)
    config.write_text(yaml.safe_dump(doc))

    with pytest.raises(ConfigError, match=f"no Prefect Secret block '{block}'.*Secret\\(value=...\\).save"):
        pipeline_flow(str(config), components=["ingest"])
    with pytest.raises(ConfigError, match="cannot open the metadata store"):
        MetadataStore(url)  # the server really wants the password

    Secret(value=password).save(block)
    result = pipeline_flow(str(config), components=["ingest"])
    assert result["components"]["ingest"]["state"] == "COMPLETE"
    assert password not in result["metadata"]

    store = MetadataStore(url)  # the block's password is in this process's environment now
    [execution] = store.run_executions(store.find_run(result["run_id"]))
    assert execution["state"] == "COMPLETE"
    everything = [*store.store.get_executions(), *store.store.get_artifacts(), *store.store.get_contexts()]
    assert not [r for r in everything if password in str(r)]


@pytest.mark.quiet
def test_a_store_that_never_answers_or_refuses_is_named_within_the_timeout():
    """A listener that accepts and stays silent, a closed port, an unknown host, a user the server does not
    know: each is one ConfigError naming the host and the cause, in bounded time."""
    import socket
    import threading

    from components.errors import ConfigError

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(silent.accept()) for _ in range(4)], daemon=True).start()
    port = silent.getsockname()[1]
    for scheme in ("postgresql", "mysql"):
        started = time.time()
        with pytest.raises(ConfigError, match=rf"127.0.0.1:{port} accepted the connection but did not answer in 1 s"):
            MetadataStore(f"{scheme}://u@127.0.0.1:{port}/db", timeout=1)
        assert time.time() - started < 5
    from pipeline.cli import main

    config = _small_titanic(Path(tempfile.mkdtemp()))
    config.write_text(config.read_text() + "metadata_timeout: 1\n")
    started = time.time()
    assert main(["run", str(config), "--metadata", f"postgresql://u@127.0.0.1:{port}/db"]) == 1
    assert time.time() - started < 5
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    free = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ConfigError, match=rf"connection refused: nothing listens on 127.0.0.1:{free}"):
        MetadataStore(f"postgresql://u@127.0.0.1:{free}/db", timeout=1)
    with pytest.raises(ConfigError, match=r"unknown host 'no-such-host.invalid'"):
        MetadataStore("mysql://u@no-such-host.invalid/db", timeout=1)
    with pytest.raises(
        ConfigError,
        match=r'PostgreSQL at 127.0.0.1:5432 refused the connection: role "nobody_here" '
        r"does not exist",
    ):
        MetadataStore("postgresql://nobody_here@127.0.0.1:5432/test")
    with pytest.raises(
        ConfigError,
        match=r"the server refused user 'root' for database 'test': a wrong or missing "
        r"password",
    ):
        MetadataStore("mysql://root:wrong@127.0.0.1:3306/test")


# A TCP proxy to PostgreSQL that stops forwarding, both ways, once its stall file exists: a server that
# answered the login and then went silent. A process of its own: MLMD holds the GIL while it waits.
_PROXY = r"""
import os, select, socket, sys, threading, time
listen, stall = socket.create_server(("127.0.0.1", 0)), sys.argv[1]
print(listen.getsockname()[1], flush=True)
def pump(a, b):
    while True:
        if os.path.exists(stall):
            time.sleep(0.1)
        elif select.select([a], [], [], 0.1)[0]:
            data = a.recv(65536)
            if not data:
                return b.close()
            b.sendall(data)
while True:
    client, _ = listen.accept()
    server = socket.create_connection(("127.0.0.1", 5432))
    for pair in ((client, server), (server, client)):
        threading.Thread(target=pump, args=pair, daemon=True).start()
"""


@pytest.mark.slow  # a real `tfpipe run`
@pytest.mark.quiet
def test_a_store_that_goes_silent_mid_run_fails_the_run_within_the_query_timeout(tmp_path, pg_url):
    import sys

    from tests.pipeline.test_reliability import _tfpipe

    db = pg_url.rsplit("/", 1)[1]
    stall = tmp_path / "stall"
    proxy = subprocess.Popen([sys.executable, "-c", _PROXY, str(stall)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proxy.stdout.readline())
        config = _small_titanic(tmp_path, rows=40)
        doc = yaml.safe_load(config.read_text())
        doc.update(
            name=f"silent{uuid.uuid4().hex[:8]}",
            metadata_query_timeout=3,
            metadata=f"postgresql://postgres@127.0.0.1:{port}/{db}",
        )
        config.write_text(yaml.safe_dump(doc))
        log = tmp_path / "run.log"
        run = _tfpipe(log, "run", "--no-cache", str(config))
        deadline = time.time() + 300
        while "ingest: running" not in log.read_text() and run.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        stall.touch()  # ingest's outputs are being written; recording them will meet a silent server
        silent = time.time()
        run.wait(timeout=120)
        text = log.read_text()
        assert run.returncode == 1, text[-3000:]
        assert time.time() - silent < 60
        assert (
            f"tfpipe: error: the metadata store postgresql://postgres@127.0.0.1:{port}/{db} did not answer " in text
        ), text[-3000:]
        assert "within 3 s" in text and "Traceback" not in text
    finally:
        proxy.kill()
    # Nothing published without its record: ingest's outputs are not at their final URIs.
    store = MetadataStore(pg_url)
    [run_name] = [r["run"] for r in store.runs(doc["name"])]
    [execution] = store.run_executions(run_name)
    assert execution["component"] == "ingest" and execution["state"] != "COMPLETE"
    for artifact in store.outputs_of(execution["id"]).values():
        assert not Path(artifact.uri).exists(), artifact.uri


@pytest.mark.quiet
def test_the_deadline_survives_its_watcher_being_killed(tmp_path, pg_url):
    """The watcher process that bounds store calls can be killed (the OOM killer, a stray kill -9): the next
    call starts another, and a silent server is still cut off in time, as StoreUnavailable."""
    import signal
    import sys

    from components.errors import StoreUnavailable

    db = pg_url.rsplit("/", 1)[1]
    stall = tmp_path / "stall"
    proxy = subprocess.Popen([sys.executable, "-c", _PROXY, str(stall)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proxy.stdout.readline())
        store = MetadataStore(f"postgresql://postgres@127.0.0.1:{port}/{db}", 5, 2)
        watchers = subprocess.run(
            ["pgrep", "-P", str(os.getpid()), "-f", "import select, socket"], capture_output=True, text=True
        ).stdout.split()
        assert watchers
        for pid in watchers:
            os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2)
        assert store.store.get_artifact_types()  # a new watcher, the call goes through
        stall.touch()
        started = time.time()
        with pytest.raises(StoreUnavailable, match=rf"127.0.0.1:{port}/{db} did not answer get_artifacts within 2 s"):
            store.store.get_artifacts()
        assert time.time() - started < 10
    finally:
        proxy.kill()


_OPEN_AT = """
import sys
from pipeline.metadata import MetadataStore
print("ready", flush=True)
sys.stdin.readline()  # the go, sent to all at once
store = MetadataStore(sys.argv[1])
store.start_run("fresh", sys.argv[2])
print("opened")
"""


def test_runs_that_open_a_new_postgresql_store_at_the_same_moment_all_open_it():
    """Scheduled runs that start together on a store no run has used yet each create MLMD's tables and types;
    one process wins and the others find its tables (the team-scale test had one of four runs fail on this,
    with a message blaming the password)."""
    from tests.conftest import _psql

    name = f"tfpipe_fresh_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN_AT, url, f"run{i}"],
                cwd=Path(__file__).resolve().parents[2],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        # All four past their imports, then at once (not a fixed wait: imports take 2 s here on a quiet day)
        assert [r.stdout.readline().strip() for r in runs] == ["ready"] * 4, [r.stderr.read()[-1500:] for r in runs]
        for r in runs:
            r.stdin.write("go\n")
            r.stdin.flush()
        done = [(r.communicate(timeout=300), r.returncode) for r in runs]
        assert all(code == 0 and out.strip() == "opened" for (out, _), code in done), [
            err[-1500:] for (_, err), _ in done
        ]
        assert len(MetadataStore(url).runs("fresh")) == 4
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
