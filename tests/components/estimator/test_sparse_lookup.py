"""sparse_lookup, the gather behind indicator, categorical and embedding columns: its fast path (one id
per example) and its general path give the one-hot product, and train only the rows that were looked up."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components.estimator.premade import sparse_lookup, sparse_lookups

TABLE = np.arange(12, dtype=np.float32).reshape(6, 2)


def _ids(rows_and_ids, batch, width=1):
    indices = [[r, k] for r, k, _ in rows_and_ids]
    values = [i for _, _, i in rows_and_ids]
    return tf.SparseTensor(
        tf.constant(indices, tf.int64, shape=[len(indices), 2]),
        tf.constant(values, tf.int64, shape=[len(values)]),
        [batch, width],
    )


def _one_hot_product(rows_and_ids, batch, weights=None):
    dense = np.zeros([batch, len(TABLE)], np.float32)
    for n, (r, _, i) in enumerate(rows_and_ids):
        dense[r, i] += 1.0 if weights is None else weights[n]
    return dense @ TABLE


CASES = {
    "one id per example": ([(0, 0, 3), (1, 0, 0), (2, 0, 5)], 3, 1),
    "one example without an id": ([(0, 0, 3), (2, 0, 5)], 3, 1),
    "several ids per example": ([(0, 0, 3), (0, 1, 1), (2, 0, 5)], 3, 2),
}


@pytest.mark.parametrize("case", CASES)
def test_the_lookup_is_the_one_hot_product_and_trains_only_the_rows_looked_up(case):
    entries, batch, width = CASES[case]

    @tf.function  # traced, as in the train step: the fast path's static check sees the [batch, 1] shape
    def step(table, indices, values):
        ids = tf.SparseTensor(indices, values, [batch, width])
        with tf.GradientTape() as tape:
            out = sparse_lookup(table, {"ids": ids}, "sum")
            loss = tf.reduce_sum(out * tf.constant([[1.0, 2.0]]))
        return out, tape.gradient(loss, table)

    table = tf.Variable(TABLE)
    ids = _ids(entries, batch, width)
    out, grad = step(table, ids.indices, ids.values)
    np.testing.assert_allclose(out.numpy(), _one_hot_product(entries, batch))
    assert isinstance(grad, tf.IndexedSlices)  # a sparse update of the rows looked up, not the whole table
    dense_grad = tf.convert_to_tensor(grad).numpy()
    touched = {i for _, _, i in entries}
    for row in range(len(TABLE)):
        expected = [1.0, 2.0] if row in touched else [0.0, 0.0]
        np.testing.assert_allclose(dense_grad[row], expected)


def test_lookups_done_together_match_each_alone():
    # sparse_lookups shares one check between single-valued lookups: a batch where one column lacks
    # an id must give every column its own answer (the others full, one multi-valued).
    cases = [
        CASES["one id per example"],
        CASES["one example without an id"],
        CASES["several ids per example"],
        CASES["one id per example"],
    ]

    @tf.function
    def step(table, *flat):
        entries = [
            {"ids": tf.SparseTensor(flat[2 * k], flat[2 * k + 1], [3, width])} for k, (_, _, width) in enumerate(cases)
        ]
        with tf.GradientTape() as tape:
            outs = sparse_lookups([(table, entry, "sum") for entry in entries])
            loss = tf.add_n([tf.reduce_sum(o) for o in outs])
        return outs, tape.gradient(loss, table)

    table = tf.Variable(TABLE)
    flat = []
    for entries, batch, width in cases:
        ids = _ids(entries, batch, width)
        flat += [ids.indices, ids.values]
    outs, grad = step(table, *flat)
    for out, (entries, batch, _) in zip(outs, cases):
        np.testing.assert_allclose(out.numpy(), _one_hot_product(entries, batch))
    counts = np.zeros(len(TABLE))
    for entries, _, _ in cases:
        for _, _, i in entries:
            counts[i] += 1
    np.testing.assert_allclose(tf.convert_to_tensor(grad).numpy(), np.repeat(counts[:, None], 2, axis=1))


def test_weighted_ids_and_the_mean_combiner():
    entries, batch = [(0, 0, 3), (0, 1, 1), (2, 0, 5)], 3
    weights = [2.0, 1.0, 0.5]
    ids = _ids(entries, batch, 2)
    w = tf.SparseTensor(ids.indices, tf.constant(weights), ids.dense_shape)
    summed = sparse_lookup(tf.constant(TABLE), {"ids": ids, "weights": w}, "sum").numpy()
    np.testing.assert_allclose(summed, _one_hot_product(entries, batch, weights))
    mean = sparse_lookup(tf.constant(TABLE), {"ids": ids, "weights": w}, "mean").numpy()
    np.testing.assert_allclose(mean[0], summed[0] / 3.0)
    np.testing.assert_allclose(mean[1], [0.0, 0.0])  # an example without ids is zero, not NaN


def test_a_legacy_optimizer_leaves_rows_not_looked_up_alone():
    table = tf.Variable(TABLE)
    opt = tf_keras.optimizers.legacy.Adam(0.1)
    entries = [(0, 0, 3), (2, 0, 5)]  # example 1 has no id: the slow path

    @tf.function
    def step():
        ids = _ids(entries, 3)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(sparse_lookup(table, {"ids": ids}, "sum"))
        opt.apply_gradients([(tape.gradient(loss, table), table)])

    step()
    changed = np.any(table.numpy() != TABLE, axis=1)
    assert changed.tolist() == [False, False, False, True, False, True]


def test_single_valued_columns_keep_the_shape_the_one_id_path_needs():
    # Dropping out-of-vocabulary ids (-1) must not lose the static [batch, 1] shape of a single-valued
    # column: without it every lookup takes the segment-sum path.
    from components.estimator._features import ColumnTransform

    fc = tf.feature_column
    transform = ColumnTransform(
        [
            fc.categorical_column_with_vocabulary_list("v", ["a", "b"]),
            fc.categorical_column_with_identity("i", 4),
            fc.categorical_column_with_hash_bucket("h", 8),
        ]
    )
    spec = {k: tf.TensorSpec([None], tf.string if k != "i" else tf.int64) for k in "vih"}
    out = tf.function(transform).get_concrete_function(spec).structured_outputs
    assert {k: out[k]["ids"].shape.as_list() for k in "vih"} == {k: [None, 1] for k in "vih"}
