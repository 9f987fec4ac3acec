"""A model_dir that tf.estimator 2.15 trained, brought to tfpipe: evaluated, predicted from, trained further in
place and warm-started from.

The model_dirs (name-based checkpoints, 50 steps on a Titanic split) and 2.15's own metrics come from
data/tf215/make_checkpoints.py, run once with TensorFlow 2.15 (its docstring says how); the models and the
input are built by that script's functions here too, so both sides read the same data into the same models.
"""

import json
import logging
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator
from components.errors import ConfigError
from tests.components.estimator.data.tf215 import make_checkpoints as tf215
from tests.components.estimator.helpers import serialized_example

DATA = tf215.HERE
RECORD = json.loads((DATA / "metrics.json").read_text())
MODELS = ("linear", "dnn", "wide_deep", "baseline", "custom")
# Rows of 2.15's first-layer kernel (its input columns in name order) that tfpipe keeps in each variable.
FIRST_LAYER = {
    # age, class_indicator (3), embark_town_embedding (2), fare, sex_indicator (2)
    "dnn": {
        "kernel": [0, 4, 5, 6],
        "indicator_kernels/class_indicator": [1, 2, 3],
        "indicator_kernels/sex_indicator": [7, 8],
    },
    # age, class_indicator (3), fare
    "wide_deep": {"kernel": [0, 4], "indicator_kernels/class_indicator": [1, 2, 3]},
}


def _model(name, root, config=None, **changes):
    """tfpipe's model `name`, over a copy of 2.15's model_dir in `root` (the test data stays untouched)."""
    shutil.copytree(DATA / name, root / name)
    return tf215.estimators(estimator, root, config or estimator.RunConfig(tf_random_seed=tf215.SEED), tf_keras)[name]


def _input(name, split, **kwargs):
    keys = tf215.BASELINE_KEYS if name == "baseline" else None
    return tf215.input_fn(DATA / f"{split}.csv", keys=keys, **kwargs)


def _stored(name, prefix="hiddenlayer_0") -> dict:
    return {k: v for k, v in RECORD["continued_values"][name].items() if prefix in k}


def _as_tf215(name, est, variable):
    """tfpipe's value of 2.15's `variable`: the first layer's kernel put together from its parts."""
    if variable.endswith("hiddenlayer_0/kernel") and name in FIRST_LAYER:
        parts = FIRST_LAYER[name]
        width = sum(len(rows) for rows in parts.values())
        full = np.zeros([width, est.get_variable_value(variable).shape[1]], np.float32)
        for part, rows in parts.items():
            full[rows] = est.get_variable_value(variable.replace("kernel", part))
        return full
    return est.get_variable_value(variable)


