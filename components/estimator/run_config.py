"""RunConfig: checkpoint/summary cadence, seeds, distribution, and the cluster read from TF_CONFIG."""

from __future__ import annotations

import copy
import json
import logging
import os

from components.errors import ConfigError

_USE_DEFAULT = object()
log = logging.getLogger("tfpipe.estimator")

# tf.estimator arguments that have nothing to act on in TF 2 (no sessions, no graph devices, no gRPC server
# of the Estimator's own): accepted so old code runs, with why they do nothing. {name: (default, why)}
_NO_EFFECT = {
    "session_config": (None, "TF 2 has no sessions; use tf.config (threads, devices, memory growth)"),
    "device_fn": (None, "ops are placed by TF 2 and the distribution strategy"),
    "protocol": (None, "the cluster's transport is the distribution strategy's"),
    "experimental_distribute": (None, "pass train_distribute / eval_distribute"),
    "experimental_max_worker_delay_secs": (None, "workers start together under MultiWorkerMirroredStrategy"),
    "session_creation_timeout_secs": (7200, "TF 2 has no sessions"),
    "checkpoint_save_graph_def": (True, "object-based checkpoints hold no graph"),
}
_said: set[str] = set()


def _say_no_effect(given: dict) -> None:
    """Logs once per process for each no-effect argument given a value other than its default (other
    arguments in `given` are ignored)."""
    for name, value in given.items():
        default, why = _NO_EFFECT.get(name, (None, None))
        if why and value != default and name not in _said:
            _said.add(name)
            log.warning("RunConfig(%s=...) has no effect in tfpipe: %s", name, why)


class TaskType:
    CHIEF = "chief"
    WORKER = "worker"
    PS = "ps"
    EVALUATOR = "evaluator"
    MASTER = "master"


