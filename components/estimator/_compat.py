"""Every private TensorFlow / Keras access the engine depends on, here and nowhere else (with a public
fallback where one exists); tests/components/estimator/test_compat.py fails loudly when a TF upgrade
moves one.

- `fc2`: tf.feature_column's implementation module (its column classes, StateManager and
  FeatureTransformationCache have no public names in TF 2).
- `escape_local_name`, `trackable_children`: how object-based checkpoints name a variable's path.
- `set_signature_keywords`: a pruned function's input names, which become a SavedModel signature's.
- `compile_metrics`: the metrics a Keras model was compiled with (model_to_estimator copies them).
- `set_global_seed`: tf.random.set_seed without clearing the eager kernel cache.
- `allow_keras3_variables_in_group`: tf.estimator-era model_fn code with Keras 3 optimizers.
- `TracedWrites`: a tf.train.Checkpoint that tf.train.CheckpointManager saves with a traced write.

Keras 3 and tf.group:

Keras 3's `optimizer.apply_gradients` returns its `iterations` variable, a Keras Variable that
`tf.group` refuses ("'inputs' should be zero or more (nested) Tensors"), so the classic
`train_op=tf.group(opt.apply_gradients(...), step.assign_add(1))` fails. Giving that Variable a
`device` (its TF variable's) is all tf.group needs; inside tf.function the update runs anyway.
"""

from __future__ import annotations

import os
import random
import sys

import tensorflow as tf
from tensorflow.python.feature_column import feature_column_v2 as fc2  # noqa: F401  (re-exported)
from tensorflow.python.trackable.trackable_utils import escape_local_name  # noqa: F401  (re-exported)

_patched = False


def trackable_children(obj) -> dict:
    """{local name: child} of a trackable object, as a checkpoint walks it."""
    return obj._trackable_children()


def set_signature_keywords(fn, keys: list) -> None:
    """Names a pruned concrete function's inputs (a SavedModel signature takes its input names from these)."""
    fn._arg_keywords = keys
    fn._num_positional_args = len(keys)


def compile_metrics(model):
    """The metrics `model.compile` was given (tf_keras or Keras 3), or None."""
    metrics = getattr(getattr(model, "compiled_metrics", None), "_user_metrics", None)  # tf_keras
    if metrics is None and hasattr(model, "_compile_config"):  # Keras 3
        metrics = model._compile_config.config.get("metrics")
    return metrics


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


class TracedWrites:
    """`checkpoint` as tf.train.CheckpointManager uses it (`save_counter`, `_write`), but written by
    one traced `checkpoint.write`.

    An eager write walks the object graph and reads every variable op by op on each save (about
    20 ms of a linear model's train() call); the traced one walked it once, when traced, and runs as
    one function (about 3 ms). So it suits an object graph that no longer changes: the caller makes a
    new one when it does. The write runs on `host` (the variables' task's CPU), so the file holds one
    data shard, as an eager write's does. The manager's bookkeeping (the `checkpoint` file,
    max_to_keep) is its own, run from the write callbacks it passes, as Checkpoint._write runs them.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, host: str):
        self.checkpoint = checkpoint

        def write(prefix):
            with tf.device(host):
                return checkpoint.write(prefix)

        self._write_fn = tf.function(write)

    @property
    def save_counter(self):
        return self.checkpoint.save_counter

    def _write(self, file_prefix, options=None):
        tf.io.gfile.makedirs(os.path.dirname(file_prefix))  # as an eager write does
        self._write_fn(tf.constant(file_prefix))
        for callback in (options.experimental_write_callbacks if options is not None else None) or []:
            callback(file_prefix)  # CheckpointManager's take the saved path
        return file_prefix
