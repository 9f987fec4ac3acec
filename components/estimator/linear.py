"""Linear estimators: a sparse linear model over feature columns, trained with FTRL by default."""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from components.errors import ConfigError
from components.estimator import heads as heads_lib
from components.estimator import linear_sdca
from components.estimator._features import ColumnTransform
from components.estimator.heads import example_weights
from components.estimator.mode_keys import ModeKeys
from components.estimator.premade import Part, PremadeEstimator, _scaffold, sparse_lookups
from components.estimator.spec import EstimatorSpec

_COMBINERS = ("sum", "mean", "sqrtn")


class LinearModel(tf.Module):
    """logits = bias + sum over columns of (gathered weights for categorical ids, or x @ W for dense)."""

    def __init__(self, dims: dict, units: int, sparse_combiner: str = "sum"):
        super().__init__(name="linear")
        self.sparse_combiner = sparse_combiner
        # Nested names give tf.estimator's variable paths: linear/linear_model/<column>/weights.
        self.linear_model = {
            name: {"weights": tf.Variable(tf.zeros([dim[1], units]), name=f"{name}/weights")}
            for name, dim in dims.items()
        }
        self.linear_model["bias_weights"] = tf.Variable(tf.zeros([units]), name="bias_weights")

    def __call__(self, columns: dict, training=False):
        dense = [name for name, value in columns.items() if not isinstance(value, dict)]
        sparse = [
            (self.linear_model[name]["weights"], value, self.sparse_combiner)
            for name, value in columns.items()
            if isinstance(value, dict)
        ]
        parts = sparse_lookups(sparse)
        if dense:
            # One product for all dense columns: a matmul per column costs more in op overhead than
            # the work in it.
            x = tf.concat([columns[name] for name in dense], axis=1) if len(dense) > 1 else columns[dense[0]]
            weights = [self.linear_model[name]["weights"] for name in dense]
            parts.append(tf.matmul(x, tf.concat(weights, axis=0) if len(weights) > 1 else weights[0]))
        # One add_n and one bias_add: a chain of broadcasting adds has a gradient of about seven small
        # ops each (shapes, broadcast reduction), which cost the step more than the additions.
        return tf.nn.bias_add(tf.add_n(parts) if len(parts) > 1 else parts[0], self.linear_model["bias_weights"])


def linear_part(
    feature_columns, units, optimizer, sparse_combiner="sum", max_learning_rate=0.2, flat=False, what="feature_columns"
) -> Part:
    """The linear part of a premade model. A named optimizer trains at min(max, 1/sqrt(#columns)), or
    at max itself when `flat`; optimizer=None is Ftrl at min(max, 1/sqrt(#columns)). These are
    tf.estimator 2.x's rules: LinearClassifier's default "Ftrl" trained at 0.2 flat."""
    if sparse_combiner not in _COMBINERS:
        raise ConfigError(f"sparse_combiner must be one of {_COMBINERS}, got {sparse_combiner!r}")
    transform = ColumnTransform(feature_columns, "linear", what)
    dims = transform.dims()
    scaled = min(max_learning_rate, 1.0 / math.sqrt(len(transform.columns)))
    if optimizer is None:
        optimizer, learning_rate = "Ftrl", scaled
    else:
        learning_rate = max_learning_rate if flat else scaled
    return Part(transform, lambda: LinearModel(dims, units, sparse_combiner), optimizer, learning_rate)


class LinearEstimator(PremadeEstimator):
    """A linear model with any head (tf.estimator.LinearEstimator). `optimizer=experimental.LinearSDCA(...)`
    trains a binary classifier or a one-dimensional regression by SDCA (see linear_sdca)."""

    def __init__(
        self,
        head,
        feature_columns,
        model_dir=None,
        optimizer="Ftrl",
        config=None,
        warm_start_from=None,
        sparse_combiner="sum",
        weight_column=None,
    ):
        self._sdca = optimizer if isinstance(optimizer, linear_sdca.LinearSDCA) else None
        part = linear_part(
            feature_columns,
            head.logits_dimension,
            "Ftrl" if self._sdca else optimizer,
            sparse_combiner,
            flat=True,
        )
        if self._sdca is not None:
            self._sdca_loss = linear_sdca.loss_type(head)
            if sparse_combiner != "sum":
                raise ConfigError(
                    f"LinearSDCA combines sparse ids by sum, as tf.estimator's did; got {sparse_combiner!r}"
                )
            build, sdca = part.build_model, self._sdca
            part = dataclasses.replace(
                part, optimizer=None, build_model=lambda: linear_sdca.attach_state(build(), sdca)
            )
        super().__init__(
            head,
            {"linear": part},
            weight_column=weight_column,
            model_dir=model_dir,
            config=config,
            warm_start_from=warm_start_from,
        )

    def _transform(self, features):
        out = super()._transform(features)
        if self._sdca is not None and self._sdca.example_id_column in features:
            out[linear_sdca.EXAMPLE_ID_KEY] = features[self._sdca.example_id_column]
        return out

    def _premade_model_fn(self, features, labels, mode, config, program):
        if self._sdca is None or mode != ModeKeys.TRAIN:
            return super()._premade_model_fn(features, labels, mode, config, program)
        if labels is None:
            raise ConfigError("train needs labels: the input_fn must return (features, labels)")
        self._check_weight(features, mode)
        model, head = program.state["models"]["linear"], self._head
        labels = head.labels(labels)
        logits = model(features["linear"], training=True)
        loss = head.loss(features, labels, logits)
        step = linear_sdca.train_op(
            model,
            self._sdca,
            self._sdca_loss,
            features["linear"],
            labels,
            example_weights(features, tf.cast(labels, tf.float32)),
            features.get(linear_sdca.EXAMPLE_ID_KEY),
        )
        train_op = tf.group(step, tf.compat.v1.train.get_global_step().assign_add(1))
        return EstimatorSpec(mode, loss=loss, train_op=train_op, scaffold=_scaffold({"linear": model}))


class LinearClassifier(LinearEstimator):
    """Linear classifier over feature columns (tf.estimator.LinearClassifier)."""

    def __init__(
        self,
        feature_columns,
        model_dir=None,
        n_classes=2,
        weight_column=None,
        label_vocabulary=None,
        optimizer="Ftrl",
        config=None,
        warm_start_from=None,
        loss_reduction=heads_lib.SUM_OVER_BATCH_SIZE,
        sparse_combiner="sum",
    ):
        head = heads_lib.ClassificationHead(n_classes, label_vocabulary, loss_reduction)
        super().__init__(
            head, feature_columns, model_dir, optimizer, config, warm_start_from, sparse_combiner, weight_column
        )


class LinearRegressor(LinearEstimator):
    """Linear regression over feature columns (tf.estimator.LinearRegressor)."""

    def __init__(
        self,
        feature_columns,
        model_dir=None,
        label_dimension=1,
        weight_column=None,
        optimizer="Ftrl",
        config=None,
        warm_start_from=None,
        loss_reduction=heads_lib.SUM_OVER_BATCH_SIZE,
        sparse_combiner="sum",
    ):
        head = heads_lib.RegressionHead(label_dimension, loss_reduction)
        super().__init__(
            head, feature_columns, model_dir, optimizer, config, warm_start_from, sparse_combiner, weight_column
        )
