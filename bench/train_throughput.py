"""Training throughput: the Estimator engine against tf_keras `model.fit` on the same model and data.

    uv run python bench/train_throughput.py [--steps 2000] [--models linear,dnn]

Synthetic data from DESIGN.md: 20 numeric and 5 hashed categorical features, batch 256. Prints one
JSON document (examples/s for each side, their ratio, and the input pipeline alone as the ceiling)
and writes it to bench/results/<date>-train.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from _report import emit  # noqa: E402

from components import estimator  # noqa: E402

BATCH = 256
N_NUMERIC, N_CATEGORICAL, BUCKETS, VOCAB = 20, 5, 1000, 500


def synthetic(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    features = {f"n{i}": rng.normal(size=rows).astype(np.float32) for i in range(N_NUMERIC)}
    for j in range(N_CATEGORICAL):
        features[f"c{j}"] = np.array([f"v{k}" for k in rng.integers(0, VOCAB, size=rows)])
    score = sum(features[f"n{i}"] * (0.3 if i % 2 else -0.2) for i in range(N_NUMERIC))
    labels = (score + rng.normal(size=rows) > 0).astype(np.int32)
    return features, labels


def columns():
    cols = [tf.feature_column.numeric_column(f"n{i}") for i in range(N_NUMERIC)]
    cats = [tf.feature_column.categorical_column_with_hash_bucket(f"c{j}", BUCKETS) for j in range(N_CATEGORICAL)]
    return cols, cats


def make_dataset(features, labels):
    # Batched before caching, so the pipeline replays ready batches (the ceiling is the model, not the slicing).
    ds = tf.data.Dataset.from_tensor_slices((features, labels)).batch(BATCH, drop_remainder=True)
    return ds.cache().repeat().prefetch(tf.data.AUTOTUNE)


def ceiling(features, labels, steps: int) -> float:
    ds = make_dataset(features, labels)

    @tf.function
    def drain(it, n):
        total = tf.constant(0, tf.int64)
        for _ in tf.range(n):
            f, _ = next(it)
            total += tf.cast(tf.shape(f["n0"])[0], tf.int64)
        return total

    it = iter(ds)
    drain(it, tf.constant(10))
    t = time.perf_counter()
    drain(it, tf.constant(steps))
    return steps * BATCH / (time.perf_counter() - t)


def run_estimator(kind: str, features, labels, steps: int) -> float:
    numeric, cats = columns()
    model_dir = tempfile.mkdtemp(prefix="bench_est_")
    cfg = estimator.RunConfig(save_checkpoints_steps=10**9, save_summary_steps=0, log_step_count_steps=10**9, tf_random_seed=1)
    if kind == "linear":
        est = estimator.LinearClassifier(numeric + cats, model_dir=model_dir, config=cfg)
    else:
        dnn_cols = numeric + [tf.feature_column.indicator_column(c) for c in cats]
        est = estimator.DNNClassifier(hidden_units=[128, 64], feature_columns=dnn_cols, model_dir=model_dir, config=cfg)
    input_fn = lambda: make_dataset(features, labels)  # noqa: E731
    est.train(input_fn, steps=20)  # warm-up: first-time costs (imports, first checkpoint)
    t = time.perf_counter()
    est.train(input_fn, steps=steps)
    elapsed = time.perf_counter() - t
    shutil.rmtree(model_dir, ignore_errors=True)
    return steps * BATCH / elapsed


def run_keras(kind: str, features, labels, steps: int) -> float:
    numeric, cats = columns()
    cols = numeric + [tf_keras.feature_column.indicator_column(c) if hasattr(tf_keras, "feature_column") else tf.feature_column.indicator_column(c) for c in cats]
    inputs = {f"n{i}": tf_keras.Input(shape=(), name=f"n{i}") for i in range(N_NUMERIC)}
    inputs.update({f"c{j}": tf_keras.Input(shape=(), name=f"c{j}", dtype=tf.string) for j in range(N_CATEGORICAL)})
    x = tf_keras.layers.DenseFeatures(cols)(inputs)
    if kind == "linear":
        out = tf_keras.layers.Dense(1)(x)
        opt = tf_keras.optimizers.Ftrl(learning_rate=min(0.2, 1 / np.sqrt(len(cols))))
    else:
        x = tf_keras.layers.Dense(128, activation="relu")(x)
        x = tf_keras.layers.Dense(64, activation="relu")(x)
        out = tf_keras.layers.Dense(1)(x)
        opt = tf_keras.optimizers.Adagrad(learning_rate=0.05)
    model = tf_keras.Model(inputs, out)
    model.compile(optimizer=opt, loss=tf_keras.losses.BinaryCrossentropy(from_logits=True))
    ds = make_dataset(features, labels)
    model.fit(ds, steps_per_epoch=20, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * BATCH / (time.perf_counter() - t)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--models", default="linear,dnn", help="comma list of: linear, dnn ([128, 64])")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args(argv)
    features, labels = synthetic(args.rows)
    result = {
        "benchmark": "train_throughput",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
        "batch_size": BATCH,
        "steps": args.steps,
        "input_pipeline_ceiling_examples_per_sec": round(ceiling(features, labels, args.steps)),
        "models": {},
    }
    for kind in args.models.split(","):
        est_rate = run_estimator(kind, features, labels, args.steps)
        keras_rate = run_keras(kind, features, labels, args.steps)
        result["models"][kind] = {
            "estimator_examples_per_sec": round(est_rate),
            "keras_fit_examples_per_sec": round(keras_rate),
            "ratio_vs_keras_fit": round(est_rate / keras_rate, 3),
            "fraction_of_ceiling": round(est_rate / result["input_pipeline_ceiling_examples_per_sec"], 3),
        }
    return emit(result, "train", write=not args.no_write)


if __name__ == "__main__":
    main()
