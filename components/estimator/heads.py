"""Heads: loss, predictions, default eval metrics and export outputs of the premade estimators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tf_keras

from components.errors import ConfigError
from components.estimator import export
from components.estimator._features import WEIGHT_KEY, example_weight, weight_key

SUM_OVER_BATCH_SIZE = "sum_over_batch_size"
SUM = "sum"
_REDUCTIONS = (SUM_OVER_BATCH_SIZE, SUM)


class _Derived:
    """A metric computed from other metrics' results (accuracy_baseline from label/mean)."""

    def __init__(self, fn):
        self._fn = fn

    def update_state(self, *args, **kwargs):
        pass

    def reset_state(self):
        pass

    def result(self):
        return self._fn()


def _pr_auc():
    # As tf.estimator 2.x's heads: Keras's AUC, interpolated (1.x's TF1 heads summed trapezoids).
    return tf_keras.metrics.AUC(num_thresholds=200, curve="PR", name="auc_precision_recall")


def _reduction(loss_reduction):
    key = getattr(loss_reduction, "value", loss_reduction)
    key = str(key).lower()
    if key not in _REDUCTIONS:
        raise ConfigError(f"loss_reduction must be one of {_REDUCTIONS}, got {loss_reduction!r}")
    return key


def example_weights(features, like):
    if isinstance(features, dict) and WEIGHT_KEY in features:
        return tf.cast(features[WEIGHT_KEY], like.dtype)
    return tf.ones_like(like)


