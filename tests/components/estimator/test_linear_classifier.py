"""LinearClassifier end to end: the seed's Titanic program, export signatures, bad use."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import estimator
from components.errors import ConfigError, InputError
from examples.titanic import seed_estimator
from tests.components.estimator.helpers import serialized_example as _example


@pytest.fixture(scope="module")
def titanic(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("titanic")
    result = seed_estimator.main(["--workdir", str(workdir)])
    return workdir, result


def test_seed_titanic_program_reaches_reference_accuracy(titanic):
    _, result = titanic
    # tf.estimator's LinearClassifier reached 0.68 on this seeded 70/30 split.
    assert result["accuracy"] >= 0.68
    assert result["global_step"] == 100
    assert {
        "auc",
        "auc_precision_recall",
        "precision",
        "recall",
        "label/mean",
        "prediction/mean",
        "accuracy_baseline",
        "average_loss",
        "loss",
    } <= set(result)


def test_titanic_export_serves_serialized_examples(titanic, tmp_path):
    workdir, _ = titanic
    cols = [
        tf.feature_column.numeric_column("age"),
        tf.feature_column.categorical_column_with_vocabulary_list("class", ["First", "Second", "Third"]),
        tf.feature_column.categorical_column_with_hash_bucket("embark_town", 32),
    ]
    est = estimator.LinearClassifier(cols, model_dir=str(workdir / "model"))
    receiver = estimator.export.build_parsing_serving_input_receiver_fn(tf.feature_column.make_parse_example_spec(cols))
    path = est.export_saved_model(str(tmp_path / "export"), receiver)
    assert not list((tmp_path / "export").glob("temp-*"))
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "classification", "regression", "predict"}
    rows = tf.constant(
        [
            _example(age=30.0, **{"class": "First", "embark_town": "Cherbourg"}),
            _example(age=30.0, **{"class": "Third", "embark_town": "Southampton"}),
        ]
    )
    out = loaded.signatures["predict"](examples=rows)
    expected = {
        "logits": (tf.float32, (2, 1)),
        "logistic": (tf.float32, (2, 1)),
        "probabilities": (tf.float32, (2, 2)),
        "class_ids": (tf.int64, (2, 1)),
        "classes": (tf.string, (2, 1)),
        "all_class_ids": (tf.int32, (2, 2)),
        "all_classes": (tf.string, (2, 2)),
    }
    assert {k: (v.dtype, tuple(v.shape)) for k, v in out.items()} == expected
    # First class from Cherbourg survived far more often than third class from Southampton.
    assert out["logistic"][0, 0] > out["logistic"][1, 0]
    # The served model agrees with Estimator.predict on the same rows.
    feats = {"age": [[30.0], [30.0]], "class": [["First"], ["Third"]], "embark_town": [["Cherbourg"], ["Southampton"]]}
    preds = list(est.predict(lambda: feats))
    np.testing.assert_allclose([p["logistic"][0] for p in preds], out["logistic"][:, 0].numpy(), rtol=1e-5)
    cls = loaded.signatures["classification"](inputs=rows)
    assert cls["classes"].numpy().tolist() == [[b"0", b"1"]] * 2
    np.testing.assert_allclose(cls["scores"].numpy(), out["probabilities"].numpy(), rtol=1e-6)
    reg = loaded.signatures["regression"](inputs=rows)
    np.testing.assert_allclose(reg["outputs"].numpy(), out["logistic"].numpy(), rtol=1e-6)


def test_seed_savedmodel_example_with_raw_receiver(tmp_path):
    x = tf.feature_column.numeric_column("x")
    est = estimator.LinearClassifier(feature_columns=[x], model_dir=str(tmp_path / "m"))

    def input_fn():
        return (
            tf.data.Dataset.from_tensor_slices(({"x": [1.0, 2.0, 3.0, 4.0]}, [1, 1, 0, 0]))
            .repeat(200)
            .shuffle(64)
            .batch(16)
        )

    est.train(input_fn)
    assert est.get_variable_value("global_step") == 50
    parsing = estimator.export.build_parsing_serving_input_receiver_fn(tf.feature_column.make_parse_example_spec([x]))
    loaded = tf.saved_model.load(est.export_saved_model(str(tmp_path / "e"), parsing))
    low, high = (loaded.signatures["predict"](examples=tf.constant([_example(x=v)])) for v in (1.5, 3.5))
    assert sorted(low) == [
        "all_class_ids",
        "all_classes",
        "class_ids",
        "classes",
        "logistic",
        "logits",
        "probabilities",
    ]
    assert low["classes"].numpy().tolist() == [[b"1"]] and high["classes"].numpy().tolist() == [[b"0"]]
    raw = estimator.export.build_raw_serving_input_receiver_fn({"x": tf.constant([[1.0]])})
    loaded_raw = tf.saved_model.load(est.export_saved_model(str(tmp_path / "e"), raw))
    assert "predict" in loaded_raw.signatures and "classification" not in loaded_raw.signatures
    out = loaded_raw.signatures["predict"](x=tf.constant([[1.5]]))
    np.testing.assert_allclose(out["logistic"].numpy(), low["logistic"].numpy(), rtol=1e-6)


def test_bad_use_of_linear_classifier(tmp_path):
    age = tf.feature_column.numeric_column("age")
    with pytest.raises(ConfigError, match="unknown optimizer 'Adamm'"):
        est = estimator.LinearClassifier([age], model_dir=str(tmp_path / "a"), optimizer="Adamm")
        est.train(lambda: ({"age": [[1.0]]}, [[1]]), steps=1)
    with pytest.raises(InputError, match=r"need feature\(s\) \['age'\].*provides \['agee'\]"):
        estimator.LinearClassifier([age], model_dir=str(tmp_path / "b")).train(
            lambda: ({"agee": [[1.0]]}, [[1]]), steps=1
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be < n_classes \(2\)"):
        estimator.LinearClassifier([age], model_dir=str(tmp_path / "c")).train(
            lambda: ({"age": [[1.0]]}, [[3]]), steps=1
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="not in label_vocabulary"):
        estimator.LinearClassifier([age], model_dir=str(tmp_path / "d"), label_vocabulary=["n", "y"]).train(
            lambda: ({"age": [[1.0]]}, [["maybe"]]), steps=1
        )
    with pytest.raises(ConfigError, match="feature_columns is empty"):
        estimator.LinearClassifier([], model_dir=str(tmp_path / "e"))


def test_warm_start_copies_weights_but_not_step_or_optimizer(tmp_path):
    x = tf.feature_column.numeric_column("x")

    def input_fn():
        return tf.data.Dataset.from_tensor_slices(({"x": [1.0, 2.0, 3.0, 4.0]}, [1, 1, 0, 0])).repeat().batch(4)

    first = estimator.LinearClassifier([x], model_dir=str(tmp_path / "a"))
    first.train(input_fn, steps=40)
    trained = first.get_variable_value("linear/linear_model/x/weights")
    assert abs(trained[0, 0]) > 0.1
    second = estimator.LinearClassifier(
        [x],
        model_dir=str(tmp_path / "b"),
        warm_start_from=str(tmp_path / "a"),
        optimizer=lambda: tf_keras.optimizers.legacy.SGD(1e-9),
    )
    second.train(input_fn, steps=1)
    assert second.get_variable_value("global_step") == 1
    np.testing.assert_allclose(second.get_variable_value("linear/linear_model/x/weights"), trained, rtol=1e-5)
