"""tf.estimator.experimental: early stopping, in-memory evaluation, the supervised receiver, call_logit_fn and
the stop-at-checkpoint-step hook."""

from components.estimator.early_stopping import (
    InMemoryEvaluatorHook,
    make_early_stopping_hook,
    read_eval_metrics,
    stop_if_higher_hook,
    stop_if_lower_hook,
    stop_if_no_decrease_hook,
    stop_if_no_increase_hook,
)
from components.estimator.export import build_raw_supervised_input_receiver_fn
from components.estimator.hooks import make_stop_at_checkpoint_step_hook
from components.estimator.linear_sdca import LinearSDCA
from components.estimator.rnn import RNNClassifier, RNNEstimator
from components.estimator.spec import call_logit_fn

__all__ = [
    "InMemoryEvaluatorHook",
    "LinearSDCA",
    "RNNClassifier",
    "RNNEstimator",
    "build_raw_supervised_input_receiver_fn",
    "call_logit_fn",
    "make_early_stopping_hook",
    "make_stop_at_checkpoint_step_hook",
    "read_eval_metrics",
    "stop_if_higher_hook",
    "stop_if_lower_hook",
    "stop_if_no_decrease_hook",
    "stop_if_no_increase_hook",
]