class Head:
    """tf.estimator.Head: the base of every head (labels in, a reduced loss out, predictions, eval metrics
    and export outputs), so `isinstance(h, Head)` holds for each, and a model_fn's own head may
    subclass it and give its own `create_estimator_spec`."""

    logits_dimension: int
    reduction: str
    # Every head defines these (declared here for the type checker; no value, so no class attribute).
    unreduced_loss: Callable[..., Any]
    predictions: Callable[..., Any]
    export_outputs: Callable[..., Any]
    labels: Callable[..., Any]
    make_metrics: Callable[..., Any]
    update_metrics: Callable[..., Any]
    name: str | None = None  # set by a `name=` argument; a MultiHead keys its heads' labels, logits and metrics by it

    def __new__(cls, *args, **kwargs):
        if cls is Head:
            raise TypeError("Head is abstract: use a head class (BinaryClassHead, RegressionHead, ...) or subclass it")
        return super().__new__(cls)

    @property
    def loss_reduction(self) -> str:
        """How the training loss reduces over the batch: SUM_OVER_BATCH_SIZE or SUM (tf.estimator's name)."""
        return getattr(self, "reduction", SUM_OVER_BATCH_SIZE)

    def loss(self, features, labels, logits):
        """The training loss: weighted per-example losses, summed or averaged over the batch."""
        unreduced = self.unreduced_loss(labels, logits)
        weighted = unreduced * example_weights(features, unreduced)
        total = tf.reduce_sum(weighted)
        if self.reduction == SUM:
            return total
        return total / tf.cast(tf.size(weighted), total.dtype)

    def create_estimator_spec(
        self,
        features,
        mode,
        logits,
        labels=None,
        optimizer=None,
        trainable_variables=None,
        train_op_fn=None,
        update_ops=None,
        regularization_losses=None,
    ):
        """tf.estimator's `Head.create_estimator_spec`: the EstimatorSpec of a custom model_fn built on this head.

        Training takes `optimizer` with `trainable_variables` (gradients of the regularized loss, applied,
        and the global step advanced), or `train_op_fn(loss)`, which returns the train op (advancing the
        global step is then its own business, as in tf.estimator). `update_ops` run with the train op.
        """
        from components.estimator.mode_keys import ModeKeys
        from components.estimator.spec import EstimatorSpec

        predictions = self.predictions(logits)
        if mode == ModeKeys.PREDICT:  # weights are for the loss and metrics only
            return EstimatorSpec(mode, predictions=predictions, export_outputs=self.export_outputs(predictions))
        key = weight_key(getattr(self, "weight_column", None))
        if key is not None and isinstance(features, dict) and WEIGHT_KEY not in features:
            features = {**features, WEIGHT_KEY: example_weight(features, key)}
        if labels is None:
            raise ConfigError(f"{mode} needs labels: the input_fn must return (features, labels)")
        labels = self.labels(labels)
        loss = self.loss(features, labels, logits)
        if regularization_losses:
            loss = loss + tf.add_n([tf.cast(r, loss.dtype) for r in regularization_losses])
        if mode == ModeKeys.EVAL:
            metrics = self.update_metrics(self.make_metrics(), features, labels, logits, predictions)
            return EstimatorSpec(mode, loss=loss, predictions=predictions, eval_metric_ops=metrics)
        if (optimizer is None) == (train_op_fn is None):
            raise ConfigError(
                "create_estimator_spec: give optimizer (with trainable_variables) or train_op_fn, one of the two"
            )
        if train_op_fn is not None:
            train_op = train_op_fn(loss)
        else:
            if trainable_variables is None:
                raise ConfigError("create_estimator_spec: optimizer needs trainable_variables")
            variables = list(trainable_variables)
            # The model_fn runs traced (a graph): gradients are taken symbolically, as tf.estimator did.
            grads = tf.gradients(loss / tf.distribute.get_replica_context().num_replicas_in_sync, variables)
            train_op = optimizer.apply_gradients(zip(grads, variables))
            global_step = tf.compat.v1.train.get_global_step()
            # tf.estimator's heads left the step to the optimizer, whose `iterations` a model_fn set to the
            # global step (`optimizer.iterations = get_or_create_global_step()`, as its canned estimators
            # did); such an optimizer already advances it. Any other (a Keras 3 optimizer, whose
            # `iterations` cannot be set) advances its own counter, and the head advances the step.
            if not _same_variable(getattr(optimizer, "iterations", None), global_step):
                train_op = tf.group(train_op, global_step.assign_add(1))
        if update_ops:
            train_op = tf.group(train_op, *update_ops)
        return EstimatorSpec(mode, loss=loss, predictions=predictions, train_op=train_op)

    def _check_width(self, labels, width: int, what: str):
        """Labels reshaped to [batch, width], with an error that says what was expected."""
        labels = tf.convert_to_tensor(labels)
        if (
            labels.shape.rank is not None
            and labels.shape.rank >= 2
            and labels.shape[-1] is not None
            and labels.shape[-1] != width
        ):
            raise ConfigError(
                f"labels have shape {labels.shape} but {what} is {width}; labels must be [batch, {width}]"
            )
        if labels.shape.rank in (0, 1) and width != 1:
            raise ConfigError(
                f"labels have shape {labels.shape} but {what} is {width}; labels must be [batch, {width}]"
            )
        return tf.reshape(labels, [-1, width])


def _same_variable(a, b) -> bool:
    """Whether `a` and `b` are one variable (a distributed variable or its value on this replica)."""
    if a is None or b is None:
        return False
    if a is b:
        return True
    try:
        return a.handle is b.handle
    except (AttributeError, ValueError):
        return False


def _single_label(labels):
    if isinstance(labels, dict):
        if len(labels) != 1:
            raise ConfigError(f"this head takes one label, got a dict with keys {sorted(labels)}")
        labels = next(iter(labels.values()))
    return labels


