"""tf.estimator.experimental.LinearSDCA: the linear estimators trained by stochastic dual coordinate ascent.

`LinearClassifier(..., optimizer=LinearSDCA(example_id_column="id"))` (binary) or `LinearRegressor(...)`
(one label dimension) train their weights with TF's `SdcaOptimizerV2` kernel instead of gradients: each
step updates the dual variables of the batch's examples, kept per example id in a hash table that the
checkpoint holds, and adds the resulting primal deltas to the weights. With symmetric L1 the kernel's
unshrunk weights are kept in their own variables and the model's weights are their shrunk values.
"""

from __future__ import annotations

import tensorflow as tf

from components.errors import ConfigError, InputError

EXAMPLE_ID_KEY = "__sdca_example_id__"  # the example ids, carried by the input transform


class LinearSDCA:
    """The SDCA optimizer's settings (tf.estimator.experimental.LinearSDCA), given as `optimizer=`."""

    def __init__(
        self,
        example_id_column,
        num_loss_partitions=1,
        num_table_shards=None,
        symmetric_l1_regularization=0.0,
        symmetric_l2_regularization=1.0,
        adaptive=False,
    ):
        if not isinstance(example_id_column, str) or not example_id_column:
            raise ConfigError(f"LinearSDCA: example_id_column must be a feature name, got {example_id_column!r}")
        if symmetric_l2_regularization <= 0:
            raise ConfigError("LinearSDCA: symmetric_l2_regularization must be positive (SDCA's dual needs it)")
        if symmetric_l1_regularization < 0 or num_loss_partitions < 1:
            raise ConfigError("LinearSDCA: symmetric_l1_regularization >= 0 and num_loss_partitions >= 1")
        self.example_id_column = example_id_column
        self.num_loss_partitions = int(num_loss_partitions)
        self.num_table_shards = num_table_shards  # one table here (tf.estimator sharded it across ps tasks)
        self.symmetric_l1_regularization = float(symmetric_l1_regularization)
        self.symmetric_l2_regularization = float(symmetric_l2_regularization)
        self.adaptive = bool(adaptive)


def loss_type(head) -> str:
    """The SDCA loss of a head: logistic for a binary classifier, squared for a one-dimensional regression."""
    from components.estimator import heads

    if isinstance(head, heads.ClassificationHead) and head.logits_dimension == 1:
        return "logistic_loss"
    if type(head) is heads.RegressionHead and head.logits_dimension == 1:
        return "squared_loss"
    raise ConfigError(
        "LinearSDCA trains binary classifiers (logistic loss) and one-dimensional regressions (squared loss), "
        f"as tf.estimator's did; got {type(head).__name__} with {head.logits_dimension} logits"
    )


def attach_state(model, sdca: LinearSDCA):
    """Gives a LinearModel SDCA's state: the examples' dual state table, and unshrunk weights under L1."""
    model.sdca_example_state = tf.lookup.experimental.MutableHashTable(
        key_dtype=tf.string, value_dtype=tf.float32, default_value=tf.zeros([4]), name="sdca_example_state"
    )
    if sdca.symmetric_l1_regularization > 0:
        model.sdca_unshrunk = {
            name: {
                key: tf.Variable(tf.zeros_like(v), trainable=False, name=f"{name}/unshrunk")
                for key, v in ([("weights", entry["weights"])] if isinstance(entry, dict) else [("bias", entry)])
            }
            for name, entry in model.linear_model.items()
        }
    return model


def train_op(model, sdca: LinearSDCA, loss: str, columns: dict, labels, weights, example_ids):
    """One SDCA step over the batch: the kernel's dual update, its deltas added to the (unshrunk) weights."""
    if example_ids is None:
        raise InputError(f"LinearSDCA: training needs the example id feature {sdca.example_id_column!r}")
    unshrunk = getattr(model, "sdca_unshrunk", None)

    def source(name):
        return unshrunk[name]["weights"] if unshrunk is not None else model.linear_model[name]["weights"]

    bias = unshrunk["bias_weights"]["bias"] if unshrunk is not None else model.linear_model["bias_weights"]
    batch = tf.shape(labels)[0]
    sparse: dict[str, list] = {"example": [], "feature": [], "value": [], "unique": [], "weight": [], "var": []}
    dense_features, dense_weights, dense_vars = [], [], []
    for name, value in columns.items():
        var = source(name)
        if isinstance(value, dict):
            ids, id_weights = value["ids"], value.get("weights")
            feature = tf.cast(ids.values, tf.int64)
            unique = tf.unique(feature)[0]
            sparse["example"].append(ids.indices[:, 0])
            sparse["feature"].append(feature)
            # Every group has values (1 where the column gives none): the kernel pairs values with the
            # first groups, so all or none must carry them.
            sparse["value"].append(
                tf.ones_like(feature, tf.float32) if id_weights is None else tf.cast(id_weights.values, tf.float32)
            )
            sparse["unique"].append(unique)
            sparse["weight"].append(tf.reshape(tf.gather(var, unique), [-1]))
            sparse["var"].append(var)
        else:
            dense_features.append(tf.cast(value, tf.float32))
            dense_weights.append(tf.reshape(var, [-1]))
            dense_vars.append(var)
    dense_features.append(tf.ones(tf.stack([batch, 1])))  # the bias: a feature that is always 1
    dense_weights.append(tf.reshape(bias, [-1]))
    dense_vars.append(bias)
    ids = tf.reshape(example_ids, [-1])
    if ids.dtype != tf.string:
        ids = tf.strings.as_string(ids)
    table = model.sdca_example_state
    state, delta_sparse, delta_dense = tf.raw_ops.SdcaOptimizerV2(
        sparse_example_indices=sparse["example"],
        sparse_feature_indices=sparse["feature"],
        sparse_feature_values=sparse["value"],
        dense_features=dense_features,
        example_weights=tf.reshape(tf.cast(weights, tf.float32), [-1]),
        example_labels=tf.reshape(tf.cast(labels, tf.float32), [-1]),
        sparse_indices=sparse["unique"],
        sparse_weights=sparse["weight"],
        dense_weights=dense_weights,
        example_state_data=table.lookup(ids),
        loss_type=loss,
        l1=sdca.symmetric_l1_regularization,
        l2=sdca.symmetric_l2_regularization,
        num_loss_partitions=sdca.num_loss_partitions,
        num_inner_iterations=1,
        adaptive=sdca.adaptive,
    )
    updates = [table.insert(ids, state)]
    for var, unique, delta in zip(sparse["var"], sparse["unique"], delta_sparse):
        updates.append(var.scatter_add(tf.IndexedSlices(tf.reshape(delta, [-1, 1]), unique)))
    for var, delta in zip(dense_vars, delta_dense):
        updates.append(var.assign_add(tf.reshape(delta, tf.shape(var))))
    if unshrunk is None:
        return tf.group(*updates)
    # The proximal step: the model's weights are the unshrunk ones shrunk by l1 / l2.
    shrinkage = sdca.symmetric_l1_regularization / sdca.symmetric_l2_regularization
    with tf.control_dependencies(updates):
        shrunk = []
        for name, entry in model.linear_model.items():
            target, kept = (entry["weights"], unshrunk[name]["weights"]) if isinstance(entry, dict) else (entry, bias)
            shrunk.append(target.assign(tf.sign(kept) * tf.maximum(tf.abs(kept) - shrinkage, 0.0)))
    return tf.group(*shrunk)
