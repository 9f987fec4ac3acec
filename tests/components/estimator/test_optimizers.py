"""The premade estimators' Adagrad: its sparse update (rows read, updated and written back) gives what
tf_keras's legacy Adagrad and its fused kernel give, repeated ids included."""

import numpy as np
import tensorflow as tf
import tf_keras
from hypothesis import given, settings
from hypothesis import strategies as st

from components.estimator.optimizers import make_optimizer

VOCAB, WIDTH = 6, 3

steps = st.lists(  # each step: the ids looked up (repeats allowed) and a seed for their gradient rows
    st.tuples(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=8), st.integers(0, 2**16)),
    min_size=1, max_size=4)


def _train(opt, batches, traced: bool) -> tuple[np.ndarray, np.ndarray]:
    var = tf.Variable(np.linspace(-1, 1, VOCAB * WIDTH, dtype=np.float32).reshape(VOCAB, WIDTH))

    def apply(grad):
        opt.apply_gradients([(grad, var)])

    apply = tf.function(apply) if traced else apply
    for ids, seed in batches:
        values = np.random.default_rng(seed).normal(size=(len(ids), WIDTH)).astype(np.float32)
        apply(tf.IndexedSlices(tf.constant(values), tf.constant(ids, tf.int64), tf.constant([VOCAB, WIDTH])))
    return var.numpy(), opt.get_slot(var, "accumulator").numpy()


@settings(max_examples=40, deadline=None)
@given(steps, st.sampled_from([0.05, 0.5]), st.booleans())
def test_the_sparse_update_is_the_fused_kernels(batches, rate, traced):
    ours = _train(make_optimizer("Adagrad", rate), batches, traced)
    fused = _train(tf_keras.optimizers.legacy.Adagrad(rate), batches, traced)
    for got, want in zip(ours, fused):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_a_legacy_adagrad_given_by_the_user_keeps_its_settings():
    given_opt = tf_keras.optimizers.legacy.Adagrad(0.3, initial_accumulator_value=0.5, epsilon=1e-4)
    made = make_optimizer(given_opt, 0.05)
    assert made is not given_opt and isinstance(made, tf_keras.optimizers.legacy.Adagrad)
    assert made.get_config() == given_opt.get_config()
    assert _train(made, [([1, 1, 4], 7)], False)[1][1, 0] != 0.5  # the repeated row's accumulator moved
