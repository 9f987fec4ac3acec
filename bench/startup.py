"""Start-up: `tfpipe --help` against a bare Python start, median of several runs (target: under 0.5 s).

    uv run python bench/startup.py [--repeat 7]

The help path must not import TensorFlow, Beam or Prefect; this measures that it stays so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import emit  # noqa: E402


def _median_seconds(cmd: list, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args(argv)
    tfpipe = shutil.which("tfpipe", path=str(Path(sys.executable).parent)) or "tfpipe"
    python = _median_seconds([sys.executable, "-c", "pass"], args.repeat)
    help_s = _median_seconds([tfpipe, "--help"], args.repeat)
    doc = {
        "benchmark": "startup",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "tfpipe_help_seconds": round(help_s, 3),
        "python_bare_seconds": round(python, 3),
        "tfpipe_help_over_python": round(help_s / python, 2),
        "target_seconds": 0.5,
    }
    return emit(doc, "startup", write=not args.no_write)


if __name__ == "__main__":
    main()
