"""TF1-style model_fns (variable scopes, tf.compat.v1.get_variable and .layers, a v1 optimizer's
minimize(loss, global_step=...), tf.compat.v1.summary) train, evaluate, predict, export and resume."""

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components import estimator
from components.errors import ConfigError
from examples.titanic.data import split_titanic
from examples.titanic.seed_estimator import make_input_fn

STEPS = 500
LEARNING_RATE = 0.01
fc = tf.feature_column
COLUMNS = [
    fc.numeric_column("age", normalizer_fn=lambda x: x / 80.0),
    fc.numeric_column("fare", normalizer_fn=lambda x: x / 100.0),
    fc.indicator_column(fc.categorical_column_with_vocabulary_list("sex", ["male", "female"])),
    fc.indicator_column(fc.categorical_column_with_vocabulary_list("class", ["First", "Second", "Third"])),
]
SPEC = fc.make_parse_example_spec(COLUMNS)


def _head(features, labels, mode, logits, train_op_fn):
    """What both model_fns share below the network: predictions, loss, metrics, the train op."""
    probability = tf.sigmoid(logits)
    predictions = {"logits": logits, "probability": probability, "class_id": tf.cast(probability > 0.5, tf.int64)}
    if mode == estimator.ModeKeys.PREDICT:
        return estimator.EstimatorSpec(mode, predictions=predictions)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.float32)
    loss = tf.compat.v1.losses.sigmoid_cross_entropy(labels, logits)
    if mode == estimator.ModeKeys.EVAL:
        metrics = {"accuracy": tf.compat.v1.metrics.accuracy(labels, predictions["class_id"])}
        return estimator.EstimatorSpec(mode, loss=loss, eval_metric_ops=metrics)
    return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op_fn(loss))


def tf1_model_fn(features, labels, mode):
    """A model_fn as written for TF 1: variable scopes, tf.compat.v1.layers, get_variable, a v1 optimizer."""
    inputs = tf.compat.v1.feature_column.input_layer(features, COLUMNS)
    with tf.compat.v1.variable_scope("tower"):
        hidden = tf.compat.v1.layers.dense(inputs, 16, activation=tf.nn.relu, name="hidden")
        tf.compat.v1.summary.histogram("hidden_activations", hidden)  # in every mode, export included
        with tf.compat.v1.variable_scope("logits"):
            kernel = tf.compat.v1.get_variable("kernel", [16, 1])  # glorot_uniform, as Dense's
            bias = tf.compat.v1.get_variable("bias", [1], initializer=tf.compat.v1.zeros_initializer())
    logits = tf.reshape(tf.matmul(hidden, kernel) + bias, [-1])

    def train_op_fn(loss):
        tf.compat.v1.summary.scalar("tf1_loss", loss)
        optimizer = tf.compat.v1.train.AdamOptimizer(LEARNING_RATE)
        return optimizer.minimize(loss, global_step=tf.compat.v1.train.get_or_create_global_step())

    return _head(features, labels, mode, logits, train_op_fn)


def keras_model_fn(features, labels, mode):
    """The same network with Keras layers and optimizer."""
    inputs = tf.compat.v1.feature_column.input_layer(features, COLUMNS)
    hidden = tf.keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    logits = tf.reshape(tf.keras.layers.Dense(1, name="logits")(hidden), [-1])

    def train_op_fn(loss):
        optimizer = tf.keras.optimizers.Adam(LEARNING_RATE, epsilon=1e-8)  # v1 Adam's epsilon
        step = tf.compat.v1.train.get_global_step()
        variables = tf.compat.v1.trainable_variables()
        grads = tf.gradients(loss, variables)
        return tf.group(optimizer.apply_gradients(zip(grads, variables)), step.assign_add(1))

    return _head(features, labels, mode, logits, train_op_fn)


def _rows(path, n):
    with open(path, newline="") as f:
        return [row for _, row in zip(range(n), csv.DictReader(f))]


def _example(row) -> bytes:
    example = tf.train.Example()
    for key in ("age", "fare"):
        example.features.feature[key].float_list.value.append(float(row[key]))
    for key in ("sex", "class"):
        example.features.feature[key].bytes_list.value.append(row[key].encode())
    return example.SerializeToString()


