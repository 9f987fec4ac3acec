"""tf.estimator's standard hooks (tf.compat.v1.train's), working on the TF2 training loop.

They fetch through SessionRunArgs like the originals; what each does differently is in its docstring.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf

from components.errors import ConfigError, NanLossError
from components.estimator.hooks import SessionRunArgs, SessionRunHook, active_training

log = logging.getLogger("tfpipe.estimator")


# tf.estimator.SecondOrStepTimer was TF's own timer (TF 2.21 still has it, public, under tf.compat.v1.train):
# should_trigger_for_step(step), update_last_triggered_step(step) -> (secs, steps), last_triggered_step(), reset().
SecondOrStepTimer = tf.compat.v1.train.SecondOrStepTimer


class NanLossDuringTrainingError(NanLossError):
    """The loss (or the tensor a NanTensorHook watches) became NaN."""


def _timer(every_secs, every_steps, what: str):
    """tf's SecondOrStepTimer, after checking that exactly one cadence is set."""
    if (every_secs is None) == (every_steps is None):
        raise ConfigError(f"{what}: give exactly one of every_secs and every_steps (save_secs / save_steps)")
    for value in (every_secs, every_steps):
        if value is not None and value <= 0:
            raise ConfigError(f"{what}: the cadence must be positive, got {value}")
    return tf.compat.v1.train.SecondOrStepTimer(every_secs=every_secs, every_steps=every_steps)


def _steps_left(timer, every_steps, step: int):
    """Steps until a step timer fires again; None for a timer in seconds (checked between calls)."""
    if every_steps is None:
        return None
    last = timer.last_triggered_step()
    return 1 if last is None else max(1, last + every_steps - step)


def _steps_to_multiple(every, step: int):
    """Steps until the next multiple of `every` (0 or None: never due)."""
    return every - step % every if every else None


def _writer(output_dir, summary_writer, hook):
    if summary_writer is not None:
        return summary_writer
    return tf.summary.create_file_writer(output_dir or active_training(hook).estimator.model_dir)


class LoggingTensorHook(SessionRunHook):
    """Logs tensors (model_fn tensors, variables or tensor names) every N steps or seconds, and/or at the end."""

    def __init__(self, tensors, every_n_iter=None, every_n_secs=None, at_end=False, formatter=None):
        if not at_end or every_n_iter is not None or every_n_secs is not None:
            self._timer = _timer(every_n_secs, every_n_iter, "LoggingTensorHook")
        else:
            self._timer = None
        if not isinstance(tensors, dict):
            tensors = {t if isinstance(t, str) else t.name: t for t in tensors}
        self._tensors, self._at_end, self._formatter = dict(tensors), at_end, formatter
        self._last = None

    def begin(self):
        if self._timer is not None:
            self._timer.reset()
        self._iter = 0

    def before_run(self, run_context):
        self._trigger = self._timer is not None and self._timer.should_trigger_for_step(self._iter)
        # At the end there is no step to compute the model's tensors: keep each step's values.
        return SessionRunArgs(self._tensors) if self._trigger or self._at_end else None

    def after_run(self, run_context, run_values):
        if run_values.results is not None:
            self._last = run_values.results
        if self._trigger:
            self._log(run_values.results, self._timer.update_last_triggered_step(self._iter)[0])
        self._iter += 1

    def end(self, session):
        if self._at_end and self._last is not None:
            self._log(self._last, None)

    def _log(self, values, elapsed):
        if self._formatter is not None:
            log.info(self._formatter(values))
            return
        text = ", ".join(f"{tag} = {values[tag]}" for tag in self._tensors)
        log.info("%s (%.3f sec)", text, elapsed) if elapsed is not None else log.info("%s", text)


