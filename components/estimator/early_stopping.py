"""Early stopping on the evaluation metrics the Estimator writes, and evaluation during training.

As in tf.estimator.experimental: the hooks read the event files evaluate() writes under
model_dir/eval (or eval_<name>), so they act on train_and_evaluate's evaluations.
"""

from __future__ import annotations

import collections
import glob
import logging
import operator
import os
import shutil
import tempfile

import tensorflow as tf

from components.errors import ConfigError
from components.estimator.basic_hooks import _OnGlobalStepTimer, _timer
from components.estimator.hooks import SessionRunHook, active_training

log = logging.getLogger("tfpipe.estimator")


def event_scalars(paths):
    """(step, {tag: value}) for each event with scalar values (TF1 simple values or TF2 tensors)."""
    for path in paths:
        try:
            for event in tf.compat.v1.train.summary_iterator(path):
                values = {}
                for v in event.summary.value:
                    if v.HasField("tensor"):
                        array = tf.make_ndarray(v.tensor)
                        if array.ndim == 0 and array.dtype.kind in "fiub":
                            values[v.tag] = float(array)
                    elif v.HasField("simple_value"):
                        values[v.tag] = v.simple_value
                if values:
                    yield event.step, values
        except tf.errors.DataLossError as e:  # a file being written: use what is there
            log.warning("skipping the rest of %s: %s", path, e)


def read_eval_metrics(eval_dir) -> dict:
    """{global step: {metric: value}} from the event files in eval_dir, in step order."""
    metrics: collections.defaultdict[int, dict[str, float]] = collections.defaultdict(dict)
    for step, values in event_scalars(sorted(glob.glob(os.path.join(os.fspath(eval_dir), "*.tfevents.*")))):
        metrics[step].update(values)
    return collections.OrderedDict(sorted(metrics.items()))


class _StopOnPredicateHook(_OnGlobalStepTimer):
    def __init__(self, should_stop_fn, run_every_secs, run_every_steps):
        if not callable(should_stop_fn):
            raise ConfigError("should_stop_fn must be callable")
        self._should_stop_fn = should_stop_fn
        self._timer = _timer(run_every_secs, run_every_steps, "early stopping (run_every_secs / run_every_steps)")

    def _on_step(self, step) -> bool:
        if self._should_stop_fn():
            log.info("requesting early stopping at global step %d", step)
            return True
        return False


def _check_estimator(estimator):
    from components.estimator.estimator import Estimator

    if not isinstance(estimator, Estimator):
        raise ConfigError(f"estimator must be a components.estimator Estimator, got {type(estimator).__name__}")


def make_early_stopping_hook(estimator, should_stop_fn, run_every_secs=60, run_every_steps=None):
    """A hook that calls should_stop_fn() every run_every_secs seconds or run_every_steps steps and stops when it says so.

    Every training task runs the check itself (reading the shared model_dir), where tf.estimator
    had the chief signal the workers through a variable.
    """
    _check_estimator(estimator)
    if run_every_secs is not None and run_every_steps is not None:
        raise ConfigError("give only one of run_every_secs and run_every_steps")
    return _StopOnPredicateHook(should_stop_fn, run_every_secs, run_every_steps)


def _threshold_hook(estimator, metric_name, threshold, better, eval_dir, min_steps, run_every_secs, run_every_steps):
    _check_estimator(estimator)
    eval_dir = eval_dir or estimator.eval_dir()

    def crossed():
        for step, metrics in read_eval_metrics(eval_dir).items():
            if step >= min_steps and better(_metric(metrics, metric_name, step), threshold):
                log.info(
                    "at step %d, metric %r = %s crossed the early-stopping threshold %s",
                    step,
                    metric_name,
                    metrics[metric_name],
                    threshold,
                )
                return True
        return False

    return make_early_stopping_hook(estimator, crossed, run_every_secs, run_every_steps)


