"""Calling user functions the tf.estimator way: by the argument names their signatures declare."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import tensorflow as tf

from components.errors import ConfigError, InputError


def fn_args(fn) -> tuple[str, ...]:
    """Names of the arguments `fn` accepts, seeing through functools.partial and callable objects."""
    if isinstance(fn, functools.partial):
        bound = set(fn.keywords or {})
        return tuple(a for a in fn_args(fn.func)[len(fn.args) :] if a not in bound)
    # B004: the bound __call__ is fetched to read its signature; this is not a callable() test.
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", fn)  # noqa: B004
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY))


def call_with_known_args(fn, available: dict, required: tuple[str, ...] = ()):
    """Calls `fn` with the entries of `available` its signature names."""
    names = fn_args(fn)
    for name in required:
        if name not in names:
            raise ConfigError(f"{getattr(fn, '__name__', fn)!r} must take an argument named {name!r}")
    return fn(**{k: v for k, v in available.items() if k in names})


def _is_features(value) -> bool:
    if isinstance(value, (tf.Tensor, tf.SparseTensor, tf.RaggedTensor, np.ndarray)):
        return True
    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) for k in value)


def _is_features_spec(spec) -> bool:
    if isinstance(spec, (tf.TensorSpec, tf.SparseTensorSpec, tf.RaggedTensorSpec)):
        return True
    return isinstance(spec, dict) and bool(spec) and all(isinstance(k, str) for k in spec)


def to_dataset(result, input_fn, repeat_tensors: bool = True) -> tuple[tf.data.Dataset, bool]:
    """Normalises an input_fn's result to a Dataset of `(features, labels)` or `(features,)` and a has-labels flag.

    Tensors returned directly form one batch; training repeats it forever (as graph tensors did
    under tf.estimator's session.run), evaluation and prediction see it once.
    """
    name = getattr(input_fn, "__name__", repr(input_fn))
    if isinstance(result, tf.data.Dataset):
        spec = result.element_spec
        if isinstance(spec, tuple) and len(spec) == 2 and _is_features_spec(spec[0]):
            return result, True
        if _is_features_spec(spec):
            return result.map(lambda f: (f,)), False
        raise InputError(
            f"input_fn {name!r} returned a Dataset whose elements are {spec}; each element must be "
            "(features, labels) or features, where features is a Tensor or a dict of str -> Tensor"
        )
    if isinstance(result, tuple) and len(result) == 2 and _is_features(result[0]):
        ds, has_labels = tf.data.Dataset.from_tensors(result), True
    elif _is_features(result):
        ds, has_labels = tf.data.Dataset.from_tensors((result,)), False
    else:
        ds = None
    if ds is not None:
        return (ds.repeat() if repeat_tensors else ds), has_labels
    raise InputError(
        f"input_fn {name!r} returned {type(result).__name__}; it must return a tf.data.Dataset, a "
        "(features, labels) tuple, or features (a Tensor or a dict of str -> Tensor)"
    )


def batch_size_of(features) -> tf.Tensor:
    """The batch dimension of the first feature, as int64."""
    first = tf.nest.flatten(features, expand_composites=False)[0]
    if isinstance(first, tf.SparseTensor):
        return tf.cast(first.dense_shape[0], tf.int64)
    if isinstance(first, tf.RaggedTensor):
        return tf.cast(first.nrows(), tf.int64)
    return tf.cast(tf.shape(first)[0], tf.int64)
