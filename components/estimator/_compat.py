"""Private TensorFlow / Keras accesses the engine depends on, each with a public fallback.

Keeps tf.estimator-era model_fn code working with Keras 3 optimizers:

Keras 3's `optimizer.apply_gradients` returns its `iterations` variable, a Keras Variable that
`tf.group` refuses ("'inputs' should be zero or more (nested) Tensors"), so the classic
`train_op=tf.group(opt.apply_gradients(...), step.assign_add(1))` fails. Giving that Variable a
`device` (its TF variable's) is all tf.group needs; inside tf.function the update runs anyway.
"""

from __future__ import annotations

import random
import sys

import tensorflow as tf

_patched = False


def allow_keras3_variables_in_group() -> None:
    """Patch once, and only when Keras 3 is already imported (the model_fn uses it)."""
    global _patched
    if _patched or "keras" not in sys.modules:
        return
    try:
        from keras.src.backend.tensorflow.core import Variable
    except ImportError:  # another Keras backend, or Keras 2: nothing to do
        _patched = True
        return
    if not hasattr(Variable, "device"):
        Variable.device = property(lambda self: self.value.device)
    _patched = True


def set_global_seed(seed: int) -> None:
    """tf.random.set_seed(seed) without its clearing of the eager kernel cache.

    Clearing it drops the instantiated kernels of every traced function, so the next call of a
    kept train step re-optimizes its whole graph (about a second). Random ops made after this
    call draw as after tf.random.set_seed; kept functions' random ops go on with their sequence.
    """
    from tensorflow.python.eager import context

    ctx = context.context()
    if not tf.executing_eagerly() or not (hasattr(ctx, "_seed") and hasattr(ctx, "_rng")):
        tf.random.set_seed(seed)  # the private fields moved: the public call, at its cost
        return
    ctx._seed = seed
    ctx._rng = random.Random(int(seed))
