"""The Estimator: tf.estimator's train / evaluate / predict / export contract, built natively on TF2.

Each call builds a "program" for its mode (the TF2 stand-in for tf.estimator's graph and session):
a global step, the model_fn traced inside tf.function, and an object-based checkpoint restored from
model_dir. Training runs `steps_per_execution` steps inside one tf.function call.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
import sys
import tempfile
import threading
from typing import Any

import numpy as np
import tensorflow as tf

from components import stop as stop_lib
from components.errors import ClusterError, ConfigError, InputError, NotTrainedError, Stopped
from components.estimator import _compat, _legacy_checkpoint, basic_hooks
from components.estimator import hooks as hooks_lib
from components.estimator._compat import (
    allow_keras3_variables_in_group,
    allow_setting_keras3_iterations,
    set_global_seed,
)
from components.estimator._inputs import batch_size_of, call_with_known_args, fn_args, to_dataset
from components.estimator.mode_keys import ModeKeys
from components.estimator.run_config import RunConfig
from components.estimator.spec import EstimatorSpec, is_metric_object
from components.estimator.warm_start import as_settings, warm_start

log = logging.getLogger("tfpipe.estimator")


class _UntilConfigured(logging.StreamHandler):
    """Prints the engine's lines only while no logger above it has a handler: once the user (or absl,
    or the CLI) configures logging, the lines propagate there and are printed once, by that handler."""

    def emit(self, record):
        logger: logging.Logger | None = log.parent
        while logger is not None:
            if logger.handlers:
                return
            logger = logger.parent if logger.propagate else None
        super().emit(record)


if not logging.getLogger().handlers and not log.handlers:
    # Like absl under tf.estimator: progress is visible without configuring logging first.
    _handler = _UntilConfigured()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)

CHECKPOINT_NAME = "model.ckpt"
# The dataset map's features when add_metrics' metric_fns need the input_fn's own beside the transformed.
_MODEL_FEATURES, _RAW_FEATURES = "tfpipe/model_features", "tfpipe/input_fn_features"
_NONFINITE = "tfpipe: the training loss is not finite"
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_MODEL_FN_ARGS = {"features", "labels", "mode", "params", "config"}
_LOCAL_COLLECTIONS = {tf.compat.v1.GraphKeys.LOCAL_VARIABLES, tf.compat.v1.GraphKeys.METRIC_VARIABLES}
# Collections a TF1-style model_fn fills and reads back (tf.compat.v1.losses.get_total_loss(), the batch
# norm's UPDATE_OPS, a v1 optimizer's TRAIN_OP): a traced graph starts without them, as tf.estimator's
# graph per call did. A graph traced inside another (the loop body around later steps) copies its
# outer graph's, which hold the first step's.
_MODEL_FN_COLLECTIONS = (
    tf.compat.v1.GraphKeys.LOSSES,
    tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES,
    tf.compat.v1.GraphKeys.UPDATE_OPS,
    tf.compat.v1.GraphKeys.TRAIN_OP,
    tf.compat.v1.GraphKeys.SUMMARIES,
)


class _Program:
    """The model of one mode: its global step, its variables and the checkpoint that holds them.

    The model_fn may create variables (a Keras model built inside it, say). The variable creator
    below hands back the variables of the first call, in creation order, on every later call, so
    tf.function's retraces and the loop body reuse one set of variables.
    """

    def __init__(self, estimator: Estimator, mode: str, strategy, transform_in_step: bool = False):
        self.est, self.mode = estimator, mode
        self.model_fn_resources: list = []  # lookup tables the model_fn made itself (an export saves them)
        # Whether call_model_fn applies the estimator's input transform (the input then carries raw
        # features); otherwise the dataset map has applied it (see Estimator._transform_in_step).
        self.transform_in_step = transform_in_step
        self.distributed = strategy is not None
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.global_step = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="global_step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self.created: list = []
        self.local_vars: list = []
        self._lock = threading.Lock()
        self._cursor = threading.local()
        self.spec: EstimatorSpec | None = None
        self.raw_features: Any = None  # the input_fn's features of the model_fn's current call
        self._root = None
        # Objects a premade estimator builds eagerly for this program (model, optimizer, metrics).
        self.state: dict = {}
        # Kept while the Estimator reuses this program across calls: its traced tf.functions (by
        # kind and input structure), its summary writer, and the stamp of the checkpoint whose
        # values its variables hold (None: they hold something no checkpoint has).
        self.functions: dict = {}
        self.writer = None
        # Steps an endless-input chunk has run (see _chunk_fn), made with that chunk.
        self.steps_done: tf.Variable | None = None
        self.synced: tuple | None = None
        # tf.compat.v1.layers in a TF1-style model_fn, under Keras 3: tf_keras's (here: not traced).
        _compat.route_v1_layers_to_tf_keras()
        with self.strategy.scope():
            estimator._prebuild(self)

    def _creator(self, next_creator, **kwargs):
        index = getattr(self._cursor, "i", 0)
        self._cursor.i = index + 1
        with self._lock:
            if index < len(self.created):
                var = self.created[index]
            else:
                var = next_creator(**kwargs)
                self.created.append(var)
                if _LOCAL_COLLECTIONS & set(kwargs.get("collections") or ()):
                    self.local_vars.append(var)
        # In the traced graph's collection, as a TF1 graph had it, so a v1 optimizer's
        # minimize(loss) without var_list finds the model's variables. That graph, not the current
        # default one: tf_keras builds its weights inside init_scope (the eager context).
        # Each call of the creator in one model_fn call hands out a different variable (by index), and
        # call_model_fn empties the collection first: no variable is added twice.
        graph = getattr(self._cursor, "graph", None)
        if var.trainable and graph is not None:
            graph.add_to_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES, var)
        return var

    def function(self, key, make):
        """The tf.function stored under `key`, made by `make()` the first time."""
        if key not in self.functions:
            self.functions[key] = make()
        return self.functions[key]

    def call_model_fn(self, features, labels) -> EstimatorSpec:
        self._cursor.i = 0
        graph = tf.compat.v1.get_default_graph()
        # tf.compat.v1.train.get_global_step() looks in the current graph's collection.
        if not graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_STEP):
            graph.add_to_collection(tf.compat.v1.GraphKeys.GLOBAL_STEP, self.global_step)
        if not tf.executing_eagerly():
            # A traced graph shares the process's default graph's TRAINABLE_VARIABLES list (a FuncGraph
            # inherits it by reference): give this graph its own, which _creator fills with the
            # model_fn's variables, so none leak to other graphs (tf.Transform rejects a preprocessing
            # graph that has any).
            graph.clear_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)
            # And its own TF1 variable stores, as tf.estimator's graph per call had: each trace of a
            # model_fn using tf.compat.v1.get_variable / tf.compat.v1.layers makes its variables anew
            # (by the same names), and the creator above hands back the first trace's.
            _compat.fresh_tf1_stores(graph)
            for key in _MODEL_FN_COLLECTIONS:
                graph.clear_collection(key)
            self._cursor.graph = graph
        allow_keras3_variables_in_group()
        allow_setting_keras3_iterations()
        try:
            # add_metrics' metric_fns get the input_fn's features, as in tf.estimator, and the model_fn
            # the transformed ones: made here, or by the dataset map, which then carries both.
            if isinstance(features, dict) and _RAW_FEATURES in features:
                self.raw_features, features = features[_RAW_FEATURES], features[_MODEL_FEATURES]
            else:
                self.raw_features = features
                if self.transform_in_step:
                    features = self.est._traced_transform(features)
            # The root name scope, as in tf.estimator's graph: summary tags made in the model_fn carry
            # no "while/cond_1/" of the loop around the step.
            with tf.variable_creator_scope(self._creator), graph.name_scope(""):
                spec = self.est._call_model_fn(features, labels, self.mode, self)
        finally:
            self._cursor.graph = None
        self.spec = spec
        return spec

    def _model_variables(self) -> list:
        """The model_fn's variables in creation order, without local and metric variables."""
        local = {id(v) for v in self.local_vars}
        return [v for v in self.created if id(v) not in local and not _is_metric_variable(v)]

    def _saver(self):
        saver = getattr(self.spec.scaffold, "saver", None) if self.spec is not None else None
        return saver if isinstance(saver, tf.train.Checkpoint) else None

    @property
    def root(self) -> tf.train.Checkpoint:
        """The object the checkpoint saves: the model_fn's own tf.train.Checkpoint, or its variables.

        Variables are saved twice over: by name (readable, and what get_variable_value takes), and
        under ORDERED by creation order within their auto-name-free name (see _structure_keys),
        which is what restore matches, since Keras numbers auto-named layers per process.
        """
        if self._root is not None:
            return self._root
        saver = self._saver()
        if saver is not None:
            root = saver
            if not any(v is self.global_step for v in _compat.trackable_children(root).values()):
                root.global_step = self.global_step
        else:
            variables = self._model_variables()
            named = _unique_names([v.name.split(":")[0] for v in variables])
            root = tf.train.Checkpoint(global_step=self.global_step, **dict(zip(named, variables)))
            setattr(root, ORDERED, tf.train.Checkpoint(**dict(zip(_structure_keys(variables), variables))))
        self._root = root
        return root

    def saveable(self, checkpoint: tf.train.Checkpoint):
        """What a CheckpointManager saves for `checkpoint`: for this program's own root without a
        strategy, a traced write kept with the program, made again when the objects the root reaches
        change; otherwise (a hook's own saver, which may be new on every call) `checkpoint` itself."""
        if self.distributed or checkpoint is not self.root:
            return checkpoint
        _ = checkpoint.save_counter  # made by the first save otherwise: it would change the objects below
        objects = tuple(id(o) for o in tf.train.TrackableView(checkpoint).descendants())
        host = tf.DeviceSpec.from_string(self.global_step.device).replace(device_type="CPU", device_index=0)
        return self.function(("save", objects), lambda: _compat.TracedWrites(checkpoint, host.to_string()))

    def _restore_root(self, path: str):
        """What restore matches: the creation-order structure when the checkpoint has it, else names."""
        if self._saver() is not None:
            return self.root
        if ORDERED not in {c.local_name for c in _object_graph(path).nodes[0].children}:
            return self.root  # written before ORDERED existed: match by name
        variables = self._model_variables()
        return tf.train.Checkpoint(
            global_step=self.global_step,
            **{ORDERED: tf.train.Checkpoint(**dict(zip(_structure_keys(variables), variables)))},
        )

    def sync(self, path: str) -> bool:
        """Restores `path` unless the variables already hold it; True when it restored."""
        stamp = _stamp(path)
        if stamp is not None and stamp == self.synced:
            return False
        self.restore(path)
        self.synced = stamp
        return True

    def restore(self, path: str) -> None:
        if _legacy_checkpoint.is_name_based(path):  # tf.estimator's (TF1 Saver's) format: by name
            ordered = _compat.trackable_children(self.root).get(ORDERED) if self._saver() is None else None
            _legacy_checkpoint.restore(self.root, self.global_step, path, exclude=[ordered])
            return
        try:
            status = self._restore_root(path).restore(path)
            status.expect_partial()
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
            raise ConfigError(
                f"checkpoint {path} does not match the model built by model_fn ({str(e)[:300]}). "
                "Did the model change? Train into a new model_dir, or use warm_start_from."
            ) from e


