"""tf.estimator's canned LinearClassifier evaluation cases (fixed weights -> known loss and metrics)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from components import estimator
from components.errors import InputError
from tests.components.estimator.helpers import save_linear_checkpoint

AGE = {"age": ("dense", 1)}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _check(metrics, expected, tol=1e-3):
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=tol), key


def test_binary_single_example(tmp_path):
    save_linear_checkpoint(tmp_path, AGE, {"age": [[-11.0]]}, [-30.0], 100)
    est = estimator.LinearClassifier(
        [tf.feature_column.numeric_column("age")], model_dir=tmp_path, loss_reduction="sum"
    )
    metrics = est.evaluate(lambda: ({"age": ((1.0,),)}, ((1,),)), steps=1)
    # logit = -41: cross entropy 41; every example misclassified.
    _check(
        metrics,
        {
            "loss": 41.0,
            "global_step": 100,
            "average_loss": 41.0,
            "accuracy": 0.0,
            "precision": 0.0,
            "recall": 0.0,
            "prediction/mean": 0.0,
            "label/mean": 1.0,
            "accuracy_baseline": 1.0,
            "auc": 0.0,
            "auc_precision_recall": 1.0,
        },
    )


def test_multiclass_single_example(tmp_path):
    n = 3
    weight = np.reshape(-11.0 * np.arange(n, dtype=np.float32), (1, n))
    save_linear_checkpoint(tmp_path, AGE, {"age": weight}, [-30.0] * n, 100, units=n)
    est = estimator.LinearClassifier(
        [tf.feature_column.numeric_column("age")], n_classes=n, model_dir=tmp_path, loss_reduction="sum"
    )
    metrics = est.evaluate(lambda: ({"age": ((1.0,),)}, ((1,),)), steps=1)
    logits = weight * 1.0 + np.array([-30.0] * n)
    softmax = np.exp(logits) / np.exp(logits).sum()
    expected = -math.log(softmax[0, 1])
    _check(metrics, {"loss": expected, "global_step": 100, "average_loss": expected, "accuracy": 0.0})
    assert set(metrics) == {"loss", "global_step", "average_loss", "accuracy"}


@pytest.mark.parametrize("reduction,divisor", [("sum", 1.0), ("sum_over_batch_size", 2.0)])
def test_binary_batch(tmp_path, reduction, divisor):
    save_linear_checkpoint(tmp_path, AGE, {"age": [[2.0]]}, [-35.0], 100)
    est = estimator.LinearClassifier(
        [tf.feature_column.numeric_column("age")], model_dir=tmp_path, loss_reduction=reduction
    )
    metrics = est.evaluate(lambda: ({"age": [17.0, 18.0]}, [1, 0]), steps=1)
    # Logits (-1, 1) against labels (1, 0): both rows cost -log(sigmoid(-1)) = 1.3133.
    _check(
        metrics,
        {
            "loss": 1.3133 * 2 / divisor,
            "average_loss": 1.3133,
            "accuracy": 0.0,
            "precision": 0.0,
            "recall": 0.0,
            "prediction/mean": 0.5,
            "label/mean": 0.5,
            "accuracy_baseline": 0.5,
            "auc": 0.0,
            "auc_precision_recall": 0.3068,  # 2.x (Keras AUC, interpolated); 1.x summed trapezoids: 0.25
        },
    )


def test_binary_weighted(tmp_path):
    save_linear_checkpoint(tmp_path, AGE, {"age": [[2.0]]}, [-35.0], 100)
    est = estimator.LinearClassifier(
        [tf.feature_column.numeric_column("age")], weight_column="w", model_dir=tmp_path, loss_reduction="sum"
    )
    weights, labels = [1.0, 2.0], [1, 0]
    metrics = est.evaluate(lambda: ({"age": [17.0, 18.0], "w": weights}, labels), steps=1)
    label_mean = np.average(labels, weights=weights)
    _check(
        metrics,
        {
            "loss": 1.3133 * 3,
            "average_loss": 1.3133,
            "accuracy": 0.0,
            "prediction/mean": np.average(_sigmoid(np.array([-1.0, 1.0])), weights=weights),
            "label/mean": label_mean,
            "accuracy_baseline": max(label_mean, 1 - label_mean),
            "auc": 0.0,
            "auc_precision_recall": 0.1891,  # 1.x: 0.1668
        },
    )


def test_the_weight_column_is_read_for_the_loss_only(tmp_path):
    # As tf.estimator: predict and serving inputs need no weight feature; train and evaluate do.
    save_linear_checkpoint(tmp_path, AGE, {"age": [[2.0]]}, [-35.0], 100)
    est = estimator.LinearClassifier([tf.feature_column.numeric_column("age")], weight_column="w", model_dir=tmp_path)
    (p,) = list(est.predict(lambda: {"age": [[17.0]]}))
    assert p["logits"] == pytest.approx([-1.0])
    receiver = estimator.export.build_parsing_serving_input_receiver_fn(
        tf.feature_column.make_parse_example_spec([tf.feature_column.numeric_column("age")])
    )
    exported = est.export_saved_model(str(tmp_path / "export"), receiver)
    example = tf.train.Example(
        features=tf.train.Features(feature={"age": tf.train.Feature(float_list=tf.train.FloatList(value=[17.0]))})
    ).SerializeToString()
    served = tf.saved_model.load(exported).signatures["predict"](examples=tf.constant([example]))
    assert served["logits"].numpy()[0] == pytest.approx([-1.0])
    with pytest.raises(InputError, match="weight_column 'w'"):
        est.evaluate(lambda: ({"age": [17.0]}, [1]), steps=1)


def test_predictions_for_fixed_weights(tmp_path):
    save_linear_checkpoint(tmp_path, {"x": ("dense", 1)}, {"x": [[10.0]]}, [5.0], 100)
    est = estimator.LinearClassifier(
        [tf.feature_column.numeric_column("x")], model_dir=tmp_path, label_vocabulary=["no", "yes"]
    )
    (p,) = list(est.predict(lambda: {"x": [[2.0]]}))
    assert p["logits"] == pytest.approx([25.0])
    assert p["classes"].tolist() == [b"yes"]
    assert p["all_classes"].tolist() == [b"no", b"yes"]
    assert p["probabilities"] == pytest.approx([_sigmoid(-25.0), _sigmoid(25.0)], abs=1e-6)
