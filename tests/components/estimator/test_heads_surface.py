"""tf.estimator's head classes under their names, used as its docs used them (with a canned estimator)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator
from components.errors import ConfigError

X = tf.feature_column.numeric_column("x")


def data(labels, weights=None):
    x = np.linspace(-1, 1, len(labels), dtype=np.float32)[:, None]
    features = {"x": x} if weights is None else {"x": x, "w": np.asarray(weights, np.float32)[:, None]}
    labels = np.asarray(labels)[:, None]

    def input_fn(mode=None):
        ds = tf.data.Dataset.from_tensor_slices((features, labels)).batch(len(x))
        return ds.repeat() if mode == estimator.ModeKeys.TRAIN else ds

    return input_fn


def test_binary_class_head_with_a_canned_estimator(tmp_path):
    labels = [0] * 6 + [1] * 6
    head = estimator.BinaryClassHead(weight_column="w", thresholds=[0.3, 0.7])
    est = estimator.LinearEstimator(head=head, feature_columns=[X], model_dir=str(tmp_path), optimizer="Adam")
    est.train(data(labels, [1.0] * 12), steps=100)
    result = est.evaluate(data(labels, [1.0] * 12))
    assert result["accuracy"] == 1.0 and result["auc"] == 1.0
    for key in ("accuracy/positive_threshold_0.3", "precision/positive_threshold_0.7", "recall/positive_threshold_0.3"):
        assert 0.5 <= result[key] <= 1.0, key
    # The head's weight column weights the examples: weighting away the positives leaves them out.
    weighted = est.evaluate(data(labels, [1.0] * 6 + [0.0] * 6))
    assert weighted["label/mean"] == 0.0
    pred = next(est.predict(data(labels, [1.0] * 12)))
    assert {"logits", "logistic", "probabilities", "class_ids", "classes"} <= set(pred)
    with pytest.raises(ConfigError, match="without '/'"):
        estimator.BinaryClassHead(name="a/b")  # a name suffixes metric keys inside a MultiHead


def test_multi_class_head_and_a_custom_loss(tmp_path):
    labels = [0] * 4 + [1] * 4 + [2] * 4
    calls = []

    def loss_fn(labels, logits):
        calls.append(labels.dtype)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels[:, 0], logits=logits)

    head = estimator.MultiClassHead(n_classes=3, loss_fn=loss_fn)
    est = estimator.DNNEstimator(
        head=head,
        hidden_units=[8],
        feature_columns=[X],
        model_dir=str(tmp_path),
        optimizer=tf_keras.optimizers.legacy.Adam(0.05),
    )
    est.train(data(labels), steps=200)
    result = est.evaluate(data(labels))
    assert calls and calls[0] == tf.int64
    assert set(result) >= {"accuracy", "average_loss", "loss"} and result["accuracy"] >= 0.9
    assert next(est.predict(data(labels)))["probabilities"].shape == (3,)
    with pytest.raises(ConfigError, match="n_classes"):
        estimator.MultiClassHead(n_classes=2)


def test_poisson_regression_head_predicts_exp_of_logits(tmp_path):
    head = estimator.PoissonRegressionHead()
    logits, labels = tf.constant([[0.0], [1.0]]), tf.constant([[1.0], [2.0]])
    # Full log-Poisson loss: exp(logit) - label * logit + the Stirling term for labels > 1.
    stirling = 2 * np.log(2) - 2 + 0.5 * np.log(2 * np.pi * 2)
    expected = np.mean([np.exp(0.0) - 0.0, np.exp(1.0) - 2.0 + stirling])
    assert float(head.loss({}, head.labels(labels), logits)) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(head.predictions(logits)["predictions"], np.exp(logits.numpy()), rtol=1e-6)
    counts = [0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 7, 9]
    est = estimator.LinearEstimator(head=head, feature_columns=[X], model_dir=str(tmp_path), optimizer="Adam")
    est.train(data(np.asarray(counts, np.float32)), steps=300)
    result = est.evaluate(data(np.asarray(counts, np.float32)))
    assert result["prediction/mean"] == pytest.approx(np.mean(counts), rel=0.15)
    preds = [p["predictions"][0] for p in est.predict(data(np.asarray(counts, np.float32)))]
    assert preds[-1] > preds[0] > 0  # counts grow with x


def test_logistic_regression_head_fits_probabilities(tmp_path):
    head = estimator.LogisticRegressionHead()
    targets = np.linspace(0.1, 0.9, 12, dtype=np.float32)
    est = estimator.LinearEstimator(head=head, feature_columns=[X], model_dir=str(tmp_path), optimizer="Adam")
    est.train(data(targets), steps=300)
    preds = np.array([p["predictions"][0] for p in est.predict(data(targets))])
    assert np.all((preds > 0) & (preds < 1)) and np.all(np.diff(preds) > 0)
    assert est.evaluate(data(targets))["label/mean"] == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 1\]"):
        est.evaluate(data(targets * 2))


def test_add_metrics_to_a_canned_estimator(tmp_path):
    labels = [0] * 6 + [1] * 6

    def my_auc(labels, predictions):  # as in tf.estimator.add_metrics' docs
        auc_metric = tf.keras.metrics.AUC(name="my_auc")
        auc_metric.update_state(y_true=labels, y_pred=predictions["logistic"])
        return {"auc": auc_metric}

    def mean_label(labels, features, config):
        return {
            "mean_label": tf.compat.v1.metrics.mean(tf.cast(labels, tf.float32)),
            "model_dir_ok": tf.compat.v1.metrics.mean(float(config.model_dir == str(tmp_path))),
        }

    est = estimator.LinearClassifier([X], model_dir=str(tmp_path), optimizer="Adam")
    est.train(data(labels), steps=50)
    plain = est.evaluate(data(labels))
    extended = estimator.add_metrics(estimator.add_metrics(est, my_auc), mean_label)
    result = extended.evaluate(data(labels))
    assert result["auc"] == pytest.approx(plain["auc"], abs=0.02)  # the added AUC replaced the head's
    assert result["mean_label"] == pytest.approx(0.5) and result["model_dir_ok"] == 1.0
    assert result["accuracy"] == plain["accuracy"]  # the head's other metrics stay
    assert "mean_label" not in est.evaluate(data(labels))  # the original is unchanged
    extended.train(data(labels), steps=5)  # and the copy trains the same model
    assert est.get_variable_value("global_step") == 55
    with pytest.raises(ConfigError, match="weights"):
        estimator.add_metrics(est, lambda weights: {})


@pytest.mark.parametrize("distributed", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_add_metrics_gives_the_metric_fn_the_input_fns_own_features(tmp_path, distributed):
    """As tf.estimator's add_metrics did: a metric_fn that takes `features` gets the input_fn's features,
    including ones no feature column reads and strings before the columns' vocabulary lookup."""
    features = {
        "x": np.array([[1.0], [2.0], [3.0], [4.0]], np.float32),
        "c": np.array([["a"], ["b"], ["b"], ["b"]]),
        "w": np.array([[1.0], [2.0], [1.0], [2.0]], np.float32),
    }

    def input_fn():
        return tf.data.Dataset.from_tensors((features, np.array([[0], [1], [0], [1]]))).repeat(2)

    def metric_fn(features):
        mean_w, share_b = tf_keras.metrics.Mean(), tf_keras.metrics.Mean()
        mean_w.update_state(features["w"])
        share_b.update_state(tf.cast(tf.equal(features["c"], "b"), tf.float32))
        return {"mean_w": mean_w, "share_b": share_b}

    c = tf.feature_column.categorical_column_with_vocabulary_list("c", ["a", "b"])
    # eval_distribute: the dataset map, not the step, does the columns' string work
    config = estimator.RunConfig(eval_distribute=tf.distribute.OneDeviceStrategy("/cpu:0") if distributed else None)
    est = estimator.LinearClassifier([X, c], model_dir=str(tmp_path), config=config)
    est.train(input_fn, steps=2)
    result = estimator.add_metrics(est, metric_fn).evaluate(input_fn)
    assert result["mean_w"] == pytest.approx(1.5) and result["share_b"] == pytest.approx(0.75)
    assert "accuracy" in result
