"""Training hooks and checkpoint listeners with tf.estimator's interface, driven by the TF2 loop.

There is no Session: `before_run` may request outputs by name ("loss", "global_step") with
`SessionRunArgs`, and `after_run` receives their values. Hooks see every step (the loop runs one
step per call while hooks are present). The `session` arguments are always None.
"""

from __future__ import annotations

import collections


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
        return SessionRunArgs("global_step")

    def after_run(self, run_context, run_values):
        step = int(run_values.results)
        if self._last_step is None:
            self._last_step = step - 1 + self._num_steps
        if step >= self._last_step:
            run_context.request_stop()


def resolve_fetches(fetches, outputs: dict):
    """Looks up a hook's requested fetches (names, lists or dicts of names) in the step's outputs."""
    if fetches is None:
        return None
    if isinstance(fetches, str):
        if fetches not in outputs:
            raise KeyError(f"hook asked for {fetches!r}; a step provides {sorted(outputs)}")
        return outputs[fetches]
    if isinstance(fetches, dict):
        return {k: resolve_fetches(v, outputs) for k, v in fetches.items()}
    return [resolve_fetches(f, outputs) for f in fetches]
