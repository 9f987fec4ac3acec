"""Distribution helpers: a TPUStrategy that says clearly when there is no TPU."""

from __future__ import annotations

import tensorflow as tf

from components.errors import ConfigError


def tpu_strategy(tpu: str | None = None):
    """TPUStrategy over the TPU named `tpu` ('local' on a TPU VM; None: from the environment)."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as e:  # the resolver raises ValueError, NotFoundError or RuntimeError by platform
        raise ConfigError(
            f"no TPU found ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else 'no detail'}); "
            "on a TPU VM pass tpu='local', elsewhere the TPU's name or grpc:// address, or train with "
            "MirroredStrategy / MultiWorkerMirroredStrategy instead"
        ) from e
    return tf.distribute.TPUStrategy(resolver)


def parameter_server_strategy(variable_partitioner=None):
    """ParameterServerStrategy for the chief of the TF_CONFIG cluster.

    The evaluator task (if TF_CONFIG lists one) is left out of the strategy's cluster: it evaluates
    checkpoints on its own, and the coordinator would otherwise wait for it to serve.
    """
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    spec = {job: tasks for job, tasks in resolver.cluster_spec().as_dict().items() if job != "evaluator"}
    if "ps" not in spec or "worker" not in spec:
        raise ConfigError(
            f"ParameterServerStrategy needs 'ps' and 'worker' tasks in TF_CONFIG's cluster; got {sorted(spec)}"
        )
    trimmed = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(spec), task_type=resolver.task_type, task_id=resolver.task_id, rpc_layer="grpc"
    )
    return tf.distribute.experimental.ParameterServerStrategy(trimmed, variable_partitioner=variable_partitioner)
