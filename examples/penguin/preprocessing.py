"""tf.Transform preprocessing for the Palmer penguins (TFX's reference example): z-scored measurements, species ids."""

import tensorflow as tf
import tensorflow_transform as tft

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
LABEL = "species"


def _dense(x, default):
    if isinstance(x, tf.SparseTensor):
        x = tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=default)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs):
    out = {}
    for name in NUMERIC:
        value = _dense(tf.cast(inputs[name], tf.float32), float("nan"))  # some columns are INT
        known = tf.logical_not(tf.math.is_nan(value))
        # A missing measurement (NA in the CSV) becomes the training mean, i.e. 0 after scaling.
        value = tf.where(known, value, tft.mean(tf.boolean_mask(value, known)))
        out[name] = tft.scale_to_z_score(value)
    out["island"] = tft.compute_and_apply_vocabulary(
        _dense(inputs["island"], ""), num_oov_buckets=1, vocab_filename="island"
    )
    out[LABEL] = tft.compute_and_apply_vocabulary(_dense(inputs[LABEL], ""), vocab_filename=LABEL)
    return out
