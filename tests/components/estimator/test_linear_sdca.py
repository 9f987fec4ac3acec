"""experimental.LinearSDCA as tf.estimator's docs used it: the optimizer of a binary LinearClassifier or a
LinearRegressor, keyed by an example id column. Reference numbers come from tensorflow-estimator 2.15 run on
the same data and settings."""

import numpy as np
import pytest
import tensorflow as tf

from components import estimator
from components.errors import ConfigError, InputError

N = 64
_rng = np.random.default_rng(0)
X = _rng.normal(size=(N, 1)).astype(np.float32)
C = np.array([["a", "b", "c"][i % 3] for i in range(N)])[:, None]
Y = ((X[:, 0] + (C[:, 0] == "a") * 1.5 - 0.5) > 0).astype(np.int64)[:, None]
IDS = np.array([str(i) for i in range(N)])
COLUMNS = [
    tf.feature_column.numeric_column("x"),
    tf.feature_column.categorical_column_with_vocabulary_list("c", ["a", "b", "c"]),
]


def input_fn(mode=None, labels=Y, with_ids=True):
    features = {"x": X, "c": C, **({"id": IDS} if with_ids else {})}
    ds = tf.data.Dataset.from_tensors((features, labels))
    return ds.repeat() if mode == estimator.ModeKeys.TRAIN else ds


@pytest.mark.slow
def test_sdca_trains_a_binary_classifier_as_tf_estimator_did(tmp_path):
    sdca = estimator.experimental.LinearSDCA("id", symmetric_l1_regularization=0.5, symmetric_l2_regularization=0.01)
    est = estimator.LinearClassifier(COLUMNS, model_dir=str(tmp_path), optimizer=sdca)
    est.train(input_fn, steps=150)
    result = est.evaluate(input_fn)
    # tf.estimator 2.15 after 150 steps (both at the regularized optimum; the kernel updates examples on
    # several threads, so early steps differ from run to run): average_loss 0.12302, accuracy 0.984,
    # x 4.642, c [4.431, -2.124, -2.569], bias -0.262.
    assert result["average_loss"] == pytest.approx(0.12302, abs=0.002) and result["accuracy"] == 0.984375
    assert est.get_variable_value("linear/linear_model/x/weights")[0, 0] == pytest.approx(4.642, abs=0.05)
    np.testing.assert_allclose(
        est.get_variable_value("linear/linear_model/c/weights")[:, 0], [4.431, -2.124, -2.569], atol=0.05
    )
    assert est.get_variable_value("linear/linear_model/bias_weights")[0] == pytest.approx(-0.262, abs=0.05)
    # The examples' dual state is in the checkpoint, with the weights the kernel updates before shrinking.
    keys = tf.train.load_checkpoint(est.latest_checkpoint()).get_variable_to_shape_map()
    assert {
        "linear/sdca_example_state/.ATTRIBUTES/table-keys",
        "linear/sdca_unshrunk/x/weights/.ATTRIBUTES/VARIABLE_VALUE",
    } <= set(keys)
    with pytest.raises(InputError, match="'id'"):
        est.train(lambda mode: input_fn(mode, with_ids=False), steps=1)
    assert next(est.predict(lambda: input_fn(with_ids=False)))["class_ids"].shape == (1,)  # serving needs no id


def test_sdca_fits_a_regression_by_squared_loss(tmp_path):
    target = (2.0 * X + 1.0).astype(np.float32)
    est = estimator.LinearRegressor(
        [tf.feature_column.numeric_column("x")],
        model_dir=str(tmp_path),
        optimizer=estimator.experimental.LinearSDCA("id", symmetric_l2_regularization=1e-4),
    )
    est.train(lambda mode: input_fn(mode, target), steps=20)
    assert est.get_variable_value("linear/linear_model/x/weights")[0, 0] == pytest.approx(2.0, abs=0.02)
    assert est.get_variable_value("linear/linear_model/bias_weights")[0] == pytest.approx(1.0, abs=0.02)


def test_sdca_refuses_what_it_cannot_train():
    sdca = estimator.experimental.LinearSDCA("id")
    with pytest.raises(ConfigError, match="binary classifiers"):
        estimator.LinearClassifier(COLUMNS, n_classes=3, optimizer=sdca)
    with pytest.raises(ConfigError, match="sum"):
        estimator.LinearClassifier(COLUMNS, optimizer=sdca, sparse_combiner="mean")
    with pytest.raises(ConfigError, match="positive"):
        estimator.experimental.LinearSDCA("id", symmetric_l2_regularization=0.0)
