"""The premade estimators' optimizers by name: their sparse updates (repeated ids summed over sorted
rows; Adagrad's rows read, updated and written back) give what tf_keras's legacy optimizers give."""

import pickle

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from hypothesis import given, settings
from hypothesis import strategies as st

from components.estimator._compat import _SortedSums
from components.estimator.optimizers import make_optimizer

LEGACY = tf_keras.optimizers.legacy
# Name -> the tf_keras class it must match, with settings that exercise each one's sparse kernel.
NAMED = {
    "Adagrad": (LEGACY.Adagrad, {}),
    "Adam": (LEGACY.Adam, {}),
    "Ftrl": (LEGACY.Ftrl, {}),
    "Ftrl with l2 shrinkage": (
        LEGACY.Ftrl,
        {"l1_regularization_strength": 0.01, "l2_shrinkage_regularization_strength": 0.1},
    ),
    "RMSProp": (LEGACY.RMSprop, {"momentum": 0.5}),
    "SGD": (LEGACY.SGD, {}),
}

VOCAB = 6

steps = st.lists(  # each step: the ids looked up (repeats allowed) and a seed for their gradient rows
    st.tuples(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=8), st.integers(0, 2**16)),
    min_size=1,
    max_size=4,
)


def _train(opt, batches, traced: bool, width: int = 3) -> list[np.ndarray]:
    var = tf.Variable(np.linspace(-1, 1, VOCAB * width, dtype=np.float32).reshape(VOCAB, width))

    def apply(grad):
        opt.apply_gradients([(grad, var)])

    apply = tf.function(apply) if traced else apply
    for ids, seed in batches:
        values = np.random.default_rng(seed).normal(size=(len(ids), width)).astype(np.float32)
        apply(tf.IndexedSlices(tf.constant(values), tf.constant(ids, tf.int64), tf.constant([VOCAB, width])))
    return [var.numpy()] + [opt.get_slot(var, name).numpy() for name in opt.get_slot_names()]


# Rows of width 64 take _SortedSums's sorted sums; of width 3, the unsorted ones.
@settings(max_examples=60, deadline=None)
@given(steps, st.sampled_from(sorted(NAMED)), st.sampled_from([0.05, 0.5]), st.booleans(), st.sampled_from([3, 64]))
def test_each_sparse_update_is_the_legacy_optimizers(batches, name, rate, traced, width):
    cls, settings_ = NAMED[name]
    ours = _train(make_optimizer(cls(rate, **settings_), 0.0), batches, traced, width)
    if settings_ == {}:
        assert _train(make_optimizer(name.split()[0], rate), batches, traced, width)[0].tolist() == ours[0].tolist()
    theirs = _train(cls(rate, **settings_), batches, traced, width)
    assert len(ours) == len(theirs) >= 1
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_a_legacy_adagrad_given_by_the_user_keeps_its_settings():
    given_opt = tf_keras.optimizers.legacy.Adagrad(0.3, initial_accumulator_value=0.5, epsilon=1e-4)
    made = make_optimizer(given_opt, 0.05)
    assert made is not given_opt and isinstance(made, tf_keras.optimizers.legacy.Adagrad)
    assert made.get_config() == given_opt.get_config()
    assert _train(made, [([1, 1, 4], 7)], False)[1][1, 0] != 0.5  # the repeated row's accumulator moved
    assert type(make_optimizer(LEGACY.SGD(0.1), 0.05)) is LEGACY.SGD


class _Captured(_SortedSums, LEGACY.Adagrad):
    """Keeps the summed rows _SortedSums hands on, instead of applying them."""

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        self.captured = grad.numpy(), indices.numpy()
        return tf.no_op()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=300), st.integers(0, 2**16))
def test_sorted_sums_of_many_repeats_are_the_sums(ids, seed):
    # Past 15 repeats of an id segment_sum adds in another order than row by row: the sums may differ
    # by rounding, never by more.
    rows = np.random.default_rng(seed).normal(size=(len(ids), 64)).astype(np.float32)
    opt = _Captured()
    opt._resource_apply_sparse_duplicate_indices(tf.constant(rows), None, tf.constant(ids, tf.int64))
    summed, unique = opt.captured
    assert sorted(unique.tolist()) == sorted(set(ids))
    for row, i in zip(summed, unique):
        mine = np.asarray(ids) == i
        want, scale = rows[mine].astype(np.float64).sum(axis=0), np.abs(rows[mine]).sum(axis=0)
        assert np.all(np.abs(row - want) <= 1e-6 * scale + 1e-7)


def test_a_schedule_a_class_and_pickling():
    schedule = tf_keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)
    made = make_optimizer(LEGACY.Adagrad(schedule), 0.05)  # legacy Adagrad's from_config drops schedules
    assert made._get_hyper("learning_rate") is schedule
    before = _train(made, [([1, 2], 3), ([2], 4)], False)[0]
    assert np.all(np.isfinite(before)) and made.iterations.numpy() == 2
    # A class is a factory, as tf.estimator took it (it failed on the class's missing from_config).
    assert type(make_optimizer(LEGACY.Adam, 0.05)) is LEGACY.Adam
    for name in NAMED:
        pickle.loads(pickle.dumps(type(make_optimizer(name.split()[0], 0.1))))


def test_premade_estimators_train_named_optimizers_at_tf_estimator_2_learning_rates(tmp_path):
    """Read from the checkpoint, as tf.estimator 2.15's were: its DNN estimators passed no rate for a
    named optimizer (the class's own default), LinearClassifier's "Ftrl" trained at 0.2 and its
    optimizer=None at min(0.2, 1/sqrt(#columns)); the combined model's parts at 0.001 and
    min(0.005, 1/sqrt(#columns))."""
    from components import estimator

    fc = tf.feature_column
    cols = [fc.numeric_column(f"x{i}") for i in range(36)]  # 1/sqrt(36) = 0.167 < 0.2

    def input_fn():
        return tf.data.Dataset.from_tensor_slices(({c.key: [0.5, -0.5] for c in cols}, [1, 0])).repeat().batch(2)

    def rates(est):
        est.train(input_fn, steps=1)
        return {
            n.split("/")[0]: pytest.approx(float(est.get_variable_value(n)))
            for n in est.get_variable_names()
            if n.endswith("_optimizer/learning_rate")
        }

    def d(name):
        return str(tmp_path / name)

    assert rates(estimator.DNNClassifier([4], cols, model_dir=d("dnn"))) == {"dnn_optimizer": 0.001}
    assert rates(estimator.DNNRegressor([4], cols, optimizer="SGD", model_dir=d("sgd"))) == {"dnn_optimizer": 0.01}
    assert rates(estimator.LinearClassifier(cols, model_dir=d("linear"))) == {"linear_optimizer": 0.2}
    assert rates(estimator.LinearClassifier(cols, optimizer=None, model_dir=d("none"))) == {"linear_optimizer": 1 / 6}
    assert rates(
        estimator.DNNLinearCombinedClassifier(
            linear_feature_columns=cols, dnn_feature_columns=cols, dnn_hidden_units=[4], model_dir=d("both")
        )
    ) == {"linear_optimizer": 0.005, "dnn_optimizer": 0.001}
