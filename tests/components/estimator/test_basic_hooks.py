"""tf.estimator's standard hooks on the TF2 loop, used as tf.estimator's docs used them."""

import glob
import logging
import os
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from components import estimator
from components.errors import ConfigError
from tests.components.estimator.test_layer_identity import input_fn, unnamed_layers_model_fn


def line_model_fn(features, labels, mode, params):
    """w*x fitted to 2x+1 by plain gradient descent; params["hooks"](loss, pred) makes training hooks."""
    w = tf.Variable([[0.0]], name="w")
    pred = tf.matmul(features["x"], w)
    loss = tf.reduce_mean(tf.square(pred - labels))
    if mode != estimator.ModeKeys.TRAIN:
        hooks = params.get("eval_hooks", lambda loss: [])(loss)
        return estimator.EstimatorSpec(mode, loss=loss, predictions=pred, evaluation_hooks=hooks)
    train_op = tf.group(
        w.assign_sub(0.1 * tf.gradients(loss, [w])[0]), tf.compat.v1.train.get_global_step().assign_add(1)
    )
    hooks = params.get("hooks", lambda loss, pred: [])(loss, pred)
    return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, training_hooks=hooks)


def _tags(path):
    return {
        v.tag
        for f in glob.glob(os.path.join(path, "events.out.tfevents.*"))
        for e in tf.compat.v1.train.summary_iterator(f)
        for v in e.summary.value
    }


def test_logging_tensor_hook_logs_every_n_iter_and_at_end(tmp_path):
    logged = []

    def hooks(loss, pred):
        step = tf.compat.v1.train.get_global_step()
        return [
            estimator.LoggingTensorHook(
                {"loss": loss, "step": step},
                every_n_iter=2,
                at_end=True,
                formatter=lambda values: logged.append(dict(values)) or "",
            )
        ]

    est = estimator.Estimator(line_model_fn, str(tmp_path), params={"hooks": hooks})
    est.train(input_fn, steps=5)
    assert [int(v["step"]) for v in logged] == [0, 2, 4, 4]  # steps 1, 3, 5, and at the end
    assert all(np.isfinite(v["loss"]) for v in logged)
    with pytest.raises(ConfigError):
        estimator.LoggingTensorHook({"loss": "loss"})  # neither a cadence nor at_end


def test_step_counter_hook_writes_steps_per_second(tmp_path):
    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path / "model"))
    est.train(input_fn, steps=4, hooks=[estimator.StepCounterHook(every_n_steps=2, output_dir=str(tmp_path / "sc"))])
    assert "global_step/sec" in _tags(str(tmp_path / "sc"))


def test_nan_tensor_hook_raises_or_stops(tmp_path):
    def watch(fail):
        def hooks(loss, pred):
            step = tf.compat.v1.train.get_global_step()
            watched = tf.where(step >= 2, tf.constant(np.nan), loss)  # NaN once the step made it 2
            return [estimator.NanTensorHook(watched, fail_on_nan_loss=fail)]

        return hooks

    est = estimator.Estimator(line_model_fn, str(tmp_path / "a"), params={"hooks": watch(True)})
    with pytest.raises(estimator.NanLossDuringTrainingError):
        est.train(input_fn, steps=10)
    est = estimator.Estimator(line_model_fn, str(tmp_path / "b"), params={"hooks": watch(False)})
    est.train(input_fn, steps=10)
    assert est.get_variable_value("global_step") == 2


def test_checkpoint_saver_hook_saves_on_its_cadence_and_calls_listeners(tmp_path):
    saved = []

    class Listen(estimator.CheckpointSaverListener):
        def after_save(self, session, global_step_value):
            saved.append(global_step_value)

    ckpt_dir = str(tmp_path / "ckpts")
    hook = estimator.CheckpointSaverHook(ckpt_dir, save_steps=3)
    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path / "model"))
    est.train(input_fn, steps=7, hooks=[hook], saving_listeners=[Listen()])
    assert saved == [0, 3, 6, 7]  # at the start, every 3 steps, at the end
    assert tf.train.latest_checkpoint(ckpt_dir).endswith("model.ckpt-7")
    # The hook saved instead of the Estimator (as in tf.estimator); its checkpoint evaluates.
    assert est.latest_checkpoint() is None
    assert est.evaluate(input_fn, checkpoint_path=ckpt_dir)["global_step"] == 7