class ClassificationHead(Head):
    """Binary (sigmoid) or multi-class (softmax) classification, with tf.estimator's keys and metrics."""

    def __init__(self, n_classes=2, label_vocabulary=None, loss_reduction=SUM_OVER_BATCH_SIZE):
        self.n_classes = _check_n_classes(n_classes, 2)
        self.label_vocabulary = _check_vocabulary(label_vocabulary, n_classes)
        self.class_names = self.label_vocabulary or [str(i) for i in range(n_classes)]
        self.reduction = _reduction(loss_reduction)
        self.binary = n_classes == 2
        self.logits_dimension = 1 if self.binary else n_classes
        self._table = None

    def labels(self, labels):
        """Labels as int64 class ids of shape [batch, 1], checked against n_classes / label_vocabulary."""
        labels = self._check_width(_single_label(labels), 1, "a class id per example")
        if self.label_vocabulary is not None:
            if labels.dtype != tf.string:
                raise ConfigError(f"with label_vocabulary, labels must be strings, got {labels.dtype.name}")
            if self._table is None:
                with tf.init_scope():
                    self._table = tf.lookup.StaticHashTable(
                        tf.lookup.KeyValueTensorInitializer(
                            self.label_vocabulary, tf.range(self.n_classes, dtype=tf.int64)
                        ),
                        default_value=-1,
                    )
            ids = self._table.lookup(labels)
            return _checked(
                ids,
                tf.debugging.assert_non_negative(
                    ids, message=f"a label is not in label_vocabulary {self.label_vocabulary}"
                ),
            )
        if labels.dtype == tf.string:
            raise ConfigError("labels are strings: pass label_vocabulary=[...] to map them to classes")
        if not labels.dtype.is_integer:
            raise ConfigError(f"classifier labels must be integer class ids, got {labels.dtype.name}")
        ids = tf.cast(labels, tf.int64)
        return _checked(
            ids,
            tf.debugging.assert_non_negative(ids, message="labels must be >= 0"),
            tf.debugging.assert_less(
                ids, tf.constant(self.n_classes, tf.int64), message=f"labels must be < n_classes ({self.n_classes})"
            ),
        )

    def unreduced_loss(self, ids, logits):
        if self.binary:
            return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(ids, logits.dtype), logits=logits)
        return tf.expand_dims(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids[:, 0], logits=logits), -1)

    def predictions(self, logits) -> dict:
        names = tf.constant(self.class_names)
        if self.binary:
            logistic = tf.sigmoid(logits)
            probabilities = tf.concat([1.0 - logistic, logistic], axis=1)
            class_ids = tf.cast(logits > 0, tf.int64)
        else:
            probabilities = tf.nn.softmax(logits)
            class_ids = tf.expand_dims(tf.argmax(logits, axis=1), -1)
        out = {
            "logits": logits,
            "probabilities": probabilities,
            "class_ids": class_ids,
            "classes": tf.gather(names, class_ids),
            **_all_classes(tf.shape(logits)[0], names),
        }
        if self.binary:
            out["logistic"] = logistic
        return out

    def make_metrics(self) -> dict:
        """The default eval metrics, fresh (their update happens in update_metrics)."""
        metrics = {
            "accuracy": tf_keras.metrics.Accuracy(name="accuracy"),
            "average_loss": tf_keras.metrics.Mean(name="average_loss"),
        }
        if self.binary:
            label_mean = tf_keras.metrics.Mean(name="label/mean")
            metrics.update(
                {
                    "label/mean": label_mean,
                    "prediction/mean": tf_keras.metrics.Mean(name="prediction/mean"),
                    "auc": tf_keras.metrics.AUC(num_thresholds=200, curve="ROC", name="auc"),
                    "auc_precision_recall": _pr_auc(),
                    "precision": tf_keras.metrics.Precision(name="precision"),
                    "recall": tf_keras.metrics.Recall(name="recall"),
                    "accuracy_baseline": _Derived(lambda: tf.maximum(label_mean.result(), 1.0 - label_mean.result())),
                }
            )
        return metrics

    def update_metrics(self, metrics, features, ids, logits, predictions) -> dict:
        unreduced = self.unreduced_loss(ids, logits)
        w = example_weights(features, unreduced)
        metrics["accuracy"].update_state(ids, predictions["class_ids"], sample_weight=w)
        metrics["average_loss"].update_state(unreduced, sample_weight=w)
        if self.binary:
            labels_f = tf.cast(ids, tf.float32)
            logistic = predictions["logistic"]
            class_f = tf.cast(predictions["class_ids"], tf.float32)
            metrics["label/mean"].update_state(labels_f, sample_weight=w)
            metrics["prediction/mean"].update_state(logistic, sample_weight=w)
            metrics["auc"].update_state(labels_f, logistic, sample_weight=w)
            metrics["auc_precision_recall"].update_state(labels_f, logistic, sample_weight=w)
            metrics["precision"].update_state(labels_f, class_f, sample_weight=w)
            metrics["recall"].update_state(labels_f, class_f, sample_weight=w)
        return metrics

    def export_outputs(self, predictions) -> dict:
        outputs = _classification_outputs(predictions)
        if self.binary:
            outputs["regression"] = export.RegressionOutput(predictions["logistic"])
        return outputs