def _stamp(path: str) -> tuple | None:
    """What identifies one written checkpoint: its path and its index file's modification time."""
    try:
        return path, tf.io.gfile.stat(path + ".index").mtime_nsec
    except (tf.errors.NotFoundError, tf.errors.OpError):
        return None


ORDERED = "variables_in_order"
# Keras makes auto-names unique per process (dense, dense_1, ...); a fresh graph per program, as
# tf.estimator had, would have named them alike every time. Dropping the numbers gives that name.
_AUTO_NUMBER = re.compile(r"_\d+(?=[/_]|$)")


def _structure_keys(variables) -> list[str]:
    """'<name without auto-numbers>#<k>': the k-th variable of that name, in creation order."""
    seen: dict[str, int] = {}
    keys = []
    for var in variables:
        base = _AUTO_NUMBER.sub("", var.name.split(":")[0])
        k = seen.get(base, 0)
        seen[base] = k + 1
        keys.append(f"{base}#{k}")
    return keys


def _unique_names(names) -> list[str]:
    """Names made unique by a _<k> suffix on repeats (dense/kernel, dense/kernel_1)."""
    out, seen = [], set()
    for base in names:
        name, k = base, 0
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        seen.add(name)
        out.append(name)
    return out


def _is_metric_variable(var) -> bool:
    # Keras metrics (tf_keras and Keras 3) keep their state in non-trainable, sync-on-read variables
    # summed across replicas. tf_keras's BatchNormalization (tf.compat.v1.layers.batch_normalization's)
    # keeps its moving statistics in sync-on-read variables too, averaged: those are the model's.
    return (
        (not var.trainable)
        and getattr(var, "synchronization", None) == tf.VariableSynchronization.ON_READ
        and getattr(var, "aggregation", None) == tf.VariableAggregation.SUM
    )


