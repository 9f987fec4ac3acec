"""Data at scale: a Titanic-shaped synthetic CSV through ingest, transform and training, with peak memory.

    uv run python bench/scale.py [--rows 1000000,10000000] [--steps 2000] [--keep DIR]

For each size a fresh process generates the CSV (seeded, not committed), then runs the real components
(ingest, transform with Beam's DirectRunner analyzing, the trainer with the Titanic model) and reports
rows/s, seconds and peak RSS (the process and all its worker processes together). At the smallest size it
also times the baselines, after the peak is taken: reading the CSV with Python's csv module alone
(ingest's ceiling), transform with Beam's multi-process mode, and transform applying the graph in Beam
(TransformDataset) instead of file by file. Memory must not grow with rows: the JSON gives peak RSS at the
largest size over the smallest (bound 1.5).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

HEADER = [
    "PassengerId",
    "Survived",
    "Pclass",
    "Name",
    "Sex",
    "Age",
    "SibSp",
    "Parch",
    "Ticket",
    "Fare",
    "Cabin",
    "Embarked",
]
_TITLES = ["Mr", "Mrs", "Miss", "Master", "Dr", "Rev"]


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Rows shaped like Kaggle's train.csv: the same columns, types, missing values and rough correlations."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(1, rows + 1):
            pclass = rng.choice((1, 2, 3, 3))
            sex = rng.choice(("male", "female"))
            age = "" if rng.random() < 0.2 else f"{rng.uniform(1, 80):.1f}"
            fare = rng.lognormvariate(3.3 - 0.6 * (pclass - 1), 0.7)
            survived = int(rng.random() < (0.75 if sex == "female" else 0.2) * (1.2 - 0.15 * pclass))
            writer.writerow(
                [
                    i,
                    survived,
                    pclass,
                    f"Name{i}, {rng.choice(_TITLES)}. Given{i % 977}",
                    sex,
                    age,
                    rng.choice((0, 0, 0, 1, 2)),
                    rng.choice((0, 0, 1, 2)),
                    f"T{rng.randrange(99999)}",
                    f"{fare:.4f}",
                    "" if rng.random() < 0.77 else f"{rng.choice('ABCDEFG')}{rng.randrange(99)}",
                    rng.choice(("S", "S", "S", "C", "Q")),
                ]
            )


class _TreeRSS(threading.Thread):
    """Peak resident memory of this process and all its descendants together (Beam's and transform's worker
    processes run alongside it), sampled from /proc every 0.2 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kb = 0

    @staticmethod
    def _tree(pid: int) -> list:
        pids = [pid]
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                pids += [q for c in task.read_text().split() for q in _TreeRSS._tree(int(c))]
            except OSError:
                pass
        return pids

    def run(self):
        while True:
            total = 0
            for pid in self._tree(os.getpid()):
                try:
                    total += next(
                        int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS")
                    )
                except (OSError, StopIteration):
                    pass
            self.peak_kb = max(self.peak_kb, total)
            time.sleep(0.2)


_SAMPLER = _TreeRSS()


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(max(own, _SAMPLER.peak_kb) / 1024, 1)


