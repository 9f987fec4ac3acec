"""Serving input receivers and export outputs, as in tf.estimator.export.

A serving_input_receiver_fn is called inside a graph built for export; the placeholders it
creates become the inputs of the SavedModel's signatures.
"""

from __future__ import annotations

import collections

import tensorflow as tf

from components.errors import ConfigError

SINGLE_FEATURE_DEFAULT_NAME = "feature"
SINGLE_RECEIVER_DEFAULT_NAME = "input"


def _as_tensor_dict(value, default_key: str, what: str) -> dict:
    if isinstance(value, (tf.Tensor, tf.SparseTensor)):
        return {default_key: value}
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"ServingInputReceiver {what} must be a Tensor or a non-empty dict of Tensors, got {type(value).__name__}")
    for key, tensor in value.items():
        if not isinstance(key, str):
            raise ConfigError(f"ServingInputReceiver {what} keys must be strings, got {key!r}")
        if not isinstance(tensor, (tf.Tensor, tf.SparseTensor, tf.RaggedTensor)):
            raise ConfigError(f"ServingInputReceiver {what}[{key!r}] must be a Tensor, got {type(tensor).__name__}")
    return dict(value)


class ServingInputReceiver(
    collections.namedtuple("ServingInputReceiver",
                           ["features", "receiver_tensors", "receiver_tensors_alternatives", "trackables"])
):
    """The features a model_fn gets at serving time and the tensors a client feeds.

    `trackables` (a tfpipe addition) lists TF2 objects the receiver's graph uses, such as a
    tf.Transform layer; the SavedModel keeps them so its signatures can run on their own.
    """

    def __new__(cls, features, receiver_tensors, receiver_tensors_alternatives=None, trackables=None):
        features = _as_tensor_dict(features, SINGLE_FEATURE_DEFAULT_NAME, "features")
        receiver_tensors = _as_tensor_dict(receiver_tensors, SINGLE_RECEIVER_DEFAULT_NAME, "receiver_tensors")
        return super().__new__(cls, features, receiver_tensors, receiver_tensors_alternatives, list(trackables or []))


def build_parsing_serving_input_receiver_fn(feature_spec, default_batch_size=None):
    """A receiver fn that takes serialized tf.train.Examples under the key `examples`."""
    if not isinstance(feature_spec, dict) or not feature_spec:
        raise ConfigError("build_parsing_serving_input_receiver_fn needs a non-empty feature_spec dict "
                          "(tf.feature_column.make_parse_example_spec(columns) builds one)")

    def serving_input_receiver_fn():
        serialized = tf.compat.v1.placeholder(tf.string, shape=[default_batch_size], name="input_example_tensor")
        features = tf.io.parse_example(serialized, feature_spec)
        return ServingInputReceiver(features, {"examples": serialized})

    return serving_input_receiver_fn


def build_raw_serving_input_receiver_fn(features, default_batch_size=None):
    """A receiver fn whose inputs are the raw features, keyed by feature name.

    `features` maps names to example tensors (or TensorSpecs); their batch dimension is replaced
    by `default_batch_size`.
    """
    if not isinstance(features, dict) or not features:
        raise ConfigError("build_raw_serving_input_receiver_fn needs a non-empty dict of feature name -> Tensor")

    def serving_input_receiver_fn():
        receivers = {}
        for name, t in features.items():
            shape = [default_batch_size] + list(t.shape[1:]) if t.shape.rank else [default_batch_size]
            receivers[name] = tf.compat.v1.placeholder(t.dtype, shape=shape, name=name)
        return ServingInputReceiver(dict(receivers), receivers)

    return serving_input_receiver_fn


class ClassificationOutput:
    """The classification signature: string `inputs` -> `classes` and/or `scores`."""

    method = "classification"

    def __init__(self, scores=None, classes=None):
        if scores is None and classes is None:
            raise ConfigError("ClassificationOutput needs scores, classes or both")
        self.scores, self.classes = scores, classes

    def as_outputs(self) -> dict:
        out = {}
        if self.classes is not None:
            out["classes"] = self.classes
        if self.scores is not None:
            out["scores"] = self.scores
        return out


class RegressionOutput:
    """The regression signature: string `inputs` -> float `outputs`."""

    method = "regression"

    def __init__(self, value):
        self.value = value

    def as_outputs(self) -> dict:
        return {"outputs": self.value}


class PredictOutput:
    """The predict signature: the receiver tensors -> a dict of outputs."""

    method = "predict"

    def __init__(self, outputs):
        self.outputs = outputs if isinstance(outputs, dict) else {"output": outputs}

    def as_outputs(self) -> dict:
        return dict(self.outputs)
