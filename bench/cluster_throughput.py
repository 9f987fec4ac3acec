"""Training on a cluster: the trainer step's examples per second in one process against `trainer.cluster`
with 2 workers (MultiWorkerMirroredStrategy, the local launcher), on the same model and data.

    uv run python bench/cluster_throughput.py [--rows 20000] [--steps 2000] [--batch 256] [--repeats 1]

A Titanic-shaped synthetic CSV (scale.py's generator) goes through the real ingest and transform once;
then `components.trainer.train` runs the Titanic example's model (DNN [32, 16]) on the transformed examples,
first in this process, then on a 2-worker cluster (each worker gets half of each global batch). Two figures
per side:
- steady: the engine's own `global_step/sec` summaries (written by the chief while it trains, after the
  step is traced), times the global batch: the training rate alone;
- whole call: train_steps x batch over the whole train() call, as the step's user waits for it (the
  cluster's includes starting its two task processes, each importing TensorFlow and tracing its step).

What 2 cores allow: the two workers are two processes on the same two cores, each with its own TensorFlow
thread pools, and every step all-reduces the gradients between them over gRPC on the loopback. They share
the machine the single process had to itself, so no speedup is expected here: the ratio measures what the
cluster's coordination costs, and the speedup a real cluster gives (one machine per worker) cannot be
measured on this machine. Prints one JSON document and writes it to bench/results/<date>-cluster.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import emit  # noqa: E402
from scale import generate  # noqa: E402
from train_throughput import load  # noqa: E402

NOTE_2_CORES = (
    "This machine has {cpus} cores. The 2 workers are 2 processes on the same cores, each with its own "
    "TensorFlow thread pools, all-reducing gradients over gRPC on the loopback at every step: they share what "
    "the single process had to itself, so no speedup is expected here (a ratio under 1 is the cluster's "
    "coordination cost). A real cluster puts each worker on its own machine; that speedup cannot be measured "
    "on this machine."
)


def prepare(workdir: Path, rows: int) -> dict[str, str]:
    """The synthetic CSV through the real ingest and transform: the trainer's inputs."""
    from components import ingest, transform

    generate(workdir / "data.csv", rows)
    examples, schema, stats, graph, transformed = (
        workdir / d for d in ("examples", "schema", "statistics", "graph", "transformed")
    )
    for d in (examples, schema, stats, graph, transformed):
        d.mkdir()
    ingest.ingest(ingest.IngestConfig(input=str(workdir / "data.csv"), label="Survived"), examples, schema, stats)
    transform.transform(
        transform.TransformConfig(module=str(REPO / "examples" / "titanic" / "preprocessing.py")),
        str(examples),
        str(schema / "schema.pbtxt"),
        str(graph),
        str(transformed),
    )
    return {"transformed": str(transformed), "graph": str(graph), "schema": str(schema / "schema.pbtxt")}


def steady_steps_per_sec(model_run_dir: Path) -> list[float]:
    """The `global_step/sec` values the chief wrote into the model directory while it trained."""
    import tensorflow as tf

    rates = []
    for events in sorted(model_run_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.tag == "global_step/sec":
                    rates.append(
                        float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                    )
    return rates


def train_once(inputs: dict, workdir: Path, steps: int, batch: int, workers: int | None) -> dict[str, Any]:
    from components import trainer
    from components.launchers import ClusterConfig

    model, run = workdir / "model", workdir / "model_run"
    for d in (model, run):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    config = trainer.TrainerConfig(
        module=str(REPO / "examples" / "titanic" / "model.py"),
        label="survived",
        raw_label="Survived",
        train_steps=steps,
        batch_size=batch,
        checkpoint_steps=steps,  # one checkpoint, at the end, on both sides
        eval_steps=20,
        params={"learning_rate": 0.01, "hidden_units": [32, 16]},
        cluster=ClusterConfig(workers=workers, max_restarts=0) if workers else None,
    )
    t = time.perf_counter()
    result = trainer.train(config, inputs["transformed"], inputs["graph"], inputs["schema"], str(model), str(run))
    seconds = time.perf_counter() - t
    # The first rate covers the steps before it, tracing included: the steady rate is the rest's median.
    rates = steady_steps_per_sec(run)
    steady = statistics.median(rates[1:] or rates) if rates else None
    return {
        "train_call_seconds": round(seconds, 2),
        "whole_call_examples_per_sec": round(steps * batch / seconds),
        "steady_steps_per_sec": round(steady, 2) if steady else None,
        "steady_examples_per_sec": round(steady * batch) if steady else None,
        "rate_samples": len(rates),
        "strategy": result["topology"].get("strategy"),
        "replicas": result["topology"].get("replicas"),
        "eval_accuracy": round(float(result["eval"]["accuracy"]), 4),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256, help="global batch (the 2 workers get half each)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, alternating; the fastest kept")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    at_start = load()
    work = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    try:
        inputs = prepare(work, args.rows)
        sides: dict[str, list[dict]] = {"one_process": [], "cluster_2_workers": []}
        for _ in range(args.repeats):  # alternating, so a burst of load elsewhere hits both sides alike
            sides["one_process"].append(train_once(inputs, work, args.steps, args.batch, None))
            sides["cluster_2_workers"].append(train_once(inputs, work, args.steps, args.batch, 2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {k: min(v, key=lambda r: r["train_call_seconds"]) for k, v in sides.items()}
    one, two = best["one_process"], best["cluster_2_workers"]
    doc = {
        "benchmark": "cluster_throughput",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
        "load_at_start": at_start,
        "data": f"{args.rows} synthetic Titanic-shaped rows, ingested and transformed by the real components",
        "model": "examples/titanic/model.py, DNN [32, 16]",
        "train_steps": args.steps,
        "global_batch": args.batch,
        "one_process": one,
        "cluster_2_workers": {"launcher": "local", **two},
        "steady_ratio_2_workers_over_1": (
            round(two["steady_examples_per_sec"] / one["steady_examples_per_sec"], 3)
            if one["steady_examples_per_sec"] and two["steady_examples_per_sec"]
            else None
        ),
        "whole_call_ratio_2_workers_over_1": round(
            two["whole_call_examples_per_sec"] / one["whole_call_examples_per_sec"], 3
        ),
        "what_2_cores_allow": NOTE_2_CORES.format(cpus=os.cpu_count()),
        "all_runs": sides,
        "load_at_end": load(),
    }
    return emit(doc, "cluster", write=not args.no_write)


if __name__ == "__main__":
    main()
