"""Every private TensorFlow / Keras access the engine depends on, here and nowhere else (with a public
fallback where one exists); tests/components/estimator/test_compat.py fails loudly when a TF upgrade
moves one.

- `fc2`: tf.feature_column's implementation module (its column classes, StateManager and
  FeatureTransformationCache have no public names in TF 2).
- `escape_local_name`, `trackable_children`: how object-based checkpoints name a variable's path.
- `set_signature_keywords`: a pruned function's input names, which become a SavedModel signature's.
- `compile_metrics`: the metrics a Keras model was compiled with (model_to_estimator copies them).
- `set_global_seed`: tf.random.set_seed without clearing the eager kernel cache; `global_seed`: the seed set.
- `allow_keras3_variables_in_group`: tf.estimator-era model_fn code with Keras 3 optimizers.
- `allow_setting_keras3_iterations`: `optimizer.iterations = global_step` on a Keras 3 optimizer.
- `TracedWrites`: a tf.train.Checkpoint that tf.train.CheckpointManager saves with a traced write.
- `FASTER_LEGACY`: tf_keras's legacy optimizers with cheaper sparse updates, through OptimizerV2's
  `_resource_apply_sparse_duplicate_indices` / `_resource_apply_sparse` hooks.
- `learning_rate_schedule`: an optimizer's learning-rate schedule object.
- `route_v1_layers_to_tf_keras`: `tf.compat.v1.layers` and `.nn.rnn_cell` under Keras 3 (tf_keras's).
- `fresh_tf1_stores`: TF1's variable and variable-scope stores, one pair per traced graph.
- `tracking_resources`: the resources (lookup tables) a block of code creates, for a SavedModel to keep.

Keras 3 and tf.group:

Keras 3's `optimizer.apply_gradients` returns its `iterations` variable, a Keras Variable that
`tf.group` refuses ("'inputs' should be zero or more (nested) Tensors"), so the classic
`train_op=tf.group(opt.apply_gradients(...), step.assign_add(1))` fails. Giving that Variable a
`device` (its TF variable's) is all tf.group needs; inside tf.function the update runs anyway.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sys
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tf_keras
from tensorflow.python.feature_column import feature_column_v2 as fc2  # noqa: F401  (re-exported)
from tensorflow.python.trackable.trackable_utils import escape_local_name  # noqa: F401  (re-exported)

_patched = False
_v1_layers_routed = False


def trackable_children(obj) -> dict[str, Any]:
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


_iterations_settable = False


def allow_setting_keras3_iterations() -> None:
    """Gives Keras 3 optimizers' `iterations` property a setter (patched once, when Keras 3 is imported).

    tf.estimator-era model_fns wrote `optimizer.iterations = tf.compat.v1.train.get_or_create_global_step()`
    (its canned estimators did) so that the optimizer's step was the global step and advanced it. Keras 2
    allowed that; Keras 3's property has no setter. The setter makes the given variable the optimizer's
    step counter (`_iterations`, which apply_gradients advances and a learning-rate schedule reads).
    """
    global _iterations_settable
    if _iterations_settable or "keras" not in sys.modules:
        return
    _iterations_settable = True
    try:
        from keras.src.optimizers.base_optimizer import BaseOptimizer
    except ImportError:  # Keras 2, or a Keras that moved it: the property stays as it is
        return
    prop = BaseOptimizer.__dict__.get("iterations")
    if not isinstance(prop, property) or prop.fset is not None:
        return

    def set_iterations(self, value):
        self._iterations = value

    BaseOptimizer.iterations = prop.setter(set_iterations)


def global_seed() -> int | None:
    """The global seed tf.random.set_seed (or set_global_seed) set, or None."""
    from tensorflow.python.eager import context

    return context.global_seed()


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


def _traced_write(checkpoint, host, prefix):
    with tf.device(host):
        return checkpoint.write(prefix)


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
        # A partial, not a closure: TensorFlow counts traces by a function's code, so one trace per
        # Estimator of a closure read as "frequent retracing" (a WARNING) from the fifth Estimator on.
        self._write_fn = tf.function(functools.partial(_traced_write, checkpoint, host))

    @property
    def save_counter(self):
        return self.checkpoint.save_counter

    def _write(self, file_prefix, options=None):
        tf.io.gfile.makedirs(os.path.dirname(file_prefix))  # as an eager write does
        self._write_fn(tf.constant(file_prefix))
        for callback in (options.experimental_write_callbacks if options is not None else None) or []:
            callback(file_prefix)  # CheckpointManager's take the saved path
        return file_prefix


_LEGACY: Any = tf_keras.optimizers.legacy  # a module mypy cannot see: its classes are bases below


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
    _resource_apply_sparse: Callable[..., Any]  # OptimizerV2's, or _RowAdagrad's

    def _resource_apply_sparse_duplicate_indices(self, grad, handle, indices, **kwargs):
        width = grad.shape[1:].num_elements()
        if width is None or width < self._SORTED_FROM:
            # A mixin: the method is OptimizerV2's, later in the MRO of the classes below.
            return super()._resource_apply_sparse_duplicate_indices(grad, handle, indices, **kwargs)  # type: ignore[misc]
        unique, positions = tf.unique(indices)
        order = tf.argsort(positions, stable=True)
        summed = tf.math.segment_sum(tf.gather(grad, order), tf.gather(positions, order))
        return self._resource_apply_sparse(summed, handle, unique, **kwargs)


class _RowAdagrad(_SortedSums, _LEGACY.Adagrad):
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
        var_rows = tf.gather(var, indices) - coefficients["lr_t"] * grad / (
            tf.sqrt(accum_rows) + coefficients["epsilon"]
        )
        return tf.group(
            accum.scatter_update(tf.IndexedSlices(accum_rows, indices)),
            var.scatter_update(tf.IndexedSlices(var_rows, indices)),
        )


class _Adam(_SortedSums, _LEGACY.Adam):
    """tf_keras's legacy Adam, its repeated ids summed by _SortedSums."""