def _parse_tf_config(raw: str | None) -> dict:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}); expected {{'cluster': {{...}}, 'task': {{...}}}}") from e
    if not isinstance(parsed, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task' keys")
    return parsed


class RunConfig:
    """How an Estimator runs: where it writes, how often, with which seed and distribution strategy.

    `steps_per_execution` (tfpipe's addition) is how many training steps run inside one tf.function
    call; hooks force it to 1 so they see every step, as they did with tf.estimator.
    """

    def __init__(
        self,
        model_dir=None,
        tf_random_seed=None,
        save_summary_steps=100,
        save_checkpoints_steps=_USE_DEFAULT,
        save_checkpoints_secs=_USE_DEFAULT,
        session_config=None,
        keep_checkpoint_max=5,
        keep_checkpoint_every_n_hours=10000,
        log_step_count_steps=100,
        train_distribute=None,
        device_fn=None,
        protocol=None,
        eval_distribute=None,
        experimental_distribute=None,
        experimental_max_worker_delay_secs=None,
        session_creation_timeout_secs=7200,
        checkpoint_save_graph_def=True,
        steps_per_execution=100,
    ):
        arguments = dict(locals())  # as given, before the defaults below are resolved
        steps_given = save_checkpoints_steps is not _USE_DEFAULT and save_checkpoints_steps is not None
        secs_given = save_checkpoints_secs is not _USE_DEFAULT and save_checkpoints_secs is not None
        if steps_given and secs_given:
            raise ConfigError("RunConfig: give save_checkpoints_steps or save_checkpoints_secs, not both")
        if steps_given:
            save_checkpoints_secs = None
        elif not secs_given:
            save_checkpoints_steps = None
            save_checkpoints_secs = 600 if save_checkpoints_secs is _USE_DEFAULT else None
        else:
            save_checkpoints_steps = None
        for name, value in (
            ("save_summary_steps", save_summary_steps),
            ("log_step_count_steps", log_step_count_steps),
            ("save_checkpoints_steps", save_checkpoints_steps),
            ("keep_checkpoint_max", keep_checkpoint_max),
        ):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(f"RunConfig: {name} must be a non-negative int or None, got {value!r}")
        if not isinstance(steps_per_execution, int) or steps_per_execution < 1:
            raise ConfigError(f"RunConfig: steps_per_execution must be a positive int, got {steps_per_execution!r}")
        self._model_dir = os.fspath(model_dir) if model_dir is not None else None
        self._tf_random_seed = tf_random_seed
        self._save_summary_steps = save_summary_steps
        self._save_checkpoints_steps = save_checkpoints_steps
        self._save_checkpoints_secs = save_checkpoints_secs
        self._session_config = session_config
        self._keep_checkpoint_max = keep_checkpoint_max
        self._keep_checkpoint_every_n_hours = keep_checkpoint_every_n_hours
        self._log_step_count_steps = log_step_count_steps
        self._train_distribute = train_distribute
        self._eval_distribute = eval_distribute
        self._device_fn = device_fn
        self._protocol = protocol
        self._experimental_distribute = experimental_distribute
        self._experimental_max_worker_delay_secs = experimental_max_worker_delay_secs
        self._session_creation_timeout_secs = session_creation_timeout_secs
        self._checkpoint_save_graph_def = checkpoint_save_graph_def
        self._steps_per_execution = steps_per_execution
        _say_no_effect(arguments)
        self._init_cluster(_parse_tf_config(os.environ.get("TF_CONFIG")))

    def _init_cluster(self, tf_config: dict) -> None:
        cluster = tf_config.get("cluster") or {}
        task = tf_config.get("task") or {}
        self._cluster_spec = {k: list(v) for k, v in cluster.items()}
        self._global_id_in_cluster: int | None  # None for an evaluator
        if not cluster:
            self._task_type, self._task_id = TaskType.WORKER, 0
            self._is_chief, self._num_ps_replicas, self._num_worker_replicas = True, 0, 1
            self._global_id_in_cluster, self._master = 0, ""
            return
        if "type" not in task or "index" not in task:
            raise ConfigError("TF_CONFIG has a cluster but its 'task' lacks 'type' or 'index'")
        self._task_type, self._task_id = task["type"], int(task["index"])
        known = {TaskType.CHIEF, TaskType.WORKER, TaskType.PS, TaskType.EVALUATOR, TaskType.MASTER}
        if self._task_type not in known:
            raise ConfigError(f"TF_CONFIG task type {self._task_type!r} is not one of {sorted(known)}")
        if self._task_type != TaskType.EVALUATOR:
            members = self._cluster_spec.get(self._task_type, [])
            if self._task_id >= len(members):
                raise ConfigError(
                    f"TF_CONFIG task {self._task_type}:{self._task_id} is not in the cluster "
                    f"({len(members)} {self._task_type} address(es) listed)"
                )
        has_chief = TaskType.CHIEF in cluster or TaskType.MASTER in cluster
        if self._task_type in (TaskType.CHIEF, TaskType.MASTER):
            self._is_chief = True
        elif self._task_type == TaskType.WORKER and not has_chief:
            self._is_chief = self._task_id == 0
        else:
            self._is_chief = False
        self._num_ps_replicas = len(cluster.get(TaskType.PS, []))
        self._num_worker_replicas = (
            len(cluster.get(TaskType.WORKER, []))
            + len(cluster.get(TaskType.CHIEF, []))
            + len(cluster.get(TaskType.MASTER, []))
        )
        # Chief first, then workers, then ps: the order tf.estimator used for global ids.
        order = [TaskType.CHIEF, TaskType.MASTER, TaskType.WORKER, TaskType.PS]
        gid = 0
        for kind in order:
            if kind == self._task_type:
                gid += self._task_id
                break
            gid += len(cluster.get(kind, []))
        self._global_id_in_cluster = None if self._task_type == TaskType.EVALUATOR else gid
        addr = (
            self._cluster_spec.get(self._task_type, [None])[self._task_id]
            if self._task_type != TaskType.EVALUATOR
            else None
        )
        self._master = f"grpc://{addr}" if addr else ""

    def replace(self, **kwargs) -> RunConfig:
        """A copy with some fields changed; the cluster fields are re-read only from TF_CONFIG."""
        new = copy.copy(self)
        for key, value in kwargs.items():
            if not hasattr(new, "_" + key):
                raise ConfigError(f"RunConfig.replace: unknown field {key!r}")
            if key == "model_dir" and value is not None:
                value = os.fspath(value)
            setattr(new, "_" + key, value)
        _say_no_effect(kwargs)
        if new._save_checkpoints_steps is not None and new._save_checkpoints_secs is not None:
            if "save_checkpoints_steps" in kwargs:
                new._save_checkpoints_secs = None
            else:
                new._save_checkpoints_steps = None
        return new

    model_dir = property(lambda self: self._model_dir)
    tf_random_seed = property(lambda self: self._tf_random_seed)
    save_summary_steps = property(lambda self: self._save_summary_steps)
    save_checkpoints_steps = property(lambda self: self._save_checkpoints_steps)
    save_checkpoints_secs = property(lambda self: self._save_checkpoints_secs)
    session_config = property(lambda self: self._session_config)
    keep_checkpoint_max = property(lambda self: self._keep_checkpoint_max)
    keep_checkpoint_every_n_hours = property(lambda self: self._keep_checkpoint_every_n_hours)
    log_step_count_steps = property(lambda self: self._log_step_count_steps)
    train_distribute = property(lambda self: self._train_distribute)
    eval_distribute = property(lambda self: self._eval_distribute)
    device_fn = property(lambda self: self._device_fn)
    protocol = property(lambda self: self._protocol)
    experimental_max_worker_delay_secs = property(lambda self: self._experimental_max_worker_delay_secs)
    session_creation_timeout_secs = property(lambda self: self._session_creation_timeout_secs)
    checkpoint_save_graph_def = property(lambda self: self._checkpoint_save_graph_def)
    steps_per_execution = property(lambda self: self._steps_per_execution)
    cluster_spec = property(lambda self: self._cluster_spec)
    task_type = property(lambda self: self._task_type)
    task_id = property(lambda self: self._task_id)
    is_chief = property(lambda self: self._is_chief)
    num_ps_replicas = property(lambda self: self._num_ps_replicas)
    num_worker_replicas = property(lambda self: self._num_worker_replicas)
    global_id_in_cluster = property(lambda self: self._global_id_in_cluster)
    master = property(lambda self: self._master)
    evaluation_master = property(lambda self: "")
    service = property(lambda self: None)

    def __repr__(self) -> str:
        return (
            f"RunConfig(model_dir={self.model_dir!r}, tf_random_seed={self.tf_random_seed}, "
            f"save_checkpoints_steps={self.save_checkpoints_steps}, save_checkpoints_secs={self.save_checkpoints_secs}, "
            f"task={self.task_type}:{self.task_id})"
        )
