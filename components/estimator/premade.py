"""The machinery the premade estimators share: parts (model + optimizer), the input transform, the model_fn."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from components.errors import ConfigError, InputError
from components.estimator._features import WEIGHT_KEY, example_weight, weight_key
from components.estimator.estimator import Estimator
from components.estimator.mode_keys import ModeKeys
from components.estimator.optimizers import check_optimizer, make_optimizer
from components.estimator.spec import EstimatorSpec


@dataclasses.dataclass
class Part:
    """One trainable piece of a premade model ('linear', 'dnn', 'baseline') and how to feed and train it.

    `transform` maps raw features to what `build_model()`'s module takes (the Estimator's input
    transform). The part's logits are summed with the other parts' logits.
    """

    transform: Callable
    build_model: Callable[[], tf.Module]
    optimizer: object
    learning_rate: float | None  # a named optimizer's; None: the optimizer class's own default

    def __post_init__(self):
        if self.optimizer is not None:  # None: the part trains without one (boosted trees)
            check_optimizer(self.optimizer)

    def make_optimizer(self):
        return make_optimizer(self.optimizer, self.learning_rate)


@tf.custom_gradient
def _sum_by_row(values, rows, batch):
    """unsorted_segment_sum of `values` into `batch` rows, whose gradient is a plain gather: the rows
    are never negative, so the general gradient's masking (three more passes over `values`) is waste."""

    def grad(upstream):
        return tf.gather(upstream, rows), None, None

    return tf.math.unsorted_segment_sum(values, rows, batch), grad


def _single_valued(entry: dict) -> bool:
    ids = entry["ids"]
    return entry.get("weights") is None and ids.shape.rank == 2 and ids.shape[1] == 1


def sparse_lookups(lookups) -> list:
    """sparse_lookup of each (table, entry, combiner), in one pass.

    At most one id per example (a single-valued feature, [batch, 1]): when no example of the batch
    lacks its id, which is the usual batch, the rows gathered in order are the answer, whatever the
    combiner. The single-valued lookups share that check: one tf.cond for all rather than one each,
    which took the median step of bench/train_throughput.py's models 5-10 % lower.
    """
    out = [None] * len(lookups)
    single = [i for i, (_, entry, _) in enumerate(lookups) if _single_valued(entry)]
    for i, (table, entry, combiner) in enumerate(lookups):
        if i not in single:
            out[i] = _general_lookup(table, entry, combiner)
    if single:
        ids = [lookups[i][1]["ids"] for i in single]
        rows = [tf.gather(lookups[i][0], x.values) for i, x in zip(single, ids)]
        full = [tf.equal(tf.size(x.values, out_type=x.dense_shape.dtype), x.dense_shape[0]) for x in ids]
        summed = tf.cond(
            tf.reduce_all(tf.stack(full)) if len(full) > 1 else full[0],
            lambda: rows,
            lambda: [_sum_by_row(r, x.indices[:, 0], x.dense_shape[0]) for r, x in zip(rows, ids)],
        )
        for i, value in zip(single, summed):
            out[i] = value
    return out


def sparse_lookup(table, entry: dict, combiner: str = "sum"):
    """Rows of `table` gathered for each example's ids (optionally weighted), combined per example."""
    return sparse_lookups([(table, entry, combiner)])[0]


def _general_lookup(table, entry: dict, combiner: str):
    ids, weights = entry["ids"], entry.get("weights")
    rows = ids.indices[:, 0]
    batch = ids.dense_shape[0]
    vals = tf.gather(table, ids.values)
    if weights is None and combiner == "sum":
        return _sum_by_row(vals, rows, batch)
    scale = tf.ones_like(ids.values, dtype=table.dtype) if weights is None else tf.cast(weights.values, table.dtype)
    vals *= scale[:, None]
    summed = _sum_by_row(vals, rows, batch)
    if combiner == "sum":
        return summed
    norm = scale if combiner == "mean" else tf.square(scale)
    denom = tf.math.unsorted_segment_sum(norm, rows, batch)
    if combiner == "sqrtn":
        denom = tf.sqrt(denom)
    return tf.math.divide_no_nan(summed, denom[:, None])


