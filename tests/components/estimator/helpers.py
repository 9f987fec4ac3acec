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


def save_dnn_checkpoint(model_dir, dims, layers, global_step: int) -> None:
    """Writes a DNN checkpoint from ((kernel, bias), ...) per hidden layer then logits, as tf.estimator's tests did."""
    from components.estimator.dnn import DNNModel

    hidden = [len(bias) for _, bias in layers[:-1]]
    model = DNNModel(dims, hidden, len(layers[-1][1]))
    modules = [getattr(model, f"hiddenlayer_{i}") for i in range(len(hidden))] + [model.logits]
    for module, (kernel, bias) in zip(modules, layers):
        module.assign_kernel(kernel)
        module.bias.assign(bias)
    root = tf.train.Checkpoint(dnn=model, global_step=tf.Variable(global_step, dtype=tf.int64))
    tf.train.CheckpointManager(root, str(model_dir), max_to_keep=1, checkpoint_name="model.ckpt").save(global_step)


def serialized_example(**values) -> bytes:
    """A tf.train.Example of the given features (str: bytes_list, else float_list), serialized."""
    ex = tf.train.Example()
    for key, value in values.items():
        if isinstance(value, str):
            ex.features.feature[key].bytes_list.value.append(value.encode())
        else:
            ex.features.feature[key].float_list.value.append(value)
    return ex.SerializeToString()
