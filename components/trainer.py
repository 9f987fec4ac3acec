"""trainer: the user's Estimator, trained with train_and_evaluate on the transformed examples, exported for raw tf.Examples."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from components.contract import Component, InputSpec, Parameters, UserModule
from components.errors import ConfigError, InputError
from components.progress import Activity, Progress, doing
from components.user_module import load_function
from schemas import artifacts
from schemas.schema import feature_spec


class TrainerConfig(Parameters):
    """trainer's parameters (its YAML section)."""

    # a .py path or dotted module with build_estimator(run_config, transform_output, params)
    module: Annotated[str, UserModule("build_estimator")]
    label: str  # the label's key among the transformed features
    raw_label: str | None = None  # its key in the raw examples (default: label); left out of the serving input
    train_steps: int = Field(default=1000, gt=0)
    # default min(train_steps, 200): what a re-run after a crash resumes from
    checkpoint_steps: int | None = Field(default=None, gt=0)
    eval_steps: int | None = Field(default=None, gt=0)  # None: the whole eval split
    batch_size: int = Field(default=32, gt=0)
    seed: int = 42
    deterministic: bool = True  # same seed and data on CPU -> bit-identical variables (op determinism on)
    params: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    eval_split: str = "eval"


def _pattern(transformed_dir: str, split: str) -> str:
    if not list(artifacts.split_dir(transformed_dir, split).glob("*.gz")):
        raise InputError(f"trainer: no transformed examples for split {split!r} in {transformed_dir}")
    return artifacts.split_pattern(transformed_dir, split)


def make_input_fn(pattern: str, feature_spec: dict, label: str, batch_size: int, train: bool, seed: int):
    """An input_fn over gzipped tf.Example files: (features, label) batches; repeats and shuffles when training."""
    if label not in feature_spec:
        raise ConfigError(
            f"trainer: label {label!r} is not among the transformed features {sorted(feature_spec)}; "
            "the preprocessing_fn must output it"
        )

    def input_fn():
        import tensorflow as tf

        return tf.data.experimental.make_batched_features_dataset(
            pattern,
            batch_size,
            feature_spec,
            label_key=label,
            reader=lambda files: tf.data.TFRecordDataset(files, compression_type="GZIP"),
            num_epochs=None if train else 1,
            shuffle=train,
            shuffle_seed=seed,
            drop_final_batch=False,
        )

    return input_fn


def raw_serving_receiver_fn(tft_output, raw_feature_spec: dict, raw_label: str):
    """Serving input: serialized raw tf.Examples, parsed and transformed inside the SavedModel."""
    from components.estimator import export

    spec = {k: v for k, v in raw_feature_spec.items() if k != raw_label}

    def receiver_fn():
        import tensorflow as tf

        serialized = tf.compat.v1.placeholder(tf.string, shape=[None], name="input_example_tensor")
        layer = tft_output.transform_features_layer()
        features = layer(tf.io.parse_example(serialized, spec))
        return export.ServingInputReceiver(features, {"examples": serialized}, trackables=[layer])

    return receiver_fn


class _TrainingProgress(logging.Filter):
    """Turns the engine's "step N: loss = ..." lines into progress: step N of max_steps, loss, examples/s, ETA."""

    def __init__(self, max_steps: int, batch_size: int, phase: Activity):
        super().__init__()
        self.progress = Progress(
            logging.getLogger("tfpipe.trainer"), "trainer: step", total=max_steps, unit="examples", per_item=batch_size
        )
        self.phase, self.first = phase, True

    def filter(self, record: logging.LogRecord) -> bool:
        args: Any = record.args  # for this line, a tuple: (step, loss, steps/s, examples/s)
        if record.msg == "step %d: loss = %.5g (%.1f steps/s, %s examples/s)" and args:
            step, loss = int(args[0]), float(args[1])
            if self.first:
                # The rate and ETA count from the first step logged, not from the start: building and tracing
                # the model take seconds that the remaining steps will not.
                self.progress.started, self.progress.offset, self.first = time.perf_counter(), step, False
            self.progress.done = step
            final = step >= (self.progress.total or 0)
            record.msg, record.args = "%s", (self.progress.line(f"loss {loss:.4g}", final=final),)
            record.tfpipe_progress = "final" if final else "live"
            self.phase.what = "trainer: saving the last checkpoint, then evaluating" if final else "trainer: training"
        elif str(record.msg).startswith("evaluation at step"):
            # Its auc is tf.estimator's (interpolated over 200 thresholds); the evaluator's summary has the exact one.
            record.msg = "trainer: " + str(record.msg) + " (auc over 200 thresholds, as tf.estimator)"
            self.phase.what = "trainer: exporting the SavedModel"
        return True