class MultiLabelHead(Head):
    """Independent sigmoid per class; labels are multi-hot [batch, n_classes] (tf.estimator.MultiLabelHead)."""

    def __init__(self, n_classes, label_vocabulary=None, loss_reduction=SUM_OVER_BATCH_SIZE, name=None):
        _named(self, name)
        self.n_classes = _check_n_classes(n_classes, 2)
        self.label_vocabulary = _check_vocabulary(label_vocabulary, n_classes)
        self.class_names = self.label_vocabulary or [str(i) for i in range(n_classes)]
        self.reduction = _reduction(loss_reduction)
        self.logits_dimension = n_classes

    def labels(self, labels):
        labels = self._check_width(_single_label(labels), self.n_classes, "n_classes")
        if labels.dtype == tf.string:
            raise ConfigError("multi-label labels must be multi-hot 0/1 values, got strings")
        labels = tf.cast(labels, tf.float32)
        return _checked(
            labels,
            tf.debugging.assert_equal(
                labels * (1.0 - labels), tf.zeros_like(labels), message="multi-label labels must be 0 or 1 (multi-hot)"
            ),
        )

    def unreduced_loss(self, labels, logits):
        # One loss per example: the mean over classes, as tf.estimator's multi-label head.
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        return tf.reduce_mean(ce, axis=-1, keepdims=True)

    def predictions(self, logits) -> dict:
        # tf.estimator 2.x's keys: `classes` is every class's name for each example (no class ids).
        return {
            "logits": logits,
            "probabilities": tf.sigmoid(logits),
            "classes": _every_class(tf.shape(logits)[0], tf.constant(self.class_names)),
        }

    def make_metrics(self) -> dict:
        return {
            "average_loss": tf_keras.metrics.Mean(name="average_loss"),
            "auc": tf_keras.metrics.AUC(num_thresholds=200, curve="ROC", name="auc"),
            "auc_precision_recall": _pr_auc(),
        }

    def update_metrics(self, metrics, features, labels, logits, predictions) -> dict:
        unreduced = self.unreduced_loss(labels, logits)
        w = example_weights(features, unreduced)
        metrics["average_loss"].update_state(unreduced, sample_weight=w)
        class_w = w * tf.ones_like(labels)  # every class of an example carries its weight
        for key in ("auc", "auc_precision_recall"):
            metrics[key].update_state(labels, predictions["probabilities"], sample_weight=class_w)
        return metrics

    def export_outputs(self, predictions) -> dict:
        return _classification_outputs(predictions, "classes")


class RegressionHead(Head):
    """Squared-error regression of `label_dimension` float targets (tf.estimator.RegressionHead)."""

    def __init__(self, label_dimension=1, loss_reduction=SUM_OVER_BATCH_SIZE, name=None):
        _named(self, name)
        if not isinstance(label_dimension, int) or label_dimension < 1:
            raise ConfigError(f"label_dimension must be an int >= 1, got {label_dimension!r}")
        self.logits_dimension = label_dimension
        self.reduction = _reduction(loss_reduction)

    def labels(self, labels):
        labels = self._check_width(_single_label(labels), self.logits_dimension, "label_dimension")
        if labels.dtype == tf.string:
            raise ConfigError("regression labels must be numbers, got strings")
        return tf.cast(labels, tf.float32)

    def unreduced_loss(self, labels, logits):
        return tf.math.squared_difference(logits, labels)

    def predictions(self, logits) -> dict:
        return {"predictions": logits}

    def make_metrics(self) -> dict:
        return {name: tf_keras.metrics.Mean(name=name) for name in ("average_loss", "label/mean", "prediction/mean")}

    def update_metrics(self, metrics, features, labels, logits, predictions) -> dict:
        unreduced = self.unreduced_loss(labels, logits)
        w = example_weights(features, unreduced) * tf.ones_like(labels)
        metrics["average_loss"].update_state(unreduced, sample_weight=w)
        metrics["label/mean"].update_state(labels, sample_weight=w)
        metrics["prediction/mean"].update_state(logits, sample_weight=w)
        return metrics

    def export_outputs(self, predictions) -> dict:
        regression = export.RegressionOutput(predictions["predictions"])
        return {"serving_default": regression, "regression": regression, "predict": export.PredictOutput(predictions)}


