"""Real localhost clusters from TF_CONFIG: MultiWorkerMirroredStrategy, ParameterServerStrategy with an
evaluator, a worker killed mid-training; plus the strategies that run in one process."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components import estimator
from components.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cluster, task_type, index, model_dir, max_steps, kind, *extra):
    env = dict(
        os.environ,
        TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.components.estimator.cluster_worker",
            str(model_dir),
            str(max_steps),
            kind,
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc, timeout=300) -> tuple[int, dict | None, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    return proc.returncode, json.loads(lines[-1][len("RESULT ") :]) if lines else None, err


def _serve_check(export_path):
    loaded = tf.saved_model.load(export_path)
    out = loaded.signatures["predict"](x=tf.constant([[-0.9], [0.9]]))
    assert out["classes"].numpy().ravel().tolist() == [b"0", b"1"]


@pytest.mark.slow
def test_multi_worker_mirrored_two_workers_train_one_model(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{_port()}", f"127.0.0.1:{_port()}"]}
    procs = [_start(cluster, "worker", i, tmp_path / "model", 60, "multi_worker") for i in range(2)]
    (rc0, chief, err0), (rc1, other, err1) = (_finish(p) for p in procs)
    assert rc0 == 0 and rc1 == 0, err0[-2000:] + err1[-2000:]
    # Worker 0 is the chief: it alone evaluates and exports; worker 1 trained its shard and returns.
    assert chief["result"]["global_step"] == 60 and chief["result"]["accuracy"] > 0.9
    assert other["result"] == {} and other["exports"] == []
    assert len(chief["exports"]) == 1 and os.listdir(tmp_path / "model" / "export" / "final") == [
        os.path.basename(chief["exports"][0])
    ]
    _serve_check(chief["exports"][0])


@pytest.mark.slow
def test_parameter_server_cluster_with_an_evaluator(tmp_path):
    cluster = {
        "chief": [f"127.0.0.1:{_port()}"],
        "worker": [f"127.0.0.1:{_port()}", f"127.0.0.1:{_port()}"],
        "ps": [f"127.0.0.1:{_port()}"],
        "evaluator": [f"127.0.0.1:{_port()}"],
    }
    servers = [_start(cluster, "ps", 0, tmp_path / "model", 60, "ps")]
    servers += [_start(cluster, "worker", i, tmp_path / "model", 60, "ps") for i in range(2)]
    chief = _start(cluster, "chief", 0, tmp_path / "model", 60, "ps")
    evaluator = _start(cluster, "evaluator", 0, tmp_path / "model", 60, "ps")
    servers += [chief, evaluator]  # all killed at the end, whatever happens
    try:
        rc, chief_out, err = _finish(chief)
        assert rc == 0, err[-3000:]
        rc, eval_out, err = _finish(evaluator)
        assert rc == 0, err[-3000:]
    finally:
        for s in servers:
            s.kill()
            s.communicate()
    # With an evaluator task the chief only trains; the evaluator saw the final checkpoint and exported.
    assert chief_out["result"] == {}
    assert eval_out["result"]["global_step"] == 60 and eval_out["result"]["accuracy"] > 0.9
    steps_seen = sorted(
        int(p.name[len("model.ckpt-") : -len(".index")]) for p in (tmp_path / "model").glob("model.ckpt-*.index")
    )
    assert steps_seen[-1] == 60
    _serve_check(eval_out["exports"][0])


@pytest.mark.slow
def test_killed_worker_is_reported_and_the_cluster_resumes(tmp_path):
    model_dir = tmp_path / "model"
    cluster = {"worker": [f"127.0.0.1:{_port()}", f"127.0.0.1:{_port()}"]}
    procs = [_start(cluster, "worker", i, model_dir, 100000, "multi_worker", "--slow") for i in range(2)]
    deadline = time.time() + 180
    # The `checkpoint` state file names a checkpoint once it is whole (its .index comes first).
    while not (model_dir / "checkpoint").exists() and time.time() < deadline:
        time.sleep(0.3)
    assert (model_dir / "checkpoint").exists(), "the cluster never checkpointed"
    procs[1].send_signal(signal.SIGKILL)
    rc, _, err = _finish(procs[0], timeout=240)
    _finish(procs[1])
    assert rc != 0
    assert "ClusterError" in err and "stopped answering" in err and "resumes from the last checkpoint" in err
    saved = int(tf.train.latest_checkpoint(str(model_dir)).rsplit("-", 1)[-1])  # what a restart resumes from

    # Restarted, both workers pick up the checkpoint and finish.
    cluster = {"worker": [f"127.0.0.1:{_port()}", f"127.0.0.1:{_port()}"]}
    procs = [_start(cluster, "worker", i, model_dir, saved + 40, "multi_worker") for i in range(2)]
    (rc0, chief, err0), (rc1, _, err1) = (_finish(p) for p in procs)
    assert rc0 == 0 and rc1 == 0, err0[-2000:] + err1[-2000:]
    assert f"(global step {saved})" in err0 and chief["result"]["global_step"] == saved + 40


def test_single_process_strategies_match_no_strategy(tmp_path):
    x = tf.feature_column.numeric_column("x")

    def input_fn(input_context=None):
        xs = tf.range(64, dtype=tf.float32) / 32.0 - 1.0
        return tf.data.Dataset.from_tensor_slices(({"x": xs}, tf.cast(xs > 0.1, tf.int32))).repeat().batch(16)

    weights = {}
    for name, strategy in [
        ("none", None),
        ("one_device", tf.distribute.OneDeviceStrategy("/cpu:0")),
        ("central_storage", tf.distribute.experimental.CentralStorageStrategy(["/cpu:0"])),
    ]:
        cfg = estimator.RunConfig(train_distribute=strategy, eval_distribute=strategy, tf_random_seed=1)
        est = estimator.LinearClassifier([x], model_dir=str(tmp_path / name), config=cfg, optimizer="SGD")
        est.train(input_fn, steps=20)
        assert est.evaluate(input_fn, steps=2)["global_step"] == 20
        weights[name] = est.get_variable_value("linear/linear_model/x/weights")
    np.testing.assert_allclose(weights["one_device"], weights["none"], rtol=1e-5)
    np.testing.assert_allclose(weights["central_storage"], weights["none"], rtol=1e-5)


def test_the_feature_transform_in_the_step_and_in_the_strategy_s_dataset_map_train_the_same_model(tmp_path):
    # Without a strategy the feature columns' transform runs inside the traced step; under one, in
    # the dataset map. The same columns, an unseen vocabulary value among them, must give one model.
    age = tf.feature_column.numeric_column("age")
    town = tf.feature_column.categorical_column_with_vocabulary_list("town", ["a", "b", "c"])
    tag = tf.feature_column.categorical_column_with_hash_bucket("tag", 5)
    linear = [tf.feature_column.bucketized_column(age, [0.0, 0.5]), town, tag]
    dnn = [age, tf.feature_column.embedding_column(town, 2), tf.feature_column.indicator_column(tag)]

    def input_fn(input_context=None):
        ages = np.linspace(-1, 1, 24, dtype=np.float32)
        towns = np.array(["a", "b", "c", "z"] * 6)  # "z" is outside the vocabulary
        tags = np.array([f"t{i % 7}" for i in range(24)])
        labels = ((ages > 0) ^ (towns == "b")).astype(np.int32)
        return tf.data.Dataset.from_tensor_slices(({"age": ages, "town": towns, "tag": tags}, labels)).batch(8).repeat()

    models = {}
    for name, strategy in [("step", None), ("map", tf.distribute.OneDeviceStrategy("/cpu:0"))]:
        cfg = estimator.RunConfig(train_distribute=strategy, eval_distribute=strategy, tf_random_seed=2)
        est = estimator.DNNLinearCombinedClassifier(
            linear_feature_columns=linear,
            dnn_feature_columns=dnn,
            dnn_hidden_units=[3],
            model_dir=str(tmp_path / name),
            config=cfg,
        )
        est.train(input_fn, steps=12)
        models[name] = est
    step, mapped = models["step"], models["map"]
    assert step.get_variable_names() == mapped.get_variable_names()
    for name in step.get_variable_names():
        np.testing.assert_allclose(
            step.get_variable_value(name), mapped.get_variable_value(name), rtol=1e-5, atol=1e-6, err_msg=name
        )
    assert step.evaluate(input_fn, steps=3) == pytest.approx(mapped.evaluate(input_fn, steps=3), rel=1e-5)


def test_tpu_strategy_without_a_tpu_says_so():
    with pytest.raises(ConfigError, match="no TPU found"):
        estimator.tpu_strategy()


def test_local_train_and_evaluate_with_exporters(tmp_path):
    x = tf.feature_column.numeric_column("x")

    def input_fn():
        xs = tf.range(64, dtype=tf.float32) / 32.0 - 1.0
        return tf.data.Dataset.from_tensor_slices(({"x": xs}, tf.cast(xs > 0.1, tf.int32))).repeat().batch(16)

    def eval_fn():
        return input_fn().take(4)

    receiver = estimator.export.build_raw_serving_input_receiver_fn({"x": tf.zeros([1, 1])})
    cfg = estimator.RunConfig(save_checkpoints_steps=10, tf_random_seed=1)
    est = estimator.LinearClassifier([x], model_dir=str(tmp_path), config=cfg, optimizer="SGD")
    exporters = [
        estimator.LatestExporter("latest", receiver, exports_to_keep=2),
        estimator.BestExporter("best", receiver),
        estimator.FinalExporter("final", receiver),
    ]
    result, exports = estimator.train_and_evaluate(
        est,
        estimator.TrainSpec(input_fn, max_steps=50),
        estimator.EvalSpec(eval_fn, exporters=exporters, throttle_secs=0),
    )
    assert result["global_step"] == 50
    listing = {e.name: sorted(os.listdir(tmp_path / "export" / e.name)) for e in exporters}
    assert len(listing["latest"]) == 2 and len(listing["final"]) == 1 and len(listing["best"]) >= 1
    assert {os.fsdecode(p) for p in exports} >= {str(tmp_path / "export" / "final" / listing["final"][0])}
    # Five evaluations were written; a new BestExporter (a restarted process) recovers the best of them.
    losses = [
        float(tf.make_ndarray(v.tensor))
        for path in tf.io.gfile.glob(str(tmp_path / "eval" / "*tfevents*"))
        for ev in tf.compat.v1.train.summary_iterator(path)
        for v in ev.summary.value
        if v.tag == "loss"
    ]
    assert len(losses) == 5
    assert estimator.BestExporter("best", receiver)._best_from_events(str(tmp_path))["loss"] == pytest.approx(
        min(losses)
    )
    with pytest.raises(ConfigError, match="max_steps is required"):
        estimator.train_and_evaluate(est, estimator.TrainSpec(input_fn), estimator.EvalSpec(eval_fn))


def test_evaluations_during_train_and_evaluate_leave_the_model_of_one_train_call(tmp_path):
    """The training input is read once, across the evaluations, as tf.estimator's listener did: the
    model is the one train(max_steps=N) makes. Batches in a fixed order, so a restarted input shows."""
    x = tf.feature_column.numeric_column("x")
    calls = []

    def input_fn():
        calls.append(1)
        xs = tf.range(64, dtype=tf.float32) / 32.0 - 1.0
        return tf.data.Dataset.from_tensor_slices(({"x": xs}, tf.cast(xs > 0.1, tf.int32))).repeat().batch(12)

    cfg = estimator.RunConfig(save_checkpoints_steps=10, tf_random_seed=1)
    both = estimator.LinearClassifier([x], model_dir=str(tmp_path / "both"), config=cfg, optimizer="SGD")
    result, _ = estimator.train_and_evaluate(
        both,
        estimator.TrainSpec(input_fn, max_steps=45),
        estimator.EvalSpec(lambda: input_fn().take(2), throttle_secs=0),
    )
    assert result["global_step"] == 45
    assert sorted(estimator.experimental.read_eval_metrics(both.eval_dir())) == [10, 20, 30, 40, 45]
    assert len(calls) == 1 + 5  # one training input; one per evaluation

    one = estimator.LinearClassifier([x], model_dir=str(tmp_path / "one"), config=cfg, optimizer="SGD")
    one.train(input_fn, max_steps=45)
    for name in ("linear/linear_model/x/weights", "linear/linear_model/bias_weights"):
        np.testing.assert_array_equal(both.get_variable_value(name), one.get_variable_value(name))


def test_train_spec_saving_listeners_hear_every_save(tmp_path):
    heard = []

    class Listener(estimator.CheckpointSaverListener):
        def after_save(self, session, global_step):
            heard.append(global_step)

    x = tf.feature_column.numeric_column("x")

    def input_fn():
        return tf.data.Dataset.from_tensor_slices(({"x": [0.5, -0.5]}, [1, 0])).repeat().batch(2)

    est = estimator.LinearClassifier(
        [x], model_dir=str(tmp_path), config=estimator.RunConfig(save_checkpoints_steps=10)
    )
    estimator.train_and_evaluate(
        est,
        estimator.TrainSpec(input_fn, max_steps=25, saving_listeners=[Listener()]),
        estimator.EvalSpec(lambda: input_fn().take(1), throttle_secs=0),
    )
    assert heard == [10, 20, 25]