class StepCounterHook(SessionRunHook):
    """Logs global_step/sec and writes it as a summary (to output_dir, by default the model_dir)."""

    def __init__(self, every_n_steps=100, every_n_secs=None, output_dir=None, summary_writer=None):
        self._every_steps = None if every_n_secs is not None else every_n_steps
        self._timer = _timer(every_n_secs, self._every_steps, "StepCounterHook")
        self._output_dir, self._summary_writer = output_dir, summary_writer

    def steps_until_due(self, global_step):
        return _steps_left(self._timer, self._every_steps, global_step)

    def begin(self):
        self._timer.reset()
        self._writer = _writer(self._output_dir, self._summary_writer, self)

    def before_run(self, run_context):
        return SessionRunArgs("global_step")

    def after_run(self, run_context, run_values):
        step = int(run_values.results)
        if not self._timer.should_trigger_for_step(step):
            return
        elapsed_time, elapsed_steps = self._timer.update_last_triggered_step(step)
        if elapsed_time:
            rate = elapsed_steps / elapsed_time
            log.info("global_step/sec: %g", rate)
            with self._writer.as_default(), tf.summary.record_if(True):  # not on the loop's summary cadence
                tf.summary.scalar("global_step/sec", rate, step=step)
            self._writer.flush()


class NanTensorHook(SessionRunHook):
    """Stops training, or raises NanLossDuringTrainingError, when `loss_tensor` is NaN.

    The loop itself raises on a non-finite loss (tf.estimator added a NanTensorHook on the loss
    for the same reason), so this hook matters for other tensors.
    """

    def __init__(self, loss_tensor, fail_on_nan_loss=True):
        self._loss_tensor, self._fail_on_nan_loss = loss_tensor, fail_on_nan_loss

    def before_run(self, run_context):
        return SessionRunArgs(self._loss_tensor)

    def after_run(self, run_context, run_values):
        if np.isnan(run_values.results).any():
            message = "Model diverged with loss = NaN."
            if self._fail_on_nan_loss:
                raise NanLossDuringTrainingError(message)
            log.warning("%s Requesting stop.", message)
            run_context.request_stop()


class _OnGlobalStepTimer(SessionRunHook):
    """Calls `_on_step(global step)` when `self._timer` fires; a True return asks training to stop."""

    _timer: Any  # tf's SecondOrStepTimer, made by each subclass's __init__

    def before_run(self, run_context):
        return SessionRunArgs("global_step")

    def after_run(self, run_context, run_values):
        step = int(run_values.results)
        if self._timer.should_trigger_for_step(step):
            self._timer.update_last_triggered_step(step)
            if self._on_step(step):
                run_context.request_stop()

    def _on_step(self, step) -> bool:
        raise NotImplementedError


class CheckpointSaverHook(_OnGlobalStepTimer):
    """Saves the model's checkpoint every N steps or seconds, at the start and at the end.

    Given to train(), it replaces the Estimator's own saver (as in tf.estimator) and the
    saving_listeners are handed to it. `saver` may be a tf.train.Checkpoint to save instead of
    the model's; `scaffold` and `save_graph_def` are accepted for compatibility (there is no graph).
    """

    def __init__(
        self,
        checkpoint_dir,
        save_secs=None,
        save_steps=None,
        saver=None,
        checkpoint_basename="model.ckpt",
        scaffold=None,
        listeners=None,
        save_graph_def=True,
    ):
        self._every_steps = save_steps
        self._timer = _timer(save_secs, save_steps, "CheckpointSaverHook")
        if saver is not None and not isinstance(saver, tf.train.Checkpoint):
            raise ConfigError("CheckpointSaverHook: saver must be a tf.train.Checkpoint (v1 Savers need a Session)")
        self._dir, self._saver, self._basename = os.fspath(checkpoint_dir), saver, checkpoint_basename
        self._listeners = list(listeners or [])

    def add_listeners(self, listeners) -> None:
        self._listeners.extend(x for x in listeners if x not in self._listeners)

    def steps_until_due(self, global_step):
        return _steps_left(self._timer, self._every_steps, global_step)

    def begin(self):
        active = active_training(self)
        self._global_step = active.global_step
        config = active.estimator.config
        self._manager = tf.train.CheckpointManager(
            active.saveable(self._saver or active.root),
            self._dir,
            max_to_keep=config.keep_checkpoint_max or None,
            keep_checkpoint_every_n_hours=config.keep_checkpoint_every_n_hours,
            checkpoint_name=self._basename,
        )
        if self._timer is not None:
            self._timer.reset()
        for listener in self._listeners:
            listener.begin()

    def after_create_session(self, session, coord):
        step = int(self._global_step.numpy())
        self._save(step)  # the state training starts from, as tf.estimator saved it
        self._timer.update_last_triggered_step(step)

    def end(self, session):
        step = int(self._global_step.numpy())
        if step != self._timer.last_triggered_step():
            self._save(step)
        for listener in self._listeners:
            listener.end(session, step)

    def _on_step(self, step) -> bool:
        return self._save(step)

    def _save(self, step) -> bool:
        for listener in self._listeners:
            listener.before_save(None, step)
        if self._manager.latest_checkpoint != f"{os.path.join(self._dir, self._basename)}-{step}":
            log.info("saved checkpoint %s", self._manager.save(checkpoint_number=step))
        # A list, not a generator: every listener's after_save runs, even after one asks to stop.
        return any([bool(listener.after_save(None, step)) for listener in self._listeners])  # noqa: C419


