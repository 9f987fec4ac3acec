"""Small shared pieces for the estimator tests."""

import tensorflow as tf

from components.estimator.linear import LinearModel


def save_linear_checkpoint(model_dir, dims, weights: dict, bias, global_step: int, units: int = 1) -> None:
    """Writes a LinearClassifier checkpoint with the given weights, as tf.estimator's tests did."""
    model = LinearModel(dims, units)
    for name, value in weights.items():
        model.linear_model[name]["weights"].assign(value)
    model.linear_model["bias_weights"].assign(bias)
    root = tf.train.Checkpoint(linear=model, global_step=tf.Variable(global_step, dtype=tf.int64))
    tf.train.CheckpointManager(root, str(model_dir), max_to_keep=1, checkpoint_name="model.ckpt").save(global_step)
