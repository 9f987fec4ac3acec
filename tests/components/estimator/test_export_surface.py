"""Exporter, ExportOutput, EvalOutput, TensorServingInputReceiver and the raw supervised receiver."""

import numpy as np
import pytest
import tensorflow as tf

from components import estimator
from components.errors import ConfigError

export = estimator.export


def tensor_model_fn(features, labels, mode):
    """A model over one Tensor of features (no dict), with an eval signature when labels are fed."""
    w = tf.Variable([[0.0], [0.0]], name="w")
    pred = tf.matmul(features, w)
    if mode == estimator.ModeKeys.PREDICT:
        outputs = {"serving_default": export.PredictOutput({"y": pred})}
        if labels is not None:
            loss = tf.reduce_mean(tf.square(pred - labels))
            outputs["eval"] = export.EvalOutput(loss=loss, predictions={"y": pred}, metrics={"mse": (loss, tf.no_op())})
        return estimator.EstimatorSpec(mode, predictions={"y": pred}, export_outputs=outputs)
    loss = tf.reduce_mean(tf.square(pred - labels))
    if mode == estimator.ModeKeys.EVAL:
        return estimator.EstimatorSpec(mode, loss=loss)
    train_op = tf.group(
        w.assign_sub(0.2 * tf.gradients(loss, [w])[0]), tf.compat.v1.train.get_global_step().assign_add(1)
    )
    return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def tensor_input_fn():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    return tf.data.Dataset.from_tensors((x, x @ np.array([[2.0], [-1.0]], np.float32))).repeat()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    est = estimator.Estimator(tensor_model_fn, str(tmp_path_factory.mktemp("tensor_model")))
    est.train(tensor_input_fn, steps=100)
    return est


def test_tensor_serving_input_receiver_feeds_one_tensor(trained, tmp_path):
    def receiver_fn():  # as tf.estimator documented it: the model takes a single Tensor
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        return export.TensorServingInputReceiver(features=x, receiver_tensors={"x": x})

    path = trained.export_saved_model(str(tmp_path), receiver_fn)
    out = tf.saved_model.load(path.decode()).signatures["serving_default"](x=tf.constant([[1.0, 1.0]]))
    np.testing.assert_allclose(out["y"].numpy(), [[1.0]], atol=0.05)
    with pytest.raises(ConfigError, match="one Tensor"):
        with tf.Graph().as_default():
            export.TensorServingInputReceiver({"x": tf.constant([1.0])}, tf.constant([1.0]))


def test_raw_supervised_receiver_and_eval_output(trained, tmp_path):
    receiver_fn = estimator.experimental.build_raw_supervised_input_receiver_fn(
        tf.zeros([1, 2]), tf.zeros([1, 1]), default_batch_size=None
    )
    with tf.Graph().as_default():
        receiver = receiver_fn()
        assert sorted(receiver.receiver_tensors) == ["input", "label"]
        assert receiver.features.shape.as_list() == [None, 2] and receiver.labels.dtype == tf.float32
    path = trained.export_saved_model(str(tmp_path), receiver_fn)
    loaded = tf.saved_model.load(path.decode())
    evaluated = loaded.signatures["eval"](input=tf.constant([[1.0, 0.0]]), label=tf.constant([[2.0]]))
    assert sorted(evaluated) == ["loss", "metrics/mse/update_op", "metrics/mse/value", "predictions/y"]
    assert float(evaluated["loss"]) == pytest.approx(0.0, abs=0.01)
    with pytest.raises(ConfigError, match="distinct"):
        estimator.experimental.build_raw_supervised_input_receiver_fn({"a": tf.zeros([1])}, {"a": tf.zeros([1])})


def test_export_output_is_the_base_of_the_outputs():
    assert issubclass(export.ClassificationOutput, export.ExportOutput)
    assert issubclass(export.EvalOutput, export.ExportOutput)
    with pytest.raises(TypeError):
        export.ExportOutput()  # abstract


def test_a_custom_exporter_runs_in_train_and_evaluate(tmp_path):
    calls = []

    class Record(estimator.Exporter):  # subclassing, as tf.estimator.Exporter's docs ask
        name = "record"

        def export(self, estimator_, export_path, checkpoint_path, eval_result, is_the_final_export):
            calls.append((export_path, checkpoint_path, int(eval_result["global_step"]), is_the_final_export))
            return export_path

    est = estimator.Estimator(tensor_model_fn, str(tmp_path))
    _, exports = estimator.train_and_evaluate(
        est,
        estimator.TrainSpec(tensor_input_fn, max_steps=5),
        estimator.EvalSpec(lambda: tensor_input_fn().take(1), exporters=[Record()], throttle_secs=10**6),
    )
    assert calls == [(str(tmp_path / "export" / "record"), est.latest_checkpoint(), 5, True)]
    assert exports == [str(tmp_path / "export" / "record")]
    with pytest.raises(ConfigError, match="Exporter"):
        estimator.train_and_evaluate(
            est,
            estimator.TrainSpec(tensor_input_fn, max_steps=5),
            estimator.EvalSpec(tensor_input_fn, exporters=[object()]),
        )


def test_training_that_ends_on_an_evaluated_checkpoint_still_makes_the_final_export(tmp_path):
    """The input runs out at step 20, a checkpoint step already evaluated: that evaluation is not run
    again, and its result makes the final export."""
    calls = []

    class Record(estimator.Exporter):
        name = "record"

        def export(self, estimator_, export_path, checkpoint_path, eval_result, is_the_final_export):
            calls.append((int(eval_result["global_step"]), is_the_final_export))
            return export_path

    est = estimator.Estimator(tensor_model_fn, str(tmp_path), config=estimator.RunConfig(save_checkpoints_steps=10))
    estimator.train_and_evaluate(
        est,
        estimator.TrainSpec(lambda: tensor_input_fn().take(20), max_steps=100),
        estimator.EvalSpec(lambda: tensor_input_fn().take(1), exporters=[Record()], throttle_secs=0),
    )
    assert calls == [(10, False), (20, False), (20, True)]
    assert sorted(estimator.experimental.read_eval_metrics(est.eval_dir())) == [10, 20]