def _deps(op) -> list:
    if op is None:
        return []
    return [op] if not isinstance(op, (list, tuple)) else list(op)


def _is_parameter_server(strategy) -> bool:
    return isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy)


_COORDINATORS: dict = {}


def _coordinator(strategy):
    """The one ClusterCoordinator of a ParameterServerStrategy (TF allows a single one per strategy)."""
    if id(strategy) not in _COORDINATORS:
        _COORDINATORS[id(strategy)] = (strategy, tf.distribute.experimental.coordinator.ClusterCoordinator(strategy))
    return _COORDINATORS[id(strategy)][1]


def _object_graph(checkpoint: str):
    """The checkpoint's TrackableObjectGraph proto (node 0 is the root)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(checkpoint).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return graph


def _variable_paths(checkpoint: str, all_paths: bool = False) -> dict:
    """From the checkpoint's object graph: {preferred path: key}, or {key: every path} with all_paths.

    An optimizer's slot variable is named after its variable, as OptimizerV2 named it in
    tf.estimator's graphs: '<variable>/<slot>' (dnn/hiddenlayer_0/kernel/accumulator)."""
    graph = _object_graph(checkpoint)
    found: dict[str, list[tuple]] = {}
    node_paths: dict[int, list[tuple]] = {}
    # Walk every simple path (the graphs are small and shallow); a few per node is plenty.
    stack: list[tuple[int, tuple]] = [(0, ())]
    per_node: dict[int, int] = {}
    while stack:
        node_id, parts = stack.pop()
        if per_node.get(node_id, 0) >= 4 or len(parts) > 16:
            continue
        per_node[node_id] = per_node.get(node_id, 0) + 1
        node_paths.setdefault(node_id, []).append(parts)
        node = graph.nodes[node_id]
        for attr in node.attributes:
            if attr.name == "VARIABLE_VALUE":
                found.setdefault(attr.checkpoint_key, []).append(parts)
        for child in node.children:
            stack.append((child.node_id, parts + (child.local_name,)))

    def rank(parts):
        return (any("optimizer" in p.lower() for p in parts), len(parts), parts)

    for node in graph.nodes:
        for slot in node.slot_variables:
            owner = node_paths.get(slot.original_variable_node_id)
            values = [
                a.checkpoint_key
                for a in graph.nodes[slot.slot_variable_node_id].attributes
                if a.name == "VARIABLE_VALUE"
            ]
            if owner and values:
                found.setdefault(values[0], []).append(min(owner, key=rank) + (slot.slot_name,))
    if all_paths:
        return {key: {"/".join(p) for p in paths} for key, paths in found.items()}
    return {
        "/".join(min(paths, key=rank)): key
        for key, paths in found.items()
        if not (len(paths[0]) == 1 and paths[0][0] == "save_counter")
    }


def _find_checkpoint(path: str | None) -> str | None:
    if not path:
        return None
    if tf.io.gfile.isdir(path):
        return tf.train.latest_checkpoint(path)
    return path


