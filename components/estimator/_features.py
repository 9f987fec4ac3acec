"""Feature columns split into the per-example work (the input transform) and the model's share.

`ColumnTransform` turns raw features into, per column, either sparse ids (categorical columns:
vocabulary, hash bucket, identity, bucketized, crossed, weighted, indicator-of-categorical) or a
dense float tensor (numeric). The model then only gathers weights. Where the transform runs, in
the traced step or in the input pipeline's map, is the Estimator's choice (_transform_in_step).
"""

from __future__ import annotations

import tensorflow as tf

from components.errors import ConfigError, InputError
from components.estimator._compat import fc2

WEIGHT_KEY = "__example_weight__"


def weight_key(weight_column) -> str | None:
    """The feature a head's or estimator's `weight_column` names (a name or a numeric_column), or None."""
    if weight_column is None:
        return None
    if isinstance(weight_column, str):
        return weight_column
    key = getattr(weight_column, "key", None)
    if not isinstance(key, str):
        raise ConfigError(f"weight_column must be a feature name or a numeric_column, got {weight_column!r}")
    return key


def example_weight(features: dict, key: str):
    """The weight column's values as float32 [batch, 1], kept under WEIGHT_KEY for the heads."""
    if key not in features:
        raise InputError(f"weight_column {key!r} is not among the features {sorted(features)}")
    return tf.reshape(tf.cast(features[key], tf.float32), [-1, 1])


class _Resources(fc2.StateManager):
    """Keeps the lookup tables feature columns create, so each is built once and can be exported."""

    def __init__(self):
        self._resources = {}

    def add_resource(self, feature_column, name, resource):
        self._resources[(feature_column.name, name)] = resource

    def has_resource(self, feature_column, name):
        return (feature_column.name, name) in self._resources

    def get_resource(self, feature_column, name):
        return self._resources[(feature_column.name, name)]

    def resources(self) -> list:
        return list(self._resources.values())


def _as_categorical(column):
    """The categorical column a linear model treats `column` as, or None for dense columns."""
    if isinstance(column, fc2.CategoricalColumn):
        return column
    if isinstance(column, fc2.IndicatorColumn):
        return column.categorical_column
    return None


def validate_columns(columns, what="feature_columns") -> list:
    columns = list(columns or [])
    if not columns:
        raise ConfigError(f"{what} is empty; give at least one tf.feature_column")
    names = set()
    for col in columns:
        if not isinstance(col, (fc2.CategoricalColumn, fc2.DenseColumn)):
            raise ConfigError(f"{what} must hold tf.feature_column objects, got {type(col).__name__}: {col!r}")
        if col.name in names:
            raise ConfigError(f"{what} has two columns named {col.name!r}")
        names.add(col.name)
    return columns


def transformation_cache(columns, features) -> fc2.FeatureTransformationCache:
    """The columns' transformation cache over `features`, once every feature they read is there."""
    if not isinstance(features, dict):
        raise InputError(f"feature columns need features as a dict of name -> Tensor, got {type(features).__name__}")
    required = set()
    for col in columns:
        required |= set(col.parse_example_spec)
    missing = sorted(required - set(features))
    if missing:
        raise InputError(
            f"feature column(s) need feature(s) {missing}, which the input does not provide; "
            f"it provides {sorted(features)}"
        )
    return fc2.FeatureTransformationCache(features)


def _dnn_sparse_source(column):
    """The categorical column behind an embedding or indicator column (fed to the DNN as ids), else None."""
    if isinstance(column, (fc2.EmbeddingColumn, fc2.IndicatorColumn)):
        return column.categorical_column
    return None


