"""Optimizers by name, as the premade estimators accept them."""

from __future__ import annotations

import tensorflow as tf
import tf_keras

from components.errors import ConfigError


class _RowAdagrad(tf_keras.optimizers.legacy.Adagrad):
    """Legacy Adagrad whose sparse update reads the rows, does the arithmetic and writes them back.

    The same math as ResourceSparseApplyAdagradV2 (accum += g^2; var -= lr * g / (sqrt(accum) +
    epsilon)); the rows arrive deduplicated (OptimizerV2 sums repeated ids first), so writing them back
    is exact. That fused kernel took about 25 % more CPU on 2 cores for bench/train_throughput.py's DNN
    (five [1000, 128] indicator tables, ~216 rows each per step): 510 against 410 us per step.
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


# The legacy (OptimizerV2) classes apply sparse gradients to the rows of the ids in the batch, which
# keeps the linear model's update proportional to them rather than to the vocabulary.
_BY_NAME = {
    "Adagrad": _RowAdagrad,
    "Adam": tf_keras.optimizers.legacy.Adam,
    "Ftrl": tf_keras.optimizers.legacy.Ftrl,
    "RMSProp": tf_keras.optimizers.legacy.RMSprop,
    "SGD": tf_keras.optimizers.legacy.SGD,
}


def is_optimizer(obj) -> bool:
    """True for a Keras (2 or 3) optimizer instance."""
    return hasattr(obj, "apply_gradients") and hasattr(obj, "get_config")


def check_optimizer(spec):
    """Fails at construction, not at train time, on an optimizer spec make_optimizer cannot use."""
    if isinstance(spec, str) and spec not in _BY_NAME:
        raise ConfigError(f"unknown optimizer {spec!r}; use one of {sorted(_BY_NAME)} or an optimizer instance")
    if not isinstance(spec, str) and not is_optimizer(spec) and not callable(spec):
        raise ConfigError(f"optimizer must be a name, an optimizer or a callable returning one; got {spec!r}")
    return spec


def make_optimizer(spec, default_learning_rate: float):
    """A fresh optimizer from a name, an instance (copied, so each model gets its own slots) or a factory."""
    check_optimizer(spec)
    if isinstance(spec, str):
        return _BY_NAME[spec](learning_rate=default_learning_rate)
    if is_optimizer(spec):
        # A legacy Adagrad is copied as _RowAdagrad: the same optimizer, with the faster sparse update.
        cls = _RowAdagrad if type(spec) is tf_keras.optimizers.legacy.Adagrad else type(spec)
        return cls.from_config(spec.get_config())
    if callable(spec):
        made = spec()
        if not hasattr(made, "apply_gradients"):
            raise ConfigError(f"optimizer factory returned {type(made).__name__}, not an optimizer")
        return made
