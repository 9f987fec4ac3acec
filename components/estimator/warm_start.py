"""WarmStartSettings: start a new model from some variables of a checkpoint or a SavedModel."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from components.errors import ConfigError
from components.estimator import _legacy_checkpoint
from components.estimator._compat import escape_local_name, trackable_children
from components.estimator.optimizers import is_optimizer

log = logging.getLogger("tfpipe.estimator")


class VocabInfo(NamedTuple):
    """How a variable's rows (axis 0) or columns (axis 1) map from an old vocabulary to a new one.

    Entries of the new vocabulary (its first new_vocab_size lines) found in the old one (its first
    old_vocab_size lines, -1 for all) take the old row; the others, and the num_oov_buckets OOV
    rows, take backup_initializer's values (zeros without one).
    """

    new_vocab: str
    new_vocab_size: int
    num_oov_buckets: int
    old_vocab: str
    old_vocab_size: int = -1
    backup_initializer: Callable[..., Any] | None = None
    axis: int = 0


class WarmStartSettings(NamedTuple):
    """What to warm-start from (tf.estimator.WarmStartSettings).

    ckpt_to_initialize_from: a checkpoint file prefix, a model_dir, or an exported SavedModel folder.
    vars_to_warm_start: a regex over variable names (get_variable_names' names), matching trainable
        variables only; or a list of regexes, matching every model variable (batch-norm statistics too).
    var_name_to_prev_var_name: {new name: name in the checkpoint} for renamed variables.
    var_name_to_vocab_info: {name: VocabInfo} for variables whose rows follow a vocabulary that changed.
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
        raise ConfigError(
            f"warm_start_from must be a path or a WarmStartSettings, got {type(warm_start_from).__name__}"
        )
    for name, info in (settings.var_name_to_vocab_info or {}).items():
        if not isinstance(info, VocabInfo):
            raise ConfigError(f"var_name_to_vocab_info[{name!r}] must be a VocabInfo, got {type(info).__name__}")
        if info.axis not in (0, 1):
            raise ConfigError(f"VocabInfo.axis must be 0 or 1, got {info.axis!r}")
    return settings


def _vocab(path: str, size: int) -> list[str]:
    with tf.io.gfile.GFile(path) as f:
        tokens = [line.rstrip("\n") for line in f]
    if size is not None and size > len(tokens):
        raise ConfigError(f"VocabInfo: {path} has {len(tokens)} entries, fewer than the size {size} given")
    return tokens if size is None or size < 0 else tokens[:size]


def _remapped(old, shape, dtype, info: VocabInfo):
    """The warm-start value of a variable of `shape` whose axis follows info.new_vocab, from `old`."""
    new_tokens = _vocab(info.new_vocab, info.new_vocab_size)
    old_index = {t: i for i, t in enumerate(_vocab(info.old_vocab, info.old_vocab_size))}
    if shape[info.axis] != len(new_tokens) + info.num_oov_buckets:
        raise ConfigError(
            f"VocabInfo: the variable has {shape[info.axis]} entries along axis {info.axis}, not "
            f"new_vocab_size + num_oov_buckets = {len(new_tokens) + info.num_oov_buckets}"
        )
    init = info.backup_initializer or tf.zeros_initializer()
    value = np.array(init(shape, dtype=dtype), copy=True)
    moved_old, moved_new = np.moveaxis(old, info.axis, 0), np.moveaxis(value, info.axis, 0)  # views
    if moved_old.shape[1:] != moved_new.shape[1:]:
        raise ConfigError(
            f"VocabInfo: the checkpoint's variable has shape {old.shape}, the new one {shape}; "
            f"only axis {info.axis} may differ"
        )
    for i, token in enumerate(new_tokens):
        j = old_index.get(token)
        if j is not None and j < moved_old.shape[0]:
            moved_new[i] = moved_old[j]
    return value


def _checkpoint_path(location: str) -> str:
    location = os.fsdecode(location)
    if tf.io.gfile.exists(os.path.join(location, "saved_model.pb")) or tf.io.gfile.exists(
        os.path.join(location, "saved_model.pbtxt")
    ):
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
        for name, child in trackable_children(obj).items():
            if id(child) in seen or is_optimizer(child) or any(child is e for e in exclude):
                continue
            seen.add(id(child))
            path = prefix + escape_local_name(name)
            if isinstance(child, tf.Variable) or (hasattr(child, "_serialize_to_tensors") and hasattr(child, "assign")):
                out[path] = child
            else:
                queue.append((path + "/", child))
    return out


def _selected(variables: dict, spec, aliases: dict | None = None) -> dict:
    """The variables `spec` chooses, by their names or their `aliases` ({id(variable): tf.estimator's name},
    where that differs: the parts of the DNN's first-layer kernel are all 'dnn/hiddenlayer_0/kernel')."""
    aliases = aliases or {}

    def names(n, v):
        return (n, aliases[id(v)]) if id(v) in aliases else (n,)

    if isinstance(spec, str):
        pattern = re.compile(spec)
        return {n: v for n, v in variables.items() if v.trainable and any(pattern.match(a) for a in names(n, v))}
    if isinstance(spec, (list, tuple)):
        if all(isinstance(s, str) for s in spec):
            patterns = [re.compile(s) for s in spec]
            return {n: v for n, v in variables.items() if any(p.match(a) for p in patterns for a in names(n, v))}
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
    name_based = _legacy_checkpoint.is_name_based(reader)
    # tf.estimator's name of each variable, and the part of that variable it holds (see _legacy_checkpoint).
    legacy = {
        id(t.variable): (name, t)
        for name, targets in _legacy_checkpoint.legacy_variables(root, [global_step])[0].items()
        for t in targets
    }
    if name_based:
        stored = list(reader.get_variable_to_shape_map())
        key_of = {k: k for k in stored}
    else:
        # Every object path that reaches a variable (a SavedModel may key it by another one, such as
        # state_variables/<i>, and reach it along checkpoint_root/<its path> too).
        from components.estimator.estimator import _variable_paths  # estimator imports this module

        key_of = {p: k for k, paths in _variable_paths(path, all_paths=True).items() for p in paths}
        stored = sorted(key_of)
    renames = settings.var_name_to_prev_var_name or {}
    variables = model_variables(root, [global_step])
    aliases = {id(v): legacy[id(v)][0] for n, v in variables.items() if id(v) in legacy and legacy[id(v)][0] != n}
    chosen = _selected(variables, settings.vars_to_warm_start, aliases)
    missing, done = [], 0
    for name, var in chosen.items():
        if name_based:  # tf.estimator's checkpoint: its names are exact
            old, target = legacy.get(id(var), (name, _legacy_checkpoint.Target(var)))
            source = str(renames.get(name, renames.get(old, old)))
            key = _legacy_checkpoint.find_key(
                [source] if source != old else _legacy_checkpoint.candidates(old, [target]), stored, suffix=False
            )
            matches = [key] if key is not None else []
        else:
            source, target = renames.get(name, name), None
            # An exported SavedModel keeps the same names one level down (checkpoint_root/...).
            found = {key_of[k]: k for k in stored if k == source or k.endswith("/" + source)}
            matches = sorted(found.values())
        if len(matches) != 1:
            missing.append(source)
            continue
        value = reader.get_tensor(key_of[matches[0]])
        if target is not None:
            value = _legacy_checkpoint.part(target, value, matches[0], path)
        info = (settings.var_name_to_vocab_info or {}).get(name)
        if info is not None:
            value = _remapped(value, tuple(var.shape), var.dtype, info)
        if tuple(value.shape) != tuple(var.shape):
            raise ConfigError(
                f"warm start: {name} has shape {tuple(var.shape)} but {matches[0]} in {path} has "
                f"{tuple(value.shape)}{' (the part of it this variable holds)' if target and target.select else ''}; "
                "leave it out of vars_to_warm_start"
            )
        var.assign(value)
        done += 1
    if missing:
        raise ConfigError(
            f"warm start: {path} has no (or more than one) variable named {missing}; it has "
            f"{sorted(stored)[:20]}. Narrow vars_to_warm_start or map names with var_name_to_prev_var_name"
        )
    log.info("warm-started %d variable(s) from %s", done, path)
