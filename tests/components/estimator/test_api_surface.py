"""tf.estimator 2.15's public names (its v2 API: tf.estimator, .experimental, .export), each here, and the
ones added last used as tf.estimator's docs used them."""

import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator
from components.errors import ConfigError

# dir() of tf.estimator, tf.estimator.experimental and tf.estimator.export in tensorflow-estimator 2.15.
TF_ESTIMATOR_2_15 = """
BaselineClassifier BaselineEstimator BaselineRegressor BestExporter BinaryClassHead CheckpointSaverHook
CheckpointSaverListener DNNClassifier DNNEstimator DNNLinearCombinedClassifier DNNLinearCombinedEstimator
DNNLinearCombinedRegressor DNNRegressor Estimator EstimatorSpec EvalSpec Exporter FeedFnHook FinalExporter
FinalOpsHook GlobalStepWaiterHook Head LatestExporter LinearClassifier LinearEstimator LinearRegressor
LoggingTensorHook LogisticRegressionHead ModeKeys MultiClassHead MultiHead MultiLabelHead
NanLossDuringTrainingError NanTensorHook PoissonRegressionHead ProfilerHook RegressionHead RunConfig
SecondOrStepTimer SessionRunArgs SessionRunContext SessionRunHook SessionRunValues StepCounterHook StopAtStepHook
SummarySaverHook TrainSpec VocabInfo WarmStartSettings add_metrics classifier_parse_example_spec experimental
export regressor_parse_example_spec train_and_evaluate
experimental.InMemoryEvaluatorHook experimental.LinearSDCA experimental.RNNClassifier experimental.RNNEstimator
experimental.build_raw_supervised_input_receiver_fn experimental.call_logit_fn
experimental.make_early_stopping_hook experimental.make_stop_at_checkpoint_step_hook
experimental.stop_if_higher_hook experimental.stop_if_lower_hook experimental.stop_if_no_decrease_hook
experimental.stop_if_no_increase_hook
export.ClassificationOutput export.EvalOutput export.ExportOutput export.PredictOutput export.RegressionOutput
export.ServingInputReceiver export.TensorServingInputReceiver export.build_parsing_serving_input_receiver_fn
export.build_raw_serving_input_receiver_fn
""".split()
ESTIMATOR_METHODS_2_15 = """
config eval_dir evaluate experimental_export_all_saved_models export_saved_model get_variable_names
get_variable_value latest_checkpoint model_dir model_fn params predict train
""".split()


def _resolve(name):
    obj = estimator
    for part in name.split("."):
        obj = getattr(obj, part, None)
    return obj


def test_every_public_name_of_tf_estimator_2_15_is_here():
    assert len(TF_ESTIMATOR_2_15) == 76
    missing = [n for n in TF_ESTIMATOR_2_15 if _resolve(n) is None]
    missing += [f"Estimator.{m}" for m in ESTIMATOR_METHODS_2_15 if not hasattr(estimator.Estimator, m)]
    assert missing == []
    top = [n for n in TF_ESTIMATOR_2_15 if "." not in n]
    assert set(top) <= set(estimator.__all__)
    for sub in ("experimental", "export"):
        names = {n.split(".")[1] for n in TF_ESTIMATOR_2_15 if n.startswith(sub + ".")}
        assert names <= set(
            getattr(estimator, sub).__all__
            if hasattr(getattr(estimator, sub), "__all__")
            else dir(getattr(estimator, sub))
        )


def test_second_or_step_timer_fires_on_its_cadence():
    timer = estimator.SecondOrStepTimer(every_steps=3)
    assert timer.should_trigger_for_step(1)  # the first step it sees
    timer.update_last_triggered_step(1)
    assert [s for s in range(2, 9) if timer.should_trigger_for_step(s)] == [4, 5, 6, 7, 8]
    timer.update_last_triggered_step(4)
    assert not timer.should_trigger_for_step(6) and timer.should_trigger_for_step(7)
    by_time = estimator.SecondOrStepTimer(every_secs=0.05)
    by_time.update_last_triggered_step(1)
    assert not by_time.should_trigger_for_step(2)
    time.sleep(0.06)
    assert by_time.should_trigger_for_step(2)
    elapsed_secs, elapsed_steps = by_time.update_last_triggered_step(5)
    assert elapsed_secs >= 0.05 and elapsed_steps == 4


def test_head_is_the_base_of_every_head_and_abstract():
    heads = [
        estimator.BinaryClassHead(),
        estimator.MultiClassHead(3),
        estimator.MultiLabelHead(2),
        estimator.RegressionHead(),
        estimator.PoissonRegressionHead(),
        estimator.LogisticRegressionHead(),
    ]
    assert all(isinstance(h, estimator.Head) for h in heads)
    assert estimator.RegressionHead(loss_reduction=estimator.SUM).loss_reduction == estimator.SUM
    with pytest.raises(TypeError, match="abstract"):
        estimator.Head()


def _line_input_fn(mode=None):
    x = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)
    y = np.array([[1.0], [2.0], [3.0], [6.0]], np.float32)
    ds = tf.data.Dataset.from_tensors(({"x": x}, y))
    return ds.repeat() if mode == estimator.ModeKeys.TRAIN else ds