class PremadeEstimator(Estimator):
    """An Estimator over a head and named parts, whose model, optimizers and metrics are built eagerly.

    Building them before tracing (in the strategy's scope) rather than inside the model_fn lets
    distribution strategies create mirrored variables the ordinary way.
    """

    def __init__(self, head, parts: dict[str, Part], weight_column=None, **kwargs):
        self._head, self._parts = head, parts
        # tf.estimator's heads carry the weight column (BinaryClassHead(weight_column=...)).
        self._weight_key = weight_key(
            weight_column if weight_column is not None else getattr(head, "weight_column", None)
        )
        super().__init__(self._premade_model_fn, **kwargs)

    def _export_resources(self) -> list:
        return [
            r
            for p in self._parts.values()
            if hasattr(p.transform, "resources")
            for r in p.transform.resources.resources()
        ]

    def _input_transform(self):
        return self._transform

    def _transform(self, features):
        out = {name: part.transform(features) for name, part in self._parts.items()}
        if self._weight_key is not None and self._weight_key in features:
            # Only the loss and metrics read weights: predict and serving inputs may lack them.
            out[WEIGHT_KEY] = example_weight(features, self._weight_key)
        return out

    def _prebuild(self, program) -> None:
        program.state["models"] = {name: part.build_model() for name, part in self._parts.items()}
        if program.mode == ModeKeys.TRAIN:
            program.state["optimizers"] = {
                name: part.make_optimizer() for name, part in self._parts.items() if part.optimizer is not None
            }
        elif program.mode == ModeKeys.EVAL:
            program.state["metrics"] = self._head.make_metrics()

    def _logits(self, models, features, training):
        logits = [model(features[name], training=training) for name, model in models.items()]
        return tf.add_n(logits) if len(logits) > 1 else logits[0]

    def _check_weight(self, features, mode) -> None:
        if self._weight_key is not None and WEIGHT_KEY not in features:
            raise InputError(
                f"weight_column {self._weight_key!r} is not among the input's features; {mode} needs "
                "it (predict and serving do not)"
            )

    def _premade_model_fn(self, features, labels, mode, config, program):
        state = program.state
        models, head = state["models"], self._head
        parts = dict(models)
        if mode == ModeKeys.PREDICT:
            preds = head.predictions(self._logits(models, features, False))
            return EstimatorSpec(
                mode, predictions=preds, export_outputs=head.export_outputs(preds), scaffold=_scaffold(parts)
            )
        if labels is None:
            raise ConfigError(f"{mode} needs labels: the input_fn must return (features, labels)")
        self._check_weight(features, mode)
        labels = head.labels(labels)
        if mode == ModeKeys.TRAIN:
            optimizers = state["optimizers"]
            with tf.GradientTape() as tape:
                logits = self._logits(models, features, True)
                loss = head.loss(features, labels, logits)
                # Optimizers sum gradients over replicas; scale so the update is the global mean.
                scaled = loss / tf.distribute.get_replica_context().num_replicas_in_sync
            variables = {name: model.trainable_variables for name, model in models.items()}
            grads = tape.gradient(scaled, variables)
            updates = [optimizers[name].apply_gradients(zip(grads[name], variables[name])) for name in models]
            gs = tf.compat.v1.train.get_global_step()
            train_op = tf.group(*updates, gs.assign_add(1))
            parts.update({f"{name}_optimizer": opt for name, opt in optimizers.items()})
            return EstimatorSpec(mode, loss=loss, train_op=train_op, scaffold=_scaffold(parts))
        logits = self._logits(models, features, False)
        loss = head.loss(features, labels, logits)
        preds = head.predictions(logits)
        metrics = head.update_metrics(state["metrics"], features, labels, logits, preds)
        return EstimatorSpec(mode, loss=loss, predictions=preds, eval_metric_ops=metrics, scaffold=_scaffold(parts))


def _scaffold(parts: dict):
    return tf.compat.v1.train.Scaffold(saver=tf.train.Checkpoint(**parts))
