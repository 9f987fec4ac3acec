"""export_saved_model: the PREDICT-mode model, restored from a checkpoint, saved with serving signatures."""

from __future__ import annotations

import logging
import os
import shutil
import time

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2

from components.errors import ConfigError
from components.estimator import _compat
from components.estimator.export import (
    PredictOutput,
    ServingInputReceiver,
    SupervisedInputReceiver,
    TensorServingInputReceiver,
)
from components.estimator.mode_keys import ModeKeys

log = logging.getLogger("tfpipe.estimator")
SERVING_DEFAULT = "serving_default"


_RECEIVERS = (ServingInputReceiver, TensorServingInputReceiver, SupervisedInputReceiver)


def _receiver(serving_input_receiver_fn):
    receiver = serving_input_receiver_fn()
    if not isinstance(receiver, _RECEIVERS):
        raise ConfigError(
            "serving_input_receiver_fn must return an export.ServingInputReceiver (or "
            f"TensorServingInputReceiver, SupervisedInputReceiver), got {type(receiver).__name__}"
        )
    return receiver


def _spec_of(value):
    if isinstance(value, tf.SparseTensor):
        return tf.SparseTensorSpec(value.shape, value.dtype)
    if isinstance(value, tf.RaggedTensor):
        return tf.RaggedTensorSpec.from_value(value)
    return tf.TensorSpec(value.shape, value.dtype)


def export_saved_model(est, checkpoint, export_dir_base, serving_input_receiver_fn, assets_extra, as_text) -> bytes:
    from components.estimator.estimator import _Program

    transform = est._input_transform() or (lambda f: f)

    def features_only():
        return transform(_receiver(serving_input_receiver_fn).features)

    # 1. The feature structure the model sees at serving time.
    probe = tf.compat.v1.wrap_function(features_only, [])
    feature_specs = tf.nest.map_structure(_spec_of, probe.structured_outputs)

    # 2. Build the PREDICT program on that structure and load the checkpoint into it.
    program = _Program(est, ModeKeys.PREDICT, None)
    tf.function(lambda f: program.call_model_fn(f, None).predictions).get_concrete_function(feature_specs)
    program.restore(checkpoint)

    # 3. The serving graph: receiver placeholders -> features -> model_fn (reusing the variables).
    captured = {}

    def serving_graph():
        receiver = _receiver(serving_input_receiver_fn)
        spec = program.call_model_fn(transform(receiver.features), getattr(receiver, "labels", None))
        outputs = dict(spec.export_outputs or {SERVING_DEFAULT: PredictOutput(spec.predictions)})
        if SERVING_DEFAULT not in outputs:
            raise ConfigError(f"model_fn's export_outputs must include {SERVING_DEFAULT!r}")
        captured["receiver"], captured["outputs"] = receiver, outputs
        return {name: out.as_outputs() for name, out in outputs.items()}

    with _compat.tracking_resources() as model_fn_resources:  # tables the model_fn made itself
        wrapped = tf.compat.v1.wrap_function(serving_graph, [])
    receiver = captured["receiver"]
    inputs = receiver.receiver_tensors
    single_string = len(inputs) == 1 and next(iter(inputs.values())).dtype == tf.string
    signatures = {}
    for name, out in captured["outputs"].items():
        fetches = wrapped.structured_outputs[name]
        if out.method in ("classification", "regression"):
            if not single_string:
                log.info(
                    "skipping the %s signature %r: it needs a receiver with one string input "
                    "(build_parsing_serving_input_receiver_fn)",
                    out.method,
                    name,
                )
                continue
            keys, feeds = ["inputs"], list(inputs.values())
        else:
            keys, feeds = list(inputs), list(inputs.values())
        fn = wrapped.prune(feeds=feeds, fetches=fetches)
        # Signature input names come from the pruned function's argument keywords.
        _compat.set_signature_keywords(fn, keys)
        signatures[name] = fn

    if SERVING_DEFAULT not in signatures and "predict" in signatures:
        signatures[SERVING_DEFAULT] = signatures["predict"]  # serving systems look for serving_default
    module = tf.Module()
    module.checkpoint_root = program.root
    module.variables_by_order = list(program.created) + [program.global_step]
    module.resources = est._export_resources()
    module.model_fn_resources = list(model_fn_resources)
    module.receiver_trackables = list(receiver.trackables)
    os.makedirs(export_dir_base, exist_ok=True)
    stamp = int(time.time())
    while os.path.exists(os.path.join(export_dir_base, str(stamp))):
        stamp += 1
    final = os.path.join(export_dir_base, str(stamp))
    tmp = os.path.join(export_dir_base, f"temp-{stamp}")
    try:
        # A serving graph is never differentiated; the engine's custom gradients (see premade._sum_by_row)
        # are for training only.
        tf.saved_model.save(
            module, tmp, signatures=signatures, options=tf.saved_model.SaveOptions(experimental_custom_gradients=False)
        )
        _set_method_names(
            tmp, {name: captured["outputs"][name].method for name in signatures if name in captured["outputs"]}
        )
        if as_text:
            proto = saved_model_pb2.SavedModel()
            with open(os.path.join(tmp, "saved_model.pb"), "rb") as f:
                proto.ParseFromString(f.read())
            with open(os.path.join(tmp, "saved_model.pbtxt"), "w") as out:
                out.write(text_format.MessageToString(proto))
            os.remove(os.path.join(tmp, "saved_model.pb"))
        for dest, src in (assets_extra or {}).items():
            target = os.path.join(tmp, "assets.extra", dest)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(src, target)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported SavedModel to %s (signatures: %s)", final, ", ".join(sorted(signatures)))
    return final.encode()


# TF Serving's :classify and :regress check these, as tf.estimator's exports set them; TF2's
# tf.saved_model.save writes tensorflow/serving/predict on every signature.
_METHOD_NAMES = {
    "classification": tf.saved_model.CLASSIFY_METHOD_NAME,
    "regression": tf.saved_model.REGRESS_METHOD_NAME,
}


def _set_method_names(export_dir: str, methods: dict) -> None:
    """Gives the classification and regression signatures their serving method names in saved_model.pb."""
    wanted = {name: _METHOD_NAMES[method] for name, method in methods.items() if method in _METHOD_NAMES}
    if not wanted:
        return
    path = os.path.join(export_dir, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        for name, method in wanted.items():
            if name in meta_graph.signature_def:
                meta_graph.signature_def[name].method_name = method
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