def test_baseline_estimator_learns_what_its_head_makes_of_the_labels(tmp_path):
    est = estimator.BaselineEstimator(
        head=estimator.RegressionHead(), model_dir=str(tmp_path), optimizer=tf_keras.optimizers.legacy.SGD(0.3)
    )
    est.train(_line_input_fn, steps=60)
    assert est.get_variable_value("baseline/bias") == pytest.approx([3.0], abs=0.01)  # the label mean
    assert [float(p["predictions"][0]) for p in est.predict(_line_input_fn)] == pytest.approx([3.0] * 4, abs=0.01)
    assert est.evaluate(_line_input_fn)["average_loss"] == pytest.approx(3.5, abs=0.01)  # the labels' variance


def test_call_logit_fn_passes_the_arguments_the_logit_fn_names():
    seen = {}

    def logit_fn(features, mode, params):
        seen.update(mode=mode, params=params)
        return features["x"] * params["scale"]

    out = estimator.experimental.call_logit_fn(
        logit_fn, {"x": tf.constant([[2.0]])}, estimator.ModeKeys.EVAL, {"scale": 3.0}, estimator.RunConfig()
    )
    assert float(out[0, 0]) == 6.0 and seen == {"mode": "eval", "params": {"scale": 3.0}}
    as_dict = estimator.experimental.call_logit_fn(
        lambda features: {"a": features}, tf.ones([1, 1]), "train", None, None
    )
    assert set(as_dict) == {"a"}
    with pytest.raises(ConfigError, match="Tensor"):
        estimator.experimental.call_logit_fn(lambda features: [features], tf.ones([1, 1]), "train", None, None)


def _counting_model_fn(features, labels, mode):
    w = tf.Variable([[0.0]], name="w")
    loss = tf.reduce_mean(tf.square(tf.matmul(features["x"], w) - labels))
    train_op = tf.group(
        w.assign_sub(0.01 * tf.gradients(loss, [w])[0]), tf.compat.v1.train.get_global_step().assign_add(1)
    )
    return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def test_stop_at_checkpoint_step_hook_stops_the_chief_at_the_step_and_others_at_its_checkpoint(tmp_path, monkeypatch):
    chief = estimator.Estimator(_counting_model_fn, str(tmp_path / "chief"))
    hook = estimator.experimental.make_stop_at_checkpoint_step_hook(chief, last_step=4)
    assert isinstance(hook, estimator.StopAtStepHook)
    chief.train(_line_input_fn, hooks=[hook])
    assert chief.get_variable_value("global_step") == 4

    monkeypatch.setenv(
        "TF_CONFIG",
        '{"cluster": {"chief": ["localhost:1"], "worker": ["localhost:2"]}, "task": {"type": "worker", "index": 0}}',
    )
    worker = estimator.Estimator(_counting_model_fn, str(tmp_path / "shared"), config=estimator.RunConfig())
    monkeypatch.delenv("TF_CONFIG")
    hook = estimator.experimental.make_stop_at_checkpoint_step_hook(worker, last_step=4, wait_after_file_check_secs=0)
    assert not isinstance(hook, estimator.StopAtStepHook)
    # Trained here by a local Estimator in the worker's model_dir, saving every 3 steps: at step 4 the
    # latest checkpoint is model.ckpt-3, so training goes on until one at step 4 or later is on disk.
    trainer = estimator.Estimator(
        _counting_model_fn, str(tmp_path / "shared"), config=estimator.RunConfig(save_checkpoints_steps=3)
    )
    trainer.train(_line_input_fn, hooks=[hook], steps=20)
    assert trainer.get_variable_value("global_step") in (6, 7)


@pytest.mark.slow
def test_export_all_saved_models_gives_each_mode_its_signatures(tmp_path):
    cols = [tf.feature_column.numeric_column("x")]
    est = estimator.LinearRegressor(
        cols, model_dir=str(tmp_path / "model"), optimizer=tf_keras.optimizers.legacy.SGD(0.1)
    )
    est.train(_line_input_fn, steps=200)
    supervised = estimator.experimental.build_raw_supervised_input_receiver_fn(
        {"x": tf.zeros([1, 1])}, tf.zeros([1, 1]), default_batch_size=None
    )
    path = est.experimental_export_all_saved_models(
        str(tmp_path / "export"),
        {
            estimator.ModeKeys.PREDICT: estimator.export.build_raw_serving_input_receiver_fn({"x": tf.zeros([1, 1])}),
            estimator.ModeKeys.EVAL: supervised,
            estimator.ModeKeys.TRAIN: supervised,
        },
    )
    loaded = tf.saved_model.load(path.decode())
    assert {"serving_default", "predict", "eval", "train"} <= set(loaded.signatures)
    x, y = tf.constant([[0.0], [3.0]]), tf.constant([[1.0], [6.0]])
    predicted = loaded.signatures["predict"](x=x)["predictions"].numpy()
    evaluated = loaded.signatures["eval"](x=x, label=y)
    mse = float(np.mean((predicted - y.numpy()) ** 2))
    assert float(evaluated["loss"]) == pytest.approx(mse, rel=1e-4)
    np.testing.assert_allclose(evaluated["predictions/predictions"].numpy(), predicted, rtol=1e-5)
    assert "metrics/average_loss/value" in evaluated
    trained = loaded.signatures["train"](x=x, label=y)
    assert float(trained["loss"]) == pytest.approx(mse, rel=1e-4)
    assert float(loaded.signatures["train"](x=x, label=y)["loss"]) == pytest.approx(mse, rel=1e-4)  # it never trains
    with pytest.raises(ConfigError, match="no labels"):
        est.experimental_export_all_saved_models(
            str(tmp_path / "bad"),
            {estimator.ModeKeys.EVAL: estimator.export.build_raw_serving_input_receiver_fn({"x": tf.zeros([1, 1])})},
        )
