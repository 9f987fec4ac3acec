"""`Head.create_estimator_spec` inside a custom model_fn, as tf.estimator documented it: a head supplies the
loss, metrics, predictions and export outputs; the model_fn supplies the logits and the optimizer."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator
from components.errors import ConfigError


def _input_fn(mode=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 2)).astype(np.float32)
    y = (x[:, :1] + x[:, 1:] > 0).astype(np.int64)
    ds = tf.data.Dataset.from_tensor_slices(({"x": x}, y)).batch(32)
    return ds.repeat() if mode == estimator.ModeKeys.TRAIN else ds


def _model_fn(features, labels, mode, params):
    head = estimator.BinaryClassHead()
    layer = tf_keras.layers.Dense(1)  # no name: Keras numbers it anew in each program
    logits = layer(features["x"])
    if params["how"] == "optimizer":
        return head.create_estimator_spec(
            features,
            mode,
            logits,
            labels,
            optimizer=tf_keras.optimizers.legacy.Adagrad(0.5),
            trainable_variables=layer.trainable_variables,
        )
    opt = tf_keras.optimizers.legacy.SGD(0.5)

    def train_op_fn(loss):
        grads = tf.gradients(loss, layer.trainable_variables)
        return tf.group(
            opt.apply_gradients(zip(grads, layer.trainable_variables)),
            tf.compat.v1.train.get_global_step().assign_add(1),
        )

    return head.create_estimator_spec(features, mode, logits, labels, train_op_fn=train_op_fn)


@pytest.mark.parametrize("how", ["optimizer", "train_op_fn"])
def test_a_head_builds_the_spec_of_a_custom_model_fn(tmp_path, how):
    est = estimator.Estimator(_model_fn, str(tmp_path / how), params={"how": how})
    est.train(_input_fn, steps=100)
    metrics = est.evaluate(_input_fn)
    assert metrics["global_step"] == 100
    assert metrics["accuracy"] > 0.9 and {"auc", "average_loss", "label/mean", "precision"} <= set(metrics)
    [first] = list(est.predict(lambda: _input_fn().take(1)))[:1]
    assert {"logits", "logistic", "probabilities", "class_ids", "classes"} <= set(first)
    spec = tf.feature_column.make_parse_example_spec([tf.feature_column.numeric_column("x", shape=[2])])
    path = est.export_saved_model(
        str(tmp_path / "export"), estimator.export.build_parsing_serving_input_receiver_fn(spec)
    )
    loaded = tf.saved_model.load(path)
    assert {"classification", "regression", "predict", "serving_default"} <= set(loaded.signatures)


def test_a_head_without_optimizer_or_train_op_fn_says_what_it_needs(tmp_path):
    def model_fn(features, labels, mode):
        logits = tf_keras.layers.Dense(1)(features["x"])
        return estimator.BinaryClassHead().create_estimator_spec(features, mode, logits, labels)

    with pytest.raises(ConfigError, match=r"give optimizer .* or train_op_fn"):
        estimator.Estimator(model_fn, str(tmp_path)).train(_input_fn, steps=1)


@pytest.mark.parametrize(("library", "set_iterations"), [("keras3", True), ("keras3", False), ("tf_keras", True)])
def test_the_global_step_advances_once_per_step_with_either_keras(tmp_path, library, set_iterations):
    """tf.estimator's model_fns made the optimizer's `iterations` the global step (its canned estimators
    did): the optimizer then advances the step and the head must not advance it again. Keras 3's
    `iterations` has no setter of its own; without the assignment the head advances the step."""
    keras = tf.keras if library == "keras3" else tf_keras

    def model_fn(features, labels, mode):
        layer = keras.layers.Dense(1)
        logits = layer(features["x"])
        optimizer = keras.optimizers.Adagrad(0.5)
        if set_iterations and mode == estimator.ModeKeys.TRAIN:
            optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()
        return estimator.BinaryClassHead().create_estimator_spec(
            features, mode, logits, labels, optimizer=optimizer, trainable_variables=layer.trainable_variables
        )

    est = estimator.Estimator(model_fn, str(tmp_path))
    est.train(_input_fn, steps=5)
    assert est.get_variable_value("global_step") == 5 and est.latest_checkpoint().endswith("model.ckpt-5")
    est.train(_input_fn, steps=5)
    assert est.get_variable_value("global_step") == 10