class SummarySaverHook(SessionRunHook):
    """Writes serialized Summary protos (`summary_op`) to output_dir every save_steps or save_secs.

    In TF2, tf.summary.* and tf.compat.v1.summary.* calls inside the model_fn are written by the
    Estimator to model_dir every RunConfig.save_summary_steps; a v1 summary op made there returns
    an empty proto, which this hook skips (and says so once). Ops that build protos themselves
    (tf.raw_ops.ScalarSummary, HistogramSummary, MergeSummary) are what it writes.
    """

    def __init__(
        self, save_steps=None, save_secs=None, output_dir=None, summary_writer=None, scaffold=None, summary_op=None
    ):
        self._timer = _timer(save_secs, save_steps, "SummarySaverHook")
        summary_op = summary_op if summary_op is not None else getattr(scaffold, "summary_op", None)
        if summary_op is None:
            raise ConfigError(
                "SummarySaverHook needs summary_op (or scaffold.summary_op); tf.summary.* calls in "
                "the model_fn are written without a hook every RunConfig.save_summary_steps"
            )
        self._summary_op, self._warned = summary_op, False
        self._output_dir, self._summary_writer = output_dir, summary_writer

    def begin(self):
        self._timer.reset()
        self._writer = _writer(self._output_dir, self._summary_writer, self)
        self._next = int(active_training(self).global_step.numpy()) + 1

    def before_run(self, run_context):
        self._trigger = self._timer.should_trigger_for_step(self._next)
        return SessionRunArgs({"global_step": "global_step", "summary": self._summary_op}) if self._trigger else None

    def after_run(self, run_context, run_values):
        if self._trigger:
            step = int(run_values.results["global_step"])
            self._timer.update_last_triggered_step(step)
            protos = [p for p in tf.nest.flatten(run_values.results["summary"]) if np.asarray(p).item()]
            if not protos and not self._warned:
                log.warning(
                    "SummarySaverHook: summary_op gave empty protos (TF2 writes v1 summaries made in the "
                    "model_fn to model_dir every save_summary_steps itself); nothing to write"
                )
                self._warned = True
            with self._writer.as_default(), tf.summary.record_if(True):
                for serialized in protos:
                    tf.summary.experimental.write_raw_pb(serialized, step=step)
            self._writer.flush()
            self._next = step
        self._next += 1

    def end(self, session):
        self._writer.flush()


