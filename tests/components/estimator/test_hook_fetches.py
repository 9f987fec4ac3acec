"""TF1-style hooks get real values for the tensors and variables they fetch."""

import numpy as np
import pytest
import tensorflow as tf

from components import estimator
from components.errors import ConfigError
from tests.components.estimator.test_layer_identity import input_fn, unnamed_layers_model_fn


class GlobalStepReader(estimator.SessionRunHook):
    """Written as for tf.estimator: the global step found in begin(), fetched in before_run."""

    def __init__(self):
        self.seen, self.by_session = [], []

    def begin(self):
        self._global_step = tf.compat.v1.train.get_global_step()
        assert self._global_step is not None

    def before_run(self, run_context):
        return estimator.SessionRunArgs(self._global_step)

    def after_run(self, run_context, run_values):
        self.seen.append(int(run_values.results))
        self.by_session.append(int(run_context.session.run(self._global_step)))


def test_hook_reads_the_global_step(tmp_path):
    hook = GlobalStepReader()
    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path))
    est.train(input_fn, steps=5, hooks=[hook])
    # As under tf.estimator: the value the step started from; session.run reads it after the step.
    assert hook.seen == [0, 1, 2, 3, 4]
    assert hook.by_session == [1, 2, 3, 4, 5]
    est.train(input_fn, steps=2, hooks=[hook])
    assert hook.seen[-2:] == [5, 6]


def test_hooks_made_in_model_fn_fetch_its_tensors(tmp_path):
    seen = []

    class Record(estimator.SessionRunHook):
        def __init__(self, loss, tensors):
            self.loss, self.tensors = loss, tensors

        def before_run(self, run_context):
            return estimator.SessionRunArgs({"loss": self.loss, "more": self.tensors})

        def after_run(self, run_context, run_values):
            seen.append(run_values.results)

    def model_fn(features, labels, mode):
        w = tf.Variable([[0.0]], name="w")
        pred = tf.matmul(features["x"], w)
        loss = tf.reduce_mean(tf.square(pred - labels))
        train_op = tf.group(
            w.assign_sub(0.1 * tf.gradients(loss, [w])[0]), tf.compat.v1.train.get_global_step().assign_add(1)
        )
        hook = Record(loss, {"pred": pred, "w": w, "name": "loss", "op": train_op})
        return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, training_hooks=[hook])

    est = estimator.Estimator(model_fn, str(tmp_path))
    est.train(lambda: input_fn().unbatch().batch(16).repeat(), steps=3)  # one batch, so the loss falls
    assert len(seen) == 3
    losses = [r["loss"] for r in seen]
    assert losses == [pytest.approx(r["more"]["name"]) for r in seen]  # the tensor and the step's loss agree
    assert losses[0] > losses[1] > losses[2] > 0
    assert seen[0]["more"]["pred"].shape == (16, 1) and not seen[0]["more"]["pred"].any()  # w starts at 0
    assert seen[0]["more"]["w"] == 0.0 and seen[1]["more"]["w"] != 0.0
    assert seen[0]["more"]["op"] is None


def test_hook_asking_for_an_unknown_tensor_fails_clearly(tmp_path):
    class Bad(estimator.SessionRunHook):
        def before_run(self, run_context):
            return estimator.SessionRunArgs("no_such_op:0")

    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path))
    with pytest.raises(ConfigError, match="no_such_op:0"):
        est.train(input_fn, steps=2, hooks=[Bad()])
    # Nothing trained was saved: only the step-0 checkpoint a new model writes as training starts (as 2.15).
    assert est.latest_checkpoint() == str(tmp_path / "model.ckpt-0")


def test_hook_fetches_the_output_of_an_unnamed_keras_layer(tmp_path):
    """Keras renames layers on every trace; the fetched tensor is still the one the hook holds."""
    seen = []

    class Record(estimator.SessionRunHook):
        def __init__(self, fetches):
            self.fetches = fetches

        def before_run(self, run_context):
            return estimator.SessionRunArgs(self.fetches)

        def after_run(self, run_context, run_values):
            seen.append(run_values.results)

    def model_fn(features, labels, mode):
        layer = tf.keras.layers.Dense(1)
        pred = layer(features["x"])
        loss = tf.reduce_mean(tf.square(pred - labels))
        opt = tf.keras.optimizers.SGD(0.1)
        train_op = tf.group(
            opt.apply_gradients(zip(tf.gradients(loss, layer.trainable_variables), layer.trainable_variables)),
            tf.compat.v1.train.get_global_step().assign_add(1),
        )
        hook = Record({"x": features["x"], "pred": pred, "kernel": layer.kernel, "bias": layer.bias})
        return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, training_hooks=[hook])

    estimator.Estimator(model_fn, str(tmp_path)).train(input_fn, steps=3)
    for r in seen:  # the prediction agrees with the weights the step started from
        np.testing.assert_allclose(r["pred"], r["x"] @ r["kernel"] + r["bias"], rtol=1e-5)
    assert not np.allclose(seen[0]["kernel"], seen[2]["kernel"])


def test_evaluation_hooks_fetch_tensors_and_the_global_step(tmp_path):
    seen = []

    class Record(estimator.SessionRunHook):
        def __init__(self, pred=None):
            self.pred = pred

        def before_run(self, run_context):
            fetches = {"step": tf.compat.v1.train.get_global_step(), "loss": "loss"}
            return estimator.SessionRunArgs(dict(fetches, pred=self.pred) if self.pred is not None else fetches)

        def after_run(self, run_context, run_values):
            seen.append(run_values.results)

    def model_fn(features, labels, mode):
        spec = unnamed_layers_model_fn(features, labels, mode)
        if mode != estimator.ModeKeys.EVAL:
            return spec
        return spec._replace(evaluation_hooks=(Record(tf.identity(spec.loss, name="eval_loss")),))

    est = estimator.Estimator(model_fn, str(tmp_path))
    est.train(input_fn, steps=4)
    result = est.evaluate(input_fn, hooks=[Record()])
    assert len(seen) == 4  # two batches, two hooks
    assert all(r["step"] == 4 for r in seen)
    assert seen[1]["pred"] == pytest.approx(seen[1]["loss"])
    assert result["loss"] == pytest.approx(np.mean([r["loss"] for r in seen]))