def _rows_input_fn(rows):
    def input_fn():
        features = {
            "age": [float(r["age"]) for r in rows],
            "fare": [float(r["fare"]) for r in rows],
            "sex": [r["sex"] for r in rows],
            "class": [r["class"] for r in rows],
        }
        return tf.data.Dataset.from_tensor_slices(features).batch(len(rows))

    return input_fn


@pytest.fixture(scope="module")
def titanic_csvs(tmp_path_factory):
    return split_titanic(tmp_path_factory.mktemp("tf1_titanic"))


@pytest.fixture(scope="module")
def tf1_trained(titanic_csvs, tmp_path_factory):
    """The TF1-style model_fn after a short training (the fast tests' model)."""
    train_csv, _ = titanic_csvs
    est = estimator.Estimator(
        tf1_model_fn, model_dir=str(tmp_path_factory.mktemp("tf1_short")), config=estimator.RunConfig(tf_random_seed=1)
    )
    est.train(make_input_fn(train_csv), steps=100)
    return est


@pytest.mark.slow
def test_tf1_model_fn_trains_as_well_as_the_same_keras_model_and_its_export_serves(titanic_csvs, tmp_path):
    train_csv, eval_csv = titanic_csvs
    config = estimator.RunConfig(tf_random_seed=1)
    models, results = {}, {}
    for name, model_fn in (("tf1", tf1_model_fn), ("keras", keras_model_fn)):
        models[name] = estimator.Estimator(model_fn, model_dir=str(tmp_path / name), config=config)
        models[name].train(make_input_fn(train_csv), steps=STEPS)
        results[name] = models[name].evaluate(make_input_fn(eval_csv, shuffle=False, epochs=1))
    print("eval accuracy after", STEPS, "steps:", {name: round(float(r["accuracy"]), 4) for name, r in results.items()})
    assert results["tf1"]["global_step"] == results["keras"]["global_step"] == STEPS  # one increment per step
    assert results["tf1"]["accuracy"] >= 0.75
    assert abs(results["tf1"]["accuracy"] - results["keras"]["accuracy"]) <= 0.02

    # The export serves: its signature on a few rows gives predict()'s numbers.
    est = models["tf1"]
    export = est.export_saved_model(
        str(tmp_path / "export"), estimator.export.build_parsing_serving_input_receiver_fn(SPEC)
    )
    rows = _rows(eval_csv, 5)
    expected = list(est.predict(_rows_input_fn(rows)))
    loaded = tf.saved_model.load(export)
    served = loaded.signatures["serving_default"](examples=tf.constant([_example(r) for r in rows]))
    assert set(served) == {"logits", "probability", "class_id"}
    np.testing.assert_allclose(served["probability"].numpy(), [p["probability"] for p in expected], atol=1e-5)
    assert served["class_id"].numpy().tolist() == [int(p["class_id"]) for p in expected]
    assert 0 < served["probability"].numpy().min() and served["probability"].numpy().max() < 1
    assert len(set(np.round(served["probability"].numpy(), 4))) > 1  # the rows' features matter