@pytest.mark.parametrize("name", MODELS)
def test_evaluate_and_predict_the_untouched_215_checkpoint(name, tmp_path, caplog):
    est = _model(name, tmp_path)
    with caplog.at_level(logging.INFO, logger="tfpipe.estimator"):
        got = est.evaluate(_input(name, "eval", epochs=1))
    want = RECORD["metrics"][name]
    assert set(got) == set(want)
    assert {k: float(v) for k, v in got.items()} == pytest.approx(want, abs=1e-4)
    assert any("name-based checkpoint as tf.estimator wrote them (global step 50" in m for m in caplog.messages)
    # The names are tf.estimator's; nothing was written to the model_dir but the evaluation's events.
    assert est.get_variable_names() == sorted(RECORD["variables"][name])
    assert est.latest_checkpoint().endswith("model.ckpt-50")
    key = "probability" if name == "custom" else "logistic"
    predicted = [float(np.squeeze(p[key])) for p in est.predict(_input(name, "eval", epochs=1))]
    assert len(predicted) == 267
    if "prediction/mean" in want:
        assert np.mean(predicted) == pytest.approx(want["prediction/mean"], abs=1e-4)
    else:  # the custom model's accuracy at its 0.5 threshold
        _, labels = tf215.read_csv(DATA / "eval.csv")
        assert np.mean((np.array(predicted) > 0.5) == np.array(labels)) == pytest.approx(want["accuracy"], abs=1e-4)
    if name in ("dnn", "wide_deep"):  # exported from the 2.15 checkpoint, it serves what predict gives
        features, _ = tf215.read_csv(DATA / "eval.csv")
        spec = tf.feature_column.make_parse_example_spec([c for p in est._parts.values() for c in p.transform.columns])
        receiver = estimator.export.build_parsing_serving_input_receiver_fn(spec)
        serving = tf.saved_model.load(est.export_saved_model(str(tmp_path / "export"), receiver))
        row = serialized_example(**{k: v[0] for k, v in features.items()})
        scores = serving.signatures["classification"](inputs=tf.constant([row]))["scores"]
        assert float(scores[0, 1]) == pytest.approx(predicted[0], abs=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_train_continues_the_215_checkpoint_as_215_did(name, tmp_path):
    est = _model(name, tmp_path)
    est.train(_input(name, "train"), steps=tf215.CONTINUE_STEPS)
    # The global step went on from 2.15's, and the save is tfpipe's object-based format.
    latest = est.latest_checkpoint()
    assert latest.endswith(f"model.ckpt-{50 + tf215.CONTINUE_STEPS}")
    assert tf.train.load_checkpoint(latest).has_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    # Optimizer slots came along: the variables are what 2.15 itself made of the same steps (a fresh
    # Adagrad or FTRL accumulator would have moved them differently).
    for variable, value in RECORD["continued_values"][name].items():
        np.testing.assert_allclose(_as_tf215(name, est, variable), value, rtol=1e-5, atol=1e-6, err_msg=variable)
    # A new Estimator (another process, say) reads the new checkpoint; its metrics are 2.15's after those steps.
    again = _model(name, tmp_path / "again")
    shutil.rmtree(again.model_dir)
    shutil.copytree(est.model_dir, again.model_dir)
    got = again.evaluate(_input(name, "eval", epochs=1))
    assert {k: float(v) for k, v in got.items()} == pytest.approx(RECORD["continued_metrics"][name], abs=1e-4)


def _dnn_columns():
    """The columns of make_checkpoints' DNN."""
    fc = tf.feature_column
    sex = fc.categorical_column_with_vocabulary_list("sex", ["male", "female"])
    cls = fc.categorical_column_with_vocabulary_list("class", ["First", "Second", "Third"])
    town = fc.categorical_column_with_hash_bucket("embark_town", 8)
    age = fc.numeric_column("age", normalizer_fn=lambda x: (x - 30.0) / 15.0)
    fare = fc.numeric_column("fare", normalizer_fn=lambda x: (x - 32.0) / 50.0)
    return [age, fare, fc.indicator_column(sex), fc.indicator_column(cls), fc.embedding_column(town, 2)]


@pytest.mark.slow  # two or three Estimators trained: 16-18 s on the shared 2-core VM
def test_optimizer_slots_not_in_the_checkpoint_start_fresh_and_are_named(tmp_path, caplog):
    # 2.15 trained with Adagrad; continuing with Adam keeps the weights and starts Adam's slots afresh.
    shutil.copytree(DATA / "dnn", tmp_path / "dnn")
    est = estimator.DNNClassifier([8, 4], _dnn_columns(), model_dir=str(tmp_path / "dnn"), optimizer="Adam")
    with caplog.at_level(logging.INFO, logger="tfpipe.estimator"):
        est.train(_input("dnn", "train"), steps=1)
    (line,) = [m for m in caplog.messages if "name-based checkpoint" in m]
    assert "(global step 50, 7 variable(s), 0 optimizer slot(s))" in line
    assert "dnn/hiddenlayer_0/kernel/m" in line and "dnn/logits/bias/v" in line and "fresh" in line
    assert est.get_variable_value("dnn_optimizer/iter") == 51  # Adam's step count went on from the global step
    # Continuing with 2.15's Adagrad, every slot comes along and none is fresh.
    shutil.copytree(DATA / "dnn", tmp_path / "again")
    caplog.clear()
    again = estimator.DNNClassifier([8, 4], _dnn_columns(), model_dir=str(tmp_path / "again"))
    with caplog.at_level(logging.INFO, logger="tfpipe.estimator"):
        again.train(_input("dnn", "train"), steps=1)
    (line,) = [m for m in caplog.messages if "name-based checkpoint" in m]
    assert "(global step 50, 7 variable(s), 7 optimizer slot(s))" in line and "fresh" not in line


@pytest.mark.slow  # two or three Estimators trained: 16-18 s on the shared 2-core VM
def test_warm_start_from_a_215_model_dir(tmp_path):
    reader = tf.train.load_checkpoint(str(DATA / "dnn"))
    frozen = lambda: tf_keras.optimizers.legacy.SGD(0.0)  # noqa: E731 - keeps the warm-started values
    columns = _dnn_columns()
    fc = tf.feature_column
    cls = fc.categorical_column_with_vocabulary_list("class", ["First", "Second", "Third"])
    est = estimator.DNNClassifier(
        [8, 4],
        columns,
        model_dir=str(tmp_path / "ws"),
        optimizer=frozen,
        # 2.15's name of the first layer's kernel takes all of its parts here.
        warm_start_from=estimator.WarmStartSettings(
            str(DATA / "dnn"), vars_to_warm_start="dnn/hiddenlayer_0/kernel|.*_1/"
        ),
        config=estimator.RunConfig(tf_random_seed=99),
    )
    est.train(_input("dnn", "train"), steps=1)
    # The chosen variables are 2.15's (the first layer's kernel in its parts); the rest is new.
    for name in ("dnn/hiddenlayer_0/kernel", "dnn/hiddenlayer_1/kernel", "dnn/hiddenlayer_1/bias"):
        np.testing.assert_array_equal(_as_tf215("dnn", est, name), reader.get_tensor(name), err_msg=name)
    for name in (
        "dnn/hiddenlayer_0/bias",
        "dnn/logits/kernel",
        "dnn/input_from_feature_columns/input_layer/embark_town_embedding/embedding_weights",
    ):
        assert not np.array_equal(est.get_variable_value(name), reader.get_tensor(name)), name
    assert est.get_variable_value("global_step") == 1

    # A renamed column, mapped with var_name_to_prev_var_name; the other columns left out.
    linear = tf.train.load_checkpoint(str(DATA / "linear"))
    gender = fc.categorical_column_with_vocabulary_list("gender", ["male", "female"])
    settings = estimator.WarmStartSettings(
        str(DATA / "linear"),
        vars_to_warm_start=".*(gender|class|bias).*",
        var_name_to_prev_var_name={"linear/linear_model/gender/weights": "linear/linear_model/sex/weights"},
    )
    renamed = estimator.LinearClassifier(
        [gender, cls, columns[0]], model_dir=str(tmp_path / "renamed"), optimizer=frozen, warm_start_from=settings
    )
    with_gender = lambda: _input("linear", "train")().map(lambda f, y: ({**f, "gender": f["sex"]}, y))  # noqa: E731
    renamed.train(with_gender, steps=1)
    for new, old in (("gender", "sex"), ("class", "class"), ("bias_weights", "bias_weights")):
        suffix = "" if new == "bias_weights" else "/weights"
        np.testing.assert_array_equal(
            renamed.get_variable_value(f"linear/linear_model/{new}{suffix}"),
            linear.get_tensor(f"linear/linear_model/{old}{suffix}"),
        )
    assert not renamed.get_variable_value("linear/linear_model/age/weights").any()  # not warm-started: zeros

    # A layer of another shape fails on it, naming the variable.
    smaller = estimator.DNNClassifier(
        [6, 4], columns, model_dir=str(tmp_path / "bad"), warm_start_from=str(DATA / "dnn")
    )
    with pytest.raises(ConfigError, match="hiddenlayer_0"):
        smaller.train(_input("dnn", "train"), steps=1)


def test_a_215_checkpoint_of_another_model_fails_clearly(tmp_path):
    shutil.copytree(DATA / "linear", tmp_path / "dnn")  # a linear model's checkpoint where the DNN's should be
    est = tf215.estimators(estimator, tmp_path, estimator.RunConfig(), tf_keras)["dnn"]
    with pytest.raises(ConfigError, match=r"name-based.*dnn/hiddenlayer_0/kernel"):
        est.evaluate(_input("dnn", "eval", epochs=1))


@pytest.mark.parametrize("name,seed", [("dnn", 1), ("dnn", 2), ("dnn", 3), ("wide_deep", 1)])
def test_a_dnn_trained_from_scratch_is_215s_model_for_the_same_seed(name, seed, tmp_path):
    # For a tf_random_seed, the DNN starts from the values 2.15 drew (its initializers, in its graph's op-seed
    # order) and trains as 2.15 did: the model 2.15 made, not just one as good on average.
    est = tf215.estimators(estimator, tmp_path, estimator.RunConfig(tf_random_seed=seed), tf_keras)[name]
    est.train(_input(name, "train"), steps=tf215.STEPS)
    got = est.evaluate(_input(name, "eval", epochs=1))
    want = RECORD["dnn_seeds"][str(seed)] if name == "dnn" else RECORD["metrics"][name]
    assert {k: float(v) for k, v in got.items()} == pytest.approx(want, abs=1e-4)
