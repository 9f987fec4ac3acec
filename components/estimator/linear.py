"""LinearClassifier: a sparse linear model over feature columns."""

from __future__ import annotations

import math

import tensorflow as tf

from components.errors import ConfigError
from components.estimator import heads as heads_lib
from components.estimator._features import WEIGHT_KEY, ColumnTransform
from components.estimator.estimator import Estimator
from components.estimator.mode_keys import ModeKeys
from components.estimator.optimizers import make_optimizer
from components.estimator.spec import EstimatorSpec

_COMBINERS = ("sum", "mean", "sqrtn")


class LinearModel(tf.Module):
    """logits = bias + sum over columns of (gathered weights for categorical ids, or x @ W for dense)."""

    def __init__(self, dims: dict, units: int, sparse_combiner: str = "sum"):
        super().__init__(name="linear")
        self.sparse_combiner = sparse_combiner
        # Nested names give tf.estimator's variable paths: linear/linear_model/<column>/weights.
        self.linear_model = {
            name: {"weights": tf.Variable(tf.zeros([rows, units]), name=f"{name}/weights")}
            for name, (_, rows) in dims.items()
        }
        self.linear_model["bias_weights"] = tf.Variable(tf.zeros([units]), name="bias_weights")

    def __call__(self, columns: dict):
        logits = None
        for name, value in columns.items():
            if name == WEIGHT_KEY:
                continue
            w = self.linear_model[name]["weights"]
            if isinstance(value, dict):
                term = self._sparse(w, value["ids"], value.get("weights"))
            else:
                term = tf.matmul(tf.cast(value, w.dtype), w)
            logits = term if logits is None else logits + term
        return logits + self.linear_model["bias_weights"]

    def _sparse(self, w, ids: tf.SparseTensor, weights):
        rows = ids.indices[:, 0]
        batch = ids.dense_shape[0]
        vals = tf.gather(w, ids.values)
        scale = tf.ones_like(ids.values, dtype=w.dtype) if weights is None else tf.cast(weights.values, w.dtype)
        vals *= scale[:, None]
        summed = tf.math.unsorted_segment_sum(vals, rows, batch)
        if self.sparse_combiner == "sum":
            return summed
        norm = scale if self.sparse_combiner == "mean" else tf.square(scale)
        denom = tf.math.unsorted_segment_sum(norm, rows, batch)
        if self.sparse_combiner == "sqrtn":
            denom = tf.sqrt(denom)
        return tf.math.divide_no_nan(summed, denom[:, None])


def premade_model_fn(build_model, head, optimizer_factory):
    """A model_fn for a premade estimator: build the model, apply the head, step the optimizer."""

    def model_fn(features, labels, mode, config):
        model = build_model()
        training = mode == ModeKeys.TRAIN
        if mode == ModeKeys.PREDICT or labels is None:
            logits = model(features, training=False) if _takes_training(model) else model(features)
            preds = head.predictions(logits)
            if mode != ModeKeys.PREDICT:
                raise ConfigError(f"{mode} needs labels: the input_fn must return (features, labels)")
            return EstimatorSpec(mode, predictions=preds, export_outputs=head.export_outputs(preds),
                                 scaffold=tf.compat.v1.train.Scaffold(saver=tf.train.Checkpoint(**_ckpt_parts(model))))
        ids = head.label_ids(labels)
        gs = tf.compat.v1.train.get_global_step()
        if training:
            optimizer = optimizer_factory()
            with tf.GradientTape() as tape:
                logits = model(features, training=True) if _takes_training(model) else model(features)
                loss = head.loss(features, ids, logits)
                # Optimizers sum gradients over replicas; scale so the update is the global mean.
                scaled = loss / tf.distribute.get_replica_context().num_replicas_in_sync
            variables = model.trainable_variables
            grads = tape.gradient(scaled, variables)
            train_op = tf.group(optimizer.apply_gradients(zip(grads, variables)), gs.assign_add(1))
            return EstimatorSpec(mode, loss=loss, train_op=train_op,
                                 scaffold=tf.compat.v1.train.Scaffold(saver=tf.train.Checkpoint(optimizer=optimizer, **_ckpt_parts(model))))
        logits = model(features, training=False) if _takes_training(model) else model(features)
        loss = head.loss(features, ids, logits)
        preds = head.predictions(logits)
        return EstimatorSpec(mode, loss=loss, predictions=preds,
                             eval_metric_ops=head.eval_metrics(features, ids, logits, preds),
                             scaffold=tf.compat.v1.train.Scaffold(saver=tf.train.Checkpoint(**_ckpt_parts(model))))

    return model_fn


def _ckpt_parts(model) -> dict:
    return {model.name: model}


def _takes_training(model) -> bool:
    return not isinstance(model, LinearModel)


class LinearClassifier(Estimator):
    """Linear classifier over feature columns, trained with FTRL by default (tf.estimator.LinearClassifier)."""

    def __init__(self, feature_columns, model_dir=None, n_classes=2, weight_column=None, label_vocabulary=None,
                 optimizer="Ftrl", config=None, warm_start_from=None,
                 loss_reduction=heads_lib.SUM_OVER_BATCH_SIZE, sparse_combiner="sum"):
        if sparse_combiner not in _COMBINERS:
            raise ConfigError(f"sparse_combiner must be one of {_COMBINERS}, got {sparse_combiner!r}")
        transform = ColumnTransform(feature_columns, weight_column=weight_column)
        head = heads_lib.ClassificationHead(n_classes, label_vocabulary, loss_reduction)
        dims = transform.dims()
        learning_rate = min(0.2, 1.0 / math.sqrt(len(transform.columns)))
        model_fn = premade_model_fn(
            lambda: LinearModel(dims, head.logits_dimension, sparse_combiner),
            head,
            lambda: make_optimizer(optimizer, learning_rate),
        )
        super().__init__(model_fn, model_dir=model_dir, config=config, warm_start_from=warm_start_from)
        self._input_transform = transform
        self._export_resources = transform.resources.resources
