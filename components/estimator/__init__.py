"""tfpipe's Estimator engine: the tf.estimator namespace, implemented natively on TensorFlow 2.

    from components import estimator
    est = estimator.LinearClassifier(feature_columns=[...])
    est.train(input_fn, steps=100)
"""

from components.estimator import export
from components.estimator.estimator import Estimator
from components.estimator.linear import LinearClassifier
from components.estimator.hooks import (
    CheckpointSaverListener,
    SessionRunArgs,
    SessionRunContext,
    SessionRunHook,
    SessionRunValues,
    StopAtStepHook,
)
from components.estimator.mode_keys import ModeKeys
from components.estimator.run_config import RunConfig
from components.estimator.spec import EstimatorSpec

__all__ = [
    "CheckpointSaverListener",
    "Estimator",
    "EstimatorSpec",
    "ModeKeys",
    "RunConfig",
    "SessionRunArgs",
    "SessionRunContext",
    "SessionRunHook",
    "SessionRunValues",
    "StopAtStepHook",
    "LinearClassifier",
    "export",
]