class Estimator:
    """Trains, evaluates, predicts with and exports a model defined by `model_fn`."""

    _metric_fns: tuple = ()  # add_metrics' metric_fns, applied in EVAL mode

    def __init__(self, model_fn, model_dir=None, config=None, params=None, warm_start_from=None):
        if not callable(model_fn):
            raise ConfigError(f"model_fn must be callable, got {type(model_fn).__name__}")
        args = set(fn_args(model_fn))
        if "features" not in args:
            raise ConfigError("model_fn must take an argument named `features`")
        # An Estimator subclass's own model_fn (a method of it) may also take the program it runs in,
        # where the objects its _prebuild made are.
        unknown = args - _MODEL_FN_ARGS - ({"program"} if getattr(model_fn, "__self__", None) is self else set())
        if unknown:
            raise ConfigError(f"model_fn has arguments {sorted(unknown)}; it may only take {sorted(_MODEL_FN_ARGS)}")
        if params is not None and "params" not in args:
            raise ConfigError("params were given but model_fn does not take a `params` argument")
        config = config or RunConfig()
        if not isinstance(config, RunConfig):
            raise ConfigError(f"config must be a components.estimator.RunConfig, got {type(config).__name__}")
        model_dir = os.fspath(model_dir) if model_dir is not None else None
        if model_dir and config.model_dir and os.path.abspath(model_dir) != os.path.abspath(config.model_dir):
            raise ConfigError(f"model_dir {model_dir!r} and config.model_dir {config.model_dir!r} differ; give one")
        model_dir = model_dir or config.model_dir
        if not model_dir:
            model_dir = tempfile.mkdtemp(prefix="tfpipe_model_")
            log.warning("no model_dir given; using temporary folder %s", model_dir)
        self._model_fn = model_fn
        self._model_fn_args = args
        self._config = config.replace(model_dir=model_dir)
        self._params = dict(params or {})
        self._warm_start_from = as_settings(warm_start_from) if warm_start_from is not None else None
        # Programs kept across calls, by mode (see _program).
        self._programs: dict = {}

    model_dir = property(lambda self: self._config.model_dir)
    config = property(lambda self: self._config)
    params = property(lambda self: dict(self._params))
    model_fn = property(lambda self: self._model_fn)

    # ---- user functions -------------------------------------------------------------------------

    def _prebuild(self, program) -> None:
        """Builds, eagerly and in the strategy's scope, what a subclass's model_fn uses (its models, optimizers,
        metrics), into `program.state`; the model_fn gets the program as its `program` argument."""

    def _input_transform(self):
        """Per-example feature work (hashing, vocabulary lookups) applied to the input_fn's features
        before the model_fn sees them, in the dataset map or in the step (_transform_in_step); None (the
        default): the model_fn gets the input_fn's features as they are. Premade estimators return their
        feature columns' transform."""
        return None

    @functools.cached_property
    def _traced_transform(self):
        # Traced once (without AutoGraph: plain TF ops) and called from the step or each call's
        # dataset map, instead of being traced again for every train / evaluate / predict call.
        fn = self._input_transform()
        return tf.function(fn, autograph=False) if fn is not None else None

    def _transform_in_step(self) -> bool:
        """Whether a program without a distribution strategy runs the input transform inside its traced
        step rather than in the dataset map (under a strategy the map always runs it).

        In the step when there is no GPU: the step function is traced once
        and kept across calls, while a map is traced and instantiated again for every new iterator,
        which cost every train() call about 60 ms (bench/train_throughput.py's models); the step was no
        slower per step on 2 cores (its get_next hands over fewer tensors). With a strategy or a GPU
        the map keeps string work on the host, beside the accelerator's steps.
        """
        return self._traced_transform is not None and not tf.config.list_logical_devices("GPU")

    def _export_resources(self) -> list:
        """Resources (lookup tables) the exported SavedModel must keep, beyond the model_fn's variables."""
        return []

    def _call_model_fn(self, features, labels, mode, program) -> EstimatorSpec:
        if labels is not None and "labels" not in self._model_fn_args:
            raise ConfigError(
                "model_fn does not take `labels`, but input_fn returned labels; "
                "add a `labels` argument to model_fn or return only features"
            )
        kwargs = {
            "features": features,
            "mode": mode,
            "params": self._params,
            "config": self._config,
            "program": program,
        }
        if "labels" in self._model_fn_args:
            kwargs["labels"] = labels
        spec = call_with_known_args(self._model_fn, kwargs)
        if not isinstance(spec, EstimatorSpec):
            raise ConfigError(f"model_fn must return an EstimatorSpec, got {type(spec).__name__}")
        if mode == ModeKeys.EVAL and self._metric_fns:
            available = {
                "features": features if getattr(program, "raw_features", None) is None else program.raw_features,
                "labels": labels,
                "predictions": spec.predictions,
                "config": self._config,
            }
            metrics = dict(spec.eval_metric_ops)
            for metric_fn in self._metric_fns:  # from add_metrics; a later one overrides a name
                added = call_with_known_args(metric_fn, available)
                if not isinstance(added, dict):
                    raise ConfigError(f"metric_fn must return a dict of metrics, got {type(added).__name__}")
                metrics.update(added)
            spec = EstimatorSpec(**{**spec._asdict(), "eval_metric_ops": metrics})
        return spec

    def _dataset(self, input_fn, mode, input_context=None, raw=False) -> tuple[tf.data.Dataset, bool]:
        """The input_fn's dataset, with the input transform mapped over it unless `raw`."""
        if not callable(input_fn):
            raise ConfigError(f"input_fn must be callable, got {type(input_fn).__name__}")
        available = {
            "mode": mode,
            "params": self._params,
            "config": self._config,
            "input_context": input_context or tf.distribute.InputContext(),
        }
        ds, has_labels = to_dataset(call_with_known_args(input_fn, available), input_fn, mode == ModeKeys.TRAIN)
        transform = self._traced_transform
        if transform is not None and not raw and mode == ModeKeys.EVAL and self._metric_fns:
            ds = ds.map(
                lambda f, *rest: ({_MODEL_FEATURES: transform(f), _RAW_FEATURES: f}, *rest),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        elif transform is not None and not raw:
            ds = ds.map(lambda f, *rest: (transform(f), *rest), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE), has_labels

    def _iterator(self, input_fn, mode, strategy, raw=False):
        """An iterator over the input, whether it yields labels, and whether it is endless (a repeated
        dataset, which cannot run out: its steps need no end-of-input check); distributed when a
        strategy is set. `raw`: without the input transform (the program's step applies it)."""
        if strategy is None:
            ds, has_labels = self._dataset(input_fn, mode, raw=raw)
            _await_teardowns()  # only now: the input_fn's own work overlaps the teardown
            return iter(ds), has_labels, int(ds.cardinality()) == tf.data.INFINITE_CARDINALITY
        _await_teardowns()  # a strategy calls the input_fn while it distributes the dataset
        flags = []

        def dataset_fn(ctx):
            ds, has = self._dataset(input_fn, mode, ctx)
            flags.append(has)
            return ds

        if _is_parameter_server(strategy):
            # The coordinator builds the dataset on every worker; asynchronous training reads it there.
            coordinator = _coordinator(strategy)
            per_worker = coordinator.create_per_worker_dataset(strategy.distribute_datasets_from_function(dataset_fn))
            return iter(per_worker), flags[0], False
        dist = strategy.distribute_datasets_from_function(dataset_fn)
        return iter(dist), flags[0], False

    def _seed(self, kept: bool = False) -> None:
        """Seeds as tf.estimator's graph per call did. For a kept program, the eager kernel cache
        stays (clearing it costs the kept functions a re-optimization); a new program gets the full
        tf.random.set_seed, so its eager initializers draw as in a fresh process."""
        seed = self._config.tf_random_seed
        if seed is not None:
            if kept:
                set_global_seed(seed)
            else:
                tf.random.set_seed(seed)
            random.seed(seed)
            np.random.seed(seed)

    # ---- programs -------------------------------------------------------------------------------

    def _program(self, mode, strategy) -> _Program:
        """The program of `mode`. Without a distribution strategy it is kept across calls, with its
        traced functions and its variables' values: a call restores only when model_dir's checkpoint
        is not the one those values came from (another process or Estimator moved it on)."""
        if strategy is not None:
            return _Program(self, mode, strategy)
        program = self._programs.get(mode)
        if program is None:
            program = self._programs[mode] = _Program(self, mode, None, self._transform_in_step())
        return program

    def _drop_program(self, mode) -> None:
        """Forgets the kept program of `mode` (after a failed call its variables are in doubt)."""
        program = self._programs.pop(mode, None)
        if program is not None and program.writer is not None:
            program.writer.close()

    # ---- checkpoints ----------------------------------------------------------------------------

    def latest_checkpoint(self) -> str | None:
        """The path of the newest checkpoint in model_dir, or None."""
        return tf.train.latest_checkpoint(self.model_dir)

    def _require_checkpoint(self, checkpoint_path=None) -> str:
        path = _find_checkpoint(checkpoint_path) if checkpoint_path else self.latest_checkpoint()
        if not path:
            where = checkpoint_path or self.model_dir
            raise NotTrainedError(f"no trained model found in {where}; call train() first or pass checkpoint_path")
        return path

    def get_variable_names(self) -> list[str]:
        """Names of the variables in the latest checkpoint: object paths such as 'linear/linear_model/age/weights',
        and optimizer slots after their variable ('linear/linear_model/age/weights/accumulator').

        A variable reachable along several paths (a model's and its optimizer's) is named by the
        shortest path that does not go through an optimizer.
        """
        path = self._require_checkpoint()
        if _legacy_checkpoint.is_name_based(path):  # tf.estimator's: the keys are the names
            return sorted(tf.train.load_checkpoint(path).get_variable_to_shape_map())
        return sorted(_variable_paths(path))

    def get_variable_value(self, name: str) -> np.ndarray:
        """The value of variable `name`: any object path that reaches it in the latest checkpoint."""
        path = self._require_checkpoint()
        reader = tf.train.load_checkpoint(path)
        for key in (name, name + _VALUE_SUFFIX):
            if reader.has_tensor(key):
                return reader.get_tensor(key)
        if _legacy_checkpoint.is_name_based(reader):
            raise ConfigError(f"no variable {name!r} in {path}; get_variable_names() lists them")
        for key, paths in _variable_paths(path, all_paths=True).items():
            if name in paths:
                return reader.get_tensor(key)
        raise ConfigError(f"no variable {name!r} in {path}; get_variable_names() lists them")

    # ---- train ----------------------------------------------------------------------------------

    def train(self, input_fn, hooks=None, steps=None, max_steps=None, saving_listeners=None):
        """Trains for `steps` more steps, or until global step `max_steps`, or until input runs out."""
        if steps is not None and max_steps is not None:
            raise ConfigError("give steps or max_steps to train(), not both")
        for name, value in (("steps", steps), ("max_steps", max_steps)):
            if value is not None and (not isinstance(value, (int, np.integer)) or value <= 0):
                raise ConfigError(f"train(): {name} must be a positive int, got {value!r}")
        latest = self.latest_checkpoint()
        if max_steps is not None and latest:
            reader = tf.train.load_checkpoint(latest)
            keys = [k for k in ("global_step" + _VALUE_SUFFIX, "global_step") if reader.has_tensor(k)]
            done = int(reader.get_tensor(keys[0])) if keys else 0  # the second: tf.estimator's name-based format
            if done >= max_steps:
                log.info("skipping training: global step %d already reached max_steps %d", done, max_steps)
                return self
        strategy = self._config.train_distribute
        kept = self._programs.get(ModeKeys.TRAIN)
        if kept is not None and kept.synced is not None and not latest:
            self._drop_program(ModeKeys.TRAIN)  # model_dir was emptied: start from fresh variables
        self._seed(kept=strategy is None and ModeKeys.TRAIN in self._programs)
        program = self._program(ModeKeys.TRAIN, strategy)
        try:
            iterator, has_labels, endless = self._iterator(
                input_fn, ModeKeys.TRAIN, strategy, program.transform_in_step
            )
            loop = _TrainLoop(
                self,
                program,
                iterator,
                has_labels,
                list(hooks or []),
                list(saving_listeners or []),
                steps,
                max_steps,
                endless,
            )
            if _is_parameter_server(strategy):
                # Traced once here, on a local copy of the input, so the variables exist (on the parameter
                # servers) and the checkpoint can be restored before any step is scheduled on a worker.
                loop.trace_iterator = iter(self._dataset(input_fn, ModeKeys.TRAIN)[0])
            loop.run()
        except BaseException:
            self._drop_program(ModeKeys.TRAIN)
            raise
        held = [iterator, loop]
        del iterator, loop
        _let_go(held)
        return self

    # ---- evaluate -------------------------------------------------------------------------------

    def evaluate(self, input_fn, steps=None, hooks=None, checkpoint_path=None, name=None):
        """Evaluates the checkpoint on `steps` batches (or all the input) and returns the metrics."""
        if steps is not None and steps <= 0:
            raise ConfigError(f"evaluate(): steps must be positive, got {steps}")
        path = self._require_checkpoint(checkpoint_path)
        strategy = self._config.eval_distribute
        program = self._program(ModeKeys.EVAL, strategy)
        try:
            iterator, has_labels, _ = self._iterator(input_fn, ModeKeys.EVAL, strategy, program.transform_in_step)
            results = _run_eval(program, iterator, has_labels, steps, path, list(hooks or []))
        except BaseException:
            self._drop_program(ModeKeys.EVAL)
            raise
        held = [iterator]
        del iterator
        _let_go(held)
        writer = tf.summary.create_file_writer(self.eval_dir(name))
        with writer.as_default(), tf.summary.record_if(True):  # also inside train() (InMemoryEvaluatorHook)
            for key, value in results.items():
                if key != "global_step" and np.ndim(value) == 0:
                    tf.summary.scalar(key, float(value), step=int(results["global_step"]))
        writer.close()
        log.info(
            "evaluation at step %d: %s",
            results["global_step"],
            ", ".join(f"{k} = {v:.4g}" for k, v in sorted(results.items()) if np.ndim(v) == 0 and k != "global_step"),
        )
        return results

    def eval_dir(self, name=None) -> str:
        """Where evaluate(name=name) writes its event files: model_dir/eval or model_dir/eval_<name>."""
        return os.path.join(self.model_dir, "eval" if not name else f"eval_{name}")

    # ---- predict --------------------------------------------------------------------------------

    def predict(self, input_fn, predict_keys=None, hooks=None, checkpoint_path=None, yield_single_examples=True):
        """Yields predictions: one dict per example (or per batch with yield_single_examples=False)."""
        path = self._require_checkpoint(checkpoint_path)
        program = self._program(ModeKeys.PREDICT, None)
        try:
            iterator, _, _ = self._iterator(input_fn, ModeKeys.PREDICT, None, program.transform_in_step)
            predict_step = program.function(
                "predict", lambda: tf.function(lambda it: program.call_model_fn(next(it)[0], None).predictions)
            )
            predict_step.get_concrete_function(iterator)
            program.sync(path)
        except BaseException:
            self._drop_program(ModeKeys.PREDICT)
            raise
        if isinstance(predict_keys, str):
            predict_keys = [predict_keys]
        # program.spec is set: tracing predict_step above called the model_fn.
        hook_list = list(hooks or []) + list(program.spec.prediction_hooks)  # type: ignore[union-attr]
        for h in hook_list:
            h.begin()
        try:
            while True:
                try:
                    preds = predict_step(iterator)
                except tf.errors.OutOfRangeError:
                    return
                single = not isinstance(preds, dict)
                preds = {"predictions": preds} if single else preds
                if predict_keys:
                    missing = [k for k in predict_keys if k not in preds]
                    if missing:
                        raise ConfigError(f"predict_keys {missing} not in the model's predictions {sorted(preds)}")
                    preds = {k: preds[k] for k in predict_keys}
                preds = {k: v.numpy() for k, v in preds.items()}
                if not yield_single_examples:
                    yield preds["predictions"] if single else preds
                    continue
                sizes = {k: v.shape[0] if v.ndim else None for k, v in preds.items()}
                n = next(iter(sizes.values()))
                if n is None or any(s != n for s in sizes.values()):
                    raise ConfigError(
                        f"predictions have different batch sizes {sizes}; use yield_single_examples=False"
                    )
                for i in range(n):
                    yield preds["predictions"][i] if single else {k: v[i] for k, v in preds.items()}
        finally:
            for h in hook_list:
                h.end(None)
            held = [iterator]
            del iterator
            _let_go(held)

    # ---- export ---------------------------------------------------------------------------------

    def export_saved_model(
        self,
        export_dir_base,
        serving_input_receiver_fn,
        assets_extra=None,
        as_text=False,
        checkpoint_path=None,
        experimental_mode=ModeKeys.PREDICT,
    ):
        """Writes a SavedModel to `<export_dir_base>/<timestamp>` (atomically) and returns its path."""
        from components.estimator import _export

        if experimental_mode != ModeKeys.PREDICT:
            raise ConfigError(
                "export_saved_model exports the PREDICT mode only; "
                f"experimental_mode={experimental_mode!r} is not supported"
            )
        path = self._require_checkpoint(checkpoint_path)
        return _export.export_saved_model(
            self, path, os.fspath(export_dir_base), serving_input_receiver_fn, assets_extra, as_text
        )

    def experimental_export_all_saved_models(
        self, export_dir_base, input_receiver_fn_map, assets_extra=None, as_text=False, checkpoint_path=None
    ):
        """One SavedModel (at `<export_dir_base>/<timestamp>`, written atomically) for the modes in
        `input_receiver_fn_map` ({ModeKeys.PREDICT: serving receiver fn, ModeKeys.EVAL / TRAIN: a supervised
        receiver fn}): PREDICT's signatures as export_saved_model gives them, plus `eval` (EvalOutput: loss,
        predictions, metrics) and `train` (loss, predictions). tf.estimator wrote one MetaGraph per mode,
        tagged serve / eval / train; a TF2 SavedModel has the one `serve` MetaGraph, so the modes are its
        signatures, and running `train` computes the loss without training."""
        from components.estimator import _export

        path = self._require_checkpoint(checkpoint_path)
        return _export.export_all_saved_models(
            self, path, os.fspath(export_dir_base), dict(input_receiver_fn_map), assets_extra, as_text
        )

    def export_savedmodel(self, *args, **kwargs):
        """Old name of export_saved_model."""
        return self.export_saved_model(*args, **kwargs)


class _TrainLoop:
    """A short driver over hooks: runs steps in calls of up to steps_per_execution, each ending where a hook
    is next due. What happens between calls (summaries, logging, checkpoints) is done by the Estimator's own
    hooks (basic_hooks' _LossSummary, _StepLogger, _ModelSaver), run like the user's; the loss is checked
    for NaN/inf inside the step."""

    def __init__(self, est, program, iterator, has_labels, hooks, listeners, steps, max_steps, endless=False):
        self.est, self.p, self.it, self.has_labels, self.endless = est, program, iterator, has_labels, endless
        self.hooks, self.listeners, self.steps, self.max_steps = hooks, listeners, steps, max_steps
        self.cfg = est.config
        self.is_chief = self.cfg.is_chief
        self.trace_iterator = None
        self.graph = None  # the traced step hooks' tensors live in
        self.examples = 0

    def _step_fn(self):
        p, strategy, has_labels = self.p, self.p.strategy, self.has_labels

        def replica_fn(features, labels):
            spec = p.call_model_fn(features, labels)
            with tf.control_dependencies(_deps(spec.train_op)):
                # Checked at every step, inside multi-step calls too: the call stops at the step whose loss
                # is NaN or inf (an optimizer such as FTRL can come back to finite weights after it).
                loss = tf.debugging.check_numerics(tf.cast(spec.loss, tf.float32), _NONFINITE)
            return loss, batch_size_of(features)

        def step(batch):
            features, labels = (batch[0], batch[1]) if has_labels else (batch[0], None)
            loss, count = strategy.run(replica_fn, args=(features, labels))
            return (
                strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None),
            )

        return step

    def _chunk_fn(self):
        # Keep the last step's loss; add up the examples.
        if self.endless and self.p.steps_done is None:
            self.p.steps_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps_done")
        return _chunk_fn(
            self._step_fn(), lambda acc, new: (new[0], acc[1] + new[1]), self.p.steps_done if self.endless else None
        )

    def run(self):
        cfg, p, model_dir = self.cfg, self.p, self.est.model_dir
        os.makedirs(model_dir, exist_ok=True)
        kept = self.est._programs.get(ModeKeys.TRAIN) is p
        if not self.is_chief:
            writer = tf.summary.create_noop_writer()
        elif kept:  # summary ops traced in the model_fn write to the writer of their trace: keep it
            p.writer = p.writer or tf.summary.create_file_writer(model_dir)
            writer = p.writer
        else:
            writer = tf.summary.create_file_writer(model_dir)
        every = cfg.save_summary_steps or 0
        gs = p.global_step
        with writer.as_default(step=gs), tf.summary.record_if(lambda: every > 0 and gs % every == 0):
            parameter_server = _is_parameter_server(p.strategy)
            with p.strategy.scope():
                try:
                    chunk, with_hooks = self._trace(parameter_server)
                except tf.errors.OutOfRangeError as e:
                    raise InputError("input_fn produced no data to train on") from e
            self._run_chunk = self._scheduled(chunk) if parameter_server else chunk
            latest = self.est.latest_checkpoint()
            if latest:
                if p.sync(latest):
                    log.info("restored %s (global step %d)", latest, int(gs.numpy()))
            elif self.est._warm_start_from:
                warm_start(p.root, p.global_step, self.est._warm_start_from)
            p.synced = None  # the steps below change the variables; stamped again after the last save
            training = hooks_lib.Training(self.est, p.root, gs, p.saveable)
            with hooks_lib.global_step_registered(gs), hooks_lib.training(training):
                step = self._loop(writer, with_hooks)
            latest = self.est.latest_checkpoint()
            if latest and latest.endswith(f"-{step}"):
                p.synced = _stamp(latest)
        if writer is p.writer:
            writer.flush()
        else:
            writer.close()

    @staticmethod
    def _steps_each(hooks) -> bool:
        """Whether any hook needs to see every step (and so may fetch the model_fn's tensors)."""
        return any(type(h).steps_until_due is hooks_lib.SessionRunHook.steps_until_due for h in hooks)

    def _trace(self, parameter_server):
        """The traced step function, and whether it is the one-step function hooks need."""
        one_step = lambda: _step_with_fetches(self._step_fn())  # noqa: E731
        if self._steps_each(self.hooks) and not parameter_server:
            chunk = self.p.function(("step", self.has_labels), one_step)
            chunk.get_concrete_function(self.it, None)
        else:
            chunk = self.p.function(("chunk", self.has_labels, self.endless), self._chunk_fn)
            chunk.get_concrete_function(self.trace_iterator if parameter_server else self.it, tf.constant(1))
            if parameter_server or not self._steps_each(self._spec_hooks()):
                return chunk, False
            chunk = self.p.function(("step", self.has_labels), one_step)  # the model_fn brought hooks
        self.graph = chunk.get_concrete_function(self.it, ()).graph
        return chunk, True

    def _spec_hooks(self) -> list:
        spec = self.p.spec
        return list(spec.training_hooks) + (list(spec.training_chief_hooks) if self.is_chief else [])

    def _examples_since(self) -> int:
        count, self.examples = self.examples, 0
        return count

    def _own_hooks(self, writer) -> list:
        """The Estimator's hooks, which run after the user's."""
        cfg, chief = self.cfg, self.is_chief
        # Every task gets the same hooks, so that they all end their calls on the same steps (a
        # synchronous strategy needs that); only the chief's write (the others' writer is a no-op).
        after: list[hooks_lib.SessionRunHook] = [
            basic_hooks._LossSummary(cfg.save_summary_steps, writer),
            basic_hooks._StepLogger(cfg.log_step_count_steps, writer if chief else None, self._examples_since),
        ]
        savers = [h for h in self.hooks + self._spec_hooks() if isinstance(h, basic_hooks.CheckpointSaverHook)]
        if savers:  # as tf.estimator: a CheckpointSaverHook saves instead of the Estimator, for the listeners too
            savers[0].add_listeners(self.listeners)
        else:
            after.append(
                basic_hooks._ModelSaver(
                    self.est.model_dir,
                    CHECKPOINT_NAME,
                    cfg.save_checkpoints_steps,
                    cfg.save_checkpoints_secs,
                    self.listeners,
                    chief,
                )
            )
        return after

    def _loop(self, writer, with_hooks) -> int:
        """Runs the steps; returns the global step reached."""
        cfg, gs = self.cfg, self.p.global_step
        step = int(gs.numpy())
        last = self.max_steps if self.max_steps is not None else (step + self.steps if self.steps else None)
        hooks = self.hooks + self._spec_hooks() + self._own_hooks(writer)
        runner = hooks_lib.HookRunner(hooks, self.graph, {"global_step": step})
        runner.begin()
        loss = float("nan")
        while last is None or step < last:
            n = 1 if with_hooks else cfg.steps_per_execution
            for due in (h.steps_until_due(step) for h in hooks):
                n = min(n, due) if due is not None else n
            if last is not None:
                n = min(n, last - step)
            fetch = runner.before_run()
            try:
                if with_hooks:
                    loss_t, count_t, values = self._run_chunk(self.it, fetch)
                else:  # no hook needs every step, or ParameterServerStrategy (where the resolver has no graph)
                    (loss_t, count_t), values = self._run_chunk(self.it, tf.constant(n)), ()
            except tf.errors.OutOfRangeError:
                # The steps that ran before the get_next that raised: none where only the chunk's first
                # get_next can raise; an endless-input chunk counts them (a repeated generator reports
                # infinite input and can still end). The failed step's increment of the global step, which
                # may have run (gs.assign_add(1) in a train_op has no data dependency), is undone.
                ran = int(self.p.steps_done.numpy()) if self.endless and not with_hooks else 0
                step += ran
                gs.assign(step)
                log.info("input exhausted at step %d", step)
                break
            except tf.errors.InvalidArgumentError as e:
                if _NONFINITE not in str(e):
                    raise
                raise basic_hooks.NanLossDuringTrainingError(
                    f"loss is {'nan' if 'NaN' in str(e) else 'inf'} at step {int(gs.numpy())}; lower the learning "
                    "rate or check the input for NaN/inf"
                ) from None
            except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError) as e:
                if not self.cfg.cluster_spec:
                    raise
                raise ClusterError(
                    f"{self.cfg.task_type} {self.cfg.task_id}: a task of the training cluster stopped answering at "
                    f"step {step} ({str(e).splitlines()[0][:300]}). Restart the cluster's tasks: training resumes "
                    f"from the last checkpoint, {self.est.latest_checkpoint() or 'none yet'}."
                ) from e
            new_step = int(gs.numpy())
            if new_step == step:
                raise ConfigError(
                    "the model_fn's train_op did not increment the global step; include "
                    "tf.compat.v1.train.get_global_step().assign_add(1) in train_op"
                )
            step, loss = new_step, float(np.asarray(loss_t))
            self.examples += int(np.asarray(count_t))
            if runner.after_run({"loss": loss, "global_step": step}, values):
                break
            if stop_lib.requested():  # SIGTERM or Ctrl-C: a checkpoint at the step reached (end()), then stop
                break
        runner.end()
        if stop_lib.requested():
            raise Stopped(
                f"training stopped by {stop_lib.requested()} at step {step}; the checkpoint "
                f"{self.est.latest_checkpoint()} is where it resumes"
            )
        log.info("training stopped at step %d, loss = %.5g", step, loss)
        return step

    def _scheduled(self, chunk):
        """Under ParameterServerStrategy: split the n steps over the workers, schedule, wait for all."""
        coordinator = _coordinator(self.p.strategy)
        workers = max(1, self.cfg.num_worker_replicas - (1 if self.cfg.cluster_spec.get("chief") else 0))

        def run(iterator, n):
            n = int(n)
            shares = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
            remotes = [coordinator.schedule(chunk, args=(iterator, tf.constant(k))) for k in shares if k]
            coordinator.join()
            results = [r.fetch() for r in remotes]
            return results[-1][0], sum(int(r[1]) for r in results)

        return run


