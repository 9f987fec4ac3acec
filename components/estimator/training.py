"""train_and_evaluate with TrainSpec / EvalSpec and exporters (the local, single-process form)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import NamedTuple

from components.errors import ConfigError

log = logging.getLogger("tfpipe.estimator")


class TrainSpec(NamedTuple):
    input_fn: object
    max_steps: int | None = None
    hooks: tuple = ()


class EvalSpec(NamedTuple):
    input_fn: object
    steps: int | None = 100
    name: str | None = None
    hooks: tuple = ()
    exporters: tuple = ()
    start_delay_secs: int = 120
    throttle_secs: int = 600


class _Exporter:
    """Exports under <model_dir>/export/<name>/ and keeps the newest `exports_to_keep`."""

    def __init__(self, name, serving_input_receiver_fn, assets_extra=None, as_text=False, exports_to_keep=5):
        if not name:
            raise ConfigError("an exporter needs a name")
        self.name, self.receiver_fn = name, serving_input_receiver_fn
        self.assets_extra, self.as_text, self.exports_to_keep = assets_extra, as_text, exports_to_keep

    def _export(self, estimator, export_path, checkpoint_path):
        path = estimator.export_saved_model(export_path, self.receiver_fn, assets_extra=self.assets_extra,
                                            as_text=self.as_text, checkpoint_path=checkpoint_path)
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


def train_and_evaluate(estimator, train_spec: TrainSpec, eval_spec: EvalSpec):
    """Trains to max_steps, evaluating (and exporting) after each checkpoint at most every throttle_secs.

    Returns (the last evaluation's metrics, the export paths of the final evaluation).
    """
    if not isinstance(train_spec, TrainSpec) or not isinstance(eval_spec, EvalSpec):
        raise ConfigError("train_and_evaluate needs a TrainSpec and an EvalSpec")
    if train_spec.max_steps is None:
        raise ConfigError("TrainSpec.max_steps is required: training has to end for the final evaluation")
    every = estimator.config.save_checkpoints_steps or train_spec.max_steps
    last_eval = 0.0
    while True:
        done = _global_step(estimator)
        if done >= train_spec.max_steps:
            break
        target = min(train_spec.max_steps, (done // every + 1) * every)
        estimator.train(train_spec.input_fn, hooks=list(train_spec.hooks), max_steps=target)
        if _global_step(estimator) < target:
            break  # input ran out before max_steps
        final = target >= train_spec.max_steps
        if final or time.time() - last_eval >= eval_spec.throttle_secs:
            result, exports = _evaluate_and_export(estimator, eval_spec, final)
            last_eval = time.time()
            if final:
                return result, exports
    return _evaluate_and_export(estimator, eval_spec, True)


def _global_step(estimator) -> int:
    latest = estimator.latest_checkpoint()
    return int(estimator.get_variable_value("global_step")) if latest else 0


def _evaluate_and_export(estimator, eval_spec, final):
    checkpoint = estimator.latest_checkpoint()
    result = estimator.evaluate(eval_spec.input_fn, steps=eval_spec.steps, hooks=list(eval_spec.hooks),
                                checkpoint_path=checkpoint, name=eval_spec.name)
    exports = []
    for exporter in eval_spec.exporters:
        base = os.path.join(estimator.model_dir, "export", exporter.name)
        path = exporter.export(estimator, base, checkpoint, result, final)
        if path:
            exports.append(path)
    log.info("train_and_evaluate: evaluated at step %d%s", int(result["global_step"]),
             f", exported {len(exports)}" if exports else "")
    return result, exports
