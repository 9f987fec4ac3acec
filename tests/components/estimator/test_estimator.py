"""The Estimator contract: custom model_fns, checkpoints, resume, summaries, hooks, predict."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator
from components.errors import ConfigError, InputError, NotTrainedError


def toy_dataset():
    inputs = tf.range(10.0)[:, None]
    labels = inputs * 5.0 + tf.range(5.0)[None, :]
    return tf.data.Dataset.from_tensor_slices(dict(x=inputs, y=labels)).repeat().batch(2)


def seed_example(K):
    """The seed's object-based checkpoint example, written against Keras module `K` (tf_keras or Keras 3)."""

    class Net(K.Model):
        """A simple linear model."""

        def __init__(self):
            super().__init__()
            self.l1 = K.layers.Dense(5)

        def call(self, x):
            return self.l1(x)

    def model_fn(features, labels, mode):
        net = Net()
        opt = K.optimizers.Adam(0.1)
        ckpt = tf.train.Checkpoint(step=tf.compat.v1.train.get_global_step(), optimizer=opt, net=net)
        with tf.GradientTape() as tape:
            output = net(features["x"])
            loss = tf.reduce_mean(tf.abs(output - features["y"]))
        variables = net.trainable_variables
        gradients = tape.gradient(loss, variables)
        return estimator.EstimatorSpec(
            mode,
            loss=loss,
            # Keras 3's apply_gradients returns a Keras Variable; tf.group must still take it.
            train_op=tf.group(opt.apply_gradients(zip(gradients, variables)), ckpt.step.assign_add(1)),
            # Tell the Estimator to save "ckpt" in an object-based format.
            scaffold=tf.compat.v1.train.Scaffold(saver=ckpt),
        )

    return Net, model_fn


@pytest.mark.parametrize("keras_name", ["tf_keras", "keras"])
def test_object_based_checkpoint_loads_outside_the_estimator(keras_name, tmp_path):
    K = pytest.importorskip(keras_name)
    Net, model_fn = seed_example(K)
    est = estimator.Estimator(model_fn, str(tmp_path))
    est.train(toy_dataset, steps=10)
    net, opt = Net(), K.optimizers.Adam(0.1)
    net(tf.zeros([1, 1]))  # Keras 3 layers do not defer restores (Keras 2 did): build before restoring
    ckpt = tf.train.Checkpoint(step=tf.Variable(1, dtype=tf.int64), optimizer=opt, net=net)
    ckpt.restore(tf.train.latest_checkpoint(str(tmp_path))).expect_partial()
    assert ckpt.step.numpy() == 10
    # Keras 3's Dense keeps its kernel as `_kernel`: the object path is net/l1/_kernel there.
    name = next(n for n in est.get_variable_names() if n.startswith("net/l1/") and n.endswith("kernel"))
    np.testing.assert_allclose(net.l1.kernel.numpy(), est.get_variable_value(name))
    # The bias starts at 0 and the outputs stay below y = 5x + [0..4], so ten Adam steps of 0.1 add about 1.
    np.testing.assert_allclose(net.l1.bias.numpy(), np.ones(5), atol=0.2)


def regression_model_fn(features, labels, mode, params):
    """A plain custom model_fn: variables made inside, all three modes, a v1 metric and a Keras metric."""
    w = tf.Variable(tf.zeros([1, 1]), name="w")
    b = tf.Variable(tf.zeros([1]), name="b")
    with tf.GradientTape() as tape:
        pred = tf.matmul(features["x"], w) + b
        loss = tf.reduce_mean(tf.square(pred - labels)) if labels is not None else None
    if mode == estimator.ModeKeys.PREDICT:
        return estimator.EstimatorSpec(mode, predictions={"y": pred, "twice": 2 * pred})
    if mode == estimator.ModeKeys.EVAL:
        mae = tf_keras.metrics.MeanAbsoluteError(name="mae")
        mae.update_state(labels, pred)
        return estimator.EstimatorSpec(mode, loss=loss, eval_metric_ops={"mae": mae})
    opt = tf_keras.optimizers.legacy.SGD(params["lr"])
    gs = tf.compat.v1.train.get_global_step()
    train_op = tf.group(opt.minimize(loss, [w, b], tape=tape), gs.assign_add(1))
    return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def line_input_fn(mode=None):
    x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    ds = tf.data.Dataset.from_tensor_slices(({"x": x}, 3 * x + 1)).batch(16)
    return ds.repeat() if mode == estimator.ModeKeys.TRAIN else ds


def test_train_evaluate_predict_with_custom_model_fn(tmp_path):
    cfg = estimator.RunConfig(save_summary_steps=10, log_step_count_steps=10, save_checkpoints_steps=50)
    est = estimator.Estimator(regression_model_fn, str(tmp_path), config=cfg, params={"lr": 0.3})
    est.train(line_input_fn, max_steps=200)
    result = est.evaluate(line_input_fn)
    assert result["global_step"] == 200
    assert result["loss"] < 1e-3 and result["mae"] < 0.03
    assert est.get_variable_value("w")[0, 0] == pytest.approx(3.0, abs=0.05)
    preds = list(est.predict(line_input_fn))
    assert len(preds) == 64 and set(preds[0]) == {"y", "twice"}
    assert preds[0]["twice"] == pytest.approx(2 * preds[0]["y"])
    only = next(est.predict(line_input_fn, predict_keys="y", yield_single_examples=False))
    assert set(only) == {"y"} and only["y"].shape == (16, 1)
    # Checkpoints at the start and every 50 steps, five kept, named model.ckpt-<step>; summaries for TensorBoard.
    kept = sorted(int(p.split("-")[-1].split(".")[0]) for p in glob.glob(str(tmp_path / "model.ckpt-*.index")))
    assert kept == [0, 50, 100, 150, 200]
    tags = _event_tags(str(tmp_path))
    assert {"loss", "global_step/sec"} <= tags
    assert {"loss", "mae"} <= _event_tags(str(tmp_path / "eval"))


