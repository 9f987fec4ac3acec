"""train_and_evaluate with TrainSpec / EvalSpec and exporters (the local, single-process form)."""

from __future__ import annotations

import abc
import logging
import os
import shutil
import time
from collections.abc import Sequence
from typing import NamedTuple

import tensorflow as tf

from components import stop as stop_lib
from components.errors import ConfigError
from components.estimator.early_stopping import event_scalars

log = logging.getLogger("tfpipe.estimator")


class TrainSpec(NamedTuple):
    input_fn: object
    max_steps: int | None = None
    hooks: Sequence = ()
    saving_listeners: Sequence = ()


class EvalSpec(NamedTuple):
    input_fn: object
    steps: int | None = 100
    name: str | None = None
    hooks: Sequence = ()
    exporters: Sequence = ()
    start_delay_secs: int = 120
    throttle_secs: int = 600


class Exporter(abc.ABC):
    """What train_and_evaluate calls after an evaluation (tf.estimator.Exporter): subclass it.

    `export` gets the estimator, `<model_dir>/export/<name>`, the evaluated checkpoint, the
    evaluation's metrics and whether this is the last export; it returns the export path or None.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The folder under <model_dir>/export/ that this exporter writes to."""

    @abc.abstractmethod
    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        """Exports the model; returns where, or None when it did not export."""


class _Exporter(Exporter):
    """Exports under <model_dir>/export/<name>/ and keeps the newest `exports_to_keep`."""

    def __init__(self, name, serving_input_receiver_fn, assets_extra=None, as_text=False, exports_to_keep=5):
        if not name:
            raise ConfigError("an exporter needs a name")
        self._name, self.receiver_fn = name, serving_input_receiver_fn
        self.assets_extra, self.as_text, self.exports_to_keep = assets_extra, as_text, exports_to_keep

    name = property(lambda self: self._name)

    def _export(self, estimator, export_path, checkpoint_path):
        path = estimator.export_saved_model(
            export_path,
            self.receiver_fn,
            assets_extra=self.assets_extra,
            as_text=self.as_text,
            checkpoint_path=checkpoint_path,
        )
        if self.exports_to_keep:
            stamps = sorted((d for d in os.listdir(export_path) if d.isdigit()), key=int)
            for old in stamps[: -self.exports_to_keep]:
                shutil.rmtree(os.path.join(export_path, old), ignore_errors=True)
        return path


class LatestExporter(_Exporter):
    """Exports after every evaluation."""

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        return self._export(estimator, export_path, checkpoint_path)


class FinalExporter(_Exporter):
    """Exports once, after the last evaluation."""

    def __init__(self, name, serving_input_receiver_fn, assets_extra=None, as_text=False):
        super().__init__(name, serving_input_receiver_fn, assets_extra, as_text, exports_to_keep=None)

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        return self._export(estimator, export_path, checkpoint_path) if is_the_final_export else None


class BestExporter(_Exporter):
    """Exports when an evaluation beats the best so far (lowest loss by default).

    After a restart the best so far is read back from the evaluation event files, so a worse model
    is not exported just because the process is new.
    """

    def __init__(
        self,
        name="best_exporter",
        serving_input_receiver_fn=None,
        event_file_pattern="eval/*.tfevents.*",
        compare_fn=None,
        assets_extra=None,
        as_text=False,
        exports_to_keep=5,
        metric_key="loss",
    ):
        super().__init__(name, serving_input_receiver_fn, assets_extra, as_text, exports_to_keep)
        self.metric_key = metric_key
        self.compare_fn = compare_fn or (lambda best, current: current[metric_key] < best[metric_key])
        self.event_file_pattern, self._best = event_file_pattern, None

    def _best_from_events(self, model_dir):
        best = None
        for _, values in event_scalars(tf.io.gfile.glob(os.path.join(model_dir, self.event_file_pattern))):
            if self.metric_key in values and (best is None or self.compare_fn(best, values)):
                best = values
        return best

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        if self._best is None:
            self._best = self._best_from_events(estimator.model_dir)
            if self._best is not None and self._best.get(self.metric_key) == float(eval_result[self.metric_key]):
                self._best = None  # the event files already hold this very evaluation
        current = {k: float(v) for k, v in eval_result.items() if getattr(v, "ndim", 0) == 0}
        if self._best is None or self.compare_fn(self._best, current):
            self._best = current
            return self._export(estimator, export_path, checkpoint_path)
        return None


def train_and_evaluate(estimator, train_spec: TrainSpec, eval_spec: EvalSpec):
    """Trains to max_steps and evaluates, locally or as this process's task in a TF_CONFIG cluster.

    Locally: evaluation (and exporters) after each checkpoint, at most every throttle_secs, and at the end.
    In a cluster: `ps` (and, under ParameterServerStrategy, `worker`) tasks serve; chief and workers
    train; the `evaluator` task evaluates each new checkpoint until max_steps. Without an evaluator
    task the chief evaluates once training ends. Returns (metrics, export paths), or (None, []) on a
    task that does not evaluate.
    """
    if not isinstance(train_spec, TrainSpec) or not isinstance(eval_spec, EvalSpec):
        raise ConfigError("train_and_evaluate needs a TrainSpec and an EvalSpec")
    if train_spec.max_steps is None:
        raise ConfigError("TrainSpec.max_steps is required: training has to end for the final evaluation")
    for exporter in eval_spec.exporters:
        if not isinstance(exporter, Exporter):
            raise ConfigError(f"EvalSpec.exporters must be estimator.Exporter instances, got {type(exporter).__name__}")
    cfg = estimator.config
    cluster = cfg.cluster_spec or {}
    if not cluster:
        return _local(estimator, train_spec, eval_spec)
    role = cfg.task_type
    # With parameter servers (TF2's ParameterServerStrategy) workers only serve: the chief coordinates.
    if role == "ps" or (role == "worker" and "ps" in cluster):
        _serve(cfg)
        return None, []
    if role == "evaluator":
        return _evaluator_loop(estimator, train_spec, eval_spec)
    estimator.train(train_spec.input_fn, hooks=list(train_spec.hooks), max_steps=train_spec.max_steps)
    if cfg.is_chief and "evaluator" not in cluster:
        return _evaluate_and_export(estimator, eval_spec, True, estimator.latest_checkpoint())
    return None, []


