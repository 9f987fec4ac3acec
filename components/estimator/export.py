"""Serving input receivers and export outputs, as in tf.estimator.export.

A serving_input_receiver_fn is called inside a graph built for export; the placeholders it
creates become the inputs of the SavedModel's signatures.
"""

from __future__ import annotations

import abc
import collections

import tensorflow as tf

from components.errors import ConfigError

SINGLE_FEATURE_DEFAULT_NAME = "feature"
SINGLE_RECEIVER_DEFAULT_NAME = "input"


def _as_tensor_dict(value, default_key: str, what: str) -> dict:
    if isinstance(value, (tf.Tensor, tf.SparseTensor)):
        return {default_key: value}
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f"ServingInputReceiver {what} must be a Tensor or a non-empty dict of Tensors, got {type(value).__name__}"
        )
    for key, tensor in value.items():
        if not isinstance(key, str):
            raise ConfigError(f"ServingInputReceiver {what} keys must be strings, got {key!r}")
        if not isinstance(tensor, (tf.Tensor, tf.SparseTensor, tf.RaggedTensor)):
            raise ConfigError(f"ServingInputReceiver {what}[{key!r}] must be a Tensor, got {type(tensor).__name__}")
    return dict(value)


class ServingInputReceiver(
    collections.namedtuple(
        "ServingInputReceiver", ["features", "receiver_tensors", "receiver_tensors_alternatives", "trackables"]
    )
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
        raise ConfigError(
            "build_parsing_serving_input_receiver_fn needs a non-empty feature_spec dict "
            "(tf.feature_column.make_parse_example_spec(columns) builds one)"
        )

    def serving_input_receiver_fn():
        serialized = tf.compat.v1.placeholder(tf.string, shape=[default_batch_size], name="input_example_tensor")
        features = tf.io.parse_example(serialized, feature_spec)
        return ServingInputReceiver(features, {"examples": serialized})

    return serving_input_receiver_fn


def _placeholders(examples, default_batch_size):
    """A placeholder per example tensor (or TensorSpec), named by its key, batch dimension default_batch_size."""

    def one(t, name):
        shape = [default_batch_size] + list(t.shape[1:]) if t.shape.rank else [default_batch_size]
        return tf.compat.v1.placeholder(t.dtype, shape=shape, name=name)

    if isinstance(examples, dict):
        return {name: one(t, name) for name, t in examples.items()}
    return one(examples, None)


def build_raw_serving_input_receiver_fn(features, default_batch_size=None):
    """A receiver fn whose inputs are the raw features, keyed by feature name.

    `features` maps names to example tensors (or TensorSpecs); their batch dimension is replaced
    by `default_batch_size`.
    """
    if not isinstance(features, dict) or not features:
        raise ConfigError("build_raw_serving_input_receiver_fn needs a non-empty dict of feature name -> Tensor")

    def serving_input_receiver_fn():
        receivers = _placeholders(features, default_batch_size)
        return ServingInputReceiver(dict(receivers), receivers)

    return serving_input_receiver_fn


class TensorServingInputReceiver(
    collections.namedtuple(
        "TensorServingInputReceiver", ["features", "receiver_tensors", "receiver_tensors_alternatives", "trackables"]
    )
):
    """Like ServingInputReceiver, but the model_fn gets `features` as the one Tensor it is, not a dict."""

    def __new__(cls, features, receiver_tensors, receiver_tensors_alternatives=None, trackables=None):
        if not isinstance(features, (tf.Tensor, tf.SparseTensor)):
            raise ConfigError(f"TensorServingInputReceiver features must be one Tensor, got {type(features).__name__}")
        receiver_tensors = _as_tensor_dict(receiver_tensors, SINGLE_RECEIVER_DEFAULT_NAME, "receiver_tensors")
        return super().__new__(cls, features, receiver_tensors, receiver_tensors_alternatives, list(trackables or []))


class SupervisedInputReceiver(
    collections.namedtuple("SupervisedInputReceiver", ["features", "labels", "receiver_tensors", "trackables"])
):
    """Features and labels fed at once (tf.estimator's receiver for exporting supervised modes)."""

    def __new__(cls, features, labels, receiver_tensors, trackables=None):
        receiver_tensors = _as_tensor_dict(receiver_tensors, SINGLE_RECEIVER_DEFAULT_NAME, "receiver_tensors")
        return super().__new__(cls, features, labels, receiver_tensors, list(trackables or []))


SINGLE_LABEL_DEFAULT_NAME = "label"


def build_raw_supervised_input_receiver_fn(features, labels, default_batch_size=None):
    """A receiver fn taking raw features and labels (example tensors or dicts of them), keyed by name.

    A single features tensor is fed as `input`, a single labels tensor as `label`. export_saved_model
    exports the PREDICT mode only; there the model_fn gets these labels too, as under tf.estimator.
    """
    feature_keys = list(features) if isinstance(features, dict) else [SINGLE_RECEIVER_DEFAULT_NAME]
    label_keys = list(labels) if isinstance(labels, dict) else [SINGLE_LABEL_DEFAULT_NAME]
    overlap = set(feature_keys) & set(label_keys)
    if overlap:
        raise ConfigError(f"features and labels must have distinct keys; both have {sorted(overlap)}")

    def supervised_input_receiver_fn():
        feature_tensors = _placeholders(features, default_batch_size)
        label_tensors = _placeholders(labels, default_batch_size)
        receivers = dict(feature_tensors) if isinstance(features, dict) else {feature_keys[0]: feature_tensors}
        receivers.update(label_tensors if isinstance(labels, dict) else {label_keys[0]: label_tensors})
        return SupervisedInputReceiver(feature_tensors, label_tensors, receivers)

    return supervised_input_receiver_fn


class ExportOutput(abc.ABC):
    """One signature's outputs (tf.estimator.export.ExportOutput).

    Subclasses set `method` ("classification", "regression" or another name for a predict-style
    signature whose inputs are the receiver's tensors) and return the outputs from `as_outputs()`;
    tf.estimator's subclasses built a SignatureDef in `as_signature_def` instead.
    """

    method = "predict"

    @abc.abstractmethod
    def as_outputs(self) -> dict[str, tf.Tensor]:
        """{output name: Tensor} of the signature."""


class ClassificationOutput(ExportOutput):
    """The classification signature: string `inputs` -> `classes` and/or `scores`."""

    method = "classification"

    def __init__(self, scores=None, classes=None):
        if scores is None and classes is None:
            raise ConfigError("ClassificationOutput needs scores, classes or both")
        self.scores, self.classes = scores, classes

    def as_outputs(self) -> dict[str, tf.Tensor]:
        out = {}
        if self.classes is not None:
            out["classes"] = self.classes
        if self.scores is not None:
            out["scores"] = self.scores
        return out


class RegressionOutput(ExportOutput):
    """The regression signature: string `inputs` -> float `outputs`."""

    method = "regression"

    def __init__(self, value):
        self.value = value

    def as_outputs(self) -> dict[str, tf.Tensor]:
        return {"outputs": self.value}


class PredictOutput(ExportOutput):
    """The predict signature: the receiver tensors -> a dict of outputs."""

    method = "predict"

    def __init__(self, outputs):
        self.outputs = outputs if isinstance(outputs, dict) else {"output": outputs}

    def as_outputs(self) -> dict[str, tf.Tensor]:
        return dict(self.outputs)


class EvalOutput(ExportOutput):
    """The outputs of a supervised evaluation: loss, predictions and metrics (tf.estimator.export.EvalOutput).

    Outputs are keyed as tf.estimator keyed them: `loss`, `predictions` (or `predictions/<key>`),
    `metrics/<name>/value` and `metrics/<name>/update_op`; a Keras metric object gives its result
    for both.
    """

    method = "eval"

    def __init__(self, loss=None, predictions=None, metrics=None):
        self.loss = _prefixed("loss", loss)
        self.predictions = _prefixed("predictions", predictions)
        self.metrics = {}
        for name, metric in (metrics or {}).items():
            if isinstance(metric, tuple) and len(metric) == 2:
                value, update = metric
            elif all(hasattr(metric, a) for a in ("update_state", "result")):
                value = update = metric.result()
            else:
                raise ConfigError(f"EvalOutput metrics[{name!r}] must be a (value, update_op) tuple or a Keras metric")
            if isinstance(update, tf.Operation):  # a signature output must be a tensor
                with tf.control_dependencies([update]):
                    update = tf.constant([], name="metric_op_wrapper")
            self.metrics[f"metrics/{name}/value"] = tf.convert_to_tensor(value)
            self.metrics[f"metrics/{name}/update_op"] = tf.convert_to_tensor(update)

    def as_outputs(self) -> dict[str, tf.Tensor]:
        return {**self.loss, **self.predictions, **self.metrics}


def _prefixed(prefix, value) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {f"{prefix}/{key}": tf.convert_to_tensor(v) for key, v in value.items()}
    return {prefix: tf.convert_to_tensor(value)}