def _event_tags(path):
    tags = set()
    for f in glob.glob(os.path.join(path, "events.out.tfevents.*")):
        for e in tf.compat.v1.train.summary_iterator(f):
            tags |= {v.tag for v in e.summary.value}
    return tags


def test_max_steps_resumes_and_stops(tmp_path):
    est = estimator.Estimator(regression_model_fn, str(tmp_path), params={"lr": 0.1})
    est.train(line_input_fn, max_steps=30)
    assert est.get_variable_value("global_step") == 30
    est.train(line_input_fn, max_steps=30)  # already there: returns at once
    assert est.get_variable_value("global_step") == 30
    est.train(line_input_fn, steps=5)
    assert est.get_variable_value("global_step") == 35
    est.train(line_input_fn, max_steps=47)
    assert est.get_variable_value("global_step") == 47


def test_hooks_and_listeners_see_every_step(tmp_path):
    seen, saves = [], []

    class Record(estimator.SessionRunHook):
        def before_run(self, run_context):
            return estimator.SessionRunArgs({"loss": "loss", "step": "global_step"})

        def after_run(self, run_context, run_values):
            seen.append(run_values.results["step"])

    class Listen(estimator.CheckpointSaverListener):
        def after_save(self, session, global_step_value):
            saves.append(global_step_value)

    cfg = estimator.RunConfig(save_checkpoints_steps=4)
    est = estimator.Estimator(regression_model_fn, str(tmp_path), config=cfg, params={"lr": 0.1})
    est.train(
        line_input_fn, steps=100, hooks=[Record(), estimator.StopAtStepHook(num_steps=10)], saving_listeners=[Listen()]
    )
    assert seen == list(range(1, 11))
    assert saves == [4, 8, 10]


def test_training_stops_when_input_runs_out(tmp_path):
    est = estimator.Estimator(regression_model_fn, str(tmp_path), params={"lr": 0.1})
    est.train(lambda: line_input_fn(mode=None))  # 4 batches, no repeat
    assert est.get_variable_value("global_step") == 4


def test_a_repeated_input_that_still_ends_counts_every_step_it_ran(tmp_path):
    # repeat() over a one-shot generator reports infinite input, yet ends once an epoch yields nothing;
    # here inside a multi-step call (5 batches, 4 steps a call). The global step and the checkpoint
    # must say 5, the steps that ran.
    def input_fn():
        batches = iter([(np.ones((2, 1), "float32"), np.ones((2, 1), "float32"))] * 5)
        spec = (tf.TensorSpec([2, 1], tf.float32),) * 2
        ds = tf.data.Dataset.from_generator(lambda: batches, output_signature=spec).map(lambda x, y: ({"x": x}, y))
        assert ds.repeat().cardinality() == tf.data.INFINITE_CARDINALITY
        return ds.repeat()

    est = estimator.Estimator(
        regression_model_fn, str(tmp_path), params={"lr": 0.1}, config=estimator.RunConfig(steps_per_execution=4)
    )
    est.train(input_fn, steps=20)
    assert est.get_variable_value("global_step") == 5
    assert est.latest_checkpoint().endswith("model.ckpt-5")


def test_bad_use_fails_clearly(tmp_path):
    est = estimator.Estimator(regression_model_fn, str(tmp_path), params={"lr": 0.1})
    with pytest.raises(ConfigError, match="steps or max_steps"):
        est.train(line_input_fn, steps=1, max_steps=2)
    with pytest.raises(NotTrainedError, match="call train"):
        est.evaluate(line_input_fn)
    with pytest.raises(InputError, match=r"must return a tf.data.Dataset"):
        est.train(lambda: [1, 2, 3], steps=1)
    with pytest.raises(InputError, match="Dataset whose elements"):
        est.train(lambda: tf.data.Dataset.from_tensors((1, 2, 3)), steps=1)

    def no_labels_fn(features, mode):
        return estimator.EstimatorSpec(mode, predictions=features["x"])

    with pytest.raises(ConfigError, match="does not take `labels`"):
        estimator.Estimator(no_labels_fn, str(tmp_path / "b")).train(line_input_fn, steps=1)
    with pytest.raises(ConfigError, match="named `features`"):
        estimator.Estimator(lambda x, mode: None)
    with pytest.raises(ConfigError, match="did not increment the global step"):

        def stuck(features, labels, mode):
            return estimator.EstimatorSpec(mode, loss=tf.constant(1.0), train_op=tf.no_op())

        estimator.Estimator(stuck, str(tmp_path / "c")).train(line_input_fn, steps=3)


def test_run_config_reads_tf_config(monkeypatch):
    cluster = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"], "ps": ["h3:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    cfg = estimator.RunConfig()
    assert (cfg.task_type, cfg.task_id, cfg.is_chief) == ("worker", 1, False)
    assert (cfg.num_worker_replicas, cfg.num_ps_replicas, cfg.global_id_in_cluster) == (3, 1, 2)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}}))
    assert estimator.RunConfig().is_chief
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        estimator.RunConfig()
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ConfigError, match="not both"):
        estimator.RunConfig(save_checkpoints_steps=10, save_checkpoints_secs=10)
    cfg = estimator.RunConfig(save_checkpoints_steps=10).replace(model_dir="/tmp/x", tf_random_seed=3)
    assert (cfg.model_dir, cfg.tf_random_seed, cfg.save_checkpoints_steps) == ("/tmp/x", 3, 10)
