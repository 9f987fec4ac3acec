"""classifier/regressor_parse_example_spec and warm-starting through a changed vocabulary (VocabInfo)."""

import numpy as np
import pytest
import tensorflow as tf

from components import estimator
from components.errors import ConfigError

fc = tf.feature_column


def _example(**values):
    feature = {}
    for key, v in values.items():
        if isinstance(v, str):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
        elif isinstance(v, int):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=list(np.atleast_1d(v))))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_classifier_parse_example_spec_feeds_a_classifier(tmp_path):
    age, color = fc.numeric_column("age"), fc.categorical_column_with_vocabulary_list("color", ["red", "blue"])
    spec = estimator.classifier_parse_example_spec(
        [age, color], label_key="my-label", label_dtype=tf.string, weight_column="w"
    )
    assert spec["my-label"] == tf.io.FixedLenFeature((1,), tf.string)
    assert spec["w"] == tf.io.FixedLenFeature((1,), tf.float32) and spec["age"] == age.parse_example_spec["age"]
    rows = [
        _example(age=float(a), color=c, w=1.0, **{"my-label": "yes" if c == "red" else "no"})
        for a, c in [(20, "red"), (30, "blue"), (40, "red"), (50, "blue")]
    ]

    def input_fn():
        features = tf.io.parse_example(tf.constant(rows), spec)
        labels = features.pop("my-label")
        return tf.data.Dataset.from_tensors((features, labels)).repeat(20)

    classifier = estimator.LinearClassifier(
        [age, color], model_dir=str(tmp_path), label_vocabulary=["no", "yes"], weight_column="w"
    )
    classifier.train(input_fn)
    assert classifier.evaluate(lambda: input_fn().take(1))["accuracy"] == 1.0
    with pytest.raises(ConfigError, match="feature"):
        estimator.classifier_parse_example_spec([age], label_key="age")


def test_regressor_parse_example_spec():
    spec = estimator.regressor_parse_example_spec(
        [fc.numeric_column("x")], label_key="y", label_default=[0.0, 0.0], label_dimension=2
    )
    assert spec["y"] == tf.io.FixedLenFeature((2,), tf.float32, [0.0, 0.0])
    parsed = tf.io.parse_example(tf.constant([_example(x=1.5)]), spec)
    np.testing.assert_allclose(parsed["y"].numpy(), [[0.0, 0.0]])  # the default fills a missing label


def test_warm_start_remaps_rows_through_vocab_info(tmp_path):
    old_vocab, new_vocab = tmp_path / "old.txt", tmp_path / "new.txt"
    old_vocab.write_text("apple\nbanana\ncherry\n")
    new_vocab.write_text("cherry\ndate\napple\n")

    def model_fn(features, labels, mode):
        emb = tf.Variable(tf.fill([4, 2], 7.0), name="emb")  # 3 words + 1 OOV bucket
        pred = tf.reduce_sum(tf.gather(emb, features["id"]), axis=-1)
        loss = tf.reduce_mean(tf.square(pred - labels))
        return estimator.EstimatorSpec(
            mode,
            loss=loss,
            predictions=pred,
            train_op=tf.group(emb.assign_add(tf.zeros_like(emb)), tf.compat.v1.train.get_global_step().assign_add(1)),
        )

    root = tf.train.Checkpoint(
        global_step=tf.Variable(3, dtype=tf.int64), emb=tf.Variable([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    )
    root.save(str(tmp_path / "old" / "model.ckpt"))
    info = estimator.VocabInfo(
        new_vocab=str(new_vocab),
        new_vocab_size=3,
        num_oov_buckets=1,
        old_vocab=str(old_vocab),
        backup_initializer=tf.constant_initializer(-1.0),
    )
    settings = estimator.WarmStartSettings(
        str(tmp_path / "old"), vars_to_warm_start=["emb"], var_name_to_vocab_info={"emb": info}
    )
    est = estimator.Estimator(model_fn, str(tmp_path / "new"), warm_start_from=settings)
    est.train(lambda: tf.data.Dataset.from_tensors(({"id": [0]}, [0.0])), steps=1)
    # cherry and apple keep their old rows; date (new) and the OOV bucket get the backup value.
    np.testing.assert_allclose(est.get_variable_value("emb"), [[3, 3], [-1, -1], [1, 1], [-1, -1]])
    bad = estimator.WarmStartSettings("x", var_name_to_vocab_info={"emb": "new.txt"})
    with pytest.raises(ConfigError, match="VocabInfo"):
        estimator.Estimator(model_fn, str(tmp_path / "bad"), warm_start_from=bad)
