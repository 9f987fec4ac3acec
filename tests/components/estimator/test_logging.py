"""The engine's logger as a user's logging set-up sees it: its lines propagate, and each is printed once."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import numpy as np
    import tensorflow as tf
    from components import estimator

    def model_fn(features, labels, mode):
        w = tf.Variable([[0.0]])
        loss = tf.reduce_mean(tf.square(tf.matmul(features, w) - labels))
        train_op = tf.group(w.assign_sub(0.1 * tf.gradients(loss, [w])[0]),
                            tf.compat.v1.train.get_global_step().assign_add(1))
        return estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)

    def input_fn():
        return tf.data.Dataset.from_tensors((np.ones([2, 1], np.float32), np.ones([2, 1], np.float32))).repeat()

    est = estimator.Estimator(model_fn, sys.argv[1])
    est.train(input_fn, steps=1)
    # force: TF's checkpoint saver logged through the root logger, which gave it a handler
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="USER %(name)s: %(message)s", force=True)
    est.train(input_fn, steps=1)
    """
)


@pytest.mark.slow  # a fresh interpreter imports TensorFlow
def test_the_engine_logger_prints_once_before_and_after_the_user_configures_logging(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # Before basicConfig the engine's line is printed once (by its own handler or the root's), after it the
    # user's handler prints it, alone.
    assert out.stderr.count("training stopped at step 1") == 1
    assert "step 2" not in out.stderr
    assert out.stdout.count("USER tfpipe.estimator: training stopped at step 2") == 1
