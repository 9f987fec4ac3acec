"""Training hooks and checkpoint listeners with tf.estimator's interface, driven by the TF2 loop.

There is no Session. `before_run` may request, with `SessionRunArgs`:
- tensors the model_fn made (or their names, "dense/BiasAdd:0"): the step computes and returns them;
- variables, such as `tf.compat.v1.train.get_global_step()`: read as the step starts, which is
  what session.run gave alongside the train op (so the global step is the pre-step value);
- the names "loss" and "global_step": the step's loss and the global step after the step.
`after_run` receives their values. Hooks see every step (the loop runs one step per call while
hooks are present). The `session` passed to hooks has a `run()` for variables and eager tensors.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from typing import Any

import numpy as np
import tensorflow as tf

from components.errors import ConfigError


class SessionRunArgs(collections.namedtuple("SessionRunArgs", ["fetches", "feed_dict", "options"])):
    """What a hook asks for: `fetches` is a name, a list of names or a dict of names."""

    def __new__(cls, fetches, feed_dict=None, options=None):
        return super().__new__(cls, fetches, feed_dict, options)


SessionRunValues = collections.namedtuple("SessionRunValues", ["results", "options", "run_metadata"])


class SessionRunContext:
    """Passed to before_run/after_run; `request_stop()` ends the loop after this step."""

    def __init__(self, original_args=None, session=None):
        self.original_args = original_args
        self.session = session
        self._stop_requested = False

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def request_stop(self) -> None:
        self._stop_requested = True


class SessionRunHook:
    """Base class: override the methods you need."""

    def begin(self):
        pass

    def after_create_session(self, session, coord):
        pass

    def before_run(self, run_context):
        return None

    def after_run(self, run_context, run_values):
        pass

    def end(self, session):
        pass

    def steps_until_due(self, global_step: int):
        """How many steps may run in one call before this hook must see a step again; None: any number.

        tfpipe's addition to tf.estimator's protocol. The default, 1, runs training one step per call
        while the hook is there, so it sees every step and may fetch any tensor of the model_fn. A hook
        that acts on a cadence of global steps and reads only `loss` / `global_step` says when it is next
        due, and training keeps its multi-step calls (RunConfig.steps_per_execution) in between.
        """
        return 1


class CheckpointSaverListener:
    """Called around each checkpoint save; `after_save` returning True stops training."""

    def begin(self):
        pass

    def before_save(self, session, global_step_value):
        pass

    def after_save(self, session, global_step_value):
        pass

    def end(self, session, global_step_value):
        pass


class StopAtStepHook(SessionRunHook):
    """Stops after `num_steps` more steps, or at global step `last_step`."""

    def __init__(self, num_steps=None, last_step=None):
        if (num_steps is None) == (last_step is None):
            raise ValueError("StopAtStepHook: give exactly one of num_steps and last_step")
        self._num_steps, self._last_step = num_steps, last_step

    def before_run(self, run_context):
        return SessionRunArgs("global_step")  # the step after this one ran

    def after_run(self, run_context, run_values):
        step = int(run_values.results)
        if self._last_step is None:
            self._last_step = step - 1 + self._num_steps
        if step >= self._last_step:
            run_context.request_stop()


class _StopAtCheckpointStepHook(SessionRunHook):
    """Stops once the global step has reached `last_step` and so has model_dir's latest checkpoint
    (a non-chief task's stop: its training is only done when the chief has saved it)."""

    def __init__(self, model_dir, last_step, wait_after_file_check_secs=30):
        if last_step is None:
            raise ConfigError("make_stop_at_checkpoint_step_hook: last_step must be given")
        if model_dir is None:
            raise ConfigError("make_stop_at_checkpoint_step_hook: the estimator needs a model_dir")
        self._model_dir, self._last_step, self._wait = model_dir, last_step, wait_after_file_check_secs

    def before_run(self, run_context):
        return SessionRunArgs("global_step")

    def after_run(self, run_context, run_values):
        if int(run_values.results) < self._last_step:
            return
        if _checkpoint_step(self._model_dir) >= self._last_step:
            run_context.request_stop()
        else:
            time.sleep(self._wait)  # many tasks reading the checkpoint state at once: throttle


def _checkpoint_step(model_dir) -> int:
    """The global step of model_dir's latest checkpoint (0 when there is none)."""
    path = tf.train.latest_checkpoint(model_dir)
    if path is None:
        return 0
    reader = tf.train.load_checkpoint(path)
    for key in ("global_step/.ATTRIBUTES/VARIABLE_VALUE", "global_step"):
        if reader.has_tensor(key):
            return int(reader.get_tensor(key))
    return int(path.rsplit("-", 1)[-1])


def make_stop_at_checkpoint_step_hook(estimator, last_step, wait_after_file_check_secs=30):
    """tf.estimator.experimental.make_stop_at_checkpoint_step_hook: on the chief a StopAtStepHook at
    `last_step`; on other tasks a hook that stops once the chief's latest checkpoint has reached it,
    reading it at most every `wait_after_file_check_secs` once the task's own step is there."""
    if estimator.config.is_chief:
        return StopAtStepHook(last_step=last_step)
    return _StopAtCheckpointStepHook(estimator.model_dir, last_step, wait_after_file_check_secs)


STEP_OUTPUTS = ("loss", "global_step")


def _is_variable(x) -> bool:
    # Keras 3 variables are not tf.Variables but read and assign like them.
    return isinstance(x, tf.Variable) or (hasattr(x, "assign") and hasattr(x, "value") and hasattr(x, "dtype"))


class FetchResolver:
    """Resolves hooks' fetches without a Session.

    `graph` is the traced step the model_fn's tensors live in; `plan(fetches)` returns the graph
    tensors the step must return, as (op index, output index) pairs, and a function that builds
    the results from the step's named outputs and those tensors' values.
    """

    def __init__(self, graph=None):
        self.graph = graph
        self._index = None

    def _pair(self, tensor):
        if self.graph is None or tensor.graph is not self.graph:
            raise ConfigError(
                f"a hook asked for {tensor.name}, a tensor of another graph; only tensors the model_fn "
                "makes in training (EstimatorSpec.training_hooks), variables and the names "
                f"{STEP_OUTPUTS} can be fetched"
            )
        if self._index is None:
            self._index = {op.name: i for i, op in enumerate(self.graph.get_operations())}
        return self._index[tensor.op.name], tensor.value_index

    def _leaf(self, leaf):
        """('value', v) read now, ('output', name) after the step, or ('graph', pair) from the step."""
        if leaf is None or isinstance(leaf, tf.Operation):
            return "value", None  # session.run of an op gives None
        if isinstance(leaf, str):
            if leaf in STEP_OUTPUTS:
                return "output", leaf
            if self.graph is None:
                raise ConfigError(f"a hook asked for {leaf!r}; here a step provides {STEP_OUTPUTS}")
            try:
                return "graph", self._pair(self._tensor_named(leaf))
            except ConfigError:
                raise
            except (KeyError, ValueError) as e:
                raise ConfigError(
                    f"a hook asked for {leaf!r}, which is not a tensor of the model_fn nor one of {STEP_OUTPUTS}"
                ) from e
        if _is_variable(leaf):
            return "value", np.asarray(leaf.read_value() if hasattr(leaf, "read_value") else leaf.value)
        if isinstance(leaf, (tf.Tensor, tf.SparseTensor)) and not tf.is_symbolic_tensor(leaf):
            return "value", leaf.numpy() if isinstance(leaf, tf.Tensor) else leaf
        if isinstance(leaf, tf.Tensor):
            return "graph", self._pair(leaf)
        raise ConfigError(f"a hook asked for {leaf!r}; fetches are tensors, variables, operations or tensor names")

    def _tensor_named(self, name: str):
        """The tensor `name` names: "op:k", or an op's name for its only output, as tf.estimator's hooks took it."""
        if ":" in name:
            return self.graph.get_tensor_by_name(name)
        op = self.graph.get_operation_by_name(name)
        if len(op.outputs) != 1:
            raise ConfigError(
                f"a hook asked for {name!r}, an operation with {len(op.outputs)} outputs: name one, e.g. {name}:0"
            )
        return op.outputs[0]

    def plan(self, fetches):
        leaves = [self._leaf(leaf) for leaf in tf.nest.flatten(fetches)]
        key = tuple(sorted({ref for kind, ref in leaves if kind == "graph"}))

        def finish(outputs: dict, values=()):
            got = dict(zip(key, values))
            resolved = [
                ref if kind == "value" else outputs[ref] if kind == "output" else np.asarray(got[ref])
                for kind, ref in leaves
            ]
            return tf.nest.pack_sequence_as(fetches, resolved)

        return key, finish


class Session:
    """What hooks get as `session`: `run()` reads variables, eager tensors and the last step's outputs."""

    def __init__(self, outputs=None):
        self.outputs = outputs if outputs is not None else {}

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        if feed_dict:
            raise ConfigError(
                "feed_dict is not supported: there are no placeholders in TF2; feed data through input_fn"
            )
        _key, finish = FetchResolver().plan(fetches)
        return finish(self.outputs)


@contextlib.contextmanager
def global_step_registered(global_step):
    """Lets tf.compat.v1.train.get_global_step() find `global_step` outside the traced step (in hooks)."""
    ref = tf.compat.v1.get_default_graph().get_collection_ref(tf.compat.v1.GraphKeys.GLOBAL_STEP)
    saved = list(ref)
    ref[:] = [global_step]
    try:
        yield
    finally:
        ref[:] = saved


class HookRunner:
    """Drives hooks around steps: one shared run context per step, as MonitoredSession had."""

    def __init__(self, hooks, graph=None, outputs=None):
        self.hooks = list(hooks)
        self.resolver, self.session = FetchResolver(graph), Session(outputs)
        # Set by before_run: this step's SessionRunContext and FetchResolver.plan's `finish`.
        self.context: Any
        self._finish: Any
        self.context, self._requests, self._finish = None, [], None

    def begin(self) -> None:
        for h in self.hooks:
            h.begin()
        for h in self.hooks:
            h.after_create_session(self.session, None)

    def before_run(self) -> tuple:
        """Calls before_run; returns the (op index, output index) pairs the step must also return."""
        self.context = SessionRunContext(session=self.session)
        self._requests = [h.before_run(self.context) for h in self.hooks]
        if any(r is not None and r.feed_dict for r in self._requests):
            raise ConfigError(
                "a hook returned a feed_dict: TF2 has no placeholders to feed; feed data through input_fn"
            )
        fetch, self._finish = self.resolver.plan([r.fetches if r is not None else None for r in self._requests])
        return fetch

    def after_run(self, outputs: dict, values=()) -> bool:
        """Calls after_run with the fetched values; True when a hook asked to stop."""
        self.session.outputs = outputs
        results = self._finish(outputs, values)
        for h, r, result in zip(self.hooks, self._requests, results):
            h.after_run(self.context, SessionRunValues(result if r is not None else None, None, None))
        return self.context.stop_requested

    def end(self) -> None:
        for h in self.hooks:
            h.end(self.session)


class Training(collections.namedtuple("Training", ["estimator", "root", "global_step", "saveable"])):
    """The training call that runs the hooks: what hooks such as CheckpointSaverHook act on.
    `saveable(checkpoint)` is what a tf.train.CheckpointManager should save for `checkpoint`."""


# Per thread: Estimators may train at once in several threads, each hook seeing its own call.
_ACTIVE = threading.local()


def _active() -> list:
    if not hasattr(_ACTIVE, "stack"):
        _ACTIVE.stack = []
    return _ACTIVE.stack


@contextlib.contextmanager
def training(state: Training):
    _active().append(state)
    try:
        yield
    finally:
        _active().pop()


def active_training(hook) -> Training:
    stack = _active()
    if not stack:
        raise ConfigError(f"{type(hook).__name__} works inside Estimator.train: pass it in train(hooks=[...])")
    return stack[-1]
