"""Baseline estimators: predict the label distribution (or mean) regardless of the features."""

from __future__ import annotations

import tensorflow as tf

from components.estimator import heads as heads_lib
from components.estimator._inputs import batch_size_of
from components.estimator.premade import Part, PremadeEstimator


class BaselineModel(tf.Module):
    """logits = one learned bias per logit, for every example (variable path baseline/bias)."""

    def __init__(self, units: int):
        super().__init__(name="baseline")
        self.bias = tf.Variable(tf.zeros([units]), name="bias")

    def __call__(self, marker, training=False):
        return tf.zeros_like(marker[:, :1]) + self.bias


def _batch_marker(features):
    # The model needs only the batch size; a [batch, 1] tensor carries it through the input pipeline.
    return tf.zeros(tf.stack([batch_size_of(features), 1]))


class _Baseline(PremadeEstimator):
    def __init__(self, head, model_dir, optimizer, config, weight_column, warm_start_from):
        units = head.logits_dimension
        part = Part(_batch_marker, lambda: BaselineModel(units), optimizer, learning_rate=0.3)
        super().__init__(
            head,
            {"baseline": part},
            weight_column=weight_column,
            model_dir=model_dir,
            config=config,
            warm_start_from=warm_start_from,
        )


class BaselineClassifier(_Baseline):
    """Learns the class prior (tf.estimator.BaselineClassifier): a floor any real model must beat."""

    def __init__(
        self,
        model_dir=None,
        n_classes=2,
        weight_column=None,
        label_vocabulary=None,
        optimizer="Ftrl",
        config=None,
        loss_reduction=heads_lib.SUM_OVER_BATCH_SIZE,
        warm_start_from=None,
    ):
        head = heads_lib.ClassificationHead(n_classes, label_vocabulary, loss_reduction)
        super().__init__(head, model_dir, optimizer, config, weight_column, warm_start_from)


class BaselineRegressor(_Baseline):
    """Learns the label mean (tf.estimator.BaselineRegressor)."""

    def __init__(
        self,
        model_dir=None,
        label_dimension=1,
        weight_column=None,
        optimizer="Ftrl",
        config=None,
        loss_reduction=heads_lib.SUM_OVER_BATCH_SIZE,
        warm_start_from=None,
    ):
        head = heads_lib.RegressionHead(label_dimension, loss_reduction)
        super().__init__(head, model_dir, optimizer, config, weight_column, warm_start_from)


class BaselineEstimator(_Baseline):
    """A baseline with any head (tf.estimator.BaselineEstimator): one learned bias per logit, so it
    predicts what the head makes of the labels' prior (a class distribution, a mean) for every example.
    The head carries the weight column, as tf.estimator's heads did."""

    def __init__(self, head, model_dir=None, optimizer="Ftrl", config=None):
        super().__init__(head, model_dir, optimizer, config, None, None)