def _checked(value, *asserts):
    """`value`, usable only after `asserts` pass: the loss kernels would otherwise fail first, less clearly."""
    with tf.control_dependencies([a for a in asserts if a is not None]):
        return tf.identity(value)


def _check_n_classes(n_classes, least: int) -> int:
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < least:
        raise ConfigError(f"n_classes must be an int >= {least}, got {n_classes!r}")
    return n_classes


def _check_vocabulary(label_vocabulary, n_classes):
    if label_vocabulary is None:
        return None
    vocab = list(label_vocabulary)
    if len(vocab) != n_classes or not all(isinstance(v, str) for v in vocab):
        raise ConfigError(f"label_vocabulary must list {n_classes} strings (one per class), got {vocab!r}")
    if len(set(vocab)) != len(vocab):
        raise ConfigError(f"label_vocabulary has duplicates: {vocab!r}")
    return vocab


def _all_classes(batch, names) -> dict:
    n = tf.shape(names)[0]
    return {
        "all_class_ids": tf.tile(tf.range(n, dtype=tf.int32)[None, :], [batch, 1]),
        "all_classes": _every_class(batch, names),
    }


def _every_class(batch, names):
    """Every class's name, for each of `batch` examples: [batch, n_classes]."""
    return tf.tile(names[None, :], [batch, 1])


def _classification_outputs(predictions, classes="all_classes") -> dict:
    classification = export.ClassificationOutput(scores=predictions["probabilities"], classes=predictions[classes])
    return {
        "serving_default": classification,
        "classification": classification,
        "predict": export.PredictOutput(predictions),
    }


def _named(head, name):
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ConfigError(f"a head's name must be a non-empty string without '/', got {name!r}")
    head.name = name


class BinaryClassHead(ClassificationHead):
    """tf.estimator.BinaryClassHead: sigmoid cross entropy over one logit.

    `weight_column` weights examples when the head is given to DNNEstimator / LinearEstimator /
    DNNLinearCombinedEstimator; `thresholds` add accuracy, precision and recall at each threshold;
    `loss_fn(labels, logits)` replaces the per-example loss (labels as floats, [batch, 1]).
    """

    def __init__(
        self,
        weight_column=None,
        thresholds=None,
        label_vocabulary=None,
        loss_reduction=SUM_OVER_BATCH_SIZE,
        loss_fn=None,
        name=None,
    ):
        _named(self, name)
        super().__init__(2, label_vocabulary, loss_reduction)
        self.weight_column, self.loss_fn = weight_column, loss_fn
        self.thresholds = [float(t) for t in (thresholds or ())]
        if any(not 0.0 < t < 1.0 for t in self.thresholds):
            raise ConfigError(f"thresholds must lie in (0, 1), got {thresholds!r}")

    def unreduced_loss(self, ids, logits):
        if self.loss_fn is None:
            return super().unreduced_loss(ids, logits)
        return _custom_loss(self.loss_fn, tf.cast(ids, logits.dtype), logits)

    def make_metrics(self) -> dict:
        metrics = super().make_metrics()
        for t in self.thresholds:
            metrics[f"accuracy/positive_threshold_{t:g}"] = tf_keras.metrics.BinaryAccuracy(threshold=t)
            metrics[f"precision/positive_threshold_{t:g}"] = tf_keras.metrics.Precision(thresholds=t)
            metrics[f"recall/positive_threshold_{t:g}"] = tf_keras.metrics.Recall(thresholds=t)
        return metrics

    def update_metrics(self, metrics, features, ids, logits, predictions) -> dict:
        super().update_metrics(metrics, features, ids, logits, predictions)
        w = example_weights(features, predictions["logistic"])
        for t in self.thresholds:
            for kind in ("accuracy", "precision", "recall"):
                metrics[f"{kind}/positive_threshold_{t:g}"].update_state(
                    tf.cast(ids, tf.float32), predictions["logistic"], sample_weight=w
                )
        return metrics


