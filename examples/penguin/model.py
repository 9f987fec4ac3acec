"""The penguin model for the pipeline's trainer: a small DNN classifying the three species."""

import tensorflow as tf
import tf_keras

from components import estimator
from examples.penguin.preprocessing import NUMERIC


def build_estimator(run_config, transform_output, params):
    fc = tf.feature_column
    columns = [fc.numeric_column(name) for name in NUMERIC]
    islands = transform_output.vocabulary_size_by_name("island") + 1
    columns.append(fc.indicator_column(fc.categorical_column_with_identity("island", islands)))
    learning_rate = float(params.get("learning_rate", 0.01))
    return estimator.DNNClassifier(
        hidden_units=params.get("hidden_units", [8, 8]),
        feature_columns=columns,
        n_classes=transform_output.vocabulary_size_by_name("species"),
        config=run_config,
        optimizer=lambda: tf_keras.optimizers.legacy.Adam(learning_rate),
    )
