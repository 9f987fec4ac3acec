"""An Estimator keeps its traced programs across calls, and restores only when model_dir moved on."""

import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components import estimator
from tests.components.estimator.test_estimator import line_input_fn, regression_model_fn


def counting_model_fn(counts):
    """regression_model_fn of test_estimator.py, counting the times Python runs it, per mode."""

    def model_fn(features, labels, mode, params):
        counts[mode] = counts.get(mode, 0) + 1
        return regression_model_fn(features, labels, mode, params)

    return model_fn


def test_calls_reuse_the_traced_model_fn(tmp_path):
    counts = {}
    est = estimator.Estimator(counting_model_fn(counts), str(tmp_path), params={"lr": 0.1})
    est.train(line_input_fn, steps=5)
    traced = dict(counts)
    for steps in (3, 40, 7):  # only the step count changes: no new trace
        est.train(line_input_fn, steps=steps)
    assert counts == traced
    assert est.get_variable_value("global_step") == 55
    first = est.evaluate(line_input_fn)
    traced = dict(counts)
    est.train(line_input_fn, steps=50)
    second = est.evaluate(line_input_fn)
    list(est.predict(line_input_fn))
    list(est.predict(line_input_fn))
    assert counts[estimator.ModeKeys.TRAIN] == traced[estimator.ModeKeys.TRAIN]
    assert counts[estimator.ModeKeys.EVAL] == traced[estimator.ModeKeys.EVAL]
    assert second["global_step"] == 105 and second["loss"] < first["loss"]  # evaluate saw the new checkpoint


def test_a_checkpoint_written_elsewhere_is_restored(tmp_path):
    mine = estimator.Estimator(counting_model_fn({}), str(tmp_path), params={"lr": 0.1})
    other = estimator.Estimator(counting_model_fn({}), str(tmp_path), params={"lr": 0.1})
    mine.train(line_input_fn, steps=10)
    mine.evaluate(line_input_fn)
    other.train(line_input_fn, steps=100)  # moves model_dir on
    # mine continues from other's step 110, not from the step-10 values it holds.
    mine.train(line_input_fn, steps=10)
    assert mine.get_variable_value("global_step") == 120
    fresh = estimator.Estimator(counting_model_fn({}), str(tmp_path), params={"lr": 0.1})
    assert mine.evaluate(line_input_fn)["loss"] == pytest.approx(fresh.evaluate(line_input_fn)["loss"], rel=1e-6)
    np.testing.assert_allclose(
        [p["y"] for p in mine.predict(line_input_fn)], [p["y"] for p in fresh.predict(line_input_fn)], rtol=1e-6
    )
    # An emptied model_dir starts over from fresh variables.
    shutil.rmtree(tmp_path)
    mine.train(line_input_fn, steps=2)
    assert mine.get_variable_value("global_step") == 2
    assert np.abs(mine.get_variable_value("w")).max() < 1.0


