"""DNN estimators (feed-forward networks over dense feature columns) and the wide-and-deep combination."""

from __future__ import annotations

import functools
import math
import numbers

import tensorflow as tf
import tf_keras

from components.errors import ConfigError
from components.estimator import heads as heads_lib
from components.estimator._compat import global_seed
from components.estimator._features import ColumnTransform
from components.estimator._legacy_checkpoint import Target
from components.estimator.linear import linear_part
from components.estimator.premade import Part, PremadeEstimator, sparse_lookups

_BN_MOMENTUM, _BN_EPSILON = 0.999, 1e-3


def _moving(value):
    # Each replica updates its own copy; reads (and checkpoints) average them, as Keras does.
    return tf.Variable(
        value,
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.MEAN,
    )


class _BatchNorm(tf.Module):
    def __init__(self, width: int, name: str):
        super().__init__(name=name)
        self.gamma = tf.Variable(tf.ones([width]), name="gamma")
        self.beta = tf.Variable(tf.zeros([width]), name="beta")
        self.moving_mean = _moving(tf.zeros([width]))
        self.moving_variance = _moving(tf.ones([width]))

    def __call__(self, x, training):
        if training:
            mean, variance = tf.nn.moments(x, axes=[0])
            self.moving_mean.assign(self.moving_mean * _BN_MOMENTUM + mean * (1 - _BN_MOMENTUM))
            self.moving_variance.assign(self.moving_variance * _BN_MOMENTUM + variance * (1 - _BN_MOMENTUM))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, _BN_EPSILON)


class _Dense(tf.Module):
    def __init__(self, fan_in: int, units: int, name: str, dense_rows=None, blocks=(), initial=None):
        """`dense_rows` and `blocks` ((column, first row, rows), ...) split the kernel of the first layer:
        tf.estimator's [fan_in, units] kernel is drawn whole, then the rows of dense inputs stay in `kernel`
        (in the order of `dense_rows`) and each indicator column's rows become its own variable.
        `initial`: that kernel's initial value (default: drawn here, Glorot uniform)."""
        super().__init__(name=name)
        self._dense_rows, self._blocks = dense_rows, tuple(blocks)
        if initial is None:
            initial = tf_keras.initializers.GlorotUniform()([fan_in, units])
        dense, indicators = self._split(initial)
        if dense is not None:
            self.kernel = tf.Variable(dense, name="kernel")
        if dense_rows is not None:
            # Separate variables, so their sparse updates run side by side (as Keras's embeddings do)
            # rather than one after another on one big kernel.
            self.indicator_kernels = {
                column: tf.Variable(rows, name=f"{column}/kernel") for column, rows in indicators.items()
            }
        self.bias = tf.Variable(tf.zeros([units]), name="bias")

    def _split(self, kernel) -> tuple:
        """tf.estimator's [fan_in, units] kernel as this layer keeps it: (the rows of `kernel`, or None when
        every input is an indicator column; {column: its rows})."""
        if self._dense_rows is None:
            return kernel, {}
        dense = tf.gather(kernel, tf.constant(self._dense_rows, tf.int32)) if self._dense_rows else None
        return dense, {column: kernel[start : start + rows] for column, start, rows in self._blocks}

    def __call__(self, x):
        return tf.matmul(x, self.kernel) + self.bias

    def legacy_layout(self) -> dict:
        """Where tf.estimator's one first-layer kernel is kept here (see _legacy_checkpoint): the rows of
        `kernel` and of each indicator column's variable, as parts of the [fan_in, units] matrix."""
        if self._dense_rows is None:
            return {}
        parts = [Target(self.kernel, lambda k: self._split(k)[0])] if self._dense_rows else []
        parts += [Target(var, lambda k, c=c: self._split(k)[1][c]) for c, var in self.indicator_kernels.items()]
        return {"kernel": parts}

    def assign_kernel(self, kernel) -> None:
        """Sets the kernel from tf.estimator's layout: one [fan_in, units] matrix, columns in name order."""
        dense, indicators = self._split(kernel)
        if dense is not None:
            self.kernel.assign(dense)
        for column, rows in indicators.items():
            self.indicator_kernels[column].assign(rows)