class _Ftrl(_SortedSums, _LEGACY.Ftrl):
    """tf_keras's legacy Ftrl, its repeated ids summed by _SortedSums."""


class _RMSprop(_SortedSums, _LEGACY.RMSprop):
    """tf_keras's legacy RMSprop, its repeated ids summed by _SortedSums."""


# A legacy optimizer class -> its faster form: the same optimizer (weights equal to rounding).
FASTER_LEGACY: dict[type, Any] = {
    _LEGACY.Adagrad: _RowAdagrad,
    _LEGACY.Adam: _Adam,
    _LEGACY.Ftrl: _Ftrl,
    _LEGACY.RMSprop: _RMSprop,
}


def learning_rate_schedule(optimizer):
    """The learning-rate schedule object of a legacy (OptimizerV2), tf_keras or Keras 3 optimizer."""
    hyper = getattr(optimizer, "_hyper", None)
    if isinstance(hyper, dict) and "learning_rate" in hyper:
        return hyper["learning_rate"]
    return optimizer._learning_rate


# Where TensorFlow itself routes tf.compat.v1.layers and tf.compat.v1.nn.rnn_cell when
# TF_USE_LEGACY_KERAS is set: (parent module, name, a name the module has, tf_keras's module).
_TF_KERAS_V1_MODULES = (
    (tf.compat.v1, "layers", "dense", "tf_keras.api._v1.keras.__internal__.legacy.layers"),
    (tf.compat.v1.nn, "rnn_cell", "LSTMCell", "tf_keras.api._v1.keras.__internal__.legacy.rnn_cell"),
)


def route_v1_layers_to_tf_keras() -> None:
    """Makes `tf.compat.v1.layers` (`dense`, `conv2d`, `batch_normalization`, `Dense`, ...) and
    `tf.compat.v1.nn.rnn_cell` (`LSTMCell`, `GRUCell`, `MultiRNNCell`, ...) tf_keras's legacy TF1 ones
    where they route to Keras 3, once.

    With Keras 3 installed (TF 2.16+'s default), every name of these modules raises "`dense` is not
    available with Keras 3"; TensorFlow routes them to tf_keras only when the environment variable
    TF_USE_LEGACY_KERAS is set before TensorFlow is imported, which also turns `tf.keras` into tf_keras
    for the whole process. This routes these two modules alone, and changes nothing where they already
    work (TF_USE_LEGACY_KERAS set, or Keras 2). The module's names go into the lazy loader object
    itself, so a reference taken earlier (`from tensorflow.compat.v1 import layers`) works too.
    """
    global _v1_layers_routed
    if _v1_layers_routed:
        return
    _v1_layers_routed = True
    import importlib

    from tensorflow.python.util.lazy_loader import KerasLazyLoader

    for parent, name, probe, target in _TF_KERAS_V1_MODULES:
        loader = parent.__dict__.get(name)
        if not isinstance(loader, KerasLazyLoader):
            continue  # already a module
        try:
            getattr(loader, probe)  # raises under Keras 3
            continue
        except AttributeError:
            pass
        module = importlib.import_module(target)
        loader.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})


def fresh_tf1_stores(graph) -> None:
    """Gives `graph`, a graph being traced, TF1 variable and variable-scope stores of its own.

    A traced graph shares both with the process's default graph (tf.function's FuncGraph takes them
    by reference), so a second trace of a model_fn that calls `tf.compat.v1.get_variable("w")` (or a
    `tf.compat.v1.layers` layer, which does) would find "w" already there and fail ("Variable w already
    exists, disallowed"), and scope names would count on across traces (dense, dense_1, ...). Fresh
    stores, as tf.estimator's fresh graph per call gave, make every trace name its variables alike;
    the Estimator's variable creator hands back the first trace's variables.
    """
    from tensorflow.python.ops import variable_scope

    graph.clear_collection(variable_scope._VARSTORE_KEY)
    graph.clear_collection(variable_scope._VARSCOPESTORE_KEY)


@contextlib.contextmanager
def tracking_resources():
    """Yields a list that gets every resource (a lookup table, say) created inside the block.

    A model_fn that makes its own tables (tf.compat.v1.feature_column.input_layer over a vocabulary
    column) creates them outside the traced serving graph, which only captures them: a SavedModel
    must also track them, or tf.saved_model.save refuses the "untracked resource".
    """
    from tensorflow.python.trackable import resource

    tracker = resource.ResourceTracker()
    with resource.resource_tracker_scope(tracker):
        yield tracker.resources
