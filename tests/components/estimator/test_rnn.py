"""tf.estimator.experimental's RNN estimators, used as its docs used them: sequence feature columns (sparse,
of varying length), context columns, and a cell type, units or an rnn_cell_fn."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator
from components.errors import ConfigError

N, MAX_LEN = 64, 5


def _data():
    """Sequences of 1 to 5 values; the label says whether a sequence sums above 0 (padding must not count)."""
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=n).astype(np.float32) for n in rng.integers(1, MAX_LEN + 1, size=N)]
    indices = [[i, j] for i, s in enumerate(seqs) for j in range(len(s))]
    labels = np.array([[int(s.sum() > 0)] for s in seqs])
    sums = np.array([[s.sum()] for s in seqs], np.float32)

    def input_fn(mode=None, target="class"):
        x = tf.sparse.SparseTensor(indices, np.concatenate(seqs), [N, MAX_LEN])
        features = {"x": x, "one": np.ones([N, 1], np.float32)}
        ds = tf.data.Dataset.from_tensors((features, labels if target == "class" else sums))
        return ds.repeat() if mode == estimator.ModeKeys.TRAIN else ds

    return input_fn


@pytest.mark.slow
def test_rnn_classifier_learns_a_property_of_whole_sequences(tmp_path):
    input_fn = _data()
    est = estimator.experimental.RNNClassifier(
        sequence_feature_columns=[tf.feature_column.sequence_numeric_column("x")],
        context_feature_columns=[tf.feature_column.numeric_column("one")],
        units=8,
        cell_type="gru",
        model_dir=str(tmp_path),
        optimizer="Adam",  # at tf.estimator's 0.05, gradients clipped to norm 5
    )
    est.train(input_fn, steps=80)
    result = est.evaluate(input_fn)
    assert result["global_step"] == 80 and result["accuracy"] >= 0.9
    pred = next(est.predict(input_fn))
    assert {"logits", "logistic", "probabilities", "class_ids", "classes"} <= set(pred)
    assert any(n.startswith("rnn_model/gru/") for n in est.get_variable_names())


@pytest.mark.slow
def test_rnn_estimator_with_a_head_and_stacked_cells(tmp_path):
    input_fn = _data()
    est = estimator.experimental.RNNEstimator(
        head=estimator.RegressionHead(),
        sequence_feature_columns=[tf.feature_column.sequence_numeric_column("x")],
        rnn_cell_fn=lambda: [tf_keras.layers.SimpleRNNCell(8), tf_keras.layers.SimpleRNNCell(4)],
        model_dir=str(tmp_path),
        optimizer=tf_keras.optimizers.legacy.Adam(0.02),
    )
    est.train(lambda mode: input_fn(mode, "sum"), steps=1)
    first = est.evaluate(lambda: input_fn(None, "sum"))["average_loss"]
    est.train(lambda mode: input_fn(mode, "sum"), steps=100)
    assert est.evaluate(lambda: input_fn(None, "sum"))["average_loss"] < first / 2
    assert next(est.predict(lambda: input_fn(None, "sum")))["predictions"].shape == (1,)


def test_rnn_estimators_check_their_arguments():
    seq = [tf.feature_column.sequence_numeric_column("x")]
    with pytest.raises(ConfigError, match="units"):
        estimator.experimental.RNNClassifier(seq)
    with pytest.raises(ConfigError, match="not both"):
        estimator.experimental.RNNClassifier(seq, units=4, rnn_cell_fn=lambda: tf_keras.layers.GRUCell(4))
    with pytest.raises(ConfigError, match="cell_type"):
        estimator.experimental.RNNClassifier(seq, units=4, cell_type="transformer")
    with pytest.raises(ConfigError, match="sequential head"):
        estimator.experimental.RNNClassifier(seq, units=4, return_sequences=True)
