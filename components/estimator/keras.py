"""model_to_estimator: a compiled Keras model (Keras 3 or tf_keras) as an Estimator."""

from __future__ import annotations

import os

import tensorflow as tf

from components.errors import ConfigError
from components.estimator import _compat
from components.estimator.estimator import Estimator
from components.estimator.mode_keys import ModeKeys
from components.estimator.optimizers import make_optimizer
from components.estimator.spec import EstimatorSpec


def _library(model):
    """The Keras package the model belongs to: tf_keras (Keras 2) or keras (Keras 3)."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def _leaf_metrics(metrics) -> list:
    """Keras metric objects, with containers (Keras 3's compile_metrics) opened up."""
    out = []
    for m in metrics:
        inner = getattr(m, "metrics", None)
        if inner and inner is not metrics and not hasattr(m, "total"):
            out.extend(_leaf_metrics(inner))
        else:
            out.append(m)
    return out


def _io_names(model) -> tuple[list, list]:
    """Input and output names; a Sequential model (Keras 3 has no names for it) uses its first/last layer's."""
    inputs = getattr(model, "input_names", None)
    outputs = getattr(model, "output_names", None)
    if not inputs:
        try:
            inputs = [getattr(t, "name", "").split(":")[0] for t in tf.nest.flatten(model.inputs)]
        except (AttributeError, ValueError):  # a Sequential model not built yet
            inputs = []
        if not inputs or not all(inputs):
            inputs = [model.layers[0].name]
    if not outputs:
        outputs = [model.layers[-1].name]
    return list(inputs), list(outputs)


class _KerasEstimator(Estimator):
    """Per program (train / eval / predict): a copy of the Keras model, compiled like the original."""

    def __init__(self, keras_model, model_dir=None, config=None):
        if getattr(keras_model, "optimizer", None) is None:
            raise ConfigError(
                "model_to_estimator needs a compiled model: call keras_model.compile(optimizer=..., "
                "loss=..., metrics=[...]) first"
            )
        self._keras = _library(keras_model)
        self._source = keras_model
        # The Keras model's state at conversion is where training starts (tf.estimator kept it too).
        self._initial_weights = keras_model.get_weights()
        self._input_names, self._output_names = _io_names(keras_model)
        super().__init__(self._keras_model_fn, model_dir=model_dir, config=config)

    def _copy(self):
        lib, src = self._keras, self._source
        try:
            clone = lib.models.clone_model(src)
        except Exception as e:  # subclassed models without get_config
            raise ConfigError(
                f"model_to_estimator could not copy {type(src).__name__} with clone_model ({e}); "
                "use a Sequential or functional model"
            ) from e
        clone.set_weights(self._initial_weights)
        compile_args = dict(loss=src.loss, optimizer=make_optimizer(src.optimizer, 0.0))
        metrics = _compat.compile_metrics(src)
        if metrics:
            # Fresh metric objects: sharing the source's would share (and mix) their state.
            compile_args["metrics"] = tf.nest.map_structure(
                lambda m: m if isinstance(m, str) else m.__class__.from_config(m.get_config()), metrics
            )
        clone.compile(**compile_args)
        return clone

    def _prebuild(self, program) -> None:
        model = self._copy()
        program.state["model"] = model
        if program.mode == ModeKeys.TRAIN and hasattr(model.optimizer, "build") and self._keras.__name__ == "keras":
            model.optimizer.build(model.trainable_variables)  # Keras 3 makes its slots here, not in tf.function

    def _inputs(self, features):
        if isinstance(features, dict) and len(self._input_names) == 1 and len(features) == 1:
            return next(iter(features.values()))
        if isinstance(features, dict):
            missing = sorted(set(self._input_names) - set(features))
            if missing:
                raise ConfigError(f"the Keras model's inputs are {self._input_names}; features lack {missing}")
            return {k: features[k] for k in self._input_names}
        return features

    def _labels(self, labels):
        if isinstance(labels, dict) and len(self._output_names) == 1 and len(labels) == 1:
            return next(iter(labels.values()))
        return labels

    def _keras_model_fn(self, features, labels, mode, program):
        model = program.state["model"]
        x = self._inputs(features)
        checkpoint = tf.train.Checkpoint(model=model)
        if mode == ModeKeys.PREDICT:
            outputs = model(x, training=False)
            preds = dict(zip(self._output_names, tf.nest.flatten(outputs)))
            return EstimatorSpec(mode, predictions=preds, scaffold=tf.compat.v1.train.Scaffold(saver=checkpoint))
        if labels is None:
            raise ConfigError(f"{mode} needs labels: the input_fn must return (features, labels)")
        y = self._labels(labels)
        if mode == ModeKeys.TRAIN:
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred)
                scaled = loss / tf.distribute.get_replica_context().num_replicas_in_sync
            variables = model.trainable_variables
            grads = tape.gradient(scaled, variables)
            model.optimizer.apply_gradients(zip(grads, variables))
            step = tf.compat.v1.train.get_global_step().assign_add(1)
            checkpoint.optimizer = model.optimizer
            return EstimatorSpec(mode, loss=loss, train_op=step, scaffold=tf.compat.v1.train.Scaffold(saver=checkpoint))
        y_pred = model(x, training=False)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred)
        model.compute_metrics(x, y, y_pred, None)
        metrics = {m.name: m for m in _leaf_metrics(model.metrics) if m.name != "loss"}
        preds = dict(zip(self._output_names, tf.nest.flatten(y_pred)))
        return EstimatorSpec(
            mode,
            loss=loss,
            predictions=preds,
            eval_metric_ops=metrics,
            scaffold=tf.compat.v1.train.Scaffold(saver=checkpoint),
        )


def model_to_estimator(keras_model=None, keras_model_path=None, custom_objects=None, model_dir=None, config=None):
    """An Estimator that trains, evaluates, predicts with and exports a compiled Keras model.

    Features are the model's input (a tensor, or a dict keyed by input names); labels its target
    (a tensor, or a dict keyed by output names). Predictions are keyed by output names.
    """
    if (keras_model is None) == (keras_model_path is None):
        raise ConfigError("give keras_model or keras_model_path, not both and not neither")
    if keras_model_path is not None:
        path = os.fspath(keras_model_path)
        if path.endswith(".keras"):
            import keras

            keras_model = keras.models.load_model(path, custom_objects=custom_objects)
        else:
            import tf_keras

            keras_model = tf_keras.models.load_model(path, custom_objects=custom_objects)
    return _KerasEstimator(keras_model, model_dir=model_dir, config=config)