class ProfilerHook(SessionRunHook):
    """Profiles one step every N steps or seconds with the TF2 profiler.

    Writes a TensorBoard profile (`plugins/profile/<run>/*.xplane.pb` under output_dir) where
    tf.estimator wrote Chrome-trace `timeline-<step>.json` files; the profile holds the memory and
    dataflow views, so show_dataflow and show_memory have nothing left to switch.
    """

    def __init__(self, save_steps=None, save_secs=None, output_dir="", show_dataflow=True, show_memory=False):
        self._timer = _timer(save_secs, save_steps, "ProfilerHook")
        self._output_dir = output_dir

    def begin(self):
        self._timer.reset()
        self._next = int(active_training(self).global_step.numpy()) + 1
        self._dir = self._output_dir or active_training(self).estimator.model_dir

    def before_run(self, run_context):
        self._profiling = self._timer.should_trigger_for_step(self._next)
        if self._profiling:
            tf.profiler.experimental.start(self._dir)
        return SessionRunArgs("global_step")

    def after_run(self, run_context, run_values):
        step = int(run_values.results)
        if self._profiling:
            tf.profiler.experimental.stop()
            self._timer.update_last_triggered_step(step)
            log.info("profiled step %d into %s", step, self._dir)
        self._next = step + 1


class FinalOpsHook(SessionRunHook):
    """Gives the values of `final_ops` at the end (`final_ops_values`).

    Model_fn tensors are taken from the last step (there is no step after it to compute them);
    variables and eager tensors are read at the end.
    """

    def __init__(self, final_ops, final_ops_feed_dict=None):
        if final_ops_feed_dict:
            raise ConfigError("FinalOpsHook: final_ops_feed_dict is not supported (TF2 has no placeholders to feed)")
        self._final_ops, self._final_ops_values, self._last = final_ops, None, None

    @property
    def final_ops_values(self):
        return self._final_ops_values

    def before_run(self, run_context):
        return SessionRunArgs(self._final_ops)

    def after_run(self, run_context, run_values):
        self._last = run_values.results

    def end(self, session):
        try:
            self._final_ops_values = session.run(self._final_ops)
        except ConfigError:  # model_fn tensors: their values from the last step
            self._final_ops_values = self._last


class FeedFnHook(SessionRunHook):
    """Calls `feed_fn` before each step and passes its feed_dict on.

    TF2 steps have no placeholders, so a non-empty feed_dict stops training with a ConfigError
    that says to feed data through input_fn instead.
    """

    def __init__(self, feed_fn):
        self.feed_fn = feed_fn

    def before_run(self, run_context):
        return SessionRunArgs(fetches=None, feed_dict=self.feed_fn())


class GlobalStepWaiterHook(SessionRunHook):
    """Delays this task's first step until the global step reaches `wait_until_step`.

    The global step is this program's or, as tasks share no variables here, that of the newest
    checkpoint in the model_dir (written by the chief).
    """

    def __init__(self, wait_until_step):
        self._wait_until_step = wait_until_step

    def begin(self):
        self._worker_is_started = self._wait_until_step <= 0
        active = active_training(self)
        self._global_step, self._model_dir = active.global_step, active.estimator.model_dir

    def _current(self) -> int:
        step = int(self._global_step.numpy())
        latest = tf.train.latest_checkpoint(self._model_dir)
        if latest:
            step = max(step, int(latest.rsplit("-", 1)[1]))
        return step

    def before_run(self, run_context):
        if self._worker_is_started:
            return None
        last_logged = None
        while (step := self._current()) < self._wait_until_step:
            if last_logged != step:
                log.info("waiting for global step %d before starting training (now %d)", self._wait_until_step, step)
                last_logged = step
            time.sleep(0.5)
        self._worker_is_started = True
        return None


# ---- the Estimator's own hooks: what train() runs around its steps, from the RunConfig -------------------------