def test_checkpoint_saver_hook_saves_what_its_saver_holds_at_each_call(tmp_path):
    # The user's saver gains an object between calls; the next call's checkpoints hold it.
    step = tf.Variable(0, dtype=tf.int64)
    saver = tf.train.Checkpoint(step=step)
    own = str(tmp_path / "own")
    hook = estimator.CheckpointSaverHook(own, save_steps=2, saver=saver)
    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path / "model"))
    est.train(input_fn, steps=3, hooks=[hook])
    saver.extra = tf.Variable(42.0)
    est.train(input_fn, steps=3, hooks=[hook])
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(own))
    assert reader.get_tensor("extra/.ATTRIBUTES/VARIABLE_VALUE") == 42.0


def test_summary_saver_hook_writes_summary_protos(tmp_path):
    def hooks(loss, pred):
        summary = tf.raw_ops.ScalarSummary(tags="my_loss", values=loss)
        return [estimator.SummarySaverHook(save_steps=2, output_dir=str(tmp_path / "s"), summary_op=summary)]

    est = estimator.Estimator(line_model_fn, str(tmp_path / "model"), params={"hooks": hooks})
    est.train(input_fn, steps=5)
    steps = sorted(
        e.step
        for f in glob.glob(str(tmp_path / "s" / "events.out.tfevents.*"))
        for e in tf.compat.v1.train.summary_iterator(f)
        if any(v.tag == "my_loss" for v in e.summary.value)
    )
    assert steps == [1, 3, 5]
    with pytest.raises(ConfigError, match="summary_op"):
        estimator.SummarySaverHook(save_steps=2, output_dir=str(tmp_path))


def test_v1_summaries_in_the_model_fn_reach_model_dir(tmp_path):
    """TF2 turns tf.compat.v1.summary ops into its own; the Estimator writes them on its summary cadence."""

    def hooks(loss, pred):
        tf.compat.v1.summary.scalar("v1_loss", loss)
        return []

    cfg = estimator.RunConfig(save_summary_steps=2)
    est = estimator.Estimator(line_model_fn, str(tmp_path), config=cfg, params={"hooks": hooks})
    est.train(input_fn, steps=4)
    assert "v1_loss" in _tags(str(tmp_path))


def test_profiler_hook_writes_a_profile(tmp_path):
    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path / "model"))
    est.train(input_fn, steps=2, hooks=[estimator.ProfilerHook(save_steps=100, output_dir=str(tmp_path / "prof"))])
    assert glob.glob(str(tmp_path / "prof" / "plugins" / "profile" / "*" / "*.xplane.pb"))


def test_final_ops_hook_gives_the_last_values_in_evaluation(tmp_path):
    made = []

    def eval_hooks(loss):
        made.append(estimator.FinalOpsHook({"loss": loss, "step": tf.compat.v1.train.get_global_step()}))
        return made[-1:]

    est = estimator.Estimator(line_model_fn, str(tmp_path), params={"eval_hooks": eval_hooks})
    est.train(input_fn, steps=3)
    one_batch = lambda: input_fn().take(1)  # noqa: E731
    result = est.evaluate(one_batch)
    ran = [h for h in made if h.final_ops_values is not None]  # the model_fn is traced more than once
    assert len(ran) == 1
    values = ran[0].final_ops_values
    assert values["step"] == 3 and values["loss"] == pytest.approx(result["loss"])


def test_feed_fn_hook_is_called_and_feeds_fail_clearly(tmp_path):
    calls = []
    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path))
    est.train(input_fn, steps=2, hooks=[estimator.FeedFnHook(lambda: calls.append(1) or {})])
    assert len(calls) == 2
    with pytest.raises(ConfigError, match="input_fn"):
        est.train(input_fn, steps=2, hooks=[estimator.FeedFnHook(lambda: {"x": [[1.0]]})])


