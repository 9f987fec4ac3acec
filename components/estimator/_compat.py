"""Keeps tf.estimator-era model_fn code working with Keras 3 optimizers.

Keras 3's `optimizer.apply_gradients` returns its `iterations` variable, a Keras Variable that
`tf.group` refuses ("'inputs' should be zero or more (nested) Tensors"), so the classic
`train_op=tf.group(opt.apply_gradients(...), step.assign_add(1))` fails. Giving that Variable a
`device` (its TF variable's) is all tf.group needs; inside tf.function the update runs anyway.
"""

from __future__ import annotations

import sys

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
