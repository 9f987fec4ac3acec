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
    EvalOutput,
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


class TrainOutput(EvalOutput):
    """The outputs of the TRAIN mode's signature (tf.estimator's TrainOutput): loss, predictions, metrics."""

    method = "train"


def export_saved_model(est, checkpoint, export_dir_base, serving_input_receiver_fn, assets_extra, as_text) -> bytes:
    return export_all_saved_models(
        est, checkpoint, export_dir_base, {ModeKeys.PREDICT: serving_input_receiver_fn}, assets_extra, as_text
    )


def export_all_saved_models(est, checkpoint, export_dir_base, input_receiver_fn_map, assets_extra, as_text) -> bytes:
    """One SavedModel with each mode's signatures: PREDICT's (as export_saved_model), EVAL's `eval` and
    TRAIN's `train` (loss, predictions and metrics of a supervised receiver; a signature never trains)."""
    unknown = set(input_receiver_fn_map) - {ModeKeys.PREDICT, ModeKeys.EVAL, ModeKeys.TRAIN}
    if unknown or not input_receiver_fn_map:
        raise ConfigError(f"input_receiver_fn_map is keyed by ModeKeys (train, eval, infer), got {sorted(unknown)}")
    signatures, methods, programs, receivers = {}, {}, [], []
    for mode in (ModeKeys.PREDICT, ModeKeys.EVAL, ModeKeys.TRAIN):
        if mode in input_receiver_fn_map:
            program, receiver, sigs, outputs = _mode_signatures(est, checkpoint, mode, input_receiver_fn_map[mode])
            programs.append(program)
            receivers.append(receiver)
            signatures.update(sigs)
            methods.update({name: outputs[name].method for name in sigs if name in outputs})
    return _save(est, programs, receivers, signatures, methods, export_dir_base, assets_extra, as_text)


def _mode_signatures(est, checkpoint, mode, receiver_fn):
    from components.estimator.estimator import _Program

    transform = est._input_transform() or (lambda f: f)

    def features_only():
        return transform(_receiver(receiver_fn).features)

    def labels_only():
        return getattr(_receiver(receiver_fn), "labels", None)

    # 1. The feature (and label) structure the model sees at serving time.
    probe = tf.compat.v1.wrap_function(features_only, [])
    feature_specs = tf.nest.map_structure(_spec_of, probe.structured_outputs)
    label_specs = None
    if mode != ModeKeys.PREDICT:
        labels = tf.compat.v1.wrap_function(labels_only, []).structured_outputs
        if labels is None:
            raise ConfigError(
                f"the {mode} receiver gives no labels: use export.build_raw_supervised_input_receiver_fn "
                "(or another receiver with labels)"
            )
        label_specs = tf.nest.map_structure(_spec_of, labels)

    # 2. Build the mode's program on that structure and load the checkpoint into it.
    program = _Program(est, mode, None)
    if label_specs is None:
        tf.function(lambda f: program.call_model_fn(f, None).predictions).get_concrete_function(feature_specs)
    else:
        tf.function(lambda f, y: program.call_model_fn(f, y).loss).get_concrete_function(feature_specs, label_specs)
    program.restore(checkpoint)

    # 3. The serving graph: receiver placeholders -> features -> model_fn (reusing the variables).
    captured = {}

    def serving_graph():
        receiver = _receiver(receiver_fn)
        spec = program.call_model_fn(transform(receiver.features), getattr(receiver, "labels", None))
        if mode == ModeKeys.EVAL:
            outputs = {mode: EvalOutput(spec.loss, spec.predictions, spec.eval_metric_ops)}
        elif mode == ModeKeys.TRAIN:
            outputs = {mode: TrainOutput(spec.loss, spec.predictions)}
        else:
            outputs = dict(spec.export_outputs or {SERVING_DEFAULT: PredictOutput(spec.predictions)})
            if SERVING_DEFAULT not in outputs:
                raise ConfigError(f"model_fn's export_outputs must include {SERVING_DEFAULT!r}")
        captured["receiver"], captured["outputs"] = receiver, outputs
        return {name: out.as_outputs() for name, out in outputs.items()}

    with _compat.tracking_resources() as model_fn_resources:  # tables the model_fn made itself
        wrapped = tf.compat.v1.wrap_function(serving_graph, [])
    program.model_fn_resources = list(model_fn_resources)  # saved with the module, as the variables are
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
    return program, receiver, signatures, captured["outputs"]


def _save(est, programs, receivers, signatures, methods, export_dir_base, assets_extra, as_text) -> bytes:
    if SERVING_DEFAULT not in signatures and "predict" in signatures:
        signatures[SERVING_DEFAULT] = signatures["predict"]  # serving systems look for serving_default
    module = tf.Module()
    module.checkpoint_root = programs[0].root
    module.variables_by_order = list(programs[0].created) + [programs[0].global_step]
    # The other modes' programs (their own copies of the variables, restored from the same checkpoint).
    module.other_modes = [(p.root, list(p.created), p.global_step) for p in programs[1:]]
    # What a premade estimator built for a mode outside its model_fn (its eval metrics' variables).
    module.state_variables = [v for p in programs for v in _state_variables(p.state)]
    module.resources = est._export_resources()
    module.model_fn_resources = [r for p in programs for r in p.model_fn_resources]
    module.receiver_trackables = [t for r in receivers for t in r.trackables]
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
        _set_method_names(tmp, methods)
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


def _state_variables(state) -> list:
    found: list = []
    for value in state.values():
        for obj in value.values() if isinstance(value, dict) else [value]:
            variables = getattr(obj, "variables", None)
            found.extend((variables() if callable(variables) else variables) or ())  # a method on OptimizerV2
    return found


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