def _drawn_as_tf_estimator(embeddings: list, kernels: list, dropout) -> tuple | None:
    """The DNN's initial values as tf.estimator 2.15 drew them for the global seed (RunConfig's
    tf_random_seed): (iterator over the embedding tables, iterator over the kernels); None without a seed.

    2.15 built the model in a graph whose seed was tf_random_seed, and each initializer without a seed of
    its own took the graph's next op seed (0, 1, 2, ...), in the order the training graph made them: each
    embedding table ([rows, dim], truncated normal of stddev 1/sqrt(dim)) in column-name order, then each
    kernel ([fan_in, units], Glorot uniform) from the first hidden layer to the logits, a hidden layer's
    dropout (training with dropout) taking the op seed after its kernel. The same initializers in a graph
    of their own, seeded alike, give 2.15's values to the bit; biases start at zero, as in 2.15.
    """
    seed = global_seed()
    if seed is None:
        return None
    tables, weights = _draws(seed, tuple(embeddings), tuple(tuple(k) for k in kernels), bool(dropout))
    return iter(tables), iter(weights)


@functools.lru_cache(maxsize=16)
def _draws(seed: int, embeddings: tuple, kernels: tuple, dropout: bool) -> tuple:
    """_drawn_as_tf_estimator's values, kept: each program (train, eval, predict) of an Estimator builds the
    model, and a graph and session cost about 70 ms each time."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        tables = [
            tf.compat.v1.truncated_normal_initializer(stddev=1.0 / math.sqrt(dim))([rows, dim])
            for rows, dim in embeddings
        ]
        weights = []
        for i, shape in enumerate(kernels):
            weights.append(tf.compat.v1.glorot_uniform_initializer()(list(shape)))
            if dropout and i < len(kernels) - 1:
                tf.random.uniform([])  # takes the op seed dropout took in 2.15's graph
        config = tf.compat.v1.ConfigProto(device_count={"GPU": 0})  # drawn on the CPU, as on 2.15's CPU
        with tf.compat.v1.Session(graph=graph, config=config) as session:
            return session.run((tables, weights))


class DNNModel(tf.Module):
    """Input layer (dense columns concatenated by name, embeddings looked up) -> hidden layers -> logits.

    Variable paths follow tf.estimator: dnn/hiddenlayer_<i>/kernel, dnn/hiddenlayer_<i>/batchnorm_<i>/gamma,
    dnn/logits/kernel, dnn/input_from_feature_columns/input_layer/<column>/embedding_weights. One
    difference: with indicator columns, the first layer's rows for each of them are their own variable,
    dnn/hiddenlayer_0/indicator_kernels/<column>, and dnn/hiddenlayer_0/kernel holds the other rows.
    """

    def __init__(self, dims: dict, hidden_units, units: int, activation_fn=tf.nn.relu, dropout=None, batch_norm=False):
        super().__init__(name="dnn")
        self._dims, self._activation, self._dropout = dims, activation_fn, dropout
        tables, width = {}, 0
        fan_in = sum(dim[2] if dim[0] == "embedding" else dim[1] for dim in dims.values())
        drawn = _drawn_as_tf_estimator(
            [(dim[1], dim[2]) for dim in dims.values() if dim[0] == "embedding"],
            list(zip([fan_in, *hidden_units], [*hidden_units, units])),
            dropout,
        )
        # Rows of tf.estimator's first-layer kernel, columns in name order: each indicator column owns
        # a block (looked up by id), the dense inputs (numeric, bucketized, embeddings) the other rows.
        dense_rows: list[int] = []
        indicators: list[tuple[str, int, int]] = []
        for name, dim in dims.items():
            if dim[0] == "embedding":
                _, rows, size, _ = dim
                init = (
                    next(drawn[0]) if drawn else tf.random.truncated_normal([rows, size], stddev=1.0 / math.sqrt(size))
                )
                tables[name] = {"embedding_weights": tf.Variable(init, name=f"{name}/embedding_weights")}
                dense_rows.extend(range(width, width + size))
                width += size
            elif dim[0] == "indicator":
                indicators.append((name, width, dim[1]))
                width += dim[1]
            else:
                dense_rows.extend(range(width, width + dim[1]))
                width += dim[1]
        self._indicators = tuple(name for name, _, _ in indicators)
        self.input_from_feature_columns = {"input_layer": tables}
        self._depth = len(hidden_units)
        for i, n in enumerate(hidden_units):
            split = i == 0 and indicators
            layer = _Dense(
                width,
                n,
                f"hiddenlayer_{i}",
                tuple(dense_rows) if split else None,
                indicators if split else (),
                next(drawn[1]) if drawn else None,
            )
            if batch_norm:
                setattr(layer, f"batchnorm_{i}", _BatchNorm(n, f"batchnorm_{i}"))
            setattr(self, f"hiddenlayer_{i}", layer)
            width = n
        self.logits = _Dense(width, units, "logits", initial=next(drawn[1]) if drawn else None)

    def _first_layer(self, columns: dict):
        tables = self.input_from_feature_columns["input_layer"]
        layer = self.hiddenlayer_0
        # Embedding columns' lookups, then indicator columns' (an indicator column's one-hot times its
        # rows of the kernel is a gather of the rows of its ids), all in one sparse_lookups.
        embedded = [name for name, dim in self._dims.items() if dim[0] == "embedding"]
        lookups = [(tables[name]["embedding_weights"], columns[name], self._dims[name][3]) for name in embedded]
        lookups += [(layer.indicator_kernels[name], columns[name], "sum") for name in self._indicators]
        looked_up = sparse_lookups(lookups)
        embeddings = dict(zip(embedded, looked_up))
        dense = [
            embeddings[name] if dim[0] == "embedding" else columns[name]
            for name, dim in self._dims.items()
            if dim[0] in ("embedding", "dense")
        ]
        if not self._indicators:
            return layer(tf.concat(dense, axis=1) if len(dense) > 1 else dense[0])
        parts = looked_up[len(embedded) :]
        if dense:
            parts.append(tf.matmul(tf.concat(dense, axis=1) if len(dense) > 1 else dense[0], layer.kernel))
        return tf.add_n(parts) + layer.bias

    def __call__(self, columns: dict, training=False):
        net = None
        for i in range(self._depth):
            layer = getattr(self, f"hiddenlayer_{i}")
            net = self._activation(self._first_layer(columns) if i == 0 else layer(net))
            if training and self._dropout:
                net = tf.nn.dropout(net, rate=self._dropout)
            norm = getattr(layer, f"batchnorm_{i}", None)
            if norm is not None:
                net = norm(net, training)
        return self.logits(net)


def dnn_part(
    hidden_units,
    feature_columns,
    units,
    optimizer,
    activation_fn=tf.nn.relu,
    dropout=None,
    batch_norm=False,
    learning_rate=None,
    what="feature_columns",
) -> Part:
    """The DNN part of a premade model, with its arguments checked. A named optimizer trains at
    `learning_rate`, or at its class's default when None (tf.estimator 2.x's DNNClassifier passed none)."""
    if isinstance(hidden_units, numbers.Integral):
        hidden_units = [hidden_units]
    hidden_units = list(hidden_units or [])
    if not hidden_units or not all(isinstance(n, numbers.Integral) and n > 0 for n in hidden_units):  # type: ignore[operator]  # numbers ABCs declare no comparisons
        raise ConfigError(
            f"hidden_units must be a non-empty list of positive ints (e.g. [128, 64]), got {hidden_units!r}"
        )
    if dropout is not None and not (isinstance(dropout, numbers.Real) and 0 <= dropout < 1):  # type: ignore[operator]  # numbers ABCs declare no comparisons
        raise ConfigError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    if not callable(activation_fn):
        raise ConfigError(f"activation_fn must be callable (e.g. tf.nn.relu), got {activation_fn!r}")
    transform = ColumnTransform(feature_columns, "dnn", what)
    dims = transform.dims()
    return Part(
        transform,
        lambda: DNNModel(dims, hidden_units, units, activation_fn, dropout, batch_norm),
        optimizer,
        learning_rate,
    )


class DNNEstimator(PremadeEstimator):
    """A DNN with any head (tf.estimator.DNNEstimator)."""

    def __init__(
        self,
        head,
        hidden_units,
        feature_columns,
        model_dir=None,
        optimizer="Adagrad",
        activation_fn=tf.nn.relu,
        dropout=None,
        config=None,
        warm_start_from=None,
        batch_norm=False,
        weight_column=None,
    ):
        part = dnn_part(
            hidden_units, feature_columns, head.logits_dimension, optimizer, activation_fn, dropout, batch_norm
        )
        super().__init__(
            head,
            {"dnn": part},
            weight_column=weight_column,
            model_dir=model_dir,
            config=config,
            warm_start_from=warm_start_from,
        )


class DNNClassifier(DNNEstimator):
    """Feed-forward classifier (tf.estimator.DNNClassifier), trained with Adagrad by default."""

    def __init__(
        self,
        hidden_units,
        feature_columns,
        model_dir=None,
        n_classes=2,
        weight_column=None,
        label_vocabulary=None,
        optimizer="Adagrad",
        activation_fn=tf.nn.relu,
        dropout=None,
        config=None,
        warm_start_from=None,
        loss_reduction=heads_lib.SUM_OVER_BATCH_SIZE,
        batch_norm=False,
    ):
        head = heads_lib.ClassificationHead(n_classes, label_vocabulary, loss_reduction)
        super().__init__(
            head,
            hidden_units,
            feature_columns,
            model_dir,
            optimizer,
            activation_fn,
            dropout,
            config,
            warm_start_from,
            batch_norm,
            weight_column,
        )


class DNNRegressor(DNNEstimator):
    """Feed-forward regressor (tf.estimator.DNNRegressor), trained with Adagrad by default."""

    def __init__(
        self,
        hidden_units,
        feature_columns,
        model_dir=None,
        label_dimension=1,
        weight_column=None,
        optimizer="Adagrad",
        activation_fn=tf.nn.relu,
        dropout=None,
        config=None,
        warm_start_from=None,
        loss_reduction=heads_lib.SUM_OVER_BATCH_SIZE,
        batch_norm=False,
    ):
        head = heads_lib.RegressionHead(label_dimension, loss_reduction)
        super().__init__(
            head,
            hidden_units,
            feature_columns,
            model_dir,
            optimizer,
            activation_fn,
            dropout,
            config,
            warm_start_from,
            batch_norm,
            weight_column,
        )


class DNNLinearCombinedEstimator(PremadeEstimator):
    """Wide (linear) and deep (DNN) parts whose logits add up, each with its own optimizer."""

    def __init__(
        self,
        head,
        model_dir=None,
        linear_feature_columns=None,
        linear_optimizer="Ftrl",
        dnn_feature_columns=None,
        dnn_optimizer="Adagrad",
        dnn_hidden_units=None,
        dnn_activation_fn=tf.nn.relu,
        dnn_dropout=None,
        config=None,
        warm_start_from=None,
        linear_sparse_combiner="sum",
        batch_norm=False,
        weight_column=None,
    ):
        if not linear_feature_columns and not dnn_feature_columns:
            raise ConfigError("give linear_feature_columns, dnn_feature_columns or both")
        parts = {}
        if linear_feature_columns:
            parts["linear"] = linear_part(
                linear_feature_columns,
                head.logits_dimension,
                linear_optimizer,
                linear_sparse_combiner,
                max_learning_rate=0.005,
                what="linear_feature_columns",
            )
        if dnn_feature_columns:
            parts["dnn"] = dnn_part(
                dnn_hidden_units,
                dnn_feature_columns,
                head.logits_dimension,
                dnn_optimizer,
                dnn_activation_fn,
                dnn_dropout,
                batch_norm,
                learning_rate=0.001,
                what="dnn_feature_columns",
            )
        super().__init__(
            head,
            parts,
            weight_column=weight_column,
            model_dir=model_dir,
            config=config,
            warm_start_from=warm_start_from,
        )


class DNNLinearCombinedClassifier(DNNLinearCombinedEstimator):
    """Wide-and-deep classifier (tf.estimator.DNNLinearCombinedClassifier)."""

    def __init__(
        self,
        model_dir=None,
        linear_feature_columns=None,
        linear_optimizer="Ftrl",
        dnn_feature_columns=None,
        dnn_optimizer="Adagrad",
        dnn_hidden_units=None,
        dnn_activation_fn=tf.nn.relu,
        dnn_dropout=None,
        n_classes=2,
        weight_column=None,
        label_vocabulary=None,
        config=None,
        warm_start_from=None,
        loss_reduction=heads_lib.SUM_OVER_BATCH_SIZE,
        batch_norm=False,
        linear_sparse_combiner="sum",
    ):
        head = heads_lib.ClassificationHead(n_classes, label_vocabulary, loss_reduction)
        super().__init__(
            head,
            model_dir,
            linear_feature_columns,
            linear_optimizer,
            dnn_feature_columns,
            dnn_optimizer,
            dnn_hidden_units,
            dnn_activation_fn,
            dnn_dropout,
            config,
            warm_start_from,
            linear_sparse_combiner,
            batch_norm,
            weight_column,
        )


class DNNLinearCombinedRegressor(DNNLinearCombinedEstimator):
    """Wide-and-deep regressor (tf.estimator.DNNLinearCombinedRegressor)."""

    def __init__(
        self,
        model_dir=None,
        linear_feature_columns=None,
        linear_optimizer="Ftrl",
        dnn_feature_columns=None,
        dnn_optimizer="Adagrad",
        dnn_hidden_units=None,
        dnn_activation_fn=tf.nn.relu,
        dnn_dropout=None,
        label_dimension=1,
        weight_column=None,
        config=None,
        warm_start_from=None,
        loss_reduction=heads_lib.SUM_OVER_BATCH_SIZE,
        batch_norm=False,
        linear_sparse_combiner="sum",
    ):
        head = heads_lib.RegressionHead(label_dimension, loss_reduction)
        super().__init__(
            head,
            model_dir,
            linear_feature_columns,
            linear_optimizer,
            dnn_feature_columns,
            dnn_optimizer,
            dnn_hidden_units,
            dnn_activation_fn,
            dnn_dropout,
            config,
            warm_start_from,
            linear_sparse_combiner,
            batch_norm,
            weight_column,
        )
