"""EstimatorSpec: what a model_fn returns, validated the way tf.estimator validated it."""

from __future__ import annotations

import collections

import tensorflow as tf

from components.errors import ConfigError
from components.estimator.mode_keys import ModeKeys


def is_metric_object(value) -> bool:
    """True for a Keras (2 or 3) Metric: it has update_state, result and reset_state."""
    return all(hasattr(value, attr) for attr in ("update_state", "result", "reset_state"))


# The fields are listed inline: mypy types a namedtuple only from a literal list.
class EstimatorSpec(
    collections.namedtuple(
        "EstimatorSpec",
        [
            "mode",
            "predictions",
            "loss",
            "train_op",
            "eval_metric_ops",
            "export_outputs",
            "training_chief_hooks",
            "training_hooks",
            "scaffold",
            "evaluation_hooks",
            "prediction_hooks",
        ],
    )
):
    """Ops and objects returned by a model_fn, checked against what `mode` needs."""

    def __new__(
        cls,
        mode,
        predictions=None,
        loss=None,
        train_op=None,
        eval_metric_ops=None,
        export_outputs=None,
        training_chief_hooks=None,
        training_hooks=None,
        scaffold=None,
        evaluation_hooks=None,
        prediction_hooks=None,
    ):
        if mode not in (ModeKeys.TRAIN, ModeKeys.EVAL, ModeKeys.PREDICT):
            raise ConfigError(f"EstimatorSpec mode must be one of ModeKeys.TRAIN/EVAL/PREDICT, got {mode!r}")
        if mode == ModeKeys.TRAIN and (loss is None or train_op is None):
            raise ConfigError("EstimatorSpec in TRAIN mode needs both `loss` and `train_op`")
        if mode == ModeKeys.EVAL and loss is None:
            raise ConfigError("EstimatorSpec in EVAL mode needs `loss`")
        if mode == ModeKeys.PREDICT and predictions is None:
            raise ConfigError("EstimatorSpec in PREDICT mode needs `predictions` (a Tensor or a dict of Tensors)")
        if loss is not None:
            loss = tf.convert_to_tensor(loss)
            if loss.shape.rank not in (None, 0) and loss.shape.num_elements() != 1:
                raise ConfigError(f"EstimatorSpec `loss` must be a scalar, got shape {loss.shape}")
            loss = tf.reshape(loss, [])
        for name, value in (eval_metric_ops or {}).items():
            if not (is_metric_object(value) or (isinstance(value, tuple) and len(value) == 2)):
                raise ConfigError(
                    f"eval_metric_ops[{name!r}] must be a Keras Metric object or a (value, update_op) tuple, "
                    f"got {type(value).__name__}"
                )
        for name, out in (export_outputs or {}).items():
            if not hasattr(out, "as_outputs"):
                raise ConfigError(
                    f"export_outputs[{name!r}] must be an export.ClassificationOutput, RegressionOutput or "
                    f"PredictOutput, got {type(out).__name__}"
                )
        return super().__new__(
            cls,
            mode,
            predictions,
            loss,
            train_op,
            dict(eval_metric_ops or {}),
            export_outputs,
            tuple(training_chief_hooks or ()),
            tuple(training_hooks or ()),
            scaffold,
            tuple(evaluation_hooks or ()),
            tuple(prediction_hooks or ()),
        )


def call_logit_fn(logit_fn, features, mode, params, config):
    """tf.estimator.experimental.call_logit_fn: calls `logit_fn(features, [mode], [params], [config])`,
    passing only the arguments its signature names, and checks that it returned logits: a Tensor or a
    dict of str to Tensors."""
    from components.estimator._inputs import fn_args

    names = fn_args(logit_fn)
    available = {"mode": mode, "params": params, "config": config}
    logits = logit_fn(features=features, **{k: v for k, v in available.items() if k in names})
    if isinstance(logits, tf.Tensor) or (
        isinstance(logits, dict) and all(isinstance(k, str) and isinstance(v, tf.Tensor) for k, v in logits.items())
    ):
        return logits
    raise ConfigError(f"logit_fn should return a Tensor or a dict of str to Tensors, got {type(logits).__name__}")