def _serve(cfg):
    """A parameter server (or a ParameterServerStrategy worker): serve until killed, as tf.estimator's did."""
    server = tf.distribute.Server(
        tf.train.ClusterSpec(cfg.cluster_spec),
        job_name=cfg.task_type,
        task_index=cfg.task_id,
        protocol="grpc",
        start=True,
    )
    log.info("%s %d serving at %s", cfg.task_type, cfg.task_id, server.target)
    server.join()


def _evaluator_loop(estimator, train_spec, eval_spec):
    """Evaluates every new checkpoint (at most every throttle_secs) until one reaches max_steps; that last
    one at once, whatever the throttle (the job waits for it)."""
    time.sleep(min(eval_spec.start_delay_secs, 5))
    last, last_time = None, 0.0
    while True:
        latest = estimator.latest_checkpoint()
        step = int(latest.rsplit("-", 1)[1]) if latest else 0
        final = step >= train_spec.max_steps
        if latest and latest != last and (final or time.time() - last_time >= eval_spec.throttle_secs):
            if step == 0 and not final:  # the chief's model.ckpt-0: nothing trained yet
                last = latest
                continue
            try:
                result, exports = _evaluate_and_export(estimator, eval_spec, final, latest)
            except (tf.errors.NotFoundError, ValueError) as e:
                # The chief's CheckpointManager may delete an old checkpoint while it is read: take the next.
                log.info("evaluator: %s went away (%s); waiting for the next checkpoint", latest, e)
                continue
            last, last_time = latest, time.time()
            if final:
                return result, exports
        time.sleep(0.5)


class _EvaluateAfterSaves:
    """A checkpoint listener that evaluates (and exports) inside the one train() call, after a save
    when throttle_secs have passed since the last evaluation, and at its end: training keeps its
    input iterator across evaluations, as tf.estimator's listener did."""

    def __init__(self, estimator, eval_spec, max_steps):
        self.estimator, self.eval_spec, self.max_steps = estimator, eval_spec, max_steps
        self.last, self.evaluated_step, self.outcome = time.time(), None, None

    def begin(self):
        pass

    def before_save(self, session, global_step):
        pass

    def after_save(self, session, global_step):
        if global_step < self.max_steps and time.time() - self.last >= self.eval_spec.throttle_secs:
            self._evaluate(global_step, final=False)

    def end(self, session, global_step):
        if global_step == self.evaluated_step and not stop_lib.requested():
            # Training ended on a step already evaluated (a hook stopped it, or the input ran out, on
            # a checkpoint step): that evaluation's result makes the final exports.
            result = self.outcome[0]  # type: ignore[index]  # set by the evaluation of evaluated_step
            self.outcome = (
                result,
                _export(self.estimator, self.eval_spec, True, self.estimator.latest_checkpoint(), result),
            )
            log.info("train_and_evaluate: final exports of step %d: %d", global_step, len(self.outcome[1]))
            return
        self._evaluate(global_step, final=True)

    def _evaluate(self, global_step, final):
        if stop_lib.requested():
            return  # SIGTERM/Ctrl-C: training stops with its checkpoint, and nothing else
        self.outcome = _evaluate_and_export(self.estimator, self.eval_spec, final, self.estimator.latest_checkpoint())
        self.evaluated_step, self.last = global_step, time.time()


def _local(estimator, train_spec, eval_spec):
    # One training call to max_steps (or until a hook stops it, or the input runs out); the listener
    # evaluates between its checkpoints and after the last.
    listener = _EvaluateAfterSaves(estimator, eval_spec, train_spec.max_steps)
    estimator.train(
        train_spec.input_fn,
        hooks=list(train_spec.hooks),
        max_steps=train_spec.max_steps,
        saving_listeners=list(train_spec.saving_listeners) + [listener],
    )
    if listener.outcome is None:
        # train() had nothing to do (max_steps was already reached): no hook ran, no listener heard.
        return _evaluate_and_export(estimator, eval_spec, True, estimator.latest_checkpoint())
    return listener.outcome


def _evaluate_and_export(estimator, eval_spec, final, checkpoint):
    result = estimator.evaluate(
        eval_spec.input_fn,
        steps=eval_spec.steps,
        hooks=list(eval_spec.hooks),
        checkpoint_path=checkpoint,
        name=eval_spec.name,
    )
    exports = _export(estimator, eval_spec, final, checkpoint, result)
    log.info(
        "train_and_evaluate: evaluated at step %d%s",
        int(result["global_step"]),
        f", exported {len(exports)}" if exports else "",
    )
    return result, exports


def _export(estimator, eval_spec, final, checkpoint, result) -> list:
    exports = []
    for exporter in eval_spec.exporters:
        base = os.path.join(estimator.model_dir, "export", exporter.name)
        path = exporter.export(estimator, base, checkpoint, result, final)
        if path:
            exports.append(path)
    return exports
