"""tf.estimator 2.15 model_dirs of the premade estimators, for tests/components/estimator/test_tf215_checkpoints.py.

Run it in an environment of its own, not the project's (CI does not run it; its output is committed):

    python3.11 -m venv /work/tf215
    /work/tf215/bin/pip install tensorflow==2.15.1 tensorflow-estimator==2.15.0
    /work/tf215/bin/python tests/components/estimator/data/tf215/make_checkpoints.py

It writes next to itself:
- train.csv, eval.csv: the Titanic split of examples/titanic/data.py (seed 42), six columns only;
- linear/, dnn/, wide_deep/, baseline/: each premade classifier trained STEPS steps by tf.estimator
  2.15 with its default optimizer, and custom/: a model_fn of Keras layers and a TF1 optimizer (one
  name-based checkpoint each, no graph, no event files);
- metrics.json: for each, 2.15's own evaluate() on eval.csv ("metrics") and the checkpoint's variables
  with their shapes; then, from a copy, 2.15's metrics and variables after CONTINUE_STEPS more steps
  ("continued_metrics", "continued_values"), which the test compares tfpipe's continuation with; and
  the DNN's metrics trained from scratch at seeds 1 (the one above), 2 and 3 ("dnn_seeds").

Module level needs only the standard library and TensorFlow: the test imports `input_fn` and
`estimators` from here, so both sides read the same data into the same models.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import tensorflow as tf

HERE = Path(__file__).resolve().parent
STEPS = 50
CONTINUE_STEPS = 5
DNN_SEEDS = (2, 3)
SEED = 1
NUMERIC = ("age", "fare")
BASELINE_KEYS = ("sex",)
COLUMNS = ("survived", "sex", "age", "fare", "class", "embark_town")


def read_csv(path) -> tuple[dict, list]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    features = {
        key: [float(r[key]) if key in NUMERIC else r[key] for r in rows] for key in COLUMNS if key != "survived"
    }
    return features, [int(r["survived"]) for r in rows]


def input_fn(path, epochs=None, batch_size=32, keys=None):
    """(features, labels) batches of a CSV, in file order: repeated for ever (epochs=None) or `epochs` times.

    `keys`: the features to give (all by default). 2.15's BaselineClassifier gets only `sex`: with the
    numeric features its training failed ("GetNext() failed because the iterator has not been
    initialized"), which it does not read anyway."""

    def fn():
        features, labels = read_csv(path)
        features = {k: tf.constant(v) for k, v in features.items() if keys is None or k in keys}
        ds = tf.data.Dataset.from_tensor_slices((features, tf.constant(labels)))
        return ds.repeat(epochs).batch(batch_size)

    return fn


def custom_model_fn(est, keras):
    """A model_fn of the guide's kind: Keras layers named by hand and a TF1 optimizer. `est` is tf.estimator
    or components.estimator; `keras` is 2.15's tf.keras (Keras 2) or tf_keras."""

    def model_fn(features, labels, mode):
        x = tf.stack([(features["age"] - 30.0) / 15.0, (features["fare"] - 32.0) / 50.0], axis=1)
        hidden = keras.layers.Dense(4, activation="relu", name="hidden")(x)
        logits = keras.layers.Dense(1, name="logits")(hidden)[:, 0]
        probability = tf.sigmoid(logits)
        if mode == est.ModeKeys.PREDICT:
            return est.EstimatorSpec(mode, predictions={"probability": probability})
        labels = tf.cast(labels, tf.float32)
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
        if mode == est.ModeKeys.EVAL:
            predicted = tf.cast(probability > 0.5, tf.float32)
            metrics = {"accuracy": tf.compat.v1.metrics.accuracy(labels, predicted)}
            return est.EstimatorSpec(mode, loss=loss, eval_metric_ops=metrics)
        optimizer = tf.compat.v1.train.AdagradOptimizer(0.1)
        train_op = optimizer.minimize(loss, global_step=tf.compat.v1.train.get_global_step())
        return est.EstimatorSpec(mode, loss=loss, train_op=train_op)

    return model_fn


def estimators(est, root, config, keras=None) -> dict:
    """The premade classifiers and a custom model_fn's Estimator, built by `est` (tf.estimator or
    components.estimator) under `root`; `keras` is the Keras of the custom model_fn (tf.keras by default)."""
    fc = tf.feature_column
    # Standardized roughly, so that a few steps give every model metrics away from a constant's.
    age = fc.numeric_column("age", normalizer_fn=lambda x: (x - 30.0) / 15.0)
    fare = fc.numeric_column("fare", normalizer_fn=lambda x: (x - 32.0) / 50.0)
    sex = fc.categorical_column_with_vocabulary_list("sex", ["male", "female"])
    cls = fc.categorical_column_with_vocabulary_list("class", ["First", "Second", "Third"])
    town = fc.categorical_column_with_hash_bucket("embark_town", 8)
    root = Path(root)
    return {
        "linear": est.LinearClassifier([age, fare, sex, cls, town], model_dir=str(root / "linear"), config=config),
        "dnn": est.DNNClassifier(
            [8, 4],
            [age, fare, fc.indicator_column(sex), fc.indicator_column(cls), fc.embedding_column(town, 2)],
            model_dir=str(root / "dnn"),
            config=config,
        ),
        "wide_deep": est.DNNLinearCombinedClassifier(
            model_dir=str(root / "wide_deep"),
            linear_feature_columns=[sex, cls, town],
            dnn_feature_columns=[age, fare, fc.indicator_column(cls)],
            dnn_hidden_units=[4],
            config=config,
        ),
        "baseline": est.BaselineClassifier(model_dir=str(root / "baseline"), config=config),
        "custom": est.Estimator(custom_model_fn(est, keras or tf.keras), model_dir=str(root / "custom"), config=config),
    }


def _write_split() -> None:
    sys.path.insert(0, str(HERE.parents[4]))  # the repository root: examples.titanic.data is plain Python
    from examples.titanic.data import split_titanic

    train, evaluation = split_titanic(HERE / "split")
    for path in (train, evaluation):
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        with open(HERE / path.name, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    shutil.rmtree(HERE / "split")


def main() -> None:
    assert tf.__version__.startswith("2.15."), f"run this with TensorFlow 2.15, not {tf.__version__}"
    _write_split()
    config = tf.estimator.RunConfig(tf_random_seed=SEED, keep_checkpoint_max=1, checkpoint_save_graph_def=False)
    record: dict = {"tensorflow": tf.__version__, "steps": STEPS, "seed": SEED, "continue_steps": CONTINUE_STEPS}
    for key in ("metrics", "variables", "continued_metrics", "continued_values"):
        record[key] = {}
    for name, model in estimators(tf.estimator, HERE, config).items():
        shutil.rmtree(model.model_dir, ignore_errors=True)
        keys = BASELINE_KEYS if name == "baseline" else None
        model.train(input_fn(HERE / "train.csv", keys=keys), steps=STEPS)
        metrics = model.evaluate(input_fn(HERE / "eval.csv", epochs=1, keys=keys))
        record["metrics"][name] = {k: v.item() for k, v in sorted(metrics.items())}
        reader = tf.train.load_checkpoint(model.model_dir)
        record["variables"][name] = {k: list(s) for k, s in sorted(reader.get_variable_to_shape_map().items())}
        # What 2.15 itself makes of CONTINUE_STEPS more steps from that checkpoint (its input read anew,
        # from the start), on a copy: the test continues the untouched one the same way in tfpipe.
        copy = HERE / "continued" / name
        shutil.copytree(model.model_dir, copy)
        again = estimators(tf.estimator, HERE / "continued", config)[name]
        again.train(input_fn(HERE / "train.csv", keys=keys), steps=CONTINUE_STEPS)
        metrics = again.evaluate(input_fn(HERE / "eval.csv", epochs=1, keys=keys))
        record["continued_metrics"][name] = {k: v.item() for k, v in sorted(metrics.items())}
        record["continued_values"][name] = {
            k: again.get_variable_value(k).tolist() for k in again.get_variable_names() if not k.startswith("training/")
        }
        shutil.rmtree(HERE / "continued")
        # Keep the checkpoint only: event files (training and eval/) are no part of what is tested.
        for path in Path(model.model_dir).rglob("events.out.tfevents.*"):
            path.unlink()
        shutil.rmtree(Path(model.model_dir) / "eval", ignore_errors=True)
    # The DNN trained from scratch at other seeds: tfpipe draws 2.15's initial values for a seed.
    record["dnn_seeds"] = {str(SEED): record["metrics"]["dnn"]}
    for seed in DNN_SEEDS:
        scratch = estimators(tf.estimator, HERE / "scratch" / str(seed), config.replace(tf_random_seed=seed))["dnn"]
        scratch.train(input_fn(HERE / "train.csv"), steps=STEPS)
        metrics = scratch.evaluate(input_fn(HERE / "eval.csv", epochs=1))
        record["dnn_seeds"][str(seed)] = {k: v.item() for k, v in sorted(metrics.items())}
    shutil.rmtree(HERE / "scratch")
    with open(HERE / "metrics.json", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
