"""A real Prefect server for the tests that need one (deployments, several pipelines sharing a server)."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, url):
        self.url = url

    def __call__(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(6):
            request = urllib.request.Request(
                self.url + path,
                data=data,
                method="GET" if body is None else "POST",
                headers={"content-type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.loads(response.read() or "null")
            except urllib.error.HTTPError as e:
                # 503: the server's SQLite database was busy; Prefect's own client retries these too.
                if e.code != 503 or attempt == 5:
                    raise
                time.sleep(2**attempt)

    def wait(self, flow_run_id, timeout=600) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            run = self(f"/flow_runs/{flow_run_id}")
            if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(2)
        raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout} s")

    def task_states(self, flow_run_id) -> dict:
        runs = self("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        return {t["name"]: t["state"]["name"] for t in runs}


@contextlib.contextmanager
def prefect_server_at(home: Path, **settings: str):
    """`prefect server start` on a free loopback port, with its own home and these extra settings (e.g.
    PREFECT_API_DATABASE_CONNECTION_URL for a server on PostgreSQL); its UI talks to that port. Yields
    {"api", "env" (what a client or worker of it needs), "home", "ui"}; stops the server after the block."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_API_URL=url,
        PREFECT_UI_API_URL=url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        TF_CPP_MIN_LOG_LEVEL="2",
        **settings,
    )
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        api = Api(url)
        deadline = time.time() + 180
        while True:
            try:
                if api("/health"):
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, (home / "server.log").read_text()[-3000:]
            time.sleep(1)
        yield {"api": api, "env": env, "home": home, "ui": f"http://127.0.0.1:{port}"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A Prefect server (SQLite, Prefect's default) shared by the session's deployment tests."""
    with prefect_server_at(tmp_path_factory.mktemp("prefect_server")) as server:
        yield server
