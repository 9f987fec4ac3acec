"""tf.estimator.MultiHead: one model, two named heads (a class and a yes/no target), as tf.estimator
documented it: labels and logits keyed by head name, metrics suffixed with it, the first head served."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator
from components.errors import ConfigError


def _input_fn(mode=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2)).astype(np.float32)
    species = np.digitize(x[:, 0], [-0.5, 0.5]).astype(np.int64)[:, None]  # three classes along x0
    big = (x[:, 1] > 0).astype(np.int64)[:, None]  # yes/no along x1
    ds = tf.data.Dataset.from_tensor_slices(({"x": x}, {"species": species, "big": big})).batch(30)
    return ds.repeat() if mode == estimator.ModeKeys.TRAIN else ds


def _head():
    return estimator.MultiHead([estimator.MultiClassHead(3, name="species"), estimator.BinaryClassHead(name="big")])


def test_a_premade_estimator_with_a_multi_head_trains_evaluates_predicts_and_exports(tmp_path):
    head = _head()
    assert head.logits_dimension == 4
    est = estimator.DNNEstimator(
        head,
        hidden_units=[16],
        feature_columns=[tf.feature_column.numeric_column("x", shape=[2])],
        model_dir=str(tmp_path / "model"),
        optimizer=tf_keras.optimizers.legacy.Adam(0.05),
    )
    est.train(_input_fn, steps=300)
    metrics = est.evaluate(_input_fn)
    assert {"loss", "loss/species", "loss/big", "accuracy/species", "accuracy/big", "auc/big"} <= set(metrics)
    assert metrics["accuracy/species"] > 0.8 and metrics["accuracy/big"] > 0.8
    assert metrics["loss"] == pytest.approx(metrics["loss/species"] + metrics["loss/big"], rel=1e-4)
    first = next(iter(est.predict(lambda: _input_fn().take(1))))
    assert first[("species", "class_ids")].shape == (1,) and ("big", "logistic") in first
    spec = tf.feature_column.make_parse_example_spec([tf.feature_column.numeric_column("x", shape=[2])])
    path = est.export_saved_model(
        str(tmp_path / "export"), estimator.export.build_parsing_serving_input_receiver_fn(spec)
    )
    signatures = tf.saved_model.load(path).signatures
    assert {"serving_default", "species", "big", "species/classification", "big/regression", "predict"} <= set(
        signatures
    )
    example = tf.train.Example(
        features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[-2.0, 2.0]))})
    ).SerializeToString()
    out = signatures["predict"](examples=tf.constant([example]))
    assert int(out["species/class_ids"][0, 0]) == 0 and float(out["big/logistic"][0, 0]) > 0.5
    assert signatures["serving_default"].structured_outputs.keys() == signatures["species"].structured_outputs.keys()


def test_a_custom_model_fn_gives_a_multi_head_its_logits_as_a_dict(tmp_path):
    def model_fn(features, labels, mode):
        species = tf_keras.layers.Dense(3)
        big = tf_keras.layers.Dense(1)
        logits = {"species": species(features["x"]), "big": big(features["x"])}
        return _head().create_estimator_spec(
            features,
            mode,
            logits,
            labels,
            optimizer=tf_keras.optimizers.legacy.Adagrad(0.5),
            trainable_variables=species.trainable_variables + big.trainable_variables,
        )

    est = estimator.Estimator(model_fn, str(tmp_path))
    est.train(_input_fn, steps=200)
    metrics = est.evaluate(_input_fn)
    assert metrics["accuracy/species"] > 0.8 and metrics["accuracy/big"] > 0.8


def test_a_multi_head_says_what_is_missing():
    with pytest.raises(ConfigError, match="every head in a MultiHead needs a name"):
        estimator.MultiHead([estimator.BinaryClassHead(), estimator.BinaryClassHead(name="b")])
    with pytest.raises(ConfigError, match="distinct names"):
        estimator.MultiHead([estimator.BinaryClassHead(name="b"), estimator.RegressionHead(name="b")])
    with pytest.raises(ConfigError, match=r"labels have no entry for head\(s\) \['big'\]"):
        _head().labels({"species": tf.constant([[1]])})