def test_tf1_model_fn_keeps_tf1_variable_names_and_summaries(tf1_trained):
    names = set(tf1_trained.get_variable_names())
    # As tf.estimator's graph named them: scopes, the v1 Adam's slots and its beta powers.
    assert {
        "global_step",
        "tower/hidden/kernel",
        "tower/hidden/bias",
        "tower/logits/kernel",
        "tower/logits/bias",
        "tower/hidden/kernel/Adam",
        "tower/hidden/kernel/Adam_1",
        "beta1_power",
        "beta2_power",
    } <= names, names
    assert tf1_trained.get_variable_value("global_step") == 100
    # The v1 Adam ran exactly once per step: beta1_power started at 0.9 and was multiplied at each.
    assert tf1_trained.get_variable_value("beta1_power") == pytest.approx(0.9**101, rel=1e-4)
    # tf.compat.v1.summary.scalar in the model_fn reaches model_dir's event files.
    tags = set()
    for path in tf.io.gfile.glob(f"{tf1_trained.model_dir}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {v.tag for v in event.summary.value}
    assert {"tf1_loss", "tower/hidden_activations", "loss"} <= tags, tags


def test_tf1_model_fn_evaluates_and_predicts(tf1_trained, titanic_csvs):
    _, eval_csv = titanic_csvs
    results = tf1_trained.evaluate(make_input_fn(eval_csv, shuffle=False, epochs=1))
    assert results["global_step"] == 100 and np.isfinite(results["loss"])
    predictions = list(tf1_trained.predict(make_input_fn(eval_csv, shuffle=False, epochs=1)))
    labels = [int(r["survived"]) for r in _rows(eval_csv, 10_000)]
    assert len(predictions) == len(labels)
    assert all(set(p) == {"logits", "probability", "class_id"} for p in predictions)
    accuracy = np.mean([int(p["class_id"]) == y for p, y in zip(predictions, labels)])
    assert accuracy == pytest.approx(results["accuracy"], abs=1e-6)  # evaluate and predict run the same model
    assert accuracy > 0.7


def test_tf1_model_fn_resumes_from_its_checkpoint(tf1_trained, titanic_csvs, tmp_path):
    train_csv, eval_csv = titanic_csvs
    model_dir = tmp_path / "model"
    shutil.copytree(tf1_trained.model_dir, model_dir)
    before = tf1_trained.evaluate(make_input_fn(eval_csv, shuffle=False, epochs=1))
    # A new Estimator (a new program, in the same process) restores the TF1 variables by their checkpoint.
    resumed = estimator.Estimator(tf1_model_fn, model_dir=str(model_dir), config=estimator.RunConfig(tf_random_seed=1))
    after = resumed.evaluate(make_input_fn(eval_csv, shuffle=False, epochs=1))
    assert after["accuracy"] == before["accuracy"] and after["loss"] == pytest.approx(before["loss"], rel=1e-6)
    kernel = resumed.get_variable_value("tower/hidden/kernel")
    resumed.train(make_input_fn(train_csv), steps=20)
    assert resumed.latest_checkpoint().endswith("model.ckpt-120")
    assert resumed.get_variable_value("global_step") == 120  # the global step went on from 100
    assert resumed.get_variable_value("beta1_power") == pytest.approx(0.9**121, rel=1e-4)  # so did Adam
    assert not np.allclose(resumed.get_variable_value("tower/hidden/kernel"), kernel)
    resumed.train(make_input_fn(train_csv), max_steps=120)  # already there: returns at once
    assert resumed.latest_checkpoint().endswith("model.ckpt-120")


def shared_tower_model_fn(features, labels, mode):
    """TF1 weight sharing: one tower applied to two inputs, through reuse=True and AUTO_REUSE."""
    age = tf.reshape(tf.cast(features["age"], tf.float32), [-1, 1]) / 80.0
    fare = tf.reshape(tf.cast(features["fare"], tf.float32), [-1, 1]) / 100.0
    outs = []
    for i, x in enumerate((age, fare)):
        with tf.compat.v1.variable_scope("tower", reuse=i > 0):
            h = tf.compat.v1.layers.dense(x, 4, activation=tf.nn.relu, name="dense")
        with tf.compat.v1.variable_scope("head", reuse=tf.compat.v1.AUTO_REUSE):
            outs.append(tf.compat.v1.layers.dense(h, 1, name="out"))
    logits = tf.reshape(outs[0] + outs[1], [-1])
    loss = tf.compat.v1.losses.sigmoid_cross_entropy(tf.cast(labels, tf.float32), logits)
    train_op = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(
        loss, global_step=tf.compat.v1.train.get_or_create_global_step()
    )
    return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, predictions={"logits": logits})


def test_tf1_variable_reuse_shares_one_set_of_weights(titanic_csvs, tmp_path):
    train_csv, _ = titanic_csvs
    est = estimator.Estimator(shared_tower_model_fn, model_dir=str(tmp_path))
    est.train(make_input_fn(train_csv), steps=3)
    names = [n for n in est.get_variable_names() if n != "global_step"]
    assert names == ["head/out/bias", "head/out/kernel", "tower/dense/bias", "tower/dense/kernel"]
    assert est.get_variable_value("global_step") == 3