def test_global_step_waiter_hook_waits_for_the_chief(tmp_path):
    model_dir, started = str(tmp_path), threading.Event()

    class Started(estimator.SessionRunHook):
        def begin(self):
            self.at = time.time()
            started.set()

    def chief():  # the chief's checkpoint at step 5, half a second after this worker's training began
        started.wait(60)
        time.sleep(0.5)
        root = tf.train.Checkpoint(global_step=tf.Variable(5, dtype=tf.int64))
        tf.train.CheckpointManager(root, model_dir, max_to_keep=None, checkpoint_name="model.ckpt").save(5)

    est = estimator.Estimator(unnamed_layers_model_fn, model_dir)
    thread, first = threading.Thread(target=chief), Started()
    thread.start()
    est.train(input_fn, steps=1, hooks=[first, estimator.GlobalStepWaiterHook(wait_until_step=3)])
    thread.join()
    assert time.time() - first.at >= 0.5
    assert os.path.exists(os.path.join(model_dir, "model.ckpt-1.index"))  # then it trained


def test_hooks_on_a_step_cadence_keep_multi_step_calls_and_others_see_every_step(tmp_path):
    calls = {}

    def counting(cls):
        class Counting(cls):
            def after_run(self, run_context, run_values):
                calls[cls.__name__] = calls.get(cls.__name__, 0) + 1
                super().after_run(run_context, run_values)

        return Counting

    class Every25(estimator.SessionRunHook):  # a user hook that says when it is next due
        def steps_until_due(self, global_step):
            return 25 - global_step % 25

    saved = []

    class Listen(estimator.CheckpointSaverListener):
        def after_save(self, session, global_step_value):
            saved.append(global_step_value)

    config = estimator.RunConfig(
        save_checkpoints_steps=None, save_summary_steps=0, log_step_count_steps=1000, steps_per_execution=100
    )
    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path / "a"), config=config)
    hooks = [
        counting(estimator.CheckpointSaverHook)(str(tmp_path / "ckpts"), save_steps=40),
        counting(estimator.StepCounterHook)(every_n_steps=30),
        counting(Every25)(),
    ]
    est.train(input_fn, steps=100, hooks=hooks, saving_listeners=[Listen()])
    # Calls end where a hook is next due: 1 (the counter's timer fires on the first step it sees, as tf's
    # SecondOrStepTimer does), 25, 31, 40 (the saver), 50, 61, 75, 80, 91, 100: ten calls, not 100 steps.
    assert calls == {"CheckpointSaverHook": 10, "StepCounterHook": 10, "Every25": 10}
    assert saved == [0, 40, 80, 100]

    # A hook that does not say when it is due sees every step, as in tf.estimator.
    calls.clear()
    estimator.Estimator(unnamed_layers_model_fn, str(tmp_path / "b"), config=config).train(
        input_fn, steps=30, hooks=[counting(estimator.SessionRunHook)()]
    )
    assert calls == {"SessionRunHook": 30}


@pytest.mark.parametrize("optimizer", ["Ftrl", "Adagrad"])
def test_a_nan_loss_inside_a_multi_step_call_fails_naming_its_step(tmp_path, optimizer):
    # Rows 40-47 are NaN: batch 6 of 8 rows. FTRL recovers from the NaN by the end of the call (its
    # weights come back finite), so only a check of every step's loss catches it, as tf.estimator did.
    x = np.random.RandomState(0).randn(64, 2).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    x[40:48] = np.nan
    est = estimator.LinearRegressor(
        [tf.feature_column.numeric_column("x", shape=[2])], model_dir=str(tmp_path), optimizer=optimizer
    )
    with pytest.raises(estimator.NanLossDuringTrainingError, match="loss is nan at step 6;"):
        est.train(lambda: tf.data.Dataset.from_tensor_slices(({"x": x}, y)).batch(8).repeat(), steps=12)


def test_global_step_per_second_follows_the_logging_cadence(tmp_path):
    config = estimator.RunConfig(save_summary_steps=10, log_step_count_steps=4)
    est = estimator.Estimator(unnamed_layers_model_fn, str(tmp_path), config=config)
    est.train(input_fn, steps=20)
    steps = sorted(
        e.step
        for f in glob.glob(os.path.join(str(tmp_path), "events.out.tfevents.*"))
        for e in tf.compat.v1.train.summary_iterator(f)
        for v in e.summary.value
        if v.tag == "global_step/sec"
    )
    assert steps == [4, 8, 12, 16, 20]


