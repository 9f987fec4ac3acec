"""deploy/serving/README.md's :classify, :regress and :predict requests against a pushed model: each body is
turned into what TF Serving hands the model (tf.Examples built from JSON rows, or base64-decoded bytes) and
the SavedModel's signature is called with it; each signature has the method name TF Serving checks."""

import base64
import json
import re
from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

README = Path(__file__).resolve().parents[2] / "deploy" / "serving" / "README.md"
pytestmark = pytest.mark.slow


def _requests() -> dict:
    """{verb: body} of each curl in the README."""
    found = re.findall(r"curl -d '(.*?)' \\\s*http://localhost:8501/v1/models/titanic:(\w+)", README.read_text(), re.S)
    return {verb: json.loads(body) for body, verb in found}


def _example(row: dict) -> bytes:
    """A JSON row as TF Serving's REST API builds its tf.Example: strings are bytes, JSON integers int64,
    other numbers float, {"b64": ...} bytes."""
    feature = {}
    for key, value in row.items():
        values = value if isinstance(value, list) else [value]
        if all(isinstance(v, dict) for v in values):
            feature[key] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[base64.b64decode(v["b64"]) for v in values])
            )
        elif all(isinstance(v, str) for v in values):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))
        elif all(isinstance(v, int) for v in values):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _method_names(model_dir: Path) -> dict:
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((model_dir / "saved_model.pb").read_bytes())
    return {name: sig.method_name for name, sig in proto.meta_graphs[0].signature_def.items()}


def test_the_readme_requests_run_against_the_pushed_model(tiny_run):
    assert tiny_run.done.returncode == 0, tiny_run.done.stderr[-3000:]
    [model_dir] = sorted((tiny_run.root / "serving").iterdir())
    model = tf.saved_model.load(str(model_dir))
    methods = _method_names(model_dir)
    requests = _requests()
    assert set(requests) == {"classify", "regress", "predict"}

    classify = requests["classify"]
    signature = classify["signature_name"]
    assert methods[signature] == methods["serving_default"] == "tensorflow/serving/classify"
    out = model.signatures[signature](inputs=tf.constant([_example(row) for row in classify["examples"]]))
    assert out["classes"].shape == out["scores"].shape == (1, 2)
    assert [c.decode() for c in out["classes"].numpy()[0]] == ["0", "1"]

    regress = requests["regress"]
    assert methods[regress["signature_name"]] == "tensorflow/serving/regress"
    out = model.signatures[regress["signature_name"]](inputs=tf.constant([_example(r) for r in regress["examples"]]))
    assert out["outputs"].shape == (1, 1) and 0 <= float(out["outputs"][0, 0]) <= 1
    assert abs(float(out["outputs"][0, 0]) - float(out_scores_of(model, classify)[0, 1])) < 1e-6

    predict = requests["predict"]
    assert methods[predict["signature_name"]] == "tensorflow/serving/predict"
    # TF Serving's row format: one input tensor per key of the instances, {"b64": ...} decoded to bytes.
    serialized = [base64.b64decode(instance["examples"]["b64"]) for instance in predict["instances"]]
    assert serialized == [_example(row) for row in classify["examples"]] or tf.train.Example.FromString(
        serialized[0]
    ) == tf.train.Example.FromString(_example(classify["examples"][0]))
    out = model.signatures[predict["signature_name"]](examples=tf.constant(serialized))
    assert {"probabilities", "class_ids", "classes", "logistic"} <= set(out)
    assert abs(float(out["logistic"][0, 0]) - float(out_scores_of(model, classify)[0, 1])) < 1e-6


def out_scores_of(model, classify: dict):
    return model.signatures["classification"](inputs=tf.constant([_example(r) for r in classify["examples"]]))["scores"]
