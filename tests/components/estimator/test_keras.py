"""model_to_estimator for Keras 3 and tf_keras models, and the seed guide's MobileNetV2 example."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator
from components.errors import ConfigError
from components.estimator.keras import model_to_estimator

keras3 = pytest.importorskip("keras")

rng = np.random.default_rng(0)
X = rng.normal(size=(256, 4)).astype("float32")
Y = (X[:, 0] + X[:, 1] > 0).astype("float32")[:, None]


def train_fn():
    return tf.data.Dataset.from_tensor_slices(({"x": X}, Y)).repeat().batch(32)


def eval_fn():
    return tf.data.Dataset.from_tensor_slices(({"x": X}, Y)).batch(32)


def _model(K, learning_rate):
    inp = K.Input(shape=(4,), name="x")
    out = K.layers.Dense(1, name="out")(K.layers.Dense(8, activation="relu")(inp))
    model = K.Model(inp, out)
    model.compile(
        optimizer=K.optimizers.Adam(learning_rate),
        loss=K.losses.BinaryCrossentropy(from_logits=True),
        metrics=["accuracy", K.metrics.AUC(name="auc", from_logits=True)],
    )
    return model


@pytest.mark.parametrize("K", [keras3, tf_keras], ids=["keras3", "tf_keras"])
def test_model_to_estimator_trains_evaluates_predicts_exports(K, tmp_path):
    model = _model(K, 0.05)
    before = model.get_weights()
    est = model_to_estimator(keras_model=model, model_dir=str(tmp_path / "m"))
    est.train(train_fn, steps=150)
    result = est.evaluate(eval_fn)
    assert result["global_step"] == 150
    assert result["accuracy"] > 0.95 and result["auc"] > 0.98
    assert result["loss"] < 0.2
    # Training works on the Estimator's own copy: the user's model is untouched.
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    preds = list(est.predict(eval_fn))
    assert len(preds) == 256 and set(preds[0]) == {"out"}
    agree = np.mean([(p["out"][0] > 0) == (y[0] > 0.5) for p, y in zip(preds, Y)])
    assert agree > 0.95
    receiver = estimator.export.build_raw_serving_input_receiver_fn({"x": tf.zeros([1, 4])})
    loaded = tf.saved_model.load(est.export_saved_model(str(tmp_path / "export"), receiver))
    served = loaded.signatures["serving_default"](x=tf.constant(X[:3]))["out"].numpy()
    np.testing.assert_allclose(served[:, 0], [p["out"][0] for p in preds[:3]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("K", [keras3, tf_keras], ids=["keras3", "tf_keras"])
def test_model_to_estimator_starts_from_the_keras_models_state(K, tmp_path):
    model = _model(K, 0.0)  # learning rate 0: the first checkpoint holds the starting weights
    kernel = model.get_layer("out").get_weights()[0]
    est = model_to_estimator(keras_model=model, model_dir=str(tmp_path / "m"))
    est.train(train_fn, steps=1)
    stored = [n for n in est.get_variable_names() if n.startswith("model/") and "kernel" in n]
    assert any(np.array_equal(est.get_variable_value(n), kernel) for n in stored)


def test_model_to_estimator_needs_a_compiled_model(tmp_path):
    inp = keras3.Input(shape=(4,))
    model = keras3.Model(inp, keras3.layers.Dense(1)(inp))
    with pytest.raises(ConfigError, match="compile"):
        model_to_estimator(keras_model=model, model_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="not both"):
        model_to_estimator(model_dir=str(tmp_path))


@pytest.mark.slow
def test_seed_mobilenet_v2_example(tmp_path):
    """The guide's model_to_estimator example, on generated images since nothing can be downloaded."""
    img_size = 160
    base = tf.keras.applications.MobileNetV2(input_shape=(img_size, img_size, 3), include_top=False, weights=None)
    base.trainable = False
    model = tf.keras.Sequential([base, tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(1)])
    model.compile(
        optimizer=tf.keras.optimizers.RMSprop(learning_rate=0.0001),
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    est = model_to_estimator(keras_model=model, model_dir=str(tmp_path / "mobilenet"))

    def preprocess(image, label):
        image = tf.cast(image, tf.float32)
        image = (image / 127.5) - 1
        image = tf.image.resize(image, (img_size, img_size))
        return image, label

    def train_input_fn(batch_size):
        # Stand-in for tfds cats_vs_dogs: 8 random uint8 "photos" of varying size with 0/1 labels.
        images = tf.random.stateless_uniform([8, 96, 128, 3], seed=[1, 2], maxval=256, dtype=tf.int32)
        labels = tf.constant([0, 1] * 4, tf.int64)
        data = tf.data.Dataset.from_tensor_slices((tf.cast(images, tf.uint8), labels))
        return data.map(preprocess).shuffle(8, seed=3).batch(batch_size).repeat()

    est.train(input_fn=lambda: train_input_fn(4), steps=3)
    result = est.evaluate(input_fn=lambda: train_input_fn(4), steps=2)
    assert result["global_step"] == 3
    assert 0.0 <= result["accuracy"] <= 1.0 and np.isfinite(result["loss"])
    # The frozen base did not change; the head did.
    head = [n for n in est.get_variable_names() if n.startswith("model/") and n.endswith("kernel")]
    assert head, est.get_variable_names()[:20]
