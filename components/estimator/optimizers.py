"""Optimizers by name, as the premade estimators accept them."""

from __future__ import annotations

import tf_keras

from components.errors import ConfigError
from components.estimator._compat import FASTER_LEGACY, learning_rate_schedule

# The legacy (OptimizerV2) classes apply sparse gradients to the rows of the ids in the batch, which
# keeps the linear model's update proportional to them rather than to the vocabulary. Each is used in
# its faster form (FASTER_LEGACY: the same optimizer, cheaper sparse updates), which a legacy optimizer
# given as an instance is copied as too. SGD adds repeated ids' rows itself (scatter_add).
_LEGACY = tf_keras.optimizers.legacy
_BY_NAME = {
    name: FASTER_LEGACY.get(cls, cls)
    for name, cls in (
        ("Adagrad", _LEGACY.Adagrad),
        ("Adam", _LEGACY.Adam),
        ("Ftrl", _LEGACY.Ftrl),
        ("RMSProp", _LEGACY.RMSprop),
        ("SGD", _LEGACY.SGD),
    )
}


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


def make_optimizer(spec, default_learning_rate: float | None):
    """A fresh optimizer from a name, an instance (copied, so each model gets its own slots) or a factory.

    A name trains at `default_learning_rate`, or at its class's own default when that is None (as
    tf.estimator 2.x's DNN estimators did: Adagrad 0.001, SGD 0.01)."""
    check_optimizer(spec)
    if isinstance(spec, str):
        cls = _BY_NAME[spec]
        return cls() if default_learning_rate is None else cls(learning_rate=default_learning_rate)
    if is_optimizer(spec):
        config = spec.get_config()
        if isinstance(config.get("learning_rate"), dict):
            # A schedule, serialized: from_config rebuilds only registered ones (and legacy Adagrad's
            # none at all). The copy shares the schedule object, which holds no state.
            config["learning_rate"] = learning_rate_schedule(spec)
        return FASTER_LEGACY.get(type(spec), type(spec)).from_config(config)
    if callable(spec):
        made = spec()
        if not hasattr(made, "apply_gradients"):
            raise ConfigError(f"optimizer factory returned {type(made).__name__}, not an optimizer")
        return made