def train(
    config: TrainerConfig,
    transformed_dir: str,
    transform_graph_dir: str,
    schema_path: str,
    model_dir: str,
    model_run_dir: str,
) -> dict:
    """Writes the serving SavedModel into model_dir, checkpoints and events into model_run_dir."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from components import estimator as est_lib

    if config.deterministic:
        # Seeds Python, NumPy and TF, and makes TF pick deterministic kernels: a re-run gives the same bits.
        tf.keras.utils.set_random_seed(config.seed)
        tf.config.experimental.enable_op_determinism()
    tft_output = tft.TFTransformOutput(transform_graph_dir)
    spec = tft_output.transformed_feature_spec()
    run_config = est_lib.RunConfig(
        model_dir=str(model_run_dir),
        tf_random_seed=config.seed,
        save_checkpoints_steps=config.checkpoint_steps or max(1, min(config.train_steps, 200)),
        log_step_count_steps=max(1, min(100, config.train_steps // 10)),
    )
    build = load_function(config.module, "build_estimator")
    estimator = build(run_config, tft_output, dict(config.params))
    if not isinstance(estimator, est_lib.Estimator):
        raise ConfigError(
            f"build_estimator in {config.module} returned {type(estimator).__name__}, "
            "not a components.estimator Estimator"
        )
    train_input = make_input_fn(
        _pattern(transformed_dir, config.train_split), spec, config.label, config.batch_size, True, config.seed
    )
    eval_input = make_input_fn(
        _pattern(transformed_dir, config.eval_split), spec, config.label, config.batch_size, False, config.seed
    )
    receiver = raw_serving_receiver_fn(tft_output, feature_spec(schema_path), config.raw_label or config.label)
    exporter = est_lib.FinalExporter("serving", receiver)
    engine_log = logging.getLogger("tfpipe.estimator")
    logging.getLogger("tfpipe.trainer").info("trainer: TensorBoard: tensorboard --logdir %s", model_run_dir)
    phase = "trainer: building the model and tracing its training step"
    with doing(logging.getLogger("tfpipe.trainer"), phase) as activity:
        progress = _TrainingProgress(config.train_steps, config.batch_size, activity)
        engine_log.addFilter(progress)
        try:
            result, exports = est_lib.train_and_evaluate(
                estimator,
                est_lib.TrainSpec(train_input, max_steps=config.train_steps),
                est_lib.EvalSpec(eval_input, steps=config.eval_steps, exporters=[exporter], throttle_secs=600),
            )
        finally:
            engine_log.removeFilter(progress)
    if not exports:
        raise InputError("trainer: training ended before max_steps (the train split ran out?), nothing exported")
    # The SavedModel's files go straight into model_dir (the caller's folder, which may exist already).
    export = Path(os.fsdecode(exports[-1]))
    for item in export.iterdir():
        shutil.move(str(item), Path(model_dir) / item.name)
    shutil.rmtree(export, ignore_errors=True)
    metrics = {k: float(v) for k, v in result.items() if getattr(v, "ndim", 0) == 0}
    (Path(model_run_dir) / "eval_metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    strategy = estimator.config.train_distribute
    topology = {
        "strategy": type(strategy).__name__ if strategy else "none",
        "replicas": int(strategy.num_replicas_in_sync) if strategy else 1,
    }
    return {"eval": metrics, "topology": topology}


def _run(inputs: dict, outputs: dict, config: TrainerConfig) -> dict:
    result = train(
        config,
        inputs["transformed_examples"].uri,
        inputs["transform_graph"].uri,
        str(Path(inputs["schema"].uri) / "schema.pbtxt"),
        outputs["model"],
        outputs["model_run"],
    )
    return {"model_run": {**{k: v for k, v in result["eval"].items() if isinstance(v, float)}, **result["topology"]}}


COMPONENT = Component(
    name="trainer",
    inputs={
        "transformed_examples": InputSpec("TransformedExamples"),
        "transform_graph": InputSpec("TransformGraph"),
        "schema": InputSpec("Schema"),
    },
    outputs={"model": "Model", "model_run": "ModelRun"},
    parameters=TrainerConfig,
    executor=_run,
    code=(__name__,),
    resumable=("model_run",),
    description="the user's Estimator, trained with train_and_evaluate, exported for raw tf.Examples",
)
