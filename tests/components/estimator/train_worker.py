"""Run as a process by the tests: trains the line-fitting model (optionally under MirroredStrategy).

python -m tests.components.estimator.train_worker MODEL_DIR MAX_STEPS [--mirrored] [--slow]
"""

import json
import sys
import time

import tensorflow as tf

if "--mirrored" in sys.argv:
    # Two logical CPU devices stand in for two GPUs.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from components import estimator  # noqa: E402


class Slow(estimator.SessionRunHook):
    def after_run(self, run_context, run_values):
        time.sleep(0.02)


def main():
    model_dir, max_steps = sys.argv[1], int(sys.argv[2])
    mirrored = "--mirrored" in sys.argv
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if mirrored else None
    cfg = estimator.RunConfig(
        save_checkpoints_steps=25, train_distribute=strategy, eval_distribute=strategy, tf_random_seed=3
    )
    x = tf.feature_column.numeric_column("x")
    c = tf.feature_column.categorical_column_with_hash_bucket("c", 10)
    est = estimator.LinearClassifier([x, c], model_dir=model_dir, config=cfg, optimizer="SGD")
    per_replica = 16 if mirrored else 32  # the same global batch of 32

    def input_fn(input_context=None):
        xs = tf.range(256, dtype=tf.float32) / 128.0 - 1.0
        feats = {"x": xs, "c": tf.strings.as_string(tf.range(256) % 7)}
        labels = tf.cast(xs > 0.1, tf.int32)
        return tf.data.Dataset.from_tensor_slices((feats, labels)).repeat().batch(per_replica)

    est.train(input_fn, max_steps=max_steps, hooks=[Slow()] if "--slow" in sys.argv else None)
    result = est.evaluate(input_fn, steps=8)
    print("RESULT " + json.dumps({k: float(v) for k, v in result.items()}))


if __name__ == "__main__":
    main()
