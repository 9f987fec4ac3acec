"""add_metrics: an Estimator that also reports metrics a function computes (tf.estimator.add_metrics)."""

from __future__ import annotations

import copy
import types

from components.errors import ConfigError
from components.estimator._inputs import fn_args

_METRIC_FN_ARGS = {"features", "labels", "predictions", "config"}


def add_metrics(estimator, metric_fn):
    """A copy of `estimator` whose evaluate() also returns metric_fn's metrics.

    metric_fn takes any of `predictions`, `features`, `labels`, `config` and returns a dict of
    Keras metric objects (updated) or (value, update_op) tuples; a name it shares with the model's
    metrics replaces the model's. `features` are the input_fn's, as tf.estimator gave them (for
    premade estimators too, whose model sees them after the feature columns' string work).
    """
    from components.estimator.estimator import Estimator

    if not isinstance(estimator, Estimator):
        raise ConfigError(f"add_metrics needs a components.estimator Estimator, got {type(estimator).__name__}")
    if not callable(metric_fn):
        raise ConfigError(f"metric_fn must be callable, got {type(metric_fn).__name__}")
    unknown = set(fn_args(metric_fn)) - _METRIC_FN_ARGS
    if unknown:
        raise ConfigError(f"metric_fn has arguments {sorted(unknown)}; it may only take {sorted(_METRIC_FN_ARGS)}")
    new = copy.copy(estimator)
    # A premade estimator's model_fn is its own bound method: bind it to the copy, which traces its own
    # input transform.
    if isinstance(new._model_fn, types.MethodType) and new._model_fn.__self__ is estimator:
        new._model_fn = types.MethodType(new._model_fn.__func__, new)
    new.__dict__.pop("_traced_transform", None)
    new._metric_fns = tuple(estimator._metric_fns) + (metric_fn,)
    new._programs = {}  # the copy traces its own model_fn (with the metrics) and keeps its own programs
    return new
