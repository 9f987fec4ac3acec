"""The pipeline's own cost: per component, wall time in the flow minus the component's compute, and a cached re-run.

    uv run python bench/pipeline_overhead.py [--config examples/titanic/pipeline.yaml]

Runs the pipeline twice in one process into a fresh root (the first run computes everything, the
second finds every component cached), prints one JSON document and writes it to
bench/results/<date>-pipeline.json. Overhead is what tfpipe and Prefect add around a component:
MLMD records, cache lookup, fingerprints, publishing, task orchestration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from _report import emit  # noqa: E402

from pipeline.flow import pipeline_flow  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "examples/titanic/pipeline.yaml"))
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="bench_pipeline_")
    runs = []
    for label in ("first", "cached"):
        started = time.perf_counter()
        result = pipeline_flow(args.config, overrides={"root": root})
        runs.append((label, time.perf_counter() - started, result))
    first, cached = runs[0][2], runs[1][2]
    doc = {
        "benchmark": "pipeline_overhead",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "config": args.config,
        "first_run_seconds": round(runs[0][1], 2),
        "cached_run_seconds": round(runs[1][1], 2),
        "cached_over_first": round(runs[1][1] / runs[0][1], 3),
        "components": {
            name: {
                "state": info["state"],
                "wall_seconds": round(info["wall_seconds"], 3),
                "compute_seconds": round(info["compute_seconds"], 3),
                "overhead_seconds": round(info["wall_seconds"] - info["compute_seconds"], 3),
                "cached_wall_seconds": round(cached["components"][name]["wall_seconds"], 3),
                "cached_state": cached["components"][name]["state"],
            }
            for name, info in first["components"].items()
        },
    }
    doc["total_overhead_seconds"] = round(sum(c["overhead_seconds"] for c in doc["components"].values()), 3)
    return emit(doc, "pipeline", write=not args.no_write)


if __name__ == "__main__":
    main()
