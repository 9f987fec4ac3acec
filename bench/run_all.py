"""Every benchmark, one command, one JSON document: bench/results/<date>.json.

    uv run python bench/run_all.py [--scale-rows 1000000,10000000] [--quick]

Runs startup, train_throughput, cluster_throughput, pipeline_overhead, cached_run, scale and statistics_scale
(each in its own process, so one's memory and threads do not colour another's), and gathers their documents
with a summary of each ratio against its target. --quick: fewer steps and a 100k-row scale run, for a smoke test (about 5 min).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(script: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(HERE / script), "--no-write", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    if done.returncode != 0:
        raise SystemExit(f"{script} failed:\n{done.stderr[-4000:]}")
    start = done.stdout.index("{")
    return json.loads(done.stdout[start:])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale-rows", default="1000000,10000000")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    steps = "500" if args.quick else "2000"
    parts = {
        "startup": _run("startup.py"),
        "training": _run("train_throughput.py", "--steps", steps),
        "cluster_training": _run("cluster_throughput.py", "--steps", "1000" if args.quick else "2000"),
        "pipeline": _run("pipeline_overhead.py"),
        "cached_run": _run("cached_run.py"),
        "scale": _run("scale.py", "--rows", "100000" if args.quick else args.scale_rows, "--steps", steps),
        "statistics_scale": _run("statistics_scale.py", "--rows", "100000,300000" if args.quick else args.scale_rows),
    }
    train, pipe, scale, start = parts["training"], parts["pipeline"], parts["scale"], parts["startup"]
    summary = {
        "startup_tfpipe_help_seconds": [start["tfpipe_help_seconds"], "target <= 0.5"],
        "pipeline_max_overhead_per_component_seconds": [
            max(c["overhead_seconds"] for c in pipe["components"].values()),
            "target <= 1.0",
        ],
        "pipeline_cached_rerun_seconds": [pipe["cached_run_seconds"], "target <= 10"],
        "cached_tfpipe_run_seconds": [
            parts["cached_run"]["cached_run_median_seconds"],
            f"target <= 3 (python -c pass: {parts['cached_run']['python_bare_seconds']} s)",
        ],
        "scale_peak_rss_ratio": [scale["peak_rss_ratio_largest_over_smallest"], "target <= 1.5"],
        "scale_ingest_plus_transform_rows_per_s": [
            scale["sizes"][-1]["ingest_plus_transform_rows_per_s"],
            "target >= 25000",
        ],
        "statistics_over_ingest": [
            parts["statistics_scale"]["statistics_over_ingest_at_largest"],
            "target <= 0.30",
        ],
        "statistics_peak_rss_ratio": [
            parts["statistics_scale"]["statistics_peak_rss_ratio_largest_over_smallest"],
            "target <= 1.2",
        ],
        "scale_transform_over_beam_transform_dataset": [
            scale["transform_in_memory_over_beam_apply"],
            "baseline: tf.Transform's TransformDataset in Beam = 1.0",
        ],
    }
    summary["cluster_2_workers_over_1_process_steady"] = [
        parts["cluster_training"]["steady_ratio_2_workers_over_1"],
        "no target: on 2 cores the workers share them (what_2_cores_allow)",
    ]
    for model, figures in train.get("models", {}).items():
        summary[f"train_{model}_over_keras_fit"] = [figures.get("ratio_vs_keras_fit"), "target >= 1.0"]
    doc = {
        "benchmark": "all",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "summary": summary,
        **parts,
    }
    text = json.dumps(doc, indent=2)
    print(text)
    (HERE / "results" / f"{dt.date.today().isoformat()}.json").write_text(text + "\n")
    return doc


if __name__ == "__main__":
    main()