class _Gate(estimator.SessionRunHook):
    """Holds a train() call at a point of its hooks' start: `wait_in_begin` waits in begin(), before the
    Estimator's own hooks begin; after_create_session comes once every hook of the call has begun."""

    def __init__(
        self,
        began: threading.Event,
        wait_for: threading.Event,
        wait_in_begin: bool,
        entered: threading.Event | None = None,
    ):
        self.began, self.wait_for, self.wait_in_begin, self.entered = began, wait_for, wait_in_begin, entered

    def begin(self):
        if self.wait_in_begin:
            self.entered.set()
            assert self.wait_for.wait(60)

    def after_create_session(self, session, coord):
        self.began.set()
        if not self.wait_in_begin:
            assert self.wait_for.wait(60)


def test_two_estimators_training_at_once_in_two_threads_each_save_their_own_model(tmp_path):
    """B's train() has started in one thread when A's starts in another and begins its hooks; then B's
    own hooks (the checkpoint saver among them) begin. Each call's hooks act on its own Estimator."""
    from tests.components.estimator.test_estimator import line_input_fn, regression_model_fn

    b_entered, a_began, b_began = threading.Event(), threading.Event(), threading.Event()
    est_a = estimator.Estimator(regression_model_fn, str(tmp_path / "a"), params={"lr": 0.1})
    est_b = estimator.Estimator(regression_model_fn, str(tmp_path / "b"), params={"lr": 0.1})
    errors = []

    def train_b():
        try:
            est_b.train(line_input_fn, steps=7, hooks=[_Gate(b_began, a_began, True, b_entered)])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    thread = threading.Thread(target=train_b)
    thread.start()
    assert b_entered.wait(120)
    est_a.train(line_input_fn, steps=3, hooks=[_Gate(a_began, b_began, False)])
    thread.join(120)
    assert not errors
    assert est_a.get_variable_value("global_step") == 3
    assert est_b.get_variable_value("global_step") == 7
    assert tf.train.latest_checkpoint(str(tmp_path / "a")).endswith("-3")
    assert tf.train.latest_checkpoint(str(tmp_path / "b")).endswith("-7")


def test_logging_tensor_hook_takes_tensor_names(tmp_path, caplog):
    """As tf.estimator's hook did: a list or dict of names, an op's name standing for its only output."""

    def hooks(loss, pred):
        tf.identity(loss, name="my_loss")
        return [
            estimator.LoggingTensorHook(["my_loss", "loss"], every_n_iter=1),
            estimator.LoggingTensorHook({"named loss": "my_loss:0"}, every_n_iter=2),
        ]

    est = estimator.Estimator(line_model_fn, str(tmp_path), params={"hooks": hooks})
    with caplog.at_level(logging.INFO, logger="tfpipe.estimator"):  # the engine's logger propagates
        est.train(input_fn, steps=3)
    lines = [r.getMessage() for r in caplog.records if r.name == "tfpipe.estimator"]
    by_name = [line for line in lines if line.startswith("my_loss = ")]
    assert len(by_name) == 3 and all(", loss = " in line for line in by_name)
    assert len([line for line in lines if line.startswith("named loss = ")]) == 2

    def ambiguous(loss, pred):
        tf.unique(tf.constant([1, 1]), name="two_outputs")
        return [estimator.LoggingTensorHook(["two_outputs"], every_n_iter=1)]

    est = estimator.Estimator(line_model_fn, str(tmp_path / "b"), params={"hooks": ambiguous})
    with pytest.raises(ConfigError, match="2 outputs"):
        est.train(input_fn, steps=1)


def test_training_from_scratch_writes_model_ckpt_0_before_its_first_step(tmp_path):
    """As tf.estimator did: a script that waits for the first checkpoint sees model.ckpt-0 once training starts."""
    seen = []

    class Look(estimator.SessionRunHook):
        def before_run(self, run_context):
            seen.append(tf.train.latest_checkpoint(str(tmp_path)))

    est = estimator.Estimator(line_model_fn, str(tmp_path))
    est.train(input_fn, steps=2, hooks=[Look()])
    assert seen[0] == str(tmp_path / "model.ckpt-0")
    assert tf.train.load_checkpoint(seen[0]).get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == 0
    est.train(input_fn, steps=2, hooks=[Look()])
    assert seen[2] == str(tmp_path / "model.ckpt-2")  # a later call starts from the last call's checkpoint
    assert sorted(p.name for p in tmp_path.glob("model.ckpt-*.index")) == [f"model.ckpt-{s}.index" for s in (0, 2, 4)]