_teardowns: list[threading.Thread] = []


def _let_go(held: list) -> None:
    """Drops what `held` holds (the input's iterator, of which the caller keeps no other reference) on a
    thread of its own, so that the call returns without waiting for it.

    Deleting a tf.data iterator stops its autotuning thread, which took 0.55-0.6 s in about half the
    deletions on 2 cores (bench/train_throughput.py's input, and plain tf.data alike). Not a daemon
    thread: at exit the interpreter waits for it rather than killing it inside a TensorFlow call.
    While the interpreter shuts down (a predict generator still open at exit is closed then), no
    thread can start (Python 3.11's start() waits for ever): drop it here.
    """
    if sys.is_finalizing():
        held.clear()
        return
    thread = threading.Thread(target=held.clear, name="tfpipe-input-teardown")
    thread.start()
    _teardowns.append(thread)


def _await_teardowns() -> None:
    """Waits for the teardowns _let_go started: a new iterator must not overlap an old one, which may
    hold something the input allows only once (a generator's open file or lock, a tf.data file cache
    being written)."""
    while True:
        try:
            thread = _teardowns.pop()
        except IndexError:  # none left (another thread may have taken the last)
            return
        thread.join()


def _chunk_fn(step, accumulate, steps_done=None):
    """A tf.function running up to `n` steps over an iterator, folding their outputs with `accumulate`.

    With `steps_done` (a variable), the input is endless (a repeated dataset): each step is a plain
    get_next, and `steps_done` counts the steps run, for the rare endless input that still ends.
    """

    def counted(acc):
        with tf.control_dependencies(tf.nest.flatten(acc)):
            steps_done.assign_add(1)
        return acc

    @tf.function
    def endless_chunk(iterator, n):
        # The optional and the cond around each step of `chunk` below cost a sixth of a linear
        # model's step; an endless input does without them.
        steps_done.assign(0)
        acc = counted(step(next(iterator)))
        for _ in tf.range(n - 1):
            acc = counted(accumulate(acc, step(next(iterator))))
        return acc

    @tf.function
    def chunk(iterator, n):
        # The first step sits outside the loop: tf.function may create variables only there. Its
        # get_next raises OutOfRangeError at the end of input; later steps stop on an empty optional.
        acc = step(next(iterator))
        for _ in tf.range(n - 1):
            nxt = iterator.get_next_as_optional()
            if not nxt.has_value():
                break
            acc = accumulate(acc, step(nxt.get_value()))
        return acc

    return endless_chunk if steps_done is not None else chunk