class _ModelSaver(CheckpointSaverHook):
    """The Estimator's saver: on global steps that are multiples of save_checkpoints_steps (or every
    save_checkpoints_secs) and at the end. At the start only when model_dir has no checkpoint yet
    (`model.ckpt-0` of a new model, which scripts wait for, as tf.estimator wrote it), without telling
    the listeners; tf.estimator saved at the start of every call, but the state a later call starts
    from is already the previous call's last checkpoint."""

    def __init__(self, model_dir, checkpoint_name, every_steps=None, every_secs=None, listeners=(), chief=True):
        self._dir, self._saver, self._basename = os.fspath(model_dir), None, checkpoint_name
        self._every_steps, self._every_secs, self._timer = every_steps or None, every_secs, None
        self._listeners = list(listeners)
        # Other tasks keep the chief's cadence (synchronous training needs every task to run the same
        # steps per call) but write nothing.
        self._chief = chief

    def begin(self):
        if self._chief:
            super().begin()
        else:
            self._global_step = active_training(self).global_step
            for listener in self._listeners:
                listener.begin()

    def _save(self, step) -> bool:
        return super()._save(step) if self._chief else False

    def steps_until_due(self, global_step):
        return _steps_to_multiple(self._every_steps, global_step)

    def after_create_session(self, session, coord):
        self._saved_at, self._saved_time = None, time.time()
        if self._chief and self._manager.latest_checkpoint is None:
            step = int(self._global_step.numpy())
            log.info("saved checkpoint %s", self._manager.save(checkpoint_number=step))

    def after_run(self, run_context, run_values):
        step = int(run_values.results)
        if (self._every_steps and step % self._every_steps == 0) or (
            self._every_secs is not None and time.time() - self._saved_time >= self._every_secs
        ):
            self._saved_at, self._saved_time = step, time.time()
            if self._save(step):
                run_context.request_stop()

    def end(self, session):
        step = int(self._global_step.numpy())
        if step != self._saved_at:
            self._save(step)
        for listener in self._listeners:
            listener.end(session, step)


class _OnMultiples(SessionRunHook):
    """Acts, through `_act(step, loss)`, on global steps that are multiples of `every` (0: never)."""

    def __init__(self, every):
        self._every = every or 0

    def steps_until_due(self, global_step):
        return _steps_to_multiple(self._every, global_step)

    def before_run(self, run_context):
        return SessionRunArgs(("global_step", "loss")) if self._every else None

    def after_run(self, run_context, run_values):
        if run_values.results is not None:
            step, loss = run_values.results
            if step % self._every == 0:
                self._act(int(step), float(loss))

    def _act(self, step, loss):
        raise NotImplementedError


class _LossSummary(_OnMultiples):
    """The `loss` summary every save_summary_steps (the model_fn's own summaries follow the same cadence)."""

    def __init__(self, every, writer):
        super().__init__(every)
        self._writer = writer

    def _act(self, step, loss):
        with self._writer.as_default():
            tf.summary.scalar("loss", loss, step=step)


class _StepLogger(_OnMultiples):
    """Every log_step_count_steps: the step, loss, steps/s and examples/s (tf.estimator's LoggingTensorHook and
    StepCounterHook in one line, which the pipeline's trainer turns into progress), and global_step/sec as a
    summary when `writer` is given (the chief)."""

    def __init__(self, every, writer, examples_since):
        super().__init__(every)
        self._writer, self._examples_since = writer, examples_since

    def after_create_session(self, session, coord):
        self._time, self._step = time.time(), int(active_training(self).global_step.numpy())

    def _act(self, step, loss):
        now = time.time()
        seconds = max(now - self._time, 1e-9)
        rate = (step - self._step) / seconds
        log.info(
            "step %d: loss = %.5g (%.1f steps/s, %s examples/s)",
            step,
            loss,
            rate,
            f"{self._examples_since() / seconds:,.0f}",
        )
        if self._writer is not None:
            with self._writer.as_default(), tf.summary.record_if(True):  # its own cadence, not save_summary_steps
                tf.summary.scalar("global_step/sec", rate, step=step)
        self._time, self._step = now, step
