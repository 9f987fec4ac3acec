"""Boosted trees: Titanic against the DNN, export signatures, resuming growth, explanations, bad use."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator
from components.errors import ConfigError
from examples.titanic.data import split_titanic
from examples.titanic.seed_estimator import make_input_fn
from tests.components.estimator.helpers import serialized_example as _example

fc = tf.feature_column
AGE, FARE = fc.numeric_column("age"), fc.numeric_column("fare")
CLASS = fc.categorical_column_with_vocabulary_list("class", ["First", "Second", "Third"])
SEX = fc.categorical_column_with_vocabulary_list("sex", ["male", "female"])
TOWN = fc.categorical_column_with_hash_bucket("embark_town", 32)
TREE_COLUMNS = [
    fc.bucketized_column(AGE, [5, 12, 18, 25, 35, 45, 60]),
    fc.bucketized_column(FARE, [8, 10, 15, 25, 50, 100]),
    fc.indicator_column(CLASS),
    fc.indicator_column(SEX),
    fc.indicator_column(TOWN),
]
SEED = estimator.RunConfig(tf_random_seed=1)


@pytest.fixture(scope="module")
def titanic(tmp_path_factory):
    root = tmp_path_factory.mktemp("boosted_titanic")
    train_csv, eval_csv = split_titanic(root)
    # The DNN of test_premade.py, on the same split and seed.
    dnn = estimator.DNNClassifier(
        [32, 16],
        [AGE, FARE, fc.indicator_column(CLASS), fc.indicator_column(SEX), fc.embedding_column(TOWN, 4)],
        model_dir=str(root / "dnn"),
        optimizer=tf_keras.optimizers.legacy.Adam(0.05),
        config=SEED,
    )
    dnn.train(make_input_fn(train_csv), steps=300)
    trees = estimator.BoostedTreesClassifier(
        TREE_COLUMNS,
        n_batches_per_layer=5,
        n_trees=30,
        max_depth=4,
        center_bias=True,
        model_dir=str(root / "trees"),
        config=SEED,
    )
    trees.train(make_input_fn(train_csv), max_steps=100_000)  # stops when the 30 trees are grown
    evaluate = make_input_fn(eval_csv, shuffle=False, epochs=1)
    return trees, trees.evaluate(evaluate), dnn.evaluate(evaluate), eval_csv


def test_trees_beat_the_dnn_on_titanic_and_stop_when_grown(titanic):
    trees, result, dnn_result, _ = titanic
    assert result["accuracy"] >= dnn_result["accuracy"], (result, dnn_result)
    assert result["auc"] >= 0.85
    # 30 trees of at most 4 layers, 5 batches a layer, plus the bias's Newton steps (5 batches each,
    # until one moves it by less than 0.01): training stopped by itself, far before max_steps.
    steps = int(trees.get_variable_value("global_step"))
    assert 30 * 5 < steps < 1000
    assert int(trees.get_variable_value("boosted_trees/finalized_trees")) == 30
    importances = trees.experimental_feature_importances(normalize=True)
    assert set(importances) == {
        "age_bucketized",
        "fare_bucketized",
        "class_indicator",
        "sex_indicator",
        "embark_town_indicator",
    }
    assert sum(importances.values()) == pytest.approx(1.0)
    assert list(importances.values()) == sorted(importances.values(), reverse=True)


def test_trees_export_classification_regression_and_predict(titanic, tmp_path):
    trees, _, _, _ = titanic
    spec = fc.make_parse_example_spec(TREE_COLUMNS)
    path = trees.export_saved_model(str(tmp_path), estimator.export.build_parsing_serving_input_receiver_fn(spec))
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "classification", "regression", "predict"}
    rows = tf.constant(
        [
            _example(age=30.0, fare=80.0, **{"class": "First", "sex": "female", "embark_town": "Cherbourg"}),
            _example(age=30.0, fare=7.0, **{"class": "Third", "sex": "male", "embark_town": "Southampton"}),
        ]
    )
    scores = loaded.signatures["classification"](inputs=rows)["scores"].numpy()
    assert scores[0, 1] > 0.8 and scores[1, 1] < 0.3  # a rich woman survived far more often than a poor man
    assert np.allclose(loaded.signatures["regression"](inputs=rows)["outputs"].numpy()[:, 0], scores[:, 1], atol=1e-5)
    served = loaded.signatures["predict"](examples=rows)["probabilities"].numpy()
    feats = {
        "age": [30.0, 30.0],
        "fare": [80.0, 7.0],
        "class": ["First", "Third"],
        "sex": ["female", "male"],
        "embark_town": ["Cherbourg", "Southampton"],
    }
    predicted = [p["probabilities"] for p in trees.predict(lambda: tf.data.Dataset.from_tensor_slices(feats).batch(2))]
    assert np.allclose(served, predicted, atol=1e-5)


def test_explanations_add_up_to_the_prediction(titanic):
    trees, _, _, eval_csv = titanic
    explained = trees.experimental_predict_with_explanations(make_input_fn(eval_csv, shuffle=False, epochs=1))
    plain = trees.predict(make_input_fn(eval_csv, shuffle=False, epochs=1))
    for _, (e, p) in zip(range(20), zip(explained, plain)):
        assert e["probabilities"] == pytest.approx(p["probabilities"], abs=1e-6)
        assert e["bias"] + sum(e["dfc"].values()) == pytest.approx(float(p["logistic"][0]), abs=1e-5)
        assert list(e["dfc"]) == sorted(e["dfc"], key=lambda k: -abs(e["dfc"][k]))


def _steps(x_values, targets, batch):
    x = np.array(x_values, np.float32)
    y = np.array(targets, np.float32)
    return lambda: tf.data.Dataset.from_tensor_slices(({"x": x}, y)).repeat().batch(batch)


def test_regressor_learns_a_step_and_resumes_growth_from_a_checkpoint(tmp_path):
    x = np.linspace(0, 1, 40)
    y = np.where(x > 0.5, 3.0, -1.0)
    columns = [fc.bucketized_column(fc.numeric_column("x"), list(np.linspace(0.05, 0.95, 19)))]
    make = lambda d: estimator.BoostedTreesRegressor(  # noqa: E731
        columns, n_batches_per_layer=2, n_trees=10, max_depth=2, learning_rate=0.5, model_dir=str(tmp_path / d)
    )
    whole = make("whole")
    whole.train(_steps(x, y, 40), max_steps=1000)
    # The same growth in two calls, the second by another Estimator object (another program).
    make("split").train(_steps(x, y, 40), max_steps=7)  # stops mid-layer: statistics in the checkpoint
    resumed = make("split")
    resumed.train(_steps(x, y, 40), max_steps=1000)
    assert resumed.get_variable_value("global_step") == whole.get_variable_value("global_step")
    for name in ("boosted_trees/node_value", "boosted_trees/node_feature", "boosted_trees/node_threshold"):
        assert np.array_equal(resumed.get_variable_value(name), whole.get_variable_value(name)), name
    preds = [
        p["predictions"][0]
        for p in whole.predict(
            lambda: tf.data.Dataset.from_tensor_slices({"x": np.array([0.1, 0.9], np.float32)}).batch(2)
        )
    ]
    assert preds == pytest.approx([-1.0, 3.0], abs=0.05)


def test_train_in_memory_center_bias_and_multiclass(tmp_path):
    x = np.repeat([0.0, 1.0, 2.0], 10).astype(np.float32)
    labels = np.repeat([0, 1, 2], 10)
    columns = [fc.bucketized_column(fc.numeric_column("x"), [0.5, 1.5])]
    est = estimator.BoostedTreesClassifier(
        columns,
        n_batches_per_layer=1,
        n_classes=3,
        n_trees=5,
        max_depth=1,
        learning_rate=0.5,
        center_bias=True,
        train_in_memory=True,
        model_dir=str(tmp_path),
    )
    est.train(lambda: tf.data.Dataset.from_tensor_slices(({"x": x}, labels)).batch(30).repeat(), max_steps=500)
    assert est.get_variable_value("global_step") < 500  # stopped once grown
    result = est.evaluate(lambda: tf.data.Dataset.from_tensor_slices(({"x": x}, labels)).batch(30))
    assert result["accuracy"] == 1.0
    # Bias centering left the bias at the log of the (equal) class priors, up to a constant.
    bias = est.get_variable_value("boosted_trees/bias")
    assert np.ptp(bias) < 0.05


def test_bad_configuration_is_refused():
    with pytest.raises(ConfigError, match="bucketized_column"):
        estimator.BoostedTreesClassifier([AGE], n_batches_per_layer=1)
    with pytest.raises(ConfigError, match="n_batches_per_layer=1"):
        estimator.BoostedTreesClassifier(TREE_COLUMNS, n_batches_per_layer=2, train_in_memory=True)
    with pytest.raises(ConfigError, match="pruning_mode"):
        estimator.BoostedTreesClassifier(TREE_COLUMNS, n_batches_per_layer=1, pruning_mode="post")
    with pytest.raises(ConfigError, match="max_depth"):
        estimator.BoostedTreesRegressor(TREE_COLUMNS, n_batches_per_layer=1, max_depth=0)
