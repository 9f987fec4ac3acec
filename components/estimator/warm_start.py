"""WarmStartSettings: start a new model from some variables of a checkpoint or a SavedModel."""

from __future__ import annotations

import logging
import os
import re
from typing import NamedTuple

import tensorflow as tf
from tensorflow.python.trackable.trackable_utils import escape_local_name

from components.errors import ConfigError
from components.estimator.optimizers import is_optimizer

log = logging.getLogger("tfpipe.estimator")
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


class WarmStartSettings(NamedTuple):
    """What to warm-start from (tf.estimator.WarmStartSettings).

    ckpt_to_initialize_from: a checkpoint file prefix, a model_dir, or an exported SavedModel folder.
    vars_to_warm_start: a regex over variable names (get_variable_names' names), matching trainable
        variables only; or a list of regexes, matching every model variable (batch-norm statistics too).
    var_name_to_prev_var_name: {new name: name in the checkpoint} for renamed variables.
    """

    ckpt_to_initialize_from: str
    vars_to_warm_start: object = ".*"
    var_name_to_vocab_info: dict | None = None
    var_name_to_prev_var_name: dict | None = None


def as_settings(warm_start_from) -> WarmStartSettings:
    if isinstance(warm_start_from, WarmStartSettings):
        settings = warm_start_from
    elif isinstance(warm_start_from, (str, bytes, os.PathLike)):
        settings = WarmStartSettings(os.fsdecode(warm_start_from))
    else:
        raise ConfigError(f"warm_start_from must be a path or a WarmStartSettings, got {type(warm_start_from).__name__}")
    if settings.var_name_to_vocab_info:
        raise ConfigError("var_name_to_vocab_info (remapping rows to a new vocabulary) is not supported; "
                          "keep the vocabulary or leave those variables out of vars_to_warm_start")
    return settings


def _checkpoint_path(location: str) -> str:
    location = os.fsdecode(location)
    if tf.io.gfile.exists(os.path.join(location, "saved_model.pb")) or \
            tf.io.gfile.exists(os.path.join(location, "saved_model.pbtxt")):
        return os.path.join(location, "variables", "variables")
    found = tf.train.latest_checkpoint(location) if tf.io.gfile.isdir(location) else location
    if not found:
        raise ConfigError(f"warm_start_from {location!r} holds no checkpoint or SavedModel")
    return found


def model_variables(root, exclude) -> dict:
    """{checkpoint name: variable} under `root`, breadth first as checkpoints name them; optimizers left out."""
    seen, out = {id(root)}, {}
    queue = [("", root)]
    while queue:
        prefix, obj = queue.pop(0)
        for name, child in obj._trackable_children().items():
            if id(child) in seen or is_optimizer(child) or any(child is e for e in exclude):
                continue
            seen.add(id(child))
            path = prefix + escape_local_name(name)
            if isinstance(child, tf.Variable) or hasattr(child, "_serialize_to_tensors") and hasattr(child, "assign"):
                out[path] = child
            else:
                queue.append((path + "/", child))
    return out


def _selected(variables: dict, spec) -> dict:
    if isinstance(spec, str):
        pattern = re.compile(spec)
        return {n: v for n, v in variables.items() if v.trainable and pattern.match(n)}
    if isinstance(spec, (list, tuple)):
        if all(isinstance(s, str) for s in spec):
            patterns = [re.compile(s) for s in spec]
            return {n: v for n, v in variables.items() if any(p.match(n) for p in patterns)}
        wanted = {id(v) for v in spec}
        return {n: v for n, v in variables.items() if id(v) in wanted}
    if spec is None:
        return {}
    raise ConfigError(f"vars_to_warm_start must be a regex, a list of regexes or of variables, or None; got {spec!r}")


def warm_start(root, global_step, warm_start_from) -> None:
    """Assigns the selected variables of `root` from the settings' checkpoint (not the step, not optimizers)."""
    settings = as_settings(warm_start_from)
    path = _checkpoint_path(settings.ckpt_to_initialize_from)
    reader = tf.train.load_checkpoint(path)
    stored = [k[: -len(_SUFFIX)] for k in reader.get_variable_to_shape_map() if k.endswith(_SUFFIX)]
    renames = settings.var_name_to_prev_var_name or {}
    chosen = _selected(model_variables(root, [global_step]), settings.vars_to_warm_start)
    missing, done = [], 0
    for name, var in chosen.items():
        source = renames.get(name, name)
        # An exported SavedModel keeps the same names one level down (checkpoint_root/...).
        matches = [k for k in stored if k == source or k.endswith("/" + source)]
        if len(matches) != 1:
            missing.append(source)
            continue
        value = reader.get_tensor(matches[0] + _SUFFIX)
        if tuple(value.shape) != tuple(var.shape):
            raise ConfigError(f"warm start: {name} has shape {tuple(var.shape)} but {matches[0]} in {path} has "
                              f"{tuple(value.shape)}; leave it out of vars_to_warm_start")
        var.assign(value)
        done += 1
    if missing:
        raise ConfigError(f"warm start: {path} has no (or more than one) variable named {missing}; it has "
                          f"{sorted(stored)[:20]}. Narrow vars_to_warm_start or map names with var_name_to_prev_var_name")
    log.info("warm-started %d variable(s) from %s", done, path)
