"""Parsing specs for tf.Example input with the label (and weight) added, as tf.estimator's premade models read it."""

from __future__ import annotations

import tensorflow as tf

from components.errors import ConfigError


def _spec_with_label(feature_columns, label_key, label_spec, weight_column) -> dict:
    if not isinstance(label_key, str) or not label_key:
        raise ConfigError(f"label_key must be a non-empty string, got {label_key!r}")
    spec = dict(tf.feature_column.make_parse_example_spec(list(feature_columns)))
    if label_key in spec:
        raise ConfigError(f"label {label_key!r} is also a feature column; the label must not be used as a feature")
    spec[label_key] = label_spec
    if weight_column is not None:
        if isinstance(weight_column, str):
            weight_column = tf.feature_column.numeric_column(weight_column)
        if not hasattr(weight_column, "parse_example_spec"):
            raise ConfigError(f"weight_column must be a feature name or a numeric_column, got {weight_column!r}")
        spec.update(weight_column.parse_example_spec)
    return spec


def classifier_parse_example_spec(
    feature_columns, label_key, label_dtype=tf.int64, label_default=None, weight_column=None
) -> dict:
    """make_parse_example_spec(feature_columns) plus the label: FixedLenFeature([1], label_dtype, label_default)."""
    return _spec_with_label(
        feature_columns, label_key, tf.io.FixedLenFeature((1,), label_dtype, label_default), weight_column
    )


def regressor_parse_example_spec(
    feature_columns, label_key, label_dtype=tf.float32, label_default=None, label_dimension=1, weight_column=None
) -> dict:
    """make_parse_example_spec(feature_columns) plus the label: FixedLenFeature([label_dimension], label_dtype)."""
    if not isinstance(label_dimension, int) or label_dimension < 1:
        raise ConfigError(f"label_dimension must be an int >= 1, got {label_dimension!r}")
    return _spec_with_label(
        feature_columns, label_key, tf.io.FixedLenFeature((label_dimension,), label_dtype, label_default), weight_column
    )
