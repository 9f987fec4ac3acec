"""RunConfig arguments that TF 2 gives nothing to act on are accepted, and say once that they do nothing."""

import logging

from components.estimator import run_config
from components.estimator.run_config import RunConfig


def test_arguments_without_effect_say_so_once(caplog, monkeypatch):
    monkeypatch.setattr(run_config, "_said", set())
    with caplog.at_level(logging.WARNING, logger="tfpipe.estimator"):
        RunConfig(save_checkpoints_steps=10, tf_random_seed=1)  # every argument that acts: not a word
        assert not caplog.records
        config = RunConfig(session_config=object(), device_fn=lambda op: "/cpu:0")
        RunConfig(session_config=object())  # the second time: silent
        config.replace(protocol="grpc+verbs", save_summary_steps=5)
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "RunConfig(session_config=...) has no effect in tfpipe: TF 2 has no sessions; use tf.config (threads, "
        "devices, memory growth)",
        "RunConfig(device_fn=...) has no effect in tfpipe: ops are placed by TF 2 and the distribution strategy",
        "RunConfig(protocol=...) has no effect in tfpipe: the cluster's transport is the distribution strategy's",
    ]
    assert config.session_config is not None  # still readable, as tf.estimator code expects
