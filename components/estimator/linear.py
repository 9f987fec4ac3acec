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

    def __call__(self, columns: dict, training=False):
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


class PremadeEstimator(Estimator):
    """An Estimator whose model, optimizer and metrics are built eagerly, once per program.

    Building them before tracing (in the strategy's scope) rather than inside the model_fn lets
    distribution strategies create mirrored variables the ordinary way.
    """

    def __init__(self, build_model, head, optimizer_factory, transform, **kwargs):
        self._build_model, self._head, self._optimizer_factory = build_model, head, optimizer_factory
        super().__init__(self._premade_model_fn, **kwargs)
        self._input_transform = transform
        self._export_resources = transform.resources.resources

    def _prebuild(self, program) -> None:
        program.state["model"] = self._build_model()
        if program.mode == ModeKeys.TRAIN:
            program.state["optimizer"] = self._optimizer_factory()
        elif program.mode == ModeKeys.EVAL:
            program.state["metrics"] = self._head.make_metrics()

    def _premade_model_fn(self, features, labels, mode, config):
        state = self._active_program.state
        model, head = state["model"], self._head
        parts = {model.name: model}
        if mode == ModeKeys.PREDICT:
            preds = head.predictions(model(features))
            return EstimatorSpec(mode, predictions=preds, export_outputs=head.export_outputs(preds),
                                 scaffold=_scaffold(parts))
        if labels is None:
            raise ConfigError(f"{mode} needs labels: the input_fn must return (features, labels)")
        ids = head.label_ids(labels)
        if mode == ModeKeys.TRAIN:
            optimizer = state["optimizer"]
            with tf.GradientTape() as tape:
                logits = model(features, training=True)
                loss = head.loss(features, ids, logits)
                # Optimizers sum gradients over replicas; scale so the update is the global mean.
                scaled = loss / tf.distribute.get_replica_context().num_replicas_in_sync
            variables = model.trainable_variables
            grads = tape.gradient(scaled, variables)
            gs = tf.compat.v1.train.get_global_step()
            train_op = tf.group(optimizer.apply_gradients(zip(grads, variables)), gs.assign_add(1))
            return EstimatorSpec(mode, loss=loss, train_op=train_op, scaffold=_scaffold(dict(parts, optimizer=optimizer)))
        logits = model(features)
        loss = head.loss(features, ids, logits)
        preds = head.predictions(logits)
        metrics = head.update_metrics(state["metrics"], features, ids, logits, preds)
        return EstimatorSpec(mode, loss=loss, predictions=preds, eval_metric_ops=metrics, scaffold=_scaffold(parts))


def _scaffold(parts: dict):
    return tf.compat.v1.train.Scaffold(saver=tf.train.Checkpoint(**parts))


class LinearClassifier(PremadeEstimator):
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
        super().__init__(
            lambda: LinearModel(dims, head.logits_dimension, sparse_combiner),
            head,
            lambda: make_optimizer(optimizer, learning_rate),
            transform,
            model_dir=model_dir, config=config, warm_start_from=warm_start_from,
        )