class ColumnTransform:
    """Raw feature dict -> {column name: {'ids': SparseTensor[, 'weights']} or dense [batch, dim]}.

    `kind="linear"` treats categorical columns (and indicator columns over them) as sparse ids,
    for a weight gather. `kind="dnn"` wants dense inputs: embedding columns become sparse ids (the
    model holds the embedding table), and so do indicator columns (a one-hot times the first layer's
    kernel is a gather of its rows); numeric and bucketized columns are computed here.
    """

    def __init__(self, columns, kind: str = "linear", what: str = "feature_columns"):
        self.columns = validate_columns(columns, what)
        self.kind = kind
        for col in self.columns:
            if kind == "linear" and _as_categorical(col) is None and not isinstance(col, fc2.NumericColumn):
                raise ConfigError(
                    f"{what}: column {col.name!r} ({type(col).__name__}) is not supported by a linear model; "
                    "it takes numeric, bucketized and categorical columns (or indicator columns over them)"
                )
            if kind == "dnn" and not isinstance(col, fc2.DenseColumn):
                raise ConfigError(
                    f"{what}: a DNN takes dense columns, but {col.name!r} is {type(col).__name__}; wrap it in "
                    f"tf.feature_column.indicator_column({col.name!r}-column) or embedding_column(...)"
                )
            if kind == "dnn" and not isinstance(
                col, (fc2.NumericColumn, fc2.IndicatorColumn, fc2.BucketizedColumn, fc2.EmbeddingColumn)
            ):
                raise ConfigError(
                    f"{what}: column {col.name!r} ({type(col).__name__}) is not supported by the DNN; "
                    "use numeric, bucketized, indicator or embedding columns"
                )
        # tf.estimator's input layer orders columns by name.
        self.columns.sort(key=lambda c: c.name)
        self.resources = _Resources()

    def _sparse_source(self, col):
        return _as_categorical(col) if self.kind == "linear" else _dnn_sparse_source(col)

    def dims(self) -> dict[str, tuple]:
        """{column name: ('categorical' | 'indicator', num_buckets) | ('embedding', num_buckets, dim, combiner)
        | ('dense', width)}."""
        out: dict[str, tuple] = {}
        for col in self.columns:
            source = self._sparse_source(col)
            if source is None:
                out[col.name] = ("dense", col.variable_shape.num_elements())
            elif self.kind == "linear":
                out[col.name] = ("categorical", source.num_buckets)
            elif isinstance(col, fc2.IndicatorColumn):
                out[col.name] = ("indicator", source.num_buckets)
            else:
                out[col.name] = ("embedding", source.num_buckets, col.dimension, col.combiner)
        return out

    def __call__(self, features):
        cache = transformation_cache(self.columns, features)
        out = {}
        for col in self.columns:
            source = self._sparse_source(col)
            if source is not None:
                pair = source.get_sparse_tensors(cache, self.resources)
                out[col.name] = _valid_ids(source, pair, weighted_rows_only=not isinstance(col, fc2.IndicatorColumn))
            else:
                out[col.name] = tf.cast(col.get_dense_tensor(cache, self.resources), tf.float32)
        return out


def _valid_ids(source, pair, weighted_rows_only: bool) -> dict:
    """{'ids'[, 'weights']} without the ids tf.estimator ignored: -1 (a value outside a vocabulary
    with no OOV buckets) and, where `weighted_rows_only`, ids of weight <= 0 (its
    safe_embedding_lookup_sparse dropped those for linear and embedding columns)."""
    ids = pair.id_tensor if pair.id_tensor.dtype == tf.int64 else tf.cast(pair.id_tensor, tf.int64)
    if pair.weight_tensor is None and isinstance(source, fc2.HashedCategoricalColumn):
        return {"ids": ids}  # hash buckets are never negative: nothing to drop
    keep = ids.values >= 0
    if pair.weight_tensor is not None and weighted_rows_only:
        keep = tf.logical_and(keep, pair.weight_tensor.values > 0)
    entry = {"ids": _retain(ids, keep)}
    if pair.weight_tensor is not None:
        entry["weights"] = _retain(pair.weight_tensor, keep)
    return entry


def _retain(sparse, keep):
    # tf.sparse.retain loses the static shape ([batch, 1] of a single-valued column), which
    # sparse_lookup's one-id fast path needs.
    kept = tf.sparse.retain(sparse, keep)
    return tf.SparseTensor(kept.indices, kept.values, sparse.dense_shape)
