"""Variables made by a model_fn are matched by creation order, so auto-named Keras layers restore."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator


def unnamed_layers_model_fn(features, labels, mode):
    """The tf.estimator-era model_fn: Keras 3 and tf_keras layers made without names, in every program."""
    hidden = tf.keras.layers.Dense(4, activation="relu")
    out = tf_keras.layers.Dense(1)
    pred = out(hidden(features["x"]))
    if mode == estimator.ModeKeys.PREDICT:
        return estimator.EstimatorSpec(mode, predictions={"y": pred})
    loss = tf.reduce_mean(tf.square(pred - labels))
    if mode == estimator.ModeKeys.EVAL:
        return estimator.EstimatorSpec(mode, loss=loss)
    variables = hidden.trainable_variables + out.trainable_variables
    opt = tf.keras.optimizers.Adam(0.05)
    step = opt.apply_gradients(zip(tf.gradients(loss, variables), variables))
    return estimator.EstimatorSpec(
        mode, loss=loss, train_op=tf.group(step, tf.compat.v1.train.get_global_step().assign_add(1))
    )


def input_fn(mode=None):
    x = np.linspace(-1, 1, 16, dtype=np.float32)[:, None]
    ds = tf.data.Dataset.from_tensor_slices(({"x": x}, 2 * x + 1)).batch(8)
    return ds.repeat() if mode == estimator.ModeKeys.TRAIN else ds


def test_unnamed_keras_layers_train_evaluate_predict_and_export(tmp_path):
    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path / "model"))
    est.train(input_fn, steps=30)
    trained = est.evaluate(input_fn)
    assert trained["global_step"] == 30
    preds = np.concatenate([p["y"] for p in est.predict(input_fn, yield_single_examples=False)])
    assert preds.shape == (16, 1)
    # The same numbers from a second Estimator over the model_dir (new programs, new Keras names).
    again = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path / "model"))
    assert again.evaluate(input_fn)["loss"] == pytest.approx(trained["loss"], rel=1e-6)
    np.testing.assert_allclose(
        np.concatenate([p["y"] for p in again.predict(input_fn, yield_single_examples=False)]), preds, rtol=1e-6
    )
    # Training resumes from the checkpoint (optimizer state included) and keeps improving.
    again.train(input_fn, steps=60)
    assert again.evaluate(input_fn)["loss"] < trained["loss"]
    receiver = estimator.export.build_raw_serving_input_receiver_fn({"x": tf.zeros([1, 1])})
    path = again.export_saved_model(str(tmp_path / "export"), receiver)
    served = tf.saved_model.load(path.decode()).signatures["serving_default"](x=tf.constant([[0.5]]))
    expected = next(again.predict(lambda: tf.data.Dataset.from_tensors({"x": [[0.5]]})))["y"]
    np.testing.assert_allclose(served["y"].numpy()[0], expected, rtol=1e-5)


def test_two_estimators_with_unnamed_layers_in_one_process(tmp_path):
    a = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path / "a"))
    b = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path / "b"))
    a.train(input_fn, steps=5)
    b.train(input_fn, steps=40)
    a_loss, b_loss = a.evaluate(input_fn)["loss"], b.evaluate(input_fn)["loss"]
    assert b_loss < a_loss  # each restored its own weights, not the other's
    assert a.evaluate(input_fn)["loss"] == pytest.approx(a_loss, rel=1e-6)


def test_checkpoint_named_by_variable_name_still_restores(tmp_path):
    """Checkpoints written before creation-order matching (variables by name only) still load."""

    def model_fn(features, labels, mode):
        w = tf.Variable(tf.zeros([1, 1]), name="w")
        pred = tf.matmul(features["x"], w)
        return estimator.EstimatorSpec(mode, predictions=pred, loss=tf.reduce_mean(tf.square(pred - labels)))

    root = tf.train.Checkpoint(global_step=tf.Variable(7, dtype=tf.int64), w=tf.Variable([[2.0]]))
    root.save(str(tmp_path / "model.ckpt"))
    result = estimator.Estimator(model_fn, str(tmp_path)).evaluate(input_fn)
    assert result["global_step"] == 7 and result["loss"] == pytest.approx(1.0, rel=1e-5)  # (2x) vs (2x + 1)


def tf1_minimize_model_fn(features, labels, mode, params):
    """The guide's TF1 custom model_fn: a v1 optimizer's minimize(loss, global_step=...) with no var_list."""
    pred = params["layers"].Dense(1)(features["x"])
    loss = tf.compat.v1.losses.mean_squared_error(labels, pred)
    if mode != estimator.ModeKeys.TRAIN:
        return estimator.EstimatorSpec(mode, loss=loss, predictions={"y": pred})
    optimizer = tf.compat.v1.train.GradientDescentOptimizer(0.1)
    train_op = optimizer.minimize(loss, global_step=tf.compat.v1.train.get_global_step())
    return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


@pytest.mark.parametrize("layers", [tf.keras.layers, tf_keras.layers], ids=["keras3", "tf_keras"])
def test_a_v1_optimizer_minimize_without_var_list_trains_the_model_fn_variables(layers, tmp_path):
    # TF1 found the variables in the graph's TRAINABLE_VARIABLES collection; so must the traced step
    # (tf_keras builds its weights in the eager context, outside the traced graph).
    est = estimator.Estimator(tf1_minimize_model_fn, str(tmp_path), params={"layers": layers})
    est.train(input_fn, steps=1)
    first = est.evaluate(input_fn)
    est.train(input_fn, steps=100)
    trained = est.evaluate(input_fn)
    assert trained["global_step"] == 101
    assert trained["loss"] < first["loss"] / 10


def test_the_model_fn_variables_stay_out_of_the_process_wide_collection(tmp_path):
    # A traced graph inherits the default graph's TRAINABLE_VARIABLES list by reference; filling that
    # list would show the Estimator's variables to every later graph (tf.Transform then rejects a
    # preprocessing_fn "containing trainable variables").
    estimator.Estimator(tf1_minimize_model_fn, str(tmp_path), params={"layers": tf_keras.layers}).train(
        input_fn, steps=2
    )

    @tf.function
    def later_graph():
        return tf.compat.v1.trainable_variables()

    assert later_graph.get_concrete_function().graph.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES) == []
    assert tf.compat.v1.get_default_graph().get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES) == []
