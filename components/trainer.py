"""trainer: the user's Estimator, trained with train_and_evaluate on the transformed examples, exported for raw tf.Examples.

In this process, or, with `cluster:` in its section, on a TF_CONFIG cluster that a launcher
(components.launchers) starts and waits for: every task runs this module (`python -m components.trainer
task ...`) with its TF_CONFIG, builds the user's Estimator with the strategy its role needs, and plays its
part in train_and_evaluate; the step then takes the exported model and the metrics from the model directory
the tasks share.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from components import launchers
from components import stop as stop_lib
from components.contract import Component, InputSpec, Parameters, Upstream, UserModule
from components.errors import ConfigError, InputError, Stopped, TfpipeError
from components.launchers import ClusterConfig
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
    # Train on a TF_CONFIG cluster instead of in this process: {workers: 2, ps: 1, evaluator: true}
    # (ParameterServerStrategy) or {workers: 2} (MultiWorkerMirroredStrategy); see components.launchers.
    cluster: ClusterConfig | None = None


def _pattern(transformed_dir: str, split: str) -> str:
    if not list(artifacts.split_dir(transformed_dir, split).glob("*.gz")):
        raise InputError(f"trainer: no transformed examples for split {split!r} in {transformed_dir}")
    return artifacts.split_pattern(transformed_dir, split)


def make_input_fn(pattern: str, feature_spec: dict, label: str, batch_size: int, train: bool, seed: int):
    """An input_fn over gzipped tf.Example files: (features, label) batches; repeats and shuffles when training.
    Called by a strategy with several input pipelines (MultiWorkerMirroredStrategy's workers), each reads its
    own shard of the examples, in batches of its share of `batch_size`."""
    if label not in feature_spec:
        raise ConfigError(
            f"trainer: label {label!r} is not among the transformed features {sorted(feature_spec)}; "
            "the preprocessing_fn must output it"
        )

    def input_fn(input_context=None):
        import tensorflow as tf

        if input_context is not None and input_context.num_input_pipelines > 1:
            try:
                per_replica = input_context.get_per_replica_batch_size(batch_size)
            except ValueError as e:
                raise ConfigError(
                    f"trainer: batch_size {batch_size} does not split evenly over the replicas: {e}"
                ) from None
            ds = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
            if train:
                ds = ds.shuffle(10_000, seed=seed).repeat()
            ds = ds.batch(per_replica).map(lambda rows: tf.io.parse_example(rows, feature_spec))
            return ds.map(lambda f: ({k: v for k, v in f.items() if k != label}, f[label]))
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


def _deterministic(config: TrainerConfig) -> None:
    import tensorflow as tf

    if config.deterministic:
        # Seeds Python, NumPy and TF, and makes TF pick deterministic kernels: a re-run gives the same bits.
        tf.keras.utils.set_random_seed(config.seed)
        tf.config.experimental.enable_op_determinism()


def _estimator(config: TrainerConfig, tft_output, model_run_dir: str, train_distribute=None):
    """The user's Estimator, built by their build_estimator on tfpipe's RunConfig (with the strategy, if any)."""
    from components import estimator as est_lib

    run_config = est_lib.RunConfig(
        model_dir=str(model_run_dir),
        tf_random_seed=config.seed,
        save_checkpoints_steps=config.checkpoint_steps or max(1, min(config.train_steps, 200)),
        log_step_count_steps=max(1, min(100, config.train_steps // 10)),
        train_distribute=train_distribute,
    )
    build = load_function(config.module, "build_estimator")
    estimator = build(run_config, tft_output, dict(config.params))
    if not isinstance(estimator, est_lib.Estimator):
        raise ConfigError(
            f"build_estimator in {config.module} returned {type(estimator).__name__}, "
            "not a components.estimator Estimator"
        )
    return estimator


def _train_and_evaluate(config: TrainerConfig, estimator, tft_output, transformed_dir: str, schema_path: str):
    """train_and_evaluate of the estimator on the transformed splits, with the serving export; the
    engine's step lines shown as progress. Returns (metrics or None, export paths)."""
    from components import estimator as est_lib

    spec = tft_output.transformed_feature_spec()
    train_input = make_input_fn(
        _pattern(transformed_dir, config.train_split), spec, config.label, config.batch_size, True, config.seed
    )
    eval_input = make_input_fn(
        _pattern(transformed_dir, config.eval_split), spec, config.label, config.batch_size, False, config.seed
    )
    receiver = raw_serving_receiver_fn(tft_output, feature_spec(schema_path), config.raw_label or config.label)
    exporter = est_lib.FinalExporter("serving", receiver)
    engine_log = logging.getLogger("tfpipe.estimator")
    phase = "trainer: building the model and tracing its training step"
    with doing(logging.getLogger("tfpipe.trainer"), phase) as activity:
        progress = _TrainingProgress(config.train_steps, config.batch_size, activity)
        engine_log.addFilter(progress)
        try:
            return est_lib.train_and_evaluate(
                estimator,
                est_lib.TrainSpec(train_input, max_steps=config.train_steps),
                est_lib.EvalSpec(eval_input, steps=config.eval_steps, exporters=[exporter], throttle_secs=600),
            )
        finally:
            engine_log.removeFilter(progress)


def _take_export(exports: list, model_dir: str) -> None:
    """The SavedModel's files go straight into model_dir (the caller's folder, which may exist already)."""
    if not exports:
        raise InputError("trainer: training ended before max_steps (the train split ran out?), nothing exported")
    export = Path(os.fsdecode(exports[-1]))
    for item in export.iterdir():
        shutil.move(str(item), Path(model_dir) / item.name)
    shutil.rmtree(export, ignore_errors=True)


def _write_metrics(result: dict, model_run_dir: str) -> dict:
    metrics = {k: float(v) for k, v in result.items() if getattr(v, "ndim", 0) == 0}
    (Path(model_run_dir) / "eval_metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics


def train(
    config: TrainerConfig,
    transformed_dir: str,
    transform_graph_dir: str,
    schema_path: str,
    model_dir: str,
    model_run_dir: str,
) -> dict:
    """Writes the serving SavedModel into model_dir, checkpoints and events into model_run_dir."""
    if config.cluster is not None:
        return train_on_cluster(config, transformed_dir, transform_graph_dir, schema_path, model_dir, model_run_dir)
    import tensorflow_transform as tft

    _deterministic(config)
    tft_output = tft.TFTransformOutput(transform_graph_dir)
    estimator = _estimator(config, tft_output, model_run_dir)
    logging.getLogger("tfpipe.trainer").info("trainer: TensorBoard: tensorboard --logdir %s", model_run_dir)
    result, exports = _train_and_evaluate(config, estimator, tft_output, transformed_dir, schema_path)
    _take_export(exports, model_dir)
    metrics = _write_metrics(result, model_run_dir)
    strategy = estimator.config.train_distribute
    topology = {
        "strategy": type(strategy).__name__ if strategy else "none",
        "replicas": int(strategy.num_replicas_in_sync) if strategy else 1,
    }
    return {"eval": metrics, "topology": topology}


# ---- on a TF_CONFIG cluster ----------------------------------------------------------------------------------

_RESULT = "cluster_result.json"  # written into model_run_dir by the task that evaluates last
_TOPOLOGY = "cluster_topology.json"  # ... and by the chief: its strategy and replicas


_NOT_EXACT = {
    "MultiWorkerMirroredStrategy": "bit-identity is not promised: the workers' all-reduce may add gradients in "
    "another order on a re-run; metrics agree within tolerance",
    "ParameterServerStrategy": "bit-identity is not promised: workers update the parameter servers "
    "asynchronously, in an order no re-run repeats; metrics agree within tolerance",
}


def _chief(task: launchers.Task, cluster: ClusterConfig) -> bool:
    return task.role == "chief" or (task.role == "worker" and task.index == 0 and not cluster.ps)


def _finisher(cluster: ClusterConfig):
    """The tasks the job waits for: those that train or evaluate (with parameter servers, workers only serve)."""
    return lambda task: task.role in ("chief", "evaluator") or (task.role == "worker" and not cluster.ps)


def _checkpoint_note(model_run_dir: str) -> str:
    """Where training resumes: "the checkpoint at step N" (read from the `checkpoint` state file, without
    TensorFlow: the step's process stays light while the cluster works)."""
    state = Path(model_run_dir) / "checkpoint"
    try:
        for line in state.read_text().splitlines():
            if line.startswith("model_checkpoint_path:"):
                return f"the checkpoint at step {line.rsplit('-', 1)[-1].strip().strip(chr(34))}"
    except OSError:
        pass
    return "step 0 (no checkpoint yet)"


def train_on_cluster(
    config: TrainerConfig,
    transformed_dir: str,
    transform_graph_dir: str,
    schema_path: str,
    model_dir: str,
    model_run_dir: str,
) -> dict:
    """Runs train_and_evaluate on the cluster `config.cluster` describes, through its launcher, and waits."""
    cluster = config.cluster
    assert cluster is not None
    log = logging.getLogger("tfpipe.trainer")
    launcher = launchers.launcher(cluster)
    for stale in (_RESULT, _TOPOLOGY):
        (Path(model_run_dir) / stale).unlink(missing_ok=True)
    spec = json.dumps(
        {
            "config": config.model_dump(mode="json"),
            "transformed_dir": str(transformed_dir),
            "transform_graph_dir": str(transform_graph_dir),
            "schema_path": str(schema_path),
            "model_run_dir": str(model_run_dir),
        }
    )
    if cluster.kubernetes is not None:  # the pods run the image's own tfpipe, with its Python
        python, env = list(cluster.kubernetes.python), {}
    else:
        repo = str(Path(__file__).resolve().parents[1])  # the tasks run this very code, whatever their folder
        python = [sys.executable]
        env = {"PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)}
    job = launchers.Job(
        what="trainer",
        tasks=launchers.tasks_of(cluster),
        command=lambda task: [*python, "-m", "components.trainer", "task", spec],
        finishers=_finisher(cluster),
        workdir=str(model_run_dir),
        log=log,
        resume_note=lambda: _checkpoint_note(model_run_dir),
        max_restarts=cluster.max_restarts,
        env=env,
        key=str(Path(model_run_dir).parent),  # the step's folder of runs: a re-run adopts a killed run's folder
        reads=[str(transformed_dir), str(transform_graph_dir), str(schema_path)]
        + ([config.module] if config.module.endswith(".py") else []),
    )
    log.info(
        "trainer: training on a %s cluster (%s), launcher %s; TensorBoard: tensorboard --logdir %s",
        cluster.strategy(),
        cluster.shape(),
        launcher.name,
        model_run_dir,
    )
    with doing(log, f"trainer: training on the cluster ({cluster.shape()})"):
        outcome = launcher.run(job)
    try:
        result = json.loads((Path(model_run_dir) / _RESULT).read_text())
        topology = json.loads((Path(model_run_dir) / _TOPOLOGY).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"trainer: the cluster finished but left no result in {model_run_dir} ({e})") from None
    _take_export([str(Path(model_run_dir) / result["export"])] if result.get("export") else [], model_dir)
    topology.update(
        strategy=cluster.strategy(),
        cluster=cluster.shape(),
        launcher=launcher.name,
        restarts=outcome.restarts,
        bit_identical=False,
        determinism=_NOT_EXACT[cluster.strategy()],
    )
    return {"eval": result["metrics"], "topology": topology}


def _task_strategy(cluster: ClusterConfig, role: str):
    import tensorflow as tf

    from components import estimator as est_lib

    if cluster.ps:
        return est_lib.parameter_server_strategy() if role == "chief" else None
    return tf.distribute.MultiWorkerMirroredStrategy() if role in ("chief", "worker") else None


def _write_json(path: Path, doc: dict) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    os.replace(part, path)


def train_task(spec: dict) -> None:
    """One task of the cluster (TF_CONFIG tells it which): its part of train_and_evaluate."""
    import tensorflow_transform as tft

    config = TrainerConfig.model_validate(spec["config"])
    cluster = config.cluster
    assert cluster is not None
    tf_config = json.loads(os.environ["TF_CONFIG"])
    task = launchers.Task(tf_config["task"]["type"], int(tf_config["task"]["index"]))
    model_run_dir = spec["model_run_dir"]
    _deterministic(config)
    tft_output = tft.TFTransformOutput(spec["transform_graph_dir"])
    estimator = _estimator(config, tft_output, model_run_dir, _task_strategy(cluster, task.role))
    if _chief(task, cluster):
        strategy = estimator.config.train_distribute
        _write_json(
            Path(model_run_dir) / _TOPOLOGY,
            {
                "strategy": type(strategy).__name__ if strategy else "none",
                "replicas": int(strategy.num_replicas_in_sync) if strategy else 1,
                "training_workers": cluster.workers,
            },
        )
    result, exports = _train_and_evaluate(config, estimator, tft_output, spec["transformed_dir"], spec["schema_path"])
    if result is not None:  # the task that evaluated last: the evaluator, or the chief when there is none
        export = os.path.relpath(os.fsdecode(exports[-1]), model_run_dir) if exports else None
        _write_json(Path(model_run_dir) / _RESULT, {"metrics": _write_metrics(result, model_run_dir), "export": export})
    elif not cluster.ps and task.role == "worker":
        # MultiWorkerMirroredStrategy's workers stay until the job's result is written: the chief's
        # coordination service takes a worker that leaves for a crashed one ("The tasks have crashed") while
        # it still evaluates, and the other workers lose it if the chief leaves before the evaluator is done.
        while not (Path(model_run_dir) / _RESULT).exists() and not stop_lib.requested():
            time.sleep(0.2)


def _task_main(argv: list[str]) -> int:
    """`python -m components.trainer task SPEC`: what the launcher runs for each task of the cluster."""
    launchers.die_with_parent()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    logging.getLogger("tfpipe").setLevel(logging.INFO)
    for noisy in ("tensorflow", "absl"):  # deprecation notes on every task; tfpipe's console hides them too
        logging.getLogger(noisy).setLevel(logging.ERROR)
    role = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {}).get("type")
    # TensorFlow's C++ start-up lines (CPU features, no CUDA, oneDNN), once per task, are left out of the
    # step's log; an import that fails still raises, and says why, once they are back.
    sys.stdout.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
        import tensorflow_transform  # noqa: F401

        tf.config.list_physical_devices()  # where CUDA says it found no driver, on every task
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    spec = json.loads(argv[1])
    cluster = ClusterConfig.model_validate(spec["config"]["cluster"])
    if role in ("chief",) or (role == "worker" and not cluster.ps):
        # Training tasks stop at their next chunk of steps with a checkpoint; servers and the evaluator
        # keep the default (they hold nothing to save).
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop_lib.request(signal.Signals(signum).name))
    try:
        train_task(spec)
    except Stopped as e:
        print(f"stopped: {e}", flush=True)
        return 143
    except (ConfigError, InputError) as e:
        print(f"{launchers.USER_ERROR_MARK}{type(e).__name__}: {e}", flush=True)
        return launchers.USER_ERROR_EXIT
    except TfpipeError as e:  # a ClusterError (a task stopped answering): said in one line; the launcher restarts
        print(f"error: {type(e).__name__}: {e}", flush=True)
        return 1
    return 0


def _check(config: TrainerConfig, upstream: Upstream) -> None:
    """Before anything runs: a cluster the launcher can start (with kubernetes, its files on the shared
    volume), with a batch its workers can split."""
    cluster = config.cluster
    if cluster is None:
        return
    if cluster.kubernetes is not None:  # the pods see only the shared volume: the step's files must be on it
        from components import k8s

        paths = [("the pipeline's root", upstream.root)] if upstream.root else []
        if config.module.endswith(".py"):
            paths.append(("the module", config.module))
        k8s.check_on_volume(cluster.kubernetes.volume, paths, "")
    if not cluster.ps and config.batch_size % cluster.workers:
        raise ConfigError(
            f"batch_size {config.batch_size} does not split evenly over the cluster's {cluster.workers} workers "
            "(MultiWorkerMirroredStrategy gives each an equal share): make it a multiple of the workers"
        )


def _canonical(config: TrainerConfig) -> dict:
    """The parameters the model depends on: how the cluster is launched, where its tasks listen and how often
    it may restart do not change what it trains (its shape does)."""
    out = config.model_dump(by_alias=True)
    if out.get("cluster"):
        out["cluster"] = {k: out["cluster"][k] for k in ("workers", "ps", "evaluator")}
    else:
        out.pop("cluster", None)  # keys of runs made before clusters existed stay as they were
    return out


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


def _placement(config: TrainerConfig) -> dict | None:
    """Where the training runs, for the manifest: the cluster's shape (so its determinism verdict says a
    re-run cannot be bit-identical) and the launcher."""
    cluster = config.cluster
    if cluster is None:
        return None
    return {"tf_config_cluster": cluster.counts(), "strategy": cluster.strategy(), "launcher": cluster.launcher}


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
    canonical=_canonical,
    check=_check,
    placement=_placement,
    holds=("training",),  # one training at a time where the Prefect server limits tag tfpipe-training
    description="the user's Estimator, trained with train_and_evaluate, exported for raw tf.Examples",
)


if __name__ == "__main__" and sys.argv[1:2] == ["task"]:
    sys.exit(_task_main(sys.argv[1:]))
