"""The seed's Titanic model trained by a TF_CONFIG cluster: every task (chief, worker, ps, evaluator) runs
this same program, as the pods of deploy/k8s/training-job.yaml do.

    TF_CONFIG='{"cluster": {...}, "task": {"type": "chief", "index": 0}}' \\
        python -m examples.titanic.distributed --workdir /shared/titanic --steps 2000

The work directory must be shared by all tasks (checkpoints are written by the chief, read by the
evaluator). With parameter servers in the cluster the chief drives ParameterServerStrategy and the
workers and ps serve; without, the workers train with MultiWorkerMirroredStrategy.
"""

from __future__ import annotations

import argparse
import json
import os

import tensorflow as tf
import tf_keras

from components import estimator
from examples.titanic.data import split_titanic
from examples.titanic.seed_estimator import make_input_fn


def _strategy(cluster: dict, role: str):
    if "ps" in cluster:
        return estimator.parameter_server_strategy() if role == "chief" else None
    if role in ("chief", "worker"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="shared by every task: split CSVs, checkpoints, export")
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args(argv)
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster, role = tf_config.get("cluster", {}), tf_config.get("task", {}).get("type", "chief")
    train_csv, eval_csv = split_titanic(args.workdir)  # the same seeded split on every task
    columns = [
        tf.feature_column.numeric_column("age"),
        tf.feature_column.indicator_column(
            tf.feature_column.categorical_column_with_vocabulary_list("class", ["First", "Second", "Third"])
        ),
        tf.feature_column.indicator_column(tf.feature_column.categorical_column_with_hash_bucket("embark_town", 32)),
    ]
    config = estimator.RunConfig(
        tf_random_seed=42, save_checkpoints_steps=200, train_distribute=_strategy(cluster, role)
    )
    # A rate of our own: a named optimizer trains at its class's default (Adagrad 0.001), as in tf.estimator 2.x.
    model = estimator.DNNClassifier(
        [32, 16],
        columns,
        model_dir=f"{args.workdir}/model",
        config=config,
        optimizer=lambda: tf_keras.optimizers.legacy.Adagrad(learning_rate=0.05),
    )
    serving = estimator.export.build_parsing_serving_input_receiver_fn(
        tf.feature_column.make_parse_example_spec(columns)
    )
    result = estimator.train_and_evaluate(
        model,
        estimator.TrainSpec(make_input_fn(train_csv), max_steps=args.steps),
        estimator.EvalSpec(
            make_input_fn(eval_csv, shuffle=False, epochs=1),
            steps=None,
            exporters=[estimator.FinalExporter("titanic", serving)],
            throttle_secs=30,
        ),
    )
    print(f"{role}: done", result[0] if result and result[0] else "")


if __name__ == "__main__":
    main()