class MultiClassHead(ClassificationHead):
    """tf.estimator.MultiClassHead: softmax cross entropy over n_classes logits (n_classes >= 3)."""

    def __init__(
        self,
        n_classes,
        weight_column=None,
        label_vocabulary=None,
        loss_reduction=SUM_OVER_BATCH_SIZE,
        loss_fn=None,
        name=None,
    ):
        _named(self, name)
        if not isinstance(n_classes, int) or n_classes < 3:
            raise ConfigError(f"MultiClassHead needs n_classes >= 3 (use BinaryClassHead for 2), got {n_classes!r}")
        super().__init__(n_classes, label_vocabulary, loss_reduction)
        self.weight_column, self.loss_fn = weight_column, loss_fn

    def unreduced_loss(self, ids, logits):
        if self.loss_fn is None:
            return super().unreduced_loss(ids, logits)
        return _custom_loss(self.loss_fn, ids, logits)


class _LinkedRegressionHead(RegressionHead):
    """Regression whose predictions are inverse_link(logits); predict keys are `predictions` and `logits`."""

    def __init__(self, label_dimension, weight_column, loss_reduction, name, what):
        _named(self, name)
        super().__init__(label_dimension, loss_reduction)
        self.weight_column = weight_column

    inverse_link: Callable[..., Any]  # each subclass's: tf.exp, tf.sigmoid

    def predictions(self, logits) -> dict:
        return {"predictions": self.inverse_link(logits), "logits": logits}

    def update_metrics(self, metrics, features, labels, logits, predictions) -> dict:
        unreduced = self.unreduced_loss(labels, logits)
        w = example_weights(features, unreduced) * tf.ones_like(labels)
        metrics["average_loss"].update_state(unreduced, sample_weight=w)
        metrics["label/mean"].update_state(labels, sample_weight=w)
        metrics["prediction/mean"].update_state(predictions["predictions"], sample_weight=w)
        return metrics


class PoissonRegressionHead(_LinkedRegressionHead):
    """tf.estimator.PoissonRegressionHead: counts, with log-Poisson loss; predictions are exp(logits)."""

    def __init__(
        self,
        label_dimension=1,
        weight_column=None,
        loss_reduction=SUM_OVER_BATCH_SIZE,
        compute_full_loss=True,
        name=None,
    ):
        super().__init__(label_dimension, weight_column, loss_reduction, name, "PoissonRegressionHead")
        self.compute_full_loss = compute_full_loss

    def labels(self, labels):
        labels = super().labels(labels)
        return _checked(labels, tf.debugging.assert_non_negative(labels, message="Poisson labels must be >= 0"))

    def unreduced_loss(self, labels, logits):
        return tf.nn.log_poisson_loss(labels, logits, compute_full_loss=self.compute_full_loss)

    inverse_link = staticmethod(tf.exp)


class LogisticRegressionHead(_LinkedRegressionHead):
    """tf.estimator.LogisticRegressionHead: targets in [0, 1], sigmoid cross entropy; predictions are sigmoid(logits)."""

    def __init__(self, label_dimension=1, weight_column=None, loss_reduction=SUM_OVER_BATCH_SIZE, name=None):
        super().__init__(label_dimension, weight_column, loss_reduction, name, "LogisticRegressionHead")

    def labels(self, labels):
        labels = super().labels(labels)
        return _checked(
            labels,
            tf.debugging.assert_non_negative(labels, message="labels must be in [0, 1]"),
            tf.debugging.assert_less_equal(labels, 1.0, message="labels must be in [0, 1]"),
        )

    def unreduced_loss(self, labels, logits):
        return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)

    inverse_link = staticmethod(tf.sigmoid)


def _custom_loss(loss_fn, labels, logits):
    loss = tf.convert_to_tensor(loss_fn(labels, logits))
    if loss.shape.rank == 1:
        loss = loss[:, None]
    return tf.cast(loss, logits.dtype)


