"""A fully cached `tfpipe run`, timed whole as a user waits for it, against a bare `python -c pass`.

    uv run python bench/cached_run.py [--repeat 5] [--steps 100]

Starts `prefect server start` on a free port (its own PREFECT_HOME), runs the Titanic example once into
a temporary folder (everything computed), then times `tfpipe run` again `--repeat` times (every step
CACHED), each a fresh process, and checks that none of them loaded TensorFlow or Beam. Also times one
cached run against Prefect's temporary server (no PREFECT_API_URL), which a run without a server gets.
Target: median cached run <= 3 s against a running server.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _probe import PROBE  # noqa: E402
from _report import emit  # noqa: E402


def _timed(cmd: list, env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return took, done.stdout


def _server(home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_API_URL=url, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5):
                return proc, url
        except OSError:
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("the Prefect server did not start in 180 s")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="training steps of the first (computing) run")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_cached_"))
    try:
        example = work / "titanic"
        shutil.copytree(REPO / "examples" / "titanic", example)
        config = example / "pipeline.yaml"
        doc = yaml.safe_load(config.read_text())
        doc["trainer"]["train_steps"] = args.steps
        doc["root"] = str(work / "root")
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        home = work / "prefect"
        home.mkdir()
        server, url = _server(home)
        try:
            env = dict(
                os.environ,
                PREFECT_HOME=str(home),
                PREFECT_API_URL=url,
                TF_CPP_MIN_LOG_LEVEL="2",
                PREFECT_SERVER_ANALYTICS_ENABLED="false",
            )
            tfpipe = shutil.which("tfpipe", path=str(Path(sys.executable).parent)) or "tfpipe"
            first, _ = _timed([tfpipe, "run", str(config)], env)
            cached = [_timed([tfpipe, "run", str(config)], env)[0] for _ in range(args.repeat)]
            _, probe = _timed([sys.executable, "-c", PROBE, str(config)], env)
            loaded = probe.strip().splitlines()[-1].removeprefix("loaded:").strip()
            temporary_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
            temporary, _ = _timed([tfpipe, "run", str(config)], temporary_env)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        floor = statistics.median(_timed([sys.executable, "-c", "pass"], env)[0] for _ in range(args.repeat))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = statistics.median(cached)
    doc = {
        "benchmark": "cached_run",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "first_run_seconds": round(first, 2),
        "cached_run_seconds": [round(t, 2) for t in cached],
        "cached_run_median_seconds": round(median, 2),
        "python_bare_seconds": round(floor, 3),
        "cached_over_python": round(median / floor, 1),
        "cached_run_temporary_server_seconds": round(temporary, 2),
        "heavy_modules_loaded_by_a_cached_run": loaded or "none",
        "target_seconds": 3.0,
    }
    return emit(doc, "cached-run", write=not args.no_write)


if __name__ == "__main__":
    main()
