"""model_to_estimator (Keras 3 and tf_keras) and custom model_fns with Keras parts, as in the seed guide."""

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
    model.compile(optimizer=K.optimizers.Adam(learning_rate), loss=K.losses.BinaryCrossentropy(from_logits=True),
                  metrics=["accuracy", K.metrics.AUC(name="auc", from_logits=True)])
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
    model.compile(optimizer=tf.keras.optimizers.RMSprop(learning_rate=0.0001),
                  loss=tf.keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
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


def test_seed_object_based_checkpoint_example(tmp_path):
    """The guide's custom model_fn (Keras 3 model and optimizer, tf.train.Checkpoint in the scaffold), as written."""
    import tensorflow.compat.v1 as tf_compat

    def toy_dataset():
        inputs = tf.range(10.0)[:, None]
        labels = inputs * 5.0 + tf.range(5.0)[None, :]
        return tf.data.Dataset.from_tensor_slices(dict(x=inputs, y=labels)).repeat().batch(2)

    class Net(tf.keras.Model):
        """A simple linear model."""

        def __init__(self):
            super(Net, self).__init__()
            self.l1 = tf.keras.layers.Dense(5)

        def call(self, x):
            return self.l1(x)

    def model_fn(features, labels, mode):
        net = Net()
        opt = tf.keras.optimizers.Adam(0.1)
        ckpt = tf.train.Checkpoint(step=tf_compat.train.get_global_step(), optimizer=opt, net=net)
        with tf.GradientTape() as tape:
            output = net(features["x"])
            loss = tf.reduce_mean(tf.abs(output - features["y"]))
        variables = net.trainable_variables
        gradients = tape.gradient(loss, variables)
        return estimator.EstimatorSpec(
            mode, loss=loss,
            train_op=tf.group(opt.apply_gradients(zip(gradients, variables)), ckpt.step.assign_add(1)),
            # Tell the Estimator to save "ckpt" in an object-based format.
            scaffold=tf_compat.train.Scaffold(saver=ckpt))

    model_dir = str(tmp_path / "tf_estimator_example")
    est = estimator.Estimator(model_fn, model_dir)
    est.train(toy_dataset, steps=10)

    opt = tf.keras.optimizers.Adam(0.1)
    net = Net()
    ckpt = tf.train.Checkpoint(step=tf.Variable(1, dtype=tf.int64), optimizer=opt, net=net)
    net(tf.zeros([1, 1]))  # Keras 3 layers do not defer restores (Keras 2 did): build before restoring
    ckpt.restore(tf.train.latest_checkpoint(model_dir)).expect_partial()
    assert ckpt.step.numpy() == 10
    kernel = net.l1.kernel.numpy()
    # Keras 3's Dense keeps its kernel as `_kernel`: the object path is net/l1/_kernel.
    name = next(n for n in est.get_variable_names() if n.startswith("net/l1/") and n.endswith("kernel"))
    np.testing.assert_allclose(kernel, est.get_variable_value(name))
    # The bias starts at 0 and the outputs stay below y = 5x + [0..4], so ten Adam steps of 0.1 add about 1.
    np.testing.assert_allclose(net.l1.bias.numpy(), np.ones(5), atol=0.2)
