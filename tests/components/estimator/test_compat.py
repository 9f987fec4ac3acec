"""The engine's private TensorFlow / Keras accesses, all in components/estimator/_compat.py, each checked
against the installed TensorFlow: a TF upgrade that moves one fails here, by name, not deep in a run."""

import ast
from pathlib import Path

import tensorflow as tf

from components.estimator import _compat

ENGINE = Path(_compat.__file__).parent


def test_no_other_engine_module_reaches_into_tensorflow_or_keras_internals():
    private = ("tensorflow.python", "keras.src", "tf_keras.src")
    for path in ENGINE.glob("*.py"):
        if path.name == "_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.startswith(private) for n in names), f"{path.name} imports {names}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in (
                    "_trackable_children",
                    "_arg_keywords",
                    "_compile_config",
                    "_user_metrics",
                    "_num_positional_args",
                    "_hyper",
                    "_learning_rate",
                    "_resource_apply_sparse",
                    "_resource_apply_sparse_duplicate_indices",
                    "_fallback_apply_state",
                ), f"{path.name}: .{node.attr}"
            if isinstance(node, ast.FunctionDef):  # an override of OptimizerV2's hooks
                assert not node.name.startswith("_resource_apply"), f"{path.name}: def {node.name}"


def test_each_private_access_still_works_on_this_tensorflow(tmp_path):
    # feature columns: the classes and helpers the engine builds on
    for name in (
        "StateManager",
        "FeatureTransformationCache",
        "CategoricalColumn",
        "DenseColumn",
        "NumericColumn",
        "IndicatorColumn",
        "BucketizedColumn",
        "EmbeddingColumn",
    ):
        assert hasattr(_compat.fc2, name), name
    assert isinstance(tf.feature_column.numeric_column("x"), _compat.fc2.NumericColumn)

    # checkpoint naming
    root = tf.train.Checkpoint(v=tf.Variable(1.0))
    assert "v" in _compat.trackable_children(root)
    assert _compat.escape_local_name("a/b") == "a.Sb"

    # signature input names
    fn = tf.function(lambda x: {"y": x * 2}).get_concrete_function(tf.TensorSpec([None], tf.float32, name="x"))
    _compat.set_signature_keywords(fn, ["examples"])
    assert fn._arg_keywords == ["examples"] and fn._num_positional_args == 1

    # the metrics a Keras model was compiled with
    import tf_keras

    model = tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(2,))])
    model.compile(loss="mse", metrics=["mae"])
    assert _compat.compile_metrics(model) == ["mae"]

    # a Keras 3 optimizer's `iterations` set to the global step, as tf.estimator-era model_fns did
    import keras

    _compat.allow_setting_keras3_iterations()
    optimizer, step = keras.optimizers.SGD(0.1), tf.Variable(3, dtype=tf.int64)
    optimizer.iterations = step
    assert optimizer.iterations is step
    optimizer.apply_gradients([(tf.constant(1.0), keras.Variable(1.0))])
    assert int(step.numpy()) == 4

    # the global seed, without clearing the kernel cache
    from tensorflow.python.eager import context

    _compat.set_global_seed(7)
    assert context.context()._seed == 7 and _compat.global_seed() == 7
    op_seeds = context.context()._rng.random()
    _compat.set_global_seed(7)
    assert context.context()._rng.random() == op_seeds  # op seeds start over, as after tf.random.set_seed

    # CheckpointManager saving through TracedWrites (its save_counter, _write and write callbacks)
    v = tf.Variable(1.0)
    manager = tf.train.CheckpointManager(
        _compat.TracedWrites(tf.train.Checkpoint(v=v), v.device), str(tmp_path / "ckpt"), max_to_keep=2
    )
    for step in range(3):
        v.assign(float(step))
        manager.save(checkpoint_number=step)
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-2")
    assert [p.rsplit("-", 1)[-1] for p in manager.checkpoints] == ["1", "2"]
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("ckpt-*")) == [
        "ckpt-1.data-00000-of-00001",
        "ckpt-1.index",
        "ckpt-2.data-00000-of-00001",
        "ckpt-2.index",
    ]
    reader = tf.train.load_checkpoint(manager.latest_checkpoint)
    assert reader.get_tensor("v/.ATTRIBUTES/VARIABLE_VALUE") == 2.0
    assert reader.get_tensor("save_counter/.ATTRIBUTES/VARIABLE_VALUE") == 3  # as an eager save numbers it


def test_the_faster_legacy_optimizers_are_still_called_through_optimizer_v2s_hooks():
    # If a tf_keras upgrade stops routing sparse gradients through these hooks, the faster forms are
    # silently the plain ones: fail here instead.
    import tf_keras

    calls = []

    class Spy(_compat.FASTER_LEGACY[tf_keras.optimizers.legacy.Adagrad]):
        def _resource_apply_sparse_duplicate_indices(self, grad, handle, indices, **kwargs):
            calls.append("sum")
            return super()._resource_apply_sparse_duplicate_indices(grad, handle, indices, **kwargs)

        def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
            calls.append("apply")
            assert {"lr_t", "epsilon"} <= set(
                (apply_state or {}).get((var.device, var.dtype.base_dtype))
                or self._fallback_apply_state(var.device, var.dtype.base_dtype)
            )
            return super()._resource_apply_sparse(grad, var, indices, apply_state)

    var = tf.Variable(tf.zeros([4, 64]))
    Spy(0.1).apply_gradients([(tf.IndexedSlices(tf.ones([3, 64]), tf.constant([1, 1, 2])), var)])
    assert calls == ["sum", "apply"]
    assert var.numpy()[[0, 3]].tolist() == [[0.0] * 64] * 2 and var.numpy()[1, 0] < var.numpy()[2, 0] < 0

    schedule = tf_keras.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)
    assert _compat.learning_rate_schedule(tf_keras.optimizers.legacy.Adagrad(schedule)) is schedule
    assert _compat.learning_rate_schedule(tf_keras.optimizers.Adam(schedule)) is schedule


def test_tf1_variable_stores_and_resource_tracking_still_reachable():
    # Without fresh stores, the second get_variable finds the first's "probe" in the store that every
    # tf.function graph shares with the process's default graph, and refuses it.
    made: list = []

    def first_one(next_creator, **kwargs):  # as the Estimator's creator: later calls get the first's variable
        return made[0] if made else next_creator(**kwargs)

    def graph_fn():
        _compat.fresh_tf1_stores(tf.compat.v1.get_default_graph())
        with tf.variable_creator_scope(first_one), tf.compat.v1.variable_scope("scope"):
            made.append(tf.compat.v1.get_variable("probe", [], initializer=tf.compat.v1.zeros_initializer()))

    @tf.function
    def traced():
        graph_fn()
        graph_fn()
        return 0

    traced.get_concrete_function()
    assert len(made) >= 2 and all(v is made[0] for v in made) and made[0].name == "scope/probe:0"

    with _compat.tracking_resources() as resources:
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(["a"], [1]), -1)
    assert resources == [table]
