"""Optimizers by name, as the premade estimators accept them."""

from __future__ import annotations

import tf_keras

from components.errors import ConfigError

# The legacy (OptimizerV2) classes apply sparse gradients with fused kernels, which keeps the
# linear model's update proportional to the ids in the batch rather than to the vocabulary.
_BY_NAME = {
    "Adagrad": tf_keras.optimizers.legacy.Adagrad,
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
        return spec.__class__.from_config(spec.get_config())
    if callable(spec):
        made = spec()
        if not hasattr(made, "apply_gradients"):
            raise ConfigError(f"optimizer factory returned {type(made).__name__}, not an optimizer")
        return made