def collections_model_fn(features, labels, mode):
    """Reads back what it put in TF1's collections: its loss (LOSSES, REGULARIZATION_LOSSES), the batch
    norm's moving-statistics updates (UPDATE_OPS)."""
    x = tf.stack([tf.cast(features["age"], tf.float32) / 80.0, tf.cast(features["fare"], tf.float32) / 100.0], 1)
    with tf.compat.v1.variable_scope("net"):
        h = tf.compat.v1.layers.batch_normalization(x, training=mode == estimator.ModeKeys.TRAIN, name="bn")
        logits = tf.compat.v1.layers.dense(h, 1, kernel_regularizer=lambda k: 0.0 * tf.reduce_sum(k) + 0.5)[:, 0]
    if mode == estimator.ModeKeys.PREDICT:
        return estimator.EstimatorSpec(mode, predictions={"logits": logits, "normalized": h})
    tf.compat.v1.losses.add_loss(0.0 * tf.reduce_mean(logits) + 1.0)
    loss = tf.compat.v1.losses.get_total_loss()  # 1.0 + the regularizer's 0.5, at every step
    update_ops = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        train_op = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(
            loss, global_step=tf.compat.v1.train.get_global_step()
        )
    return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def test_tf1_collections_and_batch_norm_statistics(titanic_csvs, tmp_path):
    train_csv, _ = titanic_csvs
    est = estimator.Estimator(
        collections_model_fn, model_dir=str(tmp_path), config=estimator.RunConfig(save_summary_steps=10)
    )
    est.train(make_input_fn(train_csv), steps=40)  # one call of 40 steps: the later ones trace in a loop body
    losses = []
    for path in tf.io.gfile.glob(f"{tmp_path}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            losses += [float(tf.make_ndarray(v.tensor)) for v in event.summary.value if v.tag == "loss"]
    assert len(losses) >= 3 and all(loss == pytest.approx(1.5) for loss in losses), losses  # counted once
    # The moving statistics moved (their updates ran), and are in the checkpoint (they are sync-on-read
    # variables, as Keras metrics' are, but the model's).
    mean, variance = est.get_variable_value("net/bn/moving_mean"), est.get_variable_value("net/bn/moving_variance")
    assert np.all(mean > 0.05) and not np.allclose(variance, 1.0)
    # Prediction normalizes with them: restored into the PREDICT program.
    rows = [{"age": 30.0, "fare": 20.0}, {"age": 60.0, "fare": 200.0}]
    predicted = next(
        iter(
            est.predict(
                lambda: tf.data.Dataset.from_tensor_slices({k: [r[k] for r in rows] for k in rows[0]}).batch(2),
                yield_single_examples=False,
            )
        )
    )
    x = np.array([[r["age"] / 80.0, r["fare"] / 100.0] for r in rows], np.float32)
    gamma, beta = est.get_variable_value("net/bn/gamma"), est.get_variable_value("net/bn/beta")
    expected = gamma * (x - mean) / np.sqrt(variance + 1e-3) + beta  # tf.compat.v1.layers' epsilon
    np.testing.assert_allclose(predicted["normalized"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # 16 s on the shared 2-core VM
def test_tf1_layers_under_a_distribution_strategy_with_a_tf_keras_optimizer(titanic_csvs, tmp_path):
    import tf_keras

    def model_fn(features, labels, mode):
        x = tf.stack([tf.cast(features["age"], tf.float32) / 80.0, tf.cast(features["fare"], tf.float32) / 100.0], 1)
        with tf.compat.v1.variable_scope("net"):
            h = tf.compat.v1.layers.batch_normalization(x, training=mode == estimator.ModeKeys.TRAIN, name="bn")
            logits = tf.compat.v1.layers.dense(h, 1, name="out")[:, 0]
        loss = tf.compat.v1.losses.sigmoid_cross_entropy(tf.cast(labels, tf.float32), logits)
        variables = tf.compat.v1.trainable_variables()
        with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
            apply = tf_keras.optimizers.legacy.SGD(0.05).apply_gradients(zip(tf.gradients(loss, variables), variables))
        train_op = tf.group(apply, tf.compat.v1.train.get_global_step().assign_add(1))
        return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)

    train_csv, _ = titanic_csvs
    config = estimator.RunConfig(train_distribute=tf.distribute.MirroredStrategy(["/cpu:0"]))
    est = estimator.Estimator(model_fn, model_dir=str(tmp_path), config=config)
    est.train(make_input_fn(train_csv), steps=20)
    assert est.get_variable_value("global_step") == 20
    assert {"net/bn/moving_mean", "net/out/kernel"} <= set(est.get_variable_names())
    assert np.all(est.get_variable_value("net/bn/moving_mean") > 0.01)


def rnn_model_fn(features, labels, mode, params):
    """TF1 recurrent cells (tf.compat.v1.nn.rnn_cell, dynamic_rnn) over the two numbers as a sequence."""
    sequence = tf.stack([tf.cast(features["age"], tf.float32) / 80.0, tf.cast(features["fare"], tf.float32) / 100.0], 1)
    cells = [tf.compat.v1.nn.rnn_cell.LSTMCell(8), tf.compat.v1.nn.rnn_cell.GRUCell(4)]
    outputs, _ = tf.compat.v1.nn.dynamic_rnn(
        tf.compat.v1.nn.rnn_cell.MultiRNNCell(cells), sequence[:, :, None], dtype=tf.float32, scope="rnn"
    )
    logits = tf.compat.v1.layers.dense(outputs[:, -1], 1, name="out")[:, 0]
    if mode == estimator.ModeKeys.PREDICT:
        return estimator.EstimatorSpec(mode, predictions={"logits": logits})
    loss = tf.compat.v1.losses.sigmoid_cross_entropy(tf.cast(labels, tf.float32), logits)
    train_op = None
    if mode == estimator.ModeKeys.TRAIN or params["train_op_in_every_mode"]:
        train_op = tf.compat.v1.train.AdamOptimizer(0.01).minimize(
            loss, global_step=tf.compat.v1.train.get_or_create_global_step()
        )
    return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


@pytest.mark.slow  # 30 s on the shared 2-core VM: dynamic_rnn's loops, traced per mode
def test_tf1_rnn_cells_and_a_train_op_built_in_eval_mode(titanic_csvs, tmp_path):
    train_csv, eval_csv = titanic_csvs
    est = estimator.Estimator(rnn_model_fn, model_dir=str(tmp_path), params={"train_op_in_every_mode": False})
    est.train(make_input_fn(train_csv), steps=10)
    assert est.evaluate(make_input_fn(eval_csv, shuffle=False, epochs=1), steps=3)["global_step"] == 10
    assert {
        "rnn/multi_rnn_cell/cell_0/lstm_cell/kernel",
        "rnn/multi_rnn_cell/cell_1/gru_cell/gates/kernel",
        "out/kernel",
    } <= set(est.get_variable_names())
    # tf.estimator ignored a train_op returned in EVAL mode; TF 2 would run it: a clear error instead.
    sloppy = estimator.Estimator(rnn_model_fn, model_dir=str(tmp_path), params={"train_op_in_every_mode": True})
    with pytest.raises(ConfigError, match=r"only when mode == ModeKeys\.TRAIN"):
        sloppy.evaluate(make_input_fn(eval_csv, shuffle=False, epochs=1), steps=3)
    assert est.latest_checkpoint().endswith("model.ckpt-10")  # the checkpoint is untouched


def test_v1_layers_route_to_tf_keras_and_leave_tf_keras_alone():
    import tf_keras

    from components.estimator import _compat

    _compat.route_v1_layers_to_tf_keras()
    dense = tf.compat.v1.layers.dense
    assert dense.__module__ == "tf_keras.src.legacy_tf_layers.core"
    assert issubclass(tf.compat.v1.layers.Dense, tf_keras.layers.Dense)  # the TF1 layer over tf_keras's Dense
    assert tf.compat.v1.nn.rnn_cell.LSTMCell.__module__.startswith("tf_keras.")
    assert tf.keras.layers.Dense.__module__.startswith("keras")  # tf.keras is still Keras 3


def test_the_readme_tf1_model_fn_runs_as_shown(titanic_csvs, tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("### TF1-style model_fns", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # its model_dir="model"
    namespace: dict = {}
    exec(compile(code, "README.md (TF1-style model_fns)", "exec"), namespace)
    model = namespace["model"]
    train_csv, eval_csv = titanic_csvs
    model.train(make_input_fn(train_csv), steps=30)
    results = model.evaluate(make_input_fn(eval_csv, shuffle=False, epochs=1))
    assert results["global_step"] == 30 and 0.5 < results["accuracy"] <= 1
    assert {"tower/hidden/kernel", "tower/weights", "beta1_power"} <= set(model.get_variable_names())
