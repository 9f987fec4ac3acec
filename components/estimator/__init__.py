"""tfpipe's Estimator engine: the tf.estimator namespace, implemented natively on TensorFlow 2.

from components import estimator
est = estimator.LinearClassifier(feature_columns=[...])
est.train(input_fn, steps=100)
"""

from components.estimator import experimental, export, keras
from components.estimator.baseline import BaselineClassifier, BaselineEstimator, BaselineRegressor
from components.estimator.basic_hooks import (
    CheckpointSaverHook,
    FeedFnHook,
    FinalOpsHook,
    GlobalStepWaiterHook,
    LoggingTensorHook,
    NanLossDuringTrainingError,
    NanTensorHook,
    ProfilerHook,
    SecondOrStepTimer,
    StepCounterHook,
    SummarySaverHook,
)
from components.estimator.boosted_trees import BoostedTreesClassifier, BoostedTreesEstimator, BoostedTreesRegressor
from components.estimator.distribute import parameter_server_strategy, tpu_strategy
from components.estimator.dnn import (
    DNNClassifier,
    DNNEstimator,
    DNNLinearCombinedClassifier,
    DNNLinearCombinedEstimator,
    DNNLinearCombinedRegressor,
    DNNRegressor,
)
from components.estimator.estimator import Estimator
from components.estimator.extenders import add_metrics
from components.estimator.heads import (
    SUM,
    SUM_OVER_BATCH_SIZE,
    BinaryClassHead,
    ClassificationHead,
    Head,
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
    "SUM",
    "SUM_OVER_BATCH_SIZE",
    "BaselineClassifier",
    "BaselineEstimator",
    "BaselineRegressor",
    "BestExporter",
    "BinaryClassHead",
    "BoostedTreesClassifier",
    "BoostedTreesEstimator",
    "BoostedTreesRegressor",
    "CheckpointSaverHook",
    "CheckpointSaverListener",
    "ClassificationHead",
    "DNNClassifier",
    "DNNEstimator",
    "DNNLinearCombinedClassifier",
    "DNNLinearCombinedEstimator",
    "DNNLinearCombinedRegressor",
    "DNNRegressor",
    "Estimator",
    "EstimatorSpec",
    "EvalSpec",
    "Exporter",
    "FeedFnHook",
    "FinalExporter",
    "FinalOpsHook",
    "GlobalStepWaiterHook",
    "Head",
    "LatestExporter",
    "LinearClassifier",
    "LinearEstimator",
    "LinearRegressor",
    "LoggingTensorHook",
    "LogisticRegressionHead",
    "ModeKeys",
    "MultiClassHead",
    "MultiHead",
    "MultiLabelHead",
    "NanLossDuringTrainingError",
    "NanTensorHook",
    "PoissonRegressionHead",
    "ProfilerHook",
    "RegressionHead",
    "RunConfig",
    "SecondOrStepTimer",
    "SessionRunArgs",
    "SessionRunContext",
    "SessionRunHook",
    "SessionRunValues",
    "StepCounterHook",
    "StopAtStepHook",
    "SummarySaverHook",
    "TrainSpec",
    "VocabInfo",
    "WarmStartSettings",
    "add_metrics",
    "classifier_parse_example_spec",
    "experimental",
    "export",
    "keras",
    "model_to_estimator",
    "parameter_server_strategy",
    "regressor_parse_example_spec",
    "tpu_strategy",
    "train_and_evaluate",
]
