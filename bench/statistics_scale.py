"""TFDV statistics at scale, beside ingest alone on the same input, with peak memory.

    uv run python bench/statistics_scale.py [--rows 1000000,10000000] [--keep DIR] [--no-write]

For each size the parent generates a Titanic-shaped CSV (bench/scale.py's generator, seeded, not committed;
with --keep, a data.csv already in DIR/rows-N is reused, being the same bytes), then runs, each in a fresh
process so that its peak memory is its own (`resource.getrusage`'s ru_maxrss of that process):
- ingest alone: ingest with its statistics accumulators switched off (SplitAccumulators.add and .save made
  no-ops), i.e. what ingest costs without TFDV statistics;
- ingest: as shipped, which gathers TFDV's statistics per split from the typed columns as it writes them; the
  time inside the accumulators (add and save) is measured in the same process;
- the statistics component on ingest's output, which loads those accumulators and writes the
  DatasetFeatureStatisticsList per split.
Each is timed around the component's own call (imports outside), and reported as rows/s.

Targets: statistics add at most 30 % to ingest's time, and memory is flat in the rows (peak RSS at the largest
size over the smallest <= 1.2; ingest's within about 10 %). `statistics_over_ingest` is (time in the
accumulators + the statistics component) / (ingest's time less the accumulators'), all from the same run;
`end_to_end_over_ingest_alone` compares the separate ingest-alone process (noisier on a shared machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

RATIO_TARGET = 0.30
RSS_BOUND = 1.2


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(step: str, workdir: Path) -> dict:
    """One step in this (fresh) process: {seconds, peak_rss_mb, ...}."""
    if step in ("ingest", "ingest_alone"):
        import tensorflow  # noqa: F401  (ingest writes TFRecords with it: its import is not ingest's time)
        import tfx_bsl.public.tfxio  # noqa: F401  (and encodes with tfx-bsl, which imports Beam: 4-7 s here)

        from components import statistics as tfdv
        from components.ingest import IngestConfig, ingest

        spent = [0.0]

        def timed(method):
            def wrapper(*args, **kwargs):
                t = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    spent[0] += time.perf_counter() - t

            return wrapper

        accumulators: Any = tfdv.SplitAccumulators
        if step == "ingest_alone":
            accumulators.add = accumulators.save = lambda *args, **kwargs: None
        else:
            accumulators.add, accumulators.save = timed(accumulators.add), timed(accumulators.save)
        out: dict[str, Any] = {"rss_before_mb": _peak_mb()}
        t = time.perf_counter()
        result = ingest(
            IngestConfig(input=str(workdir / "data.csv"), label="Survived"),
            workdir / "examples",
            workdir,
            workdir,
        )
        out.update(seconds=time.perf_counter() - t, counts=result.counts, statistics_seconds=spent[0])
    else:
        from tensorflow_metadata.proto.v0 import statistics_pb2  # noqa: F401
        from tfx_bsl import sketches  # noqa: F401
        from tfx_bsl.coders import example_coder  # noqa: F401

        from components.statistics import StatisticsConfig, compute

        out = {"rss_before_mb": _peak_mb()}
        t = time.perf_counter()
        counts = compute(str(workdir / "examples"), str(workdir / "statistics"), StatisticsConfig())
        out.update(seconds=time.perf_counter() - t, counts=counts)
    out["peak_rss_mb"] = _peak_mb()
    return out


def _run_child(step: str, workdir: Path) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, __file__, "--child", step, str(workdir)], env=env, capture_output=True, text=True
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"{step} at {workdir} failed:\n{done.stderr[-4000:]}")
    return json.loads(line[len("RESULT ") :])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated sizes (default 1M,10M)")
    parser.add_argument("--keep", help="keep the data and outputs under this folder")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    parser.add_argument(
        "--no-alone", action="store_true", help="skip the ingest-alone process (the end-to-end cross-check)"
    )
    parser.add_argument("--child", nargs=2, metavar=("STEP", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args.child[0], Path(args.child[1]))), flush=True)
        return {}
    from _report import emit
    from scale import generate

    sizes = sorted(int(r) for r in args.rows.split(","))
    base = Path(args.keep or tempfile.mkdtemp(prefix="bench_statistics_"))
    results = []
    load_before = os.getloadavg()
    for rows in sizes:
        workdir = base / f"rows-{rows}"
        data = workdir / "data.csv"
        kept = args.keep and data.is_file()
        if not kept:
            shutil.rmtree(workdir, ignore_errors=True)
        for stale in workdir.glob("*"):  # an earlier run's outputs beside a kept CSV
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale != data:
                stale.unlink()
        workdir.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        if not kept:
            generate(data, rows)
        generated = time.perf_counter() - t
        ingest = _run_child("ingest", workdir)
        stats = _run_child("statistics", workdir)
        alone = None if args.no_alone else _run_child("ingest_alone", workdir)
        assert stats["counts"] == ingest["counts"] == (alone or ingest)["counts"], (stats["counts"], ingest["counts"])
        in_pass = ingest["statistics_seconds"]
        rest = ingest["seconds"] - in_pass
        results.append(
            {
                "rows": rows,
                "csv_mb": round(data.stat().st_size / 2**20, 1),
                "generate_seconds": None if kept else round(generated, 1),
                "split_counts": ingest["counts"],
                "ingest_alone_seconds": alone and round(alone["seconds"], 2),
                "ingest_alone_rows_per_s": alone and round(rows / alone["seconds"]),
                "ingest_alone_peak_rss_mb": alone and alone["peak_rss_mb"],
                "ingest_seconds": round(ingest["seconds"], 2),
                "ingest_rows_per_s": round(rows / ingest["seconds"]),
                "ingest_peak_rss_mb": ingest["peak_rss_mb"],
                "ingest_statistics_accumulators_seconds": round(in_pass, 2),
                "statistics_seconds": round(stats["seconds"], 2),
                "statistics_rows_per_s": round(rows / stats["seconds"]),
                "statistics_peak_rss_mb": stats["peak_rss_mb"],
                "statistics_rss_after_imports_mb": stats["rss_before_mb"],
                "statistics_over_ingest": round((in_pass + stats["seconds"]) / rest, 3),
                "end_to_end_over_ingest_alone": alone
                and round((ingest["seconds"] + stats["seconds"] - alone["seconds"]) / alone["seconds"], 3),
            }
        )
        print(f"# {rows} rows: {results[-1]}", file=sys.stderr, flush=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    small, large = results[0], results[-1]
    doc = {
        "benchmark": "statistics_scale",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "sizes": results,
        "statistics_over_ingest_target": RATIO_TARGET,
        "statistics_over_ingest_at_largest": large["statistics_over_ingest"],
        "end_to_end_over_ingest_alone_at_largest": large["end_to_end_over_ingest_alone"],
        "statistics_peak_rss_ratio_largest_over_smallest": round(
            large["statistics_peak_rss_mb"] / small["statistics_peak_rss_mb"], 3
        ),
        "ingest_peak_rss_ratio_largest_over_smallest": round(
            large["ingest_peak_rss_mb"] / small["ingest_peak_rss_mb"], 3
        ),
        "ingest_alone_peak_rss_ratio_largest_over_smallest": None
        if args.no_alone
        else round(large["ingest_alone_peak_rss_mb"] / small["ingest_alone_peak_rss_mb"], 3),
        "peak_rss_bound": RSS_BOUND,
    }
    # the hour in the name: two runs on one day (the figures are noisy here) both stay on record
    return emit(doc, f"statistics-scale-{dt.datetime.now(dt.UTC):%H%M}utc", write=not args.no_write)


if __name__ == "__main__":
    main()
