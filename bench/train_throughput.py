"""Training: one Estimator train() call against tf_keras `model.fit` of the same model on the same data.

    uv run python bench/train_throughput.py [--models linear,dnn] [--repeats 3]

Synthetic data from DESIGN.md: 20 numeric and 5 hashed categorical features, batch 256. Each side is
timed as a user waits for it, the whole call with its input pipeline and any tracing, in a warm
process (one warm-up call first): a call of 1000 steps and one of 5000, giving t = a + n*b (a: the
fixed cost of a call, b: the time per step). The one-call ratio is keras t(1000) / estimator t(1000).

Baselines:
- "keras_tuned": what a skilled Keras user writes: the same steps_per_execution as the engine, the
  string hashing in the tf.data map, embedding lookups (rows of the first layer gathered) where the
  engine gathers, no one-hot.
- "keras_untuned" (the weaker, older baseline, kept for comparison): DenseFeatures with one-hot
  indicator columns inside the model, hashing in the train step, one step per execution.

Prints one JSON document and writes it to bench/results/<date>-train.json, with the machine's load.
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
from typing import Any

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
    # Sliced into whole batches (not rows then batched: 100k row slices of 26 columns take seconds, which
    # every call would pay), so the pipeline replays ready batches: the ceiling is the model, not the slicing.
    n = len(labels) // BATCH * BATCH

    def batches(a):
        return a[:n].reshape(-1, BATCH)

    ds = tf.data.Dataset.from_tensor_slices(({k: batches(v) for k, v in features.items()}, batches(labels)))
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


STEPS_SHORT, STEPS_LONG = 1000, 5000


def fit_line(t_short: float, t_long: float) -> tuple[float, float]:
    """a (s per call) and b (s per step) of t = a + n*b through the two calls."""
    b = (t_long - t_short) / (STEPS_LONG - STEPS_SHORT)
    return t_short - STEPS_SHORT * b, b


def estimator_side(kind: str, features, labels):
    """A warm Estimator and the function that times one train(steps=n) call."""
    numeric, cats = columns()
    model_dir = tempfile.mkdtemp(prefix="bench_est_")
    cfg = estimator.RunConfig(
        save_checkpoints_steps=10**9, save_summary_steps=0, log_step_count_steps=10**9, tf_random_seed=1
    )
    est: estimator.Estimator
    if kind == "linear":
        est = estimator.LinearClassifier(numeric + cats, model_dir=model_dir, config=cfg)
    else:
        dnn_cols = numeric + [tf.feature_column.indicator_column(c) for c in cats]
        est = estimator.DNNClassifier(hidden_units=[128, 64], feature_columns=dnn_cols, model_dir=model_dir, config=cfg)

    def call(n: int) -> float:
        t = time.perf_counter()
        est.train(lambda: make_dataset(features, labels), steps=n)
        return time.perf_counter() - t

    return call, lambda: shutil.rmtree(model_dir, ignore_errors=True), cfg.steps_per_execution


def keras_tuned_side(kind: str, features, labels, steps_per_execution: int):
    """The same model in tf_keras as a skilled user writes it (see the module docstring)."""
    numeric = [f"n{i}" for i in range(N_NUMERIC)]
    cats = [f"c{j}" for j in range(N_CATEGORICAL)]

    def preprocess(f, y):
        x = tf.stack([f[k] for k in numeric], axis=1)
        ids = {k: tf.strings.to_hash_bucket_fast(f[k], BUCKETS) for k in cats}
        return {"numeric": x, **ids}, y

    inputs = {"numeric": tf_keras.Input(shape=(N_NUMERIC,), name="numeric")}
    inputs.update({k: tf_keras.Input(shape=(), name=k, dtype=tf.int64) for k in cats})
    width = 1 if kind == "linear" else 128
    # A categorical column's share of the first layer is a row of its weights: an embedding lookup.
    parts = [tf_keras.layers.Dense(width)(inputs["numeric"])]
    parts += [
        tf_keras.layers.Embedding(
            BUCKETS, width, embeddings_initializer="zeros" if kind == "linear" else "glorot_uniform"
        )(inputs[k])
        for k in cats
    ]
    x = tf_keras.layers.Add()(parts)
    if kind == "linear":
        out = x
        opt = tf_keras.optimizers.Ftrl(learning_rate=0.2)  # the engine's defaults (tf.estimator 2.x's)
    else:
        x = tf_keras.layers.ReLU()(x)
        x = tf_keras.layers.Dense(64, activation="relu")(x)
        out = tf_keras.layers.Dense(1)(x)
        opt = tf_keras.optimizers.Adagrad(learning_rate=0.001)
    model = tf_keras.Model(inputs, out)
    model.compile(
        optimizer=opt,
        loss=tf_keras.losses.BinaryCrossentropy(from_logits=True),
        steps_per_execution=steps_per_execution,
    )

    def dataset():  # the same batches as the engine's input_fn; the string hashing in the map, in parallel
        return (
            make_dataset(features, labels)
            .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

    def call(n: int) -> float:
        t = time.perf_counter()
        model.fit(dataset(), steps_per_epoch=n, epochs=1, verbose=0)
        return time.perf_counter() - t

    return call


def keras_untuned_side(kind: str, features, labels):
    """The older, weaker baseline: one-hot DenseFeatures inside the model, one step per execution."""
    numeric, cats = columns()
    cols = numeric + [tf.feature_column.indicator_column(c) for c in cats]
    inputs = {f"n{i}": tf_keras.Input(shape=(), name=f"n{i}") for i in range(N_NUMERIC)}
    inputs.update({f"c{j}": tf_keras.Input(shape=(), name=f"c{j}", dtype=tf.string) for j in range(N_CATEGORICAL)})
    x = tf_keras.layers.DenseFeatures(cols)(inputs)
    if kind == "linear":
        out = tf_keras.layers.Dense(1)(x)
        opt = tf_keras.optimizers.Ftrl(learning_rate=0.2)
    else:
        x = tf_keras.layers.Dense(128, activation="relu")(x)
        x = tf_keras.layers.Dense(64, activation="relu")(x)
        out = tf_keras.layers.Dense(1)(x)
        opt = tf_keras.optimizers.Adagrad(learning_rate=0.001)
    model = tf_keras.Model(inputs, out)
    model.compile(optimizer=opt, loss=tf_keras.losses.BinaryCrossentropy(from_logits=True))

    def call(n: int) -> float:
        t = time.perf_counter()
        model.fit(make_dataset(features, labels), steps_per_epoch=n, epochs=1, verbose=0)
        return time.perf_counter() - t

    return call


def measure(call, repeats: int) -> dict:
    """Warm-up call, then `repeats` rounds of t(1000) and t(5000); the fastest of each (least disturbed)."""
    call(100)
    shorts, longs = [], []
    for _ in range(repeats):
        shorts.append(call(STEPS_SHORT))
        longs.append(call(STEPS_LONG))
    t_short, t_long = min(shorts), min(longs)
    a, b = fit_line(t_short, t_long)
    return {
        "t_1000_steps_s": round(t_short, 3),
        "t_5000_steps_s": round(t_long, 3),
        "a_s_per_call": round(a, 3),
        "b_ms_per_step": round(b * 1000, 4),
        "steady_examples_per_sec": round(BATCH / b) if b > 0 else None,
        "one_call_examples_per_sec": round(STEPS_SHORT * BATCH / t_short),
        "all_t_1000_s": [round(t, 3) for t in shorts],
        "all_t_5000_s": [round(t, 3) for t in longs],
    }


def load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"1min": round(one, 2), "5min": round(five, 2), "15min": round(fifteen, 2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of t(1000), t(5000) per side; fastest kept")
    parser.add_argument("--models", default="linear,dnn", help="comma list of: linear, dnn ([128, 64])")
    parser.add_argument("--no-untuned", action="store_true", help="skip the older, weaker baseline")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    parser.add_argument("--steps", type=int, default=2000, help="steps of the input-pipeline ceiling run")
    args = parser.parse_args(argv)
    features, labels = synthetic(args.rows)
    result: dict[str, Any] = {
        "benchmark": "train_throughput",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
        "load_at_start": load(),
        "batch_size": BATCH,
        "calls": f"warm process; one warm-up call, then {args.repeats} x (train {STEPS_SHORT} steps, "
        f"train {STEPS_LONG} steps) per side, fastest kept; t = a + n*b through the two",
        "input_pipeline_ceiling_examples_per_sec": round(ceiling(features, labels, args.steps)),
        "models": {},
    }
    for kind in args.models.split(","):
        est_call, cleanup, per_execution = estimator_side(kind, features, labels)
        est = measure(est_call, args.repeats)
        cleanup()
        tuned = measure(keras_tuned_side(kind, features, labels, per_execution), args.repeats)
        entry = {
            "estimator": est,
            "keras_tuned": {"steps_per_execution": per_execution, **tuned},
            "one_call_ratio_vs_keras_tuned": round(tuned["t_1000_steps_s"] / est["t_1000_steps_s"], 3),
            "steady_ratio_vs_keras_tuned": round(tuned["b_ms_per_step"] / est["b_ms_per_step"], 3),
        }
        if not args.no_untuned:
            untuned = measure(keras_untuned_side(kind, features, labels), 1)
            entry["keras_untuned"] = {"steps_per_execution": 1, **untuned}
            entry["one_call_ratio_vs_keras_untuned"] = round(untuned["t_1000_steps_s"] / est["t_1000_steps_s"], 3)
        # The figure bench/run_all.py summarizes: one call, against the tuned baseline.
        entry["ratio_vs_keras_fit"] = entry["one_call_ratio_vs_keras_tuned"]
        result["models"][kind] = entry
    result["load_at_end"] = load()
    return emit(result, "train", write=not args.no_write)


if __name__ == "__main__":
    main()
