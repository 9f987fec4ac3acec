"""Early stopping on the evaluations train_and_evaluate writes, and evaluation during training."""

import numpy as np
import pytest
import tensorflow as tf

from components import estimator
from components.errors import ConfigError
from tests.components.estimator.test_layer_identity import unnamed_layers_model_fn

# A small real regression set: y = 3x + 1 plus noise, 32 rows.
_X = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]
_Y = 3 * _X + 1 + np.random.default_rng(0).normal(0, 0.1, _X.shape).astype(np.float32)


def data_fn(mode=None):
    ds = tf.data.Dataset.from_tensor_slices(({"x": _X}, _Y)).batch(8)
    return ds.repeat() if mode == estimator.ModeKeys.TRAIN else ds


def plateau_model_fn(features, labels, mode):
    """A line fitted by gradient descent for 20 steps; the learning rate is 0 after, so the eval loss plateaus."""
    w = tf.Variable([[0.0]], name="w")
    b = tf.Variable([0.0], name="b")
    pred = tf.matmul(features["x"], w) + b
    loss = tf.reduce_mean(tf.square(pred - labels))
    if mode != estimator.ModeKeys.TRAIN:
        return estimator.EstimatorSpec(mode, loss=loss, predictions=pred)
    step = tf.compat.v1.train.get_global_step()
    lr = tf.where(step < 20, 0.2, 0.0)
    grads = tf.gradients(loss, [w, b])
    train_op = tf.group(w.assign_sub(lr * grads[0]), b.assign_sub(lr * grads[1]), step.assign_add(1))
    return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def test_train_and_evaluate_stops_where_stop_if_no_decrease_hook_decides(tmp_path):
    cfg = estimator.RunConfig(save_checkpoints_steps=10, log_step_count_steps=None)
    est = estimator.Estimator(plateau_model_fn, str(tmp_path), config=cfg)
    hook = estimator.experimental.stop_if_no_decrease_hook(
        est, "loss", max_steps_without_decrease=20, run_every_secs=None, run_every_steps=1
    )
    train_spec = estimator.TrainSpec(data_fn, max_steps=200, hooks=[hook])
    eval_spec = estimator.EvalSpec(data_fn, steps=None, throttle_secs=0)
    result, _ = estimator.train_and_evaluate(est, train_spec, eval_spec)
    evals = estimator.experimental.read_eval_metrics(est.eval_dir())
    # Evaluations after each checkpoint: the loss falls to step 20 and stays. The evaluation at 40
    # is the first 20 steps past the best (20), so the hook stops the next step, 41, as
    # tf.estimator's did; train_and_evaluate then evaluates that final checkpoint.
    assert list(evals) == [10, 20, 30, 40, 41]
    assert evals[20]["loss"] < evals[10]["loss"]
    assert evals[30]["loss"] == evals[20]["loss"] == evals[40]["loss"]
    assert result["global_step"] == 41 and est.get_variable_value("global_step") == 41


def test_threshold_hooks_read_the_evaluations(tmp_path):
    est = estimator.Estimator(plateau_model_fn, str(tmp_path))
    est.train(data_fn, steps=10)
    loss = est.evaluate(data_fn)["loss"]

    def train(hook):
        before = est.get_variable_value("global_step")
        est.train(data_fn, steps=5, hooks=[hook])
        return est.get_variable_value("global_step") - before

    every_step = dict(run_every_secs=None, run_every_steps=1)
    assert train(estimator.experimental.stop_if_lower_hook(est, "loss", loss * 2, **every_step)) == 1
    assert train(estimator.experimental.stop_if_higher_hook(est, "loss", loss * 2, **every_step)) == 5
    assert train(estimator.experimental.stop_if_higher_hook(est, "loss", loss / 2, **every_step)) == 1
    assert train(estimator.experimental.stop_if_no_increase_hook(est, "loss", 0, **every_step)) == 1
    assert train(estimator.experimental.stop_if_lower_hook(est, "loss", 0, min_steps=10**6, **every_step)) == 5
    calls = []
    hook = estimator.experimental.make_early_stopping_hook(
        est, lambda: calls.append(1) or len(calls) == 3, run_every_secs=None, run_every_steps=2
    )
    assert train(hook) == 5  # checked at steps 36, 38, 40: stops at the third check
    assert len(calls) == 3
    with pytest.raises(ConfigError):
        estimator.experimental.stop_if_lower_hook(est, "loss", 1.0, run_every_secs=10, run_every_steps=10)
    with pytest.raises(ConfigError, match="accuracy"):
        train(estimator.experimental.stop_if_higher_hook(est, "accuracy", 0.5, **every_step))


def test_in_memory_evaluator_hook_evaluates_the_variables_being_trained(tmp_path):
    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path))
    hook = estimator.experimental.InMemoryEvaluatorHook(est, data_fn, name="mem", every_n_iter=3)
    est.train(data_fn, steps=6, hooks=[hook])
    evals = estimator.experimental.read_eval_metrics(est.eval_dir("mem"))
    assert list(evals) == [1, 4, 6]  # after the first step, every 3 steps, and at the end
    assert evals[6]["loss"] == pytest.approx(float(est.evaluate(data_fn)["loss"]), rel=1e-5)
    assert evals[6]["loss"] < evals[1]["loss"]
