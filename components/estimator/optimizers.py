"""Optimizers by name, as the premade estimators accept them."""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from components.errors import ConfigError


class _SortedSums:
    """Sums a sparse gradient's repeated ids (as OptimizerV2 does before each sparse update) with a
    segment_sum over the rows sorted by id rather than an unsorted_segment_sum, for wide rows.

    The same sums: an id repeated up to 15 times in a batch is added in the same order (bitwise the
    same); more repeats, segment_sum adds them in another order, a rounding-level difference.
    unsorted_segment_sum's CPU kernel has every thread scan all rows; it was the costliest op of
    bench/train_throughput.py's DNN step (46 us for each [256, 128] gradient), and this made that step
    3-5 % faster. For rows narrower than _SORTED_FROM the sort costs more than it saves (256 rows: 1.7x
    the time at width 1, 1.1x at 32, 0.9x at 64)."""

    _SORTED_FROM = 48

    def _resource_apply_sparse_duplicate_indices(self, grad, handle, indices, **kwargs):
        width = grad.shape[1:].num_elements()
        if width is None or width < self._SORTED_FROM:
            return super()._resource_apply_sparse_duplicate_indices(grad, handle, indices, **kwargs)
        unique, positions = tf.unique(indices)
        order = tf.argsort(positions, stable=True)
        summed = tf.math.segment_sum(tf.gather(grad, order), tf.gather(positions, order))
        return self._resource_apply_sparse(summed, handle, unique, **kwargs)


class _RowAdagrad(_SortedSums, tf_keras.optimizers.legacy.Adagrad):
    """Legacy Adagrad whose sparse update reads the rows, does the arithmetic and writes them back.

    The same math as ResourceSparseApplyAdagradV2 (accum += g^2; var -= lr * g / (sqrt(accum) +
    epsilon)); the rows arrive deduplicated, so writing them back is exact. That fused kernel took
    about 25 % more CPU on 2 cores for bench/train_throughput.py's DNN (five [1000, 128] indicator
    tables, ~216 rows each per step): 510 against 410 us per step.
    """

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        device, dtype = var.device, var.dtype.base_dtype
        coefficients = (apply_state or {}).get((device, dtype)) or self._fallback_apply_state(device, dtype)
        accum = self.get_slot(var, "accumulator")
        accum_rows = tf.gather(accum, indices) + grad * grad
        var_rows = tf.gather(var, indices) - coefficients["lr_t"] * grad / (tf.sqrt(accum_rows) +
                                                                               coefficients["epsilon"])
        return tf.group(accum.scatter_update(tf.IndexedSlices(accum_rows, indices)),
                        var.scatter_update(tf.IndexedSlices(var_rows, indices)))


_LEGACY = tf_keras.optimizers.legacy


class _Adam(_SortedSums, _LEGACY.Adam):
    """tf_keras's legacy Adam, its repeated ids summed by _SortedSums."""


class _Ftrl(_SortedSums, _LEGACY.Ftrl):
    """tf_keras's legacy Ftrl, its repeated ids summed by _SortedSums."""


class _RMSprop(_SortedSums, _LEGACY.RMSprop):
    """tf_keras's legacy RMSprop, its repeated ids summed by _SortedSums."""


# Each legacy optimizer the premade estimators name, as the faster form they use (the same optimizer);
# one given as an instance is copied as its form here. SGD adds repeated ids' rows itself (scatter_add).
_FASTER = {_LEGACY.Adagrad: _RowAdagrad, _LEGACY.Adam: _Adam, _LEGACY.Ftrl: _Ftrl, _LEGACY.RMSprop: _RMSprop}
# The legacy (OptimizerV2) classes apply sparse gradients to the rows of the ids in the batch, which
# keeps the linear model's update proportional to them rather than to the vocabulary.
_BY_NAME = {"Adagrad": _RowAdagrad, "Adam": _Adam, "Ftrl": _Ftrl, "RMSProp": _RMSprop, "SGD": _LEGACY.SGD}


def is_optimizer(obj) -> bool:
    """True for a Keras (2 or 3) optimizer instance (a class is a factory, as tf.estimator took it)."""
    return not isinstance(obj, type) and hasattr(obj, "apply_gradients") and hasattr(obj, "get_config")


def check_optimizer(spec):
    """Fails at construction, not at train time, on an optimizer spec make_optimizer cannot use."""
    if isinstance(spec, str) and spec not in _BY_NAME:
        raise ConfigError(f"unknown optimizer {spec!r}; use one of {sorted(_BY_NAME)} or an optimizer instance")
    if not isinstance(spec, str) and not is_optimizer(spec) and not callable(spec):
        raise ConfigError(f"optimizer must be a name, an optimizer or a callable returning one; got {spec!r}")
    return spec


def _schedule(optimizer):
    """The learning-rate schedule object of a legacy (OptimizerV2), tf_keras or Keras 3 optimizer."""
    hyper = getattr(optimizer, "_hyper", None)
    if isinstance(hyper, dict) and "learning_rate" in hyper:
        return hyper["learning_rate"]
    return optimizer._learning_rate


def make_optimizer(spec, default_learning_rate: float):
    """A fresh optimizer from a name, an instance (copied, so each model gets its own slots) or a factory."""
    check_optimizer(spec)
    if isinstance(spec, str):
        return _BY_NAME[spec](learning_rate=default_learning_rate)
    if is_optimizer(spec):
        config = spec.get_config()
        if isinstance(config.get("learning_rate"), dict):
            # A schedule, serialized: from_config rebuilds only registered ones (and legacy Adagrad's
            # none at all). The copy shares the schedule object, which holds no state.
            config["learning_rate"] = _schedule(spec)
        return _FASTER.get(type(spec), type(spec)).from_config(config)
    if callable(spec):
        made = spec()
        if not hasattr(made, "apply_gradients"):
            raise ConfigError(f"optimizer factory returned {type(made).__name__}, not an optimizer")
        return made
