"""Feature columns split into the per-example work (run in the tf.data map) and the model's share.

`ColumnTransform` turns raw features into, per column, either sparse ids (categorical columns:
vocabulary, hash bucket, identity, bucketized, crossed, weighted, indicator-of-categorical) or a
dense float tensor (numeric). String hashing and vocabulary lookups then run in parallel in the
input pipeline, and the model only gathers weights.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.feature_column import feature_column_v2 as fc2

from components.errors import ConfigError, InputError

WEIGHT_KEY = "__example_weight__"


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


class ColumnTransform:
    """Raw feature dict -> {column name: {'ids': SparseTensor[, 'weights']} or dense [batch, dim]}."""

    def __init__(self, columns, weight_column=None, dense_columns_allowed=(fc2.NumericColumn,)):
        self.columns = validate_columns(columns)
        for col in self.columns:
            if _as_categorical(col) is None and not isinstance(col, dense_columns_allowed):
                raise ConfigError(
                    f"feature column {col.name!r} ({type(col).__name__}) is not supported here; a linear model "
                    "takes numeric, bucketized and categorical columns (or indicator columns over them)"
                )
        self.weight_column = weight_column
        self.resources = _Resources()

    def required_features(self) -> set[str]:
        keys = set()
        for col in self.columns:
            keys |= set(col.parse_example_spec)
        if self.weight_column is not None:
            keys.add(self._weight_key())
        return keys

    def _weight_key(self) -> str:
        return self.weight_column if isinstance(self.weight_column, str) else self.weight_column.key

    def dims(self) -> dict:
        """{column name: ('categorical', num_buckets) or ('dense', width)}."""
        out = {}
        for col in self.columns:
            cat = _as_categorical(col)
            if cat is not None:
                out[col.name] = ("categorical", cat.num_buckets)
            else:
                out[col.name] = ("dense", col.variable_shape.num_elements())
        return out

    def __call__(self, features):
        if not isinstance(features, dict):
            raise InputError(f"feature columns need features as a dict of name -> Tensor, got {type(features).__name__}")
        missing = sorted(self.required_features() - set(features))
        if missing:
            raise InputError(
                f"feature column(s) need feature(s) {missing}, which the input does not provide; "
                f"it provides {sorted(features)}"
            )
        cache = fc2.FeatureTransformationCache(features)
        out = {}
        for col in self.columns:
            cat = _as_categorical(col)
            if cat is not None:
                pair = cat.get_sparse_tensors(cache, self.resources)
                entry = {"ids": tf.cast(pair.id_tensor, tf.int64) if pair.id_tensor.dtype != tf.int64 else pair.id_tensor}
                if pair.weight_tensor is not None:
                    entry["weights"] = pair.weight_tensor
                out[col.name] = entry
            else:
                out[col.name] = col.get_dense_tensor(cache, self.resources)
        if self.weight_column is not None:
            w = features[self._weight_key()]
            out[WEIGHT_KEY] = tf.reshape(tf.cast(w, tf.float32), [-1, 1])
        return out