def test_a_premade_estimator_trains_on_over_calls_like_one_call(tmp_path):
    col = tf.feature_column.numeric_column("x")

    def make(d):
        return estimator.DNNClassifier(
            [4], [col], model_dir=str(tmp_path / d), config=estimator.RunConfig(tf_random_seed=3)
        )

    def input_fn():
        x = np.linspace(-1, 1, 32, dtype=np.float32)
        return tf.data.Dataset.from_tensor_slices(({"x": x}, (x > 0).astype(np.int32))).batch(32).repeat()

    one, several = make("one"), make("several")
    one.train(input_fn, steps=30)
    for _ in range(3):
        several.train(input_fn, steps=10)
    for name in one.get_variable_names():
        np.testing.assert_allclose(
            several.get_variable_value(name), one.get_variable_value(name), rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_seeding_a_kept_program_shuffles_input_as_tf_random_set_seed():
    from components.estimator._compat import set_global_seed

    def order():
        return [int(v) for v in tf.data.Dataset.range(20).shuffle(20)]

    tf.random.set_seed(5)
    expected = [order(), order()]
    set_global_seed(5)  # what a kept program's train() does: the input_fn's shuffles repeat as they did
    assert [order(), order()] == expected


def test_checkpoints_of_kept_calls_resume_in_a_new_estimator_and_the_newest_are_kept(tmp_path):
    # A kept program saves with one traced write: its checkpoints must hold every variable (the
    # optimizer's slots too) and keep_checkpoint_max must still prune.
    cols = [tf.feature_column.numeric_column("x"), tf.feature_column.categorical_column_with_hash_bucket("c", 7)]
    cfg = estimator.RunConfig(tf_random_seed=3, save_checkpoints_steps=5, keep_checkpoint_max=2)

    def make(d):
        return estimator.LinearClassifier(cols, model_dir=str(tmp_path / d), config=cfg)

    def input_fn():
        x = np.linspace(-1, 1, 32, dtype=np.float32)
        c = np.array([f"v{i % 5}" for i in range(32)])
        return tf.data.Dataset.from_tensor_slices(({"x": x, "c": c}, (x > 0).astype(np.int32))).batch(8).repeat()

    kept = make("kept")
    for _ in range(3):
        kept.train(input_fn, steps=10)
        make("resumed").train(input_fn, steps=10)  # a new Estimator restores what the last call saved
    names = kept.get_variable_names()
    assert any("optimizer" in n for n in names), names
    for name in names:
        np.testing.assert_allclose(
            make("resumed").get_variable_value(name), kept.get_variable_value(name), rtol=1e-5, atol=1e-6, err_msg=name
        )
    state = tf.train.get_checkpoint_state(str(tmp_path / "kept"))
    assert [p.rsplit("/", 1)[-1] for p in state.all_model_checkpoint_paths] == ["model.ckpt-25", "model.ckpt-30"]
    assert sorted(p.name for p in (tmp_path / "kept").glob("model.ckpt-*")) == [
        "model.ckpt-25.data-00000-of-00001",
        "model.ckpt-25.index",  # one data shard, as tf.estimator wrote
        "model.ckpt-30.data-00000-of-00001",
        "model.ckpt-30.index",
    ]


def test_a_call_returns_before_its_input_is_torn_down_and_the_next_input_starts_after(tmp_path):
    """Deleting a tf.data iterator can take a while (its autotuning thread stops; 0.55 s in half the
    deletions of bench/train_throughput.py's input): train, evaluate and predict leave that to a thread
    of its own and return. The next call's input starts only once it is done, since an input may hold
    something it allows only once (a generator's open file). Here each teardown (the generator's
    finally) takes 1.5 s."""
    events = []

    def input_fn(mode=None):
        x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]

        def rows():
            events.append(("start", mode))
            try:
                yield from zip(x, 3 * x + 1)
            finally:  # runs when the iterator is deleted
                time.sleep(1.5)
                events.append(("end", mode))

        spec = (tf.TensorSpec([1], tf.float32), tf.TensorSpec([1], tf.float32))
        ds = tf.data.Dataset.from_generator(rows, output_signature=spec).map(lambda a, y: ({"x": a}, y))
        return ds.batch(16)

    est = estimator.Estimator(regression_model_fn, str(tmp_path), params={"lr": 0.1})
    est.train(line_input_fn, steps=1)  # traced beforehand, so that the calls below reach their input at once
    est.evaluate(line_input_fn, steps=1)
    next(est.predict(line_input_fn))
    train, evaluate, infer = estimator.ModeKeys.TRAIN, estimator.ModeKeys.EVAL, estimator.ModeKeys.PREDICT
    est.train(input_fn, steps=2)  # stops before the generator ends: its iterator is torn down
    assert events == [("start", train)]
    est.evaluate(input_fn, steps=1)
    assert events == [("start", train), ("end", train), ("start", evaluate)]
    preds = est.predict(input_fn, yield_single_examples=False)
    next(preds)
    preds.close()
    assert events[-2:] == [("end", evaluate), ("start", infer)]
    for thread in [t for t in threading.enumerate() if t.name == "tfpipe-input-teardown"]:
        thread.join(60)
    assert events[-1] == ("end", infer)


_OPEN_AT_EXIT = """
import numpy as np, tensorflow as tf
from components import estimator
from tests.components.estimator.test_estimator import line_input_fn, regression_model_fn
est = estimator.Estimator(regression_model_fn, {model_dir!r}, params={{"lr": 0.1}})
est.train(line_input_fn, steps=3)
PREDICTIONS = est.predict(line_input_fn)
print("first", next(PREDICTIONS)["y"], flush=True)
"""


def test_a_predict_generator_still_open_at_exit_lets_the_process_end(tmp_path):
    """The interpreter closes a started predict() generator while it shuts down, when no new thread
    can start: its input is then torn down at once instead of on a thread of its own."""
    script = _OPEN_AT_EXIT.format(model_dir=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("first")


def test_many_estimators_in_one_process_print_no_retracing_warning(tmp_path):
    """A sweep that makes an Estimator per setting traces each one's functions once: TensorFlow must not
    warn of "frequent retracing" (it counted every Estimator's checkpoint write as one function's)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.addHandler(handler)
    try:
        x = tf.feature_column.numeric_column("x")
        for i in range(7):
            est = estimator.LinearClassifier([x], model_dir=str(tmp_path / str(i)))
            est.train(
                lambda: tf.data.Dataset.from_tensor_slices(({"x": [0.5, -0.5]}, [1, 0])).repeat().batch(2), steps=2
            )
    finally:
        tf_logger.removeHandler(handler)
    assert not [r.getMessage() for r in records if "retracing" in r.getMessage()]
