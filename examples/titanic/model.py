"""The Titanic model for the pipeline's trainer: a DNN over the transformed features."""

import tensorflow as tf
import tf_keras

from components import estimator

NUMERIC = ["age", "age_known", "fare", "family"]
VOCABS = ["sex", "embarked", "title", "deck"]


def build_estimator(run_config, transform_output, params):
    fc = tf.feature_column
    columns = [fc.numeric_column(name) for name in NUMERIC]
    columns.append(fc.indicator_column(fc.categorical_column_with_identity("pclass", 3)))
    for name in VOCABS:
        # +1: the out-of-vocabulary bucket compute_and_apply_vocabulary adds.
        size = transform_output.vocabulary_size_by_name(name) + 1
        columns.append(fc.indicator_column(fc.categorical_column_with_identity(name, size)))
    learning_rate = float(params.get("learning_rate", 0.01))
    return estimator.DNNClassifier(
        hidden_units=params.get("hidden_units", [32, 16]),
        feature_columns=columns,
        config=run_config,
        optimizer=lambda: tf_keras.optimizers.legacy.Adam(learning_rate),
        dropout=params.get("dropout"),
    )
