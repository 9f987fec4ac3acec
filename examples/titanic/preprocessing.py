"""tf.Transform preprocessing for the raw Kaggle Titanic columns (the pipeline's transform step)."""

import tensorflow as tf
import tensorflow_transform as tft

LABEL = "survived"


def _dense(x, default):
    """A [batch] tensor from a required ([batch, 1]) or optional (sparse) feature, missing values = default."""
    if isinstance(x, tf.SparseTensor):
        x = tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=default)
    return tf.reshape(x, [-1])


def _vocab(x, name, top_k=None):
    return tft.compute_and_apply_vocabulary(x, top_k=top_k, num_oov_buckets=1, vocab_filename=name)


def preprocessing_fn(inputs):
    age = _dense(inputs["Age"], -1.0)
    known_age = tf.cast(age >= 0, tf.float32)
    # Missing ages become the mean of the known ones (computed over the train split).
    mean_age = tft.mean(tf.boolean_mask(age, age >= 0))
    age = tf.where(age >= 0, age, mean_age)
    family = tf.cast(_dense(inputs["SibSp"], 0) + _dense(inputs["Parch"], 0), tf.float32)
    name = _dense(inputs["Name"], "")
    title = tf.strings.regex_replace(name, r"^[^,]*, *([^.]*)\..*$", r"\1")
    cabin = _dense(inputs["Cabin"], "U")
    return {
        LABEL: _dense(inputs["Survived"], 0),
        "age": tft.scale_to_z_score(age),
        "age_known": known_age,
        "fare": tft.scale_to_z_score(tf.math.log1p(_dense(inputs["Fare"], 0.0))),
        "family": tft.scale_to_z_score(family),
        "pclass": _dense(inputs["Pclass"], 3) - 1,
        "sex": _vocab(_dense(inputs["Sex"], ""), "sex"),
        "embarked": _vocab(_dense(inputs["Embarked"], "S"), "embarked"),
        "title": _vocab(title, "title", top_k=5),
        "deck": _vocab(tf.strings.substr(cabin, 0, 1), "deck"),
    }