def _step_with_fetches(step):
    """One step that also returns the model_fn tensors hooks ask for (op index, output index pairs).

    Traced with fetch=() once the variables exist (a trace that creates them adds ops): the hooks
    come from that trace, whose ops line up one to one with every later trace's.
    """

    @tf.function
    def one_step(iterator, fetch):
        out = step(next(iterator))
        ops = tf.compat.v1.get_default_graph().get_operations()
        return (*out, tuple(ops[i].outputs[j] for i, j in fetch or ()))

    return one_step


def _run_eval(program, iterator, has_labels, steps, path, hooks) -> dict:
    strategy = program.strategy

    def replica_fn(features, labels):
        spec = program.call_model_fn(features, labels)
        updates = {k: v[1] for k, v in spec.eval_metric_ops.items() if isinstance(v, tuple)}
        return tf.cast(spec.loss, tf.float32), updates

    def step(batch):
        features, labels = (batch[0], batch[1]) if has_labels else (batch[0], None)
        loss, updates = strategy.run(replica_fn, args=(features, labels))
        updates = {k: strategy.experimental_local_results(v)[0] for k, v in updates.items()}
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None), tf.constant(1, tf.int64), updates

    # Sum the losses and count the batches; v1 metrics' update ops give their value after the last step.
    chunk = program.function(
        ("chunk", has_labels), lambda: _chunk_fn(step, lambda acc, new: (acc[0] + new[0], acc[1] + new[1], new[2]))
    )

    one_step = graph = None
    with strategy.scope():
        try:
            chunk.get_concrete_function(iterator, tf.constant(1))
            if hooks or program.spec.evaluation_hooks:
                one_step = program.function(("step", has_labels), lambda: _step_with_fetches(step))
                graph = one_step.get_concrete_function(iterator, ()).graph
        except tf.errors.OutOfRangeError as e:
            raise InputError("input_fn produced no data to evaluate on") from e
    program.sync(path)
    spec = program.spec
    for var in program.local_vars:
        var.assign(tf.zeros_like(var))
    for value in spec.eval_metric_ops.values():
        if is_metric_object(value):
            value.reset_state()
    global_step = int(program.global_step.numpy())
    runner = hooks_lib.HookRunner(hooks + list(spec.evaluation_hooks), graph, {"global_step": global_step})
    total, batches, last_updates = 0.0, 0, {}
    with hooks_lib.global_step_registered(program.global_step):
        runner.begin()
        while steps is None or batches < steps:
            n = 100 if steps is None else min(100, steps - batches)
            try:
                if one_step is None:
                    t, b, upd = chunk(iterator, tf.constant(n))
                else:
                    fetch = runner.before_run()
                    t, b, upd, values = one_step(iterator, fetch)
            except tf.errors.OutOfRangeError:
                break
            total, batches, last_updates = total + float(t), batches + int(b), upd
            if one_step is not None:
                if runner.after_run({"loss": float(t), "global_step": global_step}, values):
                    break
            elif int(b) < n:
                break
        runner.end()
    if batches == 0:
        raise InputError("input_fn produced no data to evaluate on")
    if int(program.global_step.numpy()) != global_step:
        # tf.estimator's graph ran only the ops evaluation fetched; a tf.function runs every stateful op
        # it traced, so a train_op built in EVAL mode trained on the evaluation data.
        raise ConfigError(
            "the model_fn's EVAL mode advanced the global step: it builds a train_op (an optimizer's "
            "minimize or apply_gradients) in EVAL mode, and TF 2 runs it during evaluation. Build the "
            "optimizer and train_op only when mode == ModeKeys.TRAIN."
        )
    results = {"loss": np.float32(total / batches), "global_step": np.int64(program.global_step.numpy())}
    for key, value in spec.eval_metric_ops.items():
        results[key] = value.result().numpy() if is_metric_object(value) else last_updates[key].numpy()
    return results