def _no_improvement_hook(
    estimator, metric_name, max_steps, better, eval_dir, min_steps, run_every_secs, run_every_steps
):
    _check_estimator(estimator)
    eval_dir = eval_dir or estimator.eval_dir()

    def stalled():
        best = best_step = None
        for step, metrics in read_eval_metrics(eval_dir).items():
            if step < min_steps:
                continue
            value = _metric(metrics, metric_name, step)
            if best is None or better(value, best):
                best, best_step = value, step
            if step - best_step >= max_steps:
                log.info(
                    "no improvement in metric %r for %d steps (max_steps_without_improvement %d)",
                    metric_name,
                    step - best_step,
                    max_steps,
                )
                return True
        return False

    return make_early_stopping_hook(estimator, stalled, run_every_secs, run_every_steps)


def _metric(metrics, name, step):
    if name not in metrics:
        raise ConfigError(
            f"early stopping: the evaluation at step {step} has no metric {name!r} (it has {sorted(metrics)})"
        )
    return metrics[name]


def stop_if_higher_hook(
    estimator, metric_name, threshold, eval_dir=None, min_steps=0, run_every_secs=60, run_every_steps=None
):
    """Stops training once an evaluation's `metric_name` is above `threshold`."""
    return _threshold_hook(
        estimator, metric_name, threshold, operator.gt, eval_dir, min_steps, run_every_secs, run_every_steps
    )


def stop_if_lower_hook(
    estimator, metric_name, threshold, eval_dir=None, min_steps=0, run_every_secs=60, run_every_steps=None
):
    """Stops training once an evaluation's `metric_name` is below `threshold`."""
    return _threshold_hook(
        estimator, metric_name, threshold, operator.lt, eval_dir, min_steps, run_every_secs, run_every_steps
    )


def stop_if_no_increase_hook(
    estimator,
    metric_name,
    max_steps_without_increase,
    eval_dir=None,
    min_steps=0,
    run_every_secs=60,
    run_every_steps=None,
):
    """Stops training when `metric_name` has not increased over `max_steps_without_increase` steps of evaluations."""
    return _no_improvement_hook(
        estimator,
        metric_name,
        max_steps_without_increase,
        operator.gt,
        eval_dir,
        min_steps,
        run_every_secs,
        run_every_steps,
    )


def stop_if_no_decrease_hook(
    estimator,
    metric_name,
    max_steps_without_decrease,
    eval_dir=None,
    min_steps=0,
    run_every_secs=60,
    run_every_steps=None,
):
    """Stops training when `metric_name` has not decreased over `max_steps_without_decrease` steps of evaluations."""
    return _no_improvement_hook(
        estimator,
        metric_name,
        max_steps_without_decrease,
        operator.lt,
        eval_dir,
        min_steps,
        run_every_secs,
        run_every_steps,
    )


class InMemoryEvaluatorHook(SessionRunHook):
    """Evaluates the model being trained every `every_n_iter` steps and at the end, without waiting for a checkpoint.

    The training variables are written to a private temporary checkpoint and evaluated from there
    (tf.estimator copied them between graphs); results go to eval_dir(name) like evaluate()'s.
    """

    def __init__(self, estimator, input_fn, steps=None, hooks=None, name=None, every_n_iter=100):
        _check_estimator(estimator)
        if not isinstance(every_n_iter, int) or every_n_iter <= 0:
            raise ConfigError(f"every_n_iter must be a positive int, got {every_n_iter!r}")
        self._estimator, self._input_fn, self._steps = estimator, input_fn, steps
        self._hooks, self._name = list(hooks or []), name
        self._timer = _timer(None, every_n_iter, "InMemoryEvaluatorHook")

    def begin(self):
        active = active_training(self)
        if active.estimator is not self._estimator:
            raise ConfigError("InMemoryEvaluatorHook must be given to the estimator it evaluates")
        self._root, self._tmp = active.root, tempfile.mkdtemp(prefix="tfpipe_in_memory_eval_")
        self._timer.reset()
        self._iter_count = 0

    def after_run(self, run_context, run_values):
        self._iter_count += 1
        if self._timer.should_trigger_for_step(self._iter_count):
            self._evaluate()

    def end(self, session):
        try:
            self._evaluate()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _evaluate(self):
        self._timer.update_last_triggered_step(self._iter_count)
        path = self._root.save(os.path.join(self._tmp, "model.ckpt"))
        self._estimator.evaluate(
            self._input_fn, steps=self._steps, hooks=self._hooks, checkpoint_path=path, name=self._name
        )
