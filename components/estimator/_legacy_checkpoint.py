"""Name-based checkpoints, as tf.estimator (TF1's `Saver`) wrote them, read into tfpipe's models.

tf.estimator 2.15 saved each variable under its graph name (`linear/linear_model/age/weights`,
`dnn/hiddenlayer_0/kernel`, `global_step`) and each optimizer slot under the optimizer's name scope
(`training/Adagrad/dnn/hiddenlayer_0/kernel/accumulator`). tfpipe keeps those names as the object
paths of the premade models' variables, so a variable's tf.estimator name is its path. Where tfpipe
keeps one tf.estimator variable in several (the DNN's first-layer kernel, split per indicator
column), the module that holds them says how, with a `legacy_layout()` method:
{local name in tf.estimator: [(variable, the part of the stored value it holds)]}.

Restoring one is what evaluate / predict / export / train do with a model_dir whose latest
checkpoint is name-based; the next save of train() writes tfpipe's own object-based format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from components.errors import ConfigError
from components.estimator._compat import trackable_children
from components.estimator.optimizers import is_optimizer

log = logging.getLogger("tfpipe.estimator")
GLOBAL_STEP = "global_step"
_OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


class Target(NamedTuple):
    """A variable and the part of a stored tf.estimator variable it holds (`select`; None: all of it)."""

    variable: Any
    select: Callable | None = None


def is_name_based(reader_or_path) -> bool:
    """True for a checkpoint written by name (TF1's Saver, so tf.estimator), not by object graph."""
    reader = tf.train.load_checkpoint(reader_or_path) if isinstance(reader_or_path, str) else reader_or_path
    return not reader.has_tensor(_OBJECT_GRAPH)


def _is_variable(obj) -> bool:
    return isinstance(obj, tf.Variable) or (hasattr(obj, "_serialize_to_tensors") and hasattr(obj, "assign"))


def legacy_variables(root, exclude=()) -> tuple[dict[str, list[Target]], list]:
    """({tf.estimator name: [Target]}, optimizers) for the variables under `root`.

    A variable's name is its object path from `root` (breadth first, as checkpoints name them), or
    what a module's legacy_layout() says. Optimizers are returned apart, not walked; objects in
    `exclude` (the global step, the creation-order copy of a model_fn's variables) are skipped.
    """
    seen = {id(root)} | {id(e) for e in exclude if e is not None}
    out: dict[str, list[Target]] = {}
    optimizers: list = []
    queue = [("", root)]
    while queue:
        prefix, obj = queue.pop(0)
        layout = getattr(obj, "legacy_layout", None)
        if callable(layout):
            for name, targets in layout().items():
                out[prefix + name] = list(targets)
                seen.update(id(t.variable) for t in targets)
        for name, child in trackable_children(obj).items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            if is_optimizer(child):
                optimizers.append(child)
            elif _is_variable(child):
                out[prefix + name] = [Target(child)]
            else:
                queue.append((prefix + name + "/", child))
    return out, optimizers


def candidates(name: str, targets: list[Target]) -> list[str]:
    """The names a variable may have had in tf.estimator's graph: its path here, then (for a model_fn's
    own checkpoint object, whose paths are its own) the variable's name and a Keras 3 variable's path."""
    out = [name]
    if len(targets) == 1:
        var = targets[0].variable
        for other in (getattr(var, "name", None), getattr(var, "path", None)):
            if isinstance(other, str):
                other = other.split(":")[0]
                if other not in out:
                    out.append(other)
    return out


def find_key(names: list[str], stored, suffix: bool = True) -> str | None:
    """The stored key named by the first of `names` found: exactly, else (with `suffix`) the only key
    ending in '/<name>' (a slot or a variable made under a name scope, such as 'training/Adagrad/')."""
    for name in names:
        if name in stored:
            return name
    if suffix:
        for name in names:
            matches = [k for k in stored if k.endswith("/" + name)]
            if len(matches) == 1:
                return matches[0]
    return None


def part(target: Target, value, key: str, path: str):
    """The part of the stored `value` (of `key`) that `target`'s variable holds, as a numpy array."""
    if target.select is None:
        return value
    try:
        return np.asarray(target.select(value))
    except (tf.errors.InvalidArgumentError, IndexError, ValueError) as e:
        raise ConfigError(
            f"checkpoint {path}: {key} has shape {tuple(np.shape(value))}, which does not hold the rows the "
            f"model's variable takes from it ({str(e).splitlines()[0][:200]}). Did the model's input columns change?"
        ) from e


def _value(reader, key: str, target: Target, path: str):
    return part(target, reader.get_tensor(key), key, path)


def _assign(target: Target, value, key: str, path: str) -> None:
    var = target.variable
    if tuple(np.shape(value)) != tuple(var.shape):
        raise ConfigError(
            f"checkpoint {path}: {key} has shape {tuple(np.shape(value))} but the model's variable has "
            f"{tuple(var.shape)}. Did the model change? Train into a new model_dir, or warm-start the "
            "variables that still fit (WarmStartSettings(vars_to_warm_start=...))"
        )
    var.assign(tf.cast(value, var.dtype))


def restore(root, global_step, path: str, exclude=()) -> None:
    """Assigns the variables under `root`, the global step and the optimizers' slots from the name-based
    checkpoint `path`. Every trainable variable must be there; slots, and non-trainable variables, that are
    not stay as they are, and one log line names them."""
    reader = tf.train.load_checkpoint(path)
    stored = reader.get_variable_to_shape_map()
    variables, optimizers = legacy_variables(root, [global_step, *exclude])
    plan, missing, fresh = [], [], []
    for name, targets in variables.items():
        key = find_key(candidates(name, targets), stored)
        if key is None:
            if any(t.variable.trainable for t in targets):
                missing.append(name)
            else:
                fresh.append(name)
            continue
        plan.append((key, targets))
    if missing:
        raise ConfigError(
            f"checkpoint {path} (name-based, as tf.estimator wrote them) does not match the model built by "
            f"model_fn: it has no variable {missing}; it has {sorted(stored)[:30]}. Did the model change? "
            "Train into a new model_dir, or use warm_start_from with var_name_to_prev_var_name"
        )
    for key, targets in plan:
        for target in targets:
            _assign(target, _value(reader, key, target, path), key, path)
    step = int(reader.get_tensor(GLOBAL_STEP)) if GLOBAL_STEP in stored else 0
    global_step.assign(step)
    slots = 0
    for optimizer in optimizers:
        done, left = restore_slots(optimizer, variables, reader, stored, path, step)
        slots += done
        fresh.extend(left)
    log.info(
        "restored %s, a name-based checkpoint as tf.estimator wrote them (global step %d, %d variable(s), "
        "%d optimizer slot(s)); the next save writes tfpipe's format.%s",
        path,
        step,
        len(plan),
        slots,
        f" Not in it, so left as initialized (fresh): {fresh}" if fresh else "",
    )


def restore_slots(optimizer, variables: dict, reader, stored, path: str, step: int) -> tuple[int, list[str]]:
    """Assigns `optimizer`'s slots of the variables from '<name>/<slot>' keys (under any scope); sets
    its step count to the global step, as tf.estimator's optimizers used the global step. Returns
    (slots assigned, names of slots not in the checkpoint)."""
    if not hasattr(optimizer, "get_slot_names"):  # a Keras 3 optimizer: its state has other names
        return 0, [f"{getattr(optimizer, 'name', type(optimizer).__name__)} (all of its state)"]
    if hasattr(optimizer, "iterations"):
        optimizer.iterations.assign(step)
    done, fresh = 0, []
    for name, targets in variables.items():
        for slot_name in optimizer.get_slot_names():
            slots = []
            for target in targets:
                try:
                    slots.append(Target(optimizer.get_slot(target.variable, slot_name), target.select))
                except (KeyError, ValueError):  # the optimizer has no slots for this variable
                    break
            if len(slots) != len(targets):
                continue
            key = find_key([f"{name}/{slot_name}"], stored)
            if key is None:
                fresh.append(f"{name}/{slot_name}")
                continue
            for slot in slots:
                _assign(slot, _value(reader, key, slot, path), key, path)
            done += 1
    return done, fresh