def child(rows: int, steps: int, workdir: Path, baselines: bool) -> dict:
    """One size, in its own process so its peak memory is its own."""
    from components import ingest, trainer, transform

    _SAMPLER.start()
    data = workdir / "data.csv"
    t = time.perf_counter()
    generate(data, rows)
    out = {
        "rows": rows,
        "csv_mb": round(data.stat().st_size / 2**20, 1),
        "generate_seconds": round(time.perf_counter() - t, 1),
    }
    if baselines:
        t = time.perf_counter()
        with open(data, newline="", encoding="utf-8") as f:
            n = sum(1 for _ in csv.reader(f)) - 1
        out["csv_module_rows_per_s"] = round(n / (time.perf_counter() - t))
    examples, schema, stats = (workdir / d for d in ("examples", "schema", "statistics"))
    for d in (examples, schema, stats):
        d.mkdir()
    t = time.perf_counter()
    ingest.ingest(ingest.IngestConfig(input=str(data), label="Survived"), examples, schema, stats)
    out["ingest_seconds"] = round(time.perf_counter() - t, 1)
    out["ingest_rows_per_s"] = round(rows / out["ingest_seconds"])
    out["peak_rss_mb_after_ingest"] = _peak_rss_mb()
    module = str(REPO / "examples" / "titanic" / "preprocessing.py")
    in_memory = ["--runner=DirectRunner", "--direct_num_workers=1"]
    # in_memory: tfpipe's default (Beam analyzes, the graph is applied here file by file); multi_process: the
    # same with Beam's multi-process mode; beam_apply: TransformDataset in Beam, tf.Transform's own way.
    modes: dict[str, tuple[list[str], Literal["local", "beam"]]] = {
        "in_memory": (in_memory, "local"),
        "multi_process": (
            [
                "--runner=DirectRunner",
                "--direct_running_mode=multi_processing",
                f"--direct_num_workers={os.cpu_count()}",
            ],
            "local",
        ),
        "beam_apply": (in_memory, "beam"),
    }

    def run_transform(mode):
        beam_args, apply = modes[mode]
        graph, transformed = workdir / f"graph-{mode}", workdir / f"transformed-{mode}"
        graph.mkdir()
        transformed.mkdir()
        t = time.perf_counter()
        transform.transform(
            transform.TransformConfig(module=module, beam_args=beam_args, apply=apply),
            str(examples),
            str(schema / "schema.pbtxt"),
            str(graph),
            str(transformed),
        )
        out[f"transform_{mode}_seconds"] = round(time.perf_counter() - t, 1)
        out[f"transform_{mode}_rows_per_s"] = round(rows / out[f"transform_{mode}_seconds"])

    run_transform("in_memory")
    out["peak_rss_mb_after_transform"] = _peak_rss_mb()
    out["ingest_plus_transform_rows_per_s"] = round(rows / (out["ingest_seconds"] + out["transform_in_memory_seconds"]))
    model, run = workdir / "model", workdir / "model_run"
    model.mkdir()
    t = time.perf_counter()
    result = trainer.train(
        trainer.TrainerConfig(
            module=str(REPO / "examples" / "titanic" / "model.py"),
            label="survived",
            raw_label="Survived",
            train_steps=steps,
            batch_size=256,
            eval_steps=50,
            params={"learning_rate": 0.01, "hidden_units": [32, 16]},
        ),
        str(workdir / "transformed-in_memory"),
        str(workdir / "graph-in_memory"),
        str(schema / "schema.pbtxt"),
        str(model),
        str(run),
    )
    out["train_steps"] = steps
    out["train_seconds"] = round(time.perf_counter() - t, 1)
    out["train_examples_per_s"] = round(steps * 256 / out["train_seconds"])
    out["eval_accuracy"] = round(result["eval"]["accuracy"], 4)
    out["peak_rss_mb"] = _peak_rss_mb()
    # The baselines run last, so that their memory does not count in this size's peak.
    for mode in ("multi_process", "beam_apply") if baselines else ():
        run_transform(mode)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated sizes (default 1M,10M)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps at each size (default 2000)")
    parser.add_argument("--keep", help="keep the data and outputs under this folder")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    parser.add_argument("--child", nargs=3, metavar=("ROWS", "WORKDIR", "BASELINES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        rows, workdir, baselines = int(args.child[0]), Path(args.child[1]), args.child[2] == "1"
        print("RESULT " + json.dumps(child(rows, args.steps, workdir, baselines)), flush=True)
        return {}
    from _report import emit

    sizes = sorted(int(r) for r in args.rows.split(","))
    base = Path(args.keep or tempfile.mkdtemp(prefix="bench_scale_"))
    results = []
    for i, rows in enumerate(sizes):
        workdir = base / f"rows-{rows}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--steps",
                str(args.steps),
                "--child",
                str(rows),
                str(workdir),
                "1" if i == 0 else "0",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            raise SystemExit(f"size {rows} failed:\n{done.stderr[-4000:]}")
        results.append(json.loads(line[len("RESULT ") :]))
        print(f"# {rows} rows: {results[-1]}", file=sys.stderr, flush=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    small, large = results[0], results[-1]
    doc = {
        "benchmark": "scale",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "sizes": results,
        "peak_rss_ratio_largest_over_smallest": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "peak_rss_bound": 1.5,
        "ingest_over_csv_module": round(small["ingest_rows_per_s"] / small["csv_module_rows_per_s"], 3),
        "transform_multi_process_over_in_memory": round(
            small["transform_multi_process_rows_per_s"] / small["transform_in_memory_rows_per_s"], 3
        ),
        "transform_in_memory_over_beam_apply": round(
            small["transform_in_memory_rows_per_s"] / small["transform_beam_apply_rows_per_s"], 3
        ),
        "ingest_plus_transform_rows_per_s_target": 25000,
    }
    return emit(doc, "scale", write=not args.no_write)


if __name__ == "__main__":
    main()
