"""tfpipe's Estimator engine: the tf.estimator namespace, implemented natively on TensorFlow 2.

from components import estimator
est = estimator.LinearClassifier(feature_columns=[...])
est.train(input_fn, steps=100)
"""

from components.estimator import experimental, export, keras
from components.estimator.basic_hooks import (
    CheckpointSaverHook,
    FeedFnHook,
    FinalOpsHook,
    GlobalStepWaiterHook,
    LoggingTensorHook,
    NanLossDuringTrainingError,
    NanTensorHook,
    ProfilerHook,
    StepCounterHook,
    SummarySaverHook,
)
from components.estimator.baseline import BaselineClassifier, BaselineRegressor
from components.estimator.boosted_trees import BoostedTreesClassifier, BoostedTreesEstimator, BoostedTreesRegressor
from components.estimator.dnn import (
    DNNClassifier,
    DNNEstimator,
    DNNLinearCombinedClassifier,
    DNNLinearCombinedEstimator,
    DNNLinearCombinedRegressor,
    DNNRegressor,
)
from components.estimator.distribute import parameter_server_strategy, tpu_strategy
from components.estimator.estimator import Estimator
from components.estimator.extenders import add_metrics
from components.estimator.heads import (
    SUM,
    SUM_OVER_BATCH_SIZE,
    BinaryClassHead,
    ClassificationHead,
    LogisticRegressionHead,
    MultiClassHead,
    MultiHead,
    MultiLabelHead,
    PoissonRegressionHead,
    RegressionHead,
)
from components.estimator.hooks import (
    CheckpointSaverListener,
    SessionRunArgs,
    SessionRunContext,
    SessionRunHook,
    SessionRunValues,
    StopAtStepHook,
)
from components.estimator.keras import model_to_estimator
from components.estimator.linear import LinearClassifier, LinearEstimator, LinearRegressor
from components.estimator.mode_keys import ModeKeys
from components.estimator.parsing_utils import classifier_parse_example_spec, regressor_parse_example_spec
from components.estimator.run_config import RunConfig
from components.estimator.spec import EstimatorSpec
from components.estimator.training import (
    BestExporter,
    EvalSpec,
    Exporter,
    FinalExporter,
    LatestExporter,
    TrainSpec,
    train_and_evaluate,
)
from components.estimator.warm_start import VocabInfo, WarmStartSettings

__all__ = [
    "Exporter",
    "VocabInfo",
    "classifier_parse_example_spec",
    "regressor_parse_example_spec",
    "add_metrics",
    "BinaryClassHead",
    "LogisticRegressionHead",
    "MultiClassHead",
    "MultiHead",
    "PoissonRegressionHead",
    "CheckpointSaverHook",
    "FeedFnHook",
    "FinalOpsHook",
    "GlobalStepWaiterHook",
    "LoggingTensorHook",
    "NanLossDuringTrainingError",
    "NanTensorHook",
    "ProfilerHook",
    "StepCounterHook",
    "SummarySaverHook",
    "experimental",
    "BaselineClassifier",
    "BaselineRegressor",
    "CheckpointSaverListener",
    "ClassificationHead",
    "BoostedTreesClassifier",
    "BoostedTreesEstimator",
    "BoostedTreesRegressor",
    "DNNClassifier",
    "DNNEstimator",
    "DNNLinearCombinedClassifier",
    "DNNLinearCombinedEstimator",
    "DNNLinearCombinedRegressor",
    "DNNRegressor",
    "Estimator",
    "EstimatorSpec",
    "LinearClassifier",
    "LinearEstimator",
    "LinearRegressor",
    "ModeKeys",
    "MultiLabelHead",
    "RegressionHead",
    "RunConfig",
    "SUM",
    "SUM_OVER_BATCH_SIZE",
    "SessionRunArgs",
    "SessionRunContext",
    "SessionRunHook",
    "SessionRunValues",
    "StopAtStepHook",
    "WarmStartSettings",
    "BestExporter",
    "EvalSpec",
    "FinalExporter",
    "LatestExporter",
    "TrainSpec",
    "train_and_evaluate",
    "tpu_strategy",
    "parameter_server_strategy",
    "export",
    "keras",
    "model_to_estimator",
]
