"""Run as a process by the tests, one per task of a localhost cluster described by TF_CONFIG.

    TF_CONFIG=... python -m tests.components.estimator.cluster_worker MODEL_DIR MAX_STEPS STRATEGY

STRATEGY: multi_worker (MultiWorkerMirroredStrategy) or ps (ParameterServerStrategy). Prints
"RESULT {...}" with the task's view of the outcome.
"""

import json
import os
import sys
import time

import tensorflow as tf

from components import estimator


class Slow(estimator.SessionRunHook):
    def after_run(self, run_context, run_values):
        time.sleep(0.02)


def main():
    model_dir, max_steps, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    if kind == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = estimator.parameter_server_strategy() if task["type"] == "chief" else None
    cfg = estimator.RunConfig(save_checkpoints_steps=20, train_distribute=strategy, tf_random_seed=3)
    x = tf.feature_column.numeric_column("x")
    est = estimator.LinearClassifier([x], model_dir=model_dir, config=cfg, optimizer="SGD")

    def input_fn(input_context=None):
        xs = tf.range(256, dtype=tf.float32) / 128.0 - 1.0
        labels = tf.cast(xs > 0.1, tf.int32)
        ds = tf.data.Dataset.from_tensor_slices(({"x": xs}, labels))
        if input_context is not None and input_context.num_input_pipelines > 1:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch = input_context.get_per_replica_batch_size(32) if input_context else 32
        return ds.repeat().batch(batch)

    def eval_fn():
        xs = tf.range(256, dtype=tf.float32) / 128.0 - 1.0
        return tf.data.Dataset.from_tensor_slices(({"x": xs}, tf.cast(xs > 0.1, tf.int32))).batch(64)

    receiver = estimator.export.build_raw_serving_input_receiver_fn({"x": tf.zeros([1, 1])})
    result, exports = estimator.train_and_evaluate(
        est,
        estimator.TrainSpec(input_fn, max_steps=max_steps, hooks=[Slow()] if "--slow" in sys.argv else []),
        estimator.EvalSpec(
            eval_fn,
            steps=None,
            exporters=[estimator.FinalExporter("final", receiver)],
            throttle_secs=0,
            start_delay_secs=0,
        ),
    )
    out = {
        "task": task,
        "result": {k: float(v) for k, v in (result or {}).items()},
        "exports": [os.fsdecode(p) for p in exports or []],
    }
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