class MultiHead(Head):
    """tf.estimator.MultiHead: several named heads over one model, e.g. a class and a regression target.

    Labels are a dict keyed by head name; logits are such a dict or one tensor of width logits_dimension,
    split among the heads in order. The loss is the (head_weights-)weighted sum of the heads' losses;
    predictions are keyed `(head name, key)`; eval metrics `<key>/<head name>` with `loss/<head name>`;
    the first head's default signature serves by default, each head's signatures are `<name>` and
    `<name>/<signature>`, and `predict` holds every head's outputs as `<name>/<key>`.
    """

    def __init__(self, heads, head_weights=None):
        heads = tuple(heads)
        if not heads:
            raise ConfigError("MultiHead needs at least one head")
        names = [h.name for h in heads]
        if any(n is None for n in names):
            raise ConfigError(
                f"every head in a MultiHead needs a name (e.g. BinaryClassHead(name='survived')); got names {names}"
            )
        if len(set(names)) != len(names):
            raise ConfigError(f"the heads of a MultiHead need distinct names, got {names}")
        if head_weights is not None and len(head_weights) != len(heads):
            raise ConfigError(f"head_weights has {len(head_weights)} weights for {len(heads)} heads")
        self.heads, self.head_weights = heads, tuple(head_weights) if head_weights else None
        self.logits_dimension = sum(h.logits_dimension for h in heads)
        self.name = "_".join(names)

    def _split(self, logits) -> dict:
        if isinstance(logits, dict):
            missing = [h.name for h in self.heads if h.name not in logits]
            if missing:
                raise ConfigError(f"logits have no entry for head(s) {missing}; give one per head name")
            return {h.name: logits[h.name] for h in self.heads}
        parts = tf.split(logits, [h.logits_dimension for h in self.heads], axis=-1)
        return {h.name: part for h, part in zip(self.heads, parts)}

    def labels(self, labels):
        if not isinstance(labels, dict):
            raise ConfigError(
                f"a MultiHead takes labels as a dict keyed by head name "
                f"({[h.name for h in self.heads]}), got {type(labels).__name__}"
            )
        missing = [h.name for h in self.heads if h.name not in labels]
        if missing:
            raise ConfigError(
                f"labels have no entry for head(s) {missing}; the input_fn's labels dict has {sorted(labels)}"
            )
        return {h.name: h.labels(labels[h.name]) for h in self.heads}

    def loss(self, features, labels, logits):
        split = self._split(logits)
        losses = [h.loss(features, labels[h.name], split[h.name]) for h in self.heads]
        if self.head_weights:
            losses = [loss * w for loss, w in zip(losses, self.head_weights)]
        return tf.add_n(losses)

    def predictions(self, logits) -> dict:
        split = self._split(logits)
        return {(h.name, k): v for h in self.heads for k, v in h.predictions(split[h.name]).items()}

    def _own(self, head, predictions) -> dict:
        return {k: v for (name, k), v in predictions.items() if name == head.name}

    def make_metrics(self) -> dict:
        metrics = {}
        for h in self.heads:
            metrics[f"loss/{h.name}"] = tf_keras.metrics.Mean(name=f"loss/{h.name}")
            metrics.update({f"{k}/{h.name}": m for k, m in h.make_metrics().items()})
        return metrics

    def update_metrics(self, metrics, features, labels, logits, predictions) -> dict:
        split = self._split(logits)
        for h in self.heads:
            metrics[f"loss/{h.name}"].update_state(h.loss(features, labels[h.name], split[h.name]))
            suffix = f"/{h.name}"
            own = {k[: -len(suffix)]: m for k, m in metrics.items() if k.endswith(suffix) and not k.startswith("loss/")}
            h.update_metrics(own, features, labels[h.name], split[h.name], self._own(h, predictions))
        return metrics

    def export_outputs(self, predictions) -> dict:
        outputs, merged = {}, {}
        for i, h in enumerate(self.heads):
            own = h.export_outputs(self._own(h, predictions))
            if i == 0:
                outputs["serving_default"] = own["serving_default"]
            for k, v in own.items():
                outputs[h.name if k == "serving_default" else f"{h.name}/{k}"] = v
                if k == "predict":
                    merged.update({f"{h.name}/{key}": t for key, t in v.outputs.items()})
        outputs["predict"] = export.PredictOutput(merged)
        return outputs
