"""The premade family on real data (Titanic, Palmer penguins), tf.estimator's golden numbers, bad use."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tensorflow.core.protobuf import saved_model_pb2

from components import estimator
from components.errors import ConfigError
from examples.penguin.data import columns, split_penguins
from examples.titanic.data import split_titanic
from examples.titanic.seed_estimator import make_input_fn
from tests.components.estimator.helpers import save_dnn_checkpoint

fc = tf.feature_column
AGE, FARE = fc.numeric_column("age"), fc.numeric_column("fare")
CLASS = fc.categorical_column_with_vocabulary_list("class", ["First", "Second", "Third"])
SEX = fc.categorical_column_with_vocabulary_list("sex", ["male", "female"])
TOWN = fc.categorical_column_with_hash_bucket("embark_town", 32)
TITANIC_SPEC = fc.make_parse_example_spec([AGE, FARE, CLASS, SEX, TOWN])
SEED = estimator.RunConfig(tf_random_seed=1)


def _titanic_classifiers(root):
    return {
        "linear": estimator.LinearClassifier(
            [AGE, FARE, CLASS, SEX, TOWN], model_dir=str(root / "linear"), config=SEED
        ),
        "dnn": estimator.DNNClassifier(
            [32, 16],
            [AGE, FARE, fc.indicator_column(CLASS), fc.indicator_column(SEX), fc.embedding_column(TOWN, 4)],
            model_dir=str(root / "dnn"),
            optimizer=tf_keras.optimizers.legacy.Adam(0.05),
            config=SEED,
        ),
        "wide_deep": estimator.DNNLinearCombinedClassifier(
            model_dir=str(root / "wide_deep"),
            linear_feature_columns=[CLASS, SEX, TOWN],
            dnn_feature_columns=[AGE, FARE, fc.indicator_column(CLASS)],
            dnn_hidden_units=[16],
            linear_optimizer=tf_keras.optimizers.legacy.Ftrl(0.1),
            dnn_optimizer=tf_keras.optimizers.legacy.Adam(0.01),
            config=SEED,
        ),
        "baseline": estimator.BaselineClassifier(model_dir=str(root / "baseline"), config=SEED),
    }


@pytest.fixture(scope="module")
def titanic(tmp_path_factory):
    root = tmp_path_factory.mktemp("premade_titanic")
    train_csv, eval_csv = split_titanic(root)
    models, results = _titanic_classifiers(root), {}
    for name, est in models.items():
        est.train(make_input_fn(train_csv), steps=300)
        results[name] = est.evaluate(make_input_fn(eval_csv, shuffle=False, epochs=1))
    return models, results, eval_csv


def test_titanic_classifiers_reach_sensible_quality(titanic):
    _, results, _ = titanic
    base = results["baseline"]
    # The baseline predicts the training survival rate: accuracy is the majority share, AUC is chance.
    assert base["accuracy"] == pytest.approx(base["accuracy_baseline"], abs=1e-6)
    assert base["auc"] == pytest.approx(0.5, abs=1e-6)
    assert abs(base["prediction/mean"] - base["label/mean"]) < 0.05
    for name in ("linear", "dnn", "wide_deep"):
        assert results[name]["accuracy"] >= base["accuracy"] + 0.1, (name, results[name])
        assert results[name]["auc"] >= 0.8, (name, results[name])
    assert results["dnn"]["accuracy"] >= results["linear"]["accuracy"] - 0.005
    assert results["dnn"]["auc"] >= results["linear"]["auc"]


def test_titanic_classifiers_predict_and_export(titanic, tmp_path):
    models, _, eval_csv = titanic
    binary_keys = {"logits", "logistic", "probabilities", "class_ids", "classes", "all_class_ids", "all_classes"}
    receiver = estimator.export.build_parsing_serving_input_receiver_fn(TITANIC_SPEC)
    example = tf.train.Example()
    for key, value in {"age": 30.0, "fare": 80.0}.items():
        example.features.feature[key].float_list.value.append(value)
    for key, value in {"class": "First", "sex": "female", "embark_town": "Cherbourg"}.items():
        example.features.feature[key].bytes_list.value.append(value.encode())
    for name, est in models.items():
        pred = next(iter(est.predict(make_input_fn(eval_csv, shuffle=False, epochs=1))))
        assert set(pred) == binary_keys, name
        assert pred["probabilities"].shape == (2,) and pred["probabilities"].sum() == pytest.approx(1.0, abs=1e-5)
        loaded = tf.saved_model.load(est.export_saved_model(str(tmp_path / name), receiver))
        assert set(loaded.signatures) == {"serving_default", "classification", "regression", "predict"}
        out = loaded.signatures["classification"](inputs=tf.constant([example.SerializeToString()]))
        assert out["classes"].numpy().tolist() == [[b"0", b"1"]]
        if name != "baseline":  # a first-class woman survived, whatever the model
            assert out["scores"][0, 1] > 0.5, name


def test_premade_variable_names_follow_tf_estimator(titanic):
    models, _, _ = titanic
    dnn_names = set(models["dnn"].get_variable_names())
    assert {
        "dnn/hiddenlayer_0/kernel",
        "dnn/hiddenlayer_0/bias",
        "dnn/hiddenlayer_1/kernel",
        "dnn/logits/kernel",
        "dnn/logits/bias",
        "dnn/input_from_feature_columns/input_layer/embark_town_embedding/embedding_weights",
        "global_step",
    } <= dnn_names
    wd_names = set(models["wide_deep"].get_variable_names())
    assert {
        "linear/linear_model/class/weights",
        "linear/linear_model/bias_weights",
        "dnn/hiddenlayer_0/kernel",
    } <= wd_names
    assert "baseline/bias" in models["baseline"].get_variable_names()
    # Optimizer slots are listed after their variable, as OptimizerV2 named them in tf.estimator's graphs.
    assert {"dnn/hiddenlayer_0/kernel/m", "dnn/logits/bias/v"} <= dnn_names  # Adam
    assert {
        "linear/linear_model/class/weights/accumulator",
        "linear/linear_model/class/weights/linear",
        "dnn/hiddenlayer_0/kernel/m",
    } <= wd_names
    kernel = models["linear"].get_variable_value("linear/linear_model/age/weights")
    accumulator = models["linear"].get_variable_value("linear/linear_model/age/weights/accumulator")
    assert accumulator.shape == kernel.shape and np.all(accumulator >= 0.1) and np.any(accumulator > 0.1)


# ---- regression on the Palmer penguins: body mass (kg) from bill, flipper, species and sex ----------------------


def _penguin_input(rows, label="body_mass_g", epochs=None):
    def input_fn():
        data = columns(rows)
        y = np.asarray(data.pop(label), np.float32) / 1000.0
        ds = tf.data.Dataset.from_tensor_slices((data, y)).shuffle(len(rows), seed=1).batch(32)
        return ds.repeat() if epochs is None else ds

    return input_fn


def _penguin_columns(train_rows):
    numeric = []
    for key in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm"):
        values = np.array([r[key] for r in train_rows], np.float32)
        # B008: the defaults bind this key's mean and std (evaluated once, on purpose).
        numeric.append(fc.numeric_column(key, normalizer_fn=lambda x, m=values.mean(), s=values.std(): (x - m) / s))  # noqa: B008
    cats = [
        fc.categorical_column_with_vocabulary_list("species", ["Adelie", "Chinstrap", "Gentoo"]),
        fc.categorical_column_with_vocabulary_list("sex", ["female", "male"]),
    ]
    return numeric, cats


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    root = tmp_path_factory.mktemp("premade_penguins")
    train_rows, eval_rows = split_penguins()
    numeric, cats = _penguin_columns(train_rows)
    models = {
        "linear": estimator.LinearRegressor(numeric + cats, model_dir=str(root / "linear"), config=SEED),
        "dnn": estimator.DNNRegressor(
            [16],
            numeric + [fc.indicator_column(c) for c in cats],
            model_dir=str(root / "dnn"),
            optimizer="Adam",
            config=SEED,
        ),
        "wide_deep": estimator.DNNLinearCombinedRegressor(
            model_dir=str(root / "wide_deep"),
            linear_feature_columns=cats,
            dnn_feature_columns=numeric,
            dnn_hidden_units=[16],
            linear_optimizer=tf_keras.optimizers.legacy.Ftrl(0.2),
            dnn_optimizer=tf_keras.optimizers.legacy.Adam(0.02),
            config=SEED,
        ),
        "baseline": estimator.BaselineRegressor(model_dir=str(root / "baseline"), config=SEED),
    }
    results = {}
    for name, est in models.items():
        est.train(_penguin_input(train_rows), steps=500)
        results[name] = est.evaluate(_penguin_input(eval_rows, epochs=1))
    return models, results, train_rows, eval_rows


def test_penguin_regressors_reach_sensible_quality(penguins):
    _, results, train_rows, eval_rows = penguins
    variance = np.var([r["body_mass_g"] / 1000 for r in eval_rows])
    train_mean = np.mean([r["body_mass_g"] / 1000 for r in train_rows])
    base = results["baseline"]
    assert set(base) == {"loss", "global_step", "average_loss", "label/mean", "prediction/mean"}
    assert base["prediction/mean"] == pytest.approx(train_mean, abs=0.1)  # the baseline learns the mean
    assert 0.8 * variance < base["average_loss"] < 1.3 * variance
    for name in ("linear", "dnn", "wide_deep"):
        # Explains at least 75 % of the variance of body mass (R^2 >= 0.75).
        assert results[name]["average_loss"] < 0.25 * variance, (name, results[name], variance)


def test_penguin_regressor_export_serves_regression(penguins, tmp_path):
    models, _, _, eval_rows = penguins
    numeric, cats = _penguin_columns(eval_rows)
    receiver = estimator.export.build_parsing_serving_input_receiver_fn(fc.make_parse_example_spec(numeric + cats))
    row = eval_rows[0]
    example = tf.train.Example()
    for key in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm"):
        example.features.feature[key].float_list.value.append(row[key])
    for key in ("species", "sex"):
        example.features.feature[key].bytes_list.value.append(row[key].encode())
    for name, est in models.items():
        path = est.export_saved_model(str(tmp_path / name), receiver)
        loaded = tf.saved_model.load(path)
        assert set(loaded.signatures) == {"serving_default", "regression", "predict"}
        # tf.estimator's method names, which TF Serving's :regress checks
        proto = saved_model_pb2.SavedModel.FromString((Path(path.decode()) / "saved_model.pb").read_bytes())
        assert {
            k: v.method_name for k, v in proto.meta_graphs[0].signature_def.items() if k != "__saved_model_init_op"
        } == {
            "serving_default": "tensorflow/serving/regress",
            "regression": "tensorflow/serving/regress",
            "predict": "tensorflow/serving/predict",
        }
        served = loaded.signatures["regression"](inputs=tf.constant([example.SerializeToString()]))["outputs"].numpy()
        pred = next(iter(est.predict(_penguin_input([row], epochs=1))))
        assert set(pred) == {"predictions"}
        assert served.shape == (1, 1)
        np.testing.assert_allclose(served[0], pred["predictions"], rtol=1e-5)
        if name != "baseline":
            assert abs(served[0, 0] - row["body_mass_g"] / 1000) < 0.6, name


def test_multiclass_dnn_classifier_on_penguin_species(tmp_path):
    train_rows, eval_rows = split_penguins()
    numeric, _ = _penguin_columns(train_rows)
    species = ["Adelie", "Chinstrap", "Gentoo"]

    def input_fn(rows, epochs=None):
        def fn():
            data = columns(rows)
            labels = data.pop("species")
            ds = tf.data.Dataset.from_tensor_slices((data, labels)).shuffle(len(rows), seed=1).batch(32)
            return ds.repeat() if epochs is None else ds

        return fn

    est = estimator.DNNClassifier(
        [16], numeric, n_classes=3, label_vocabulary=species, optimizer="Adam", model_dir=str(tmp_path), config=SEED
    )
    est.train(input_fn(train_rows), steps=300)
    result = est.evaluate(input_fn(eval_rows, epochs=1))
    assert set(result) == {"loss", "global_step", "accuracy", "average_loss"}
    assert result["accuracy"] > 0.9
    pred = next(iter(est.predict(input_fn(eval_rows, epochs=1))))
    assert set(pred) == {"logits", "probabilities", "class_ids", "classes", "all_class_ids", "all_classes"}
    assert pred["probabilities"].shape == (3,) and pred["classes"][0].decode() in species
    assert pred["all_classes"].tolist() == [s.encode() for s in species]


def test_multi_label_head_and_label_dimension(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 2)).astype(np.float32)
    multi_hot = np.stack([x[:, 0] > 0, x[:, 1] > 0, x.sum(1) > 0], axis=1).astype(np.int64)
    two_targets = np.stack([2 * x[:, 0], -x[:, 1]], axis=1)
    col = fc.numeric_column("x", shape=[2])

    def input_fn(labels, epochs=None):
        def fn():
            ds = tf.data.Dataset.from_tensor_slices(({"x": x}, labels)).batch(64)
            return ds.repeat() if epochs is None else ds

        return fn

    est = estimator.DNNEstimator(
        estimator.MultiLabelHead(3), [16], [col], optimizer="Adam", model_dir=str(tmp_path / "ml"), config=SEED
    )
    est.train(input_fn(multi_hot), steps=300)
    result = est.evaluate(input_fn(multi_hot, 1))
    assert result["auc"] > 0.97
    pred = next(iter(est.predict(input_fn(multi_hot, 1))))
    assert set(pred) == {"logits", "probabilities", "classes"}  # tf.estimator 2.x's keys
    assert pred["probabilities"].shape == (3,) and pred["classes"].tolist() == [b"0", b"1", b"2"]
    path = est.export_saved_model(
        str(tmp_path / "export"), estimator.export.build_raw_serving_input_receiver_fn({"x": tf.zeros([1, 2])})
    )
    served = tf.saved_model.load(path).signatures["predict"](x=tf.constant(x[:2]))
    assert set(served) == {"logits", "probabilities", "classes"} and served["classes"].shape == (2, 3)

    reg = estimator.LinearRegressor([col], label_dimension=2, optimizer="Adam", model_dir=str(tmp_path / "ld"))
    reg.train(input_fn(two_targets), steps=300)
    assert reg.evaluate(input_fn(two_targets, 1))["average_loss"] < 0.05
    assert next(iter(reg.predict(input_fn(two_targets, 1))))["predictions"].shape == (2,)
    with pytest.raises(ConfigError, match=r"label_dimension is 2"):
        estimator.LinearRegressor([col], label_dimension=2, model_dir=str(tmp_path / "bad")).train(
            input_fn(two_targets[:, :1]), steps=1
        )


# ---- golden numbers from tf.estimator's dnn_testing_utils (weights fixed, one evaluation) ------------------------

# hidden (2, 2) then logits; for age = 10 the logits are -2.08 (relu(10*[.6,.5]+[.1,-.1]) = [6.1, 4.9], ...).
_GOLDEN_LAYERS = (([[0.6, 0.5]], [0.1, -0.1]), ([[1.0, 0.8], [-0.8, -1.0]], [0.2, -0.2]), ([[-1.0], [1.0]], [0.3]))
# The golden network over [age, one-hot(class)]: columns in name order, class_indicator's 3 rows after age's.
_AGE_CLASS_LAYERS = (
    (np.arange(8, dtype=np.float32).reshape(4, 2) / 10 - 0.3, [0.1, -0.1]),
    _GOLDEN_LAYERS[1],
    _GOLDEN_LAYERS[2],
)


def _numpy_logits(x, layers):
    """The DNN's logits in numpy: relu hidden layers, then the logits layer."""
    h = np.asarray(x, np.float32)
    for kernel, bias in layers[:-1]:
        h = np.maximum(h @ np.array(kernel) + bias, 0)
    return h @ np.array(layers[-1][0]) + layers[-1][1]


def test_dnn_classifier_evaluate_golden_one_dim(tmp_path):
    save_dnn_checkpoint(tmp_path, {"age": ("dense", 1)}, _GOLDEN_LAYERS, global_step=100)
    est = estimator.DNNClassifier((2, 2), [fc.numeric_column("age")], model_dir=str(tmp_path))
    result = est.evaluate(lambda: ({"age": [[10.0], [10.0]]}, [[1], [0]]), steps=1)
    # logistic = sigmoid(-2.08) = 0.11105597; loss = -log(0.111) - log(0.889) = 2.31544200, averaged over 2.
    expected = {
        "loss": 2.315442 / 2,
        "average_loss": 2.315442 / 2,
        "accuracy": 0.5,
        "precision": 0.0,
        "recall": 0.0,
        "prediction/mean": 0.11105597,
        "label/mean": 0.5,
        "accuracy_baseline": 0.5,
        "auc": 0.5,
        "auc_precision_recall": 0.5,  # tf.estimator 2.x (1.x: 0.75)
        "global_step": 100,
    }
    assert {k: float(v) for k, v in result.items()} == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_dnn_regressor_evaluate_golden_one_dim(tmp_path):
    save_dnn_checkpoint(tmp_path, {"age": ("dense", 1)}, _GOLDEN_LAYERS, global_step=100)
    est = estimator.DNNRegressor((2, 2), [fc.numeric_column("age")], model_dir=str(tmp_path))
    result = est.evaluate(lambda: ({"age": [[10.0]]}, [[1.0]]), steps=1)
    # (1 - (-2.08))^2 = 9.4864
    expected = {"loss": 9.4864, "average_loss": 9.4864, "label/mean": 1.0, "prediction/mean": -2.08, "global_step": 100}
    assert {k: float(v) for k, v in result.items()} == pytest.approx(expected, rel=1e-4)


def test_dnn_classifier_evaluate_golden_multi_class(tmp_path):
    layers = (
        ([[0.6, 0.5], [-0.6, -0.5]], [0.1, -0.1]),
        _GOLDEN_LAYERS[1],
        ([[-1.0, 1.0, 0.5], [-1.0, 1.0, 0.5]], [0.3, -0.3, 0.0]),
    )
    save_dnn_checkpoint(tmp_path, {"age": ("dense", 2)}, layers, global_step=100)
    est = estimator.DNNClassifier((2, 2), [fc.numeric_column("age", shape=[2])], n_classes=3, model_dir=str(tmp_path))
    x = np.array([[10.0, 8.0]], np.float32)
    result = est.evaluate(lambda: ({"age": x}, [[1]]), steps=1)
    logits = _numpy_logits(x, layers)  # the same network in numpy
    loss = -np.log(np.exp(logits[0, 1]) / np.exp(logits[0]).sum())
    assert float(result["loss"]) == pytest.approx(loss, rel=1e-4)
    assert float(result["accuracy"]) == float(np.argmax(logits[0]) == 1)


def test_dnn_indicator_columns_match_the_one_hot_network(tmp_path):
    # Indicator columns are fed as ids (a gather of first-layer kernel rows); the result must equal the
    # network applied to the concatenated [age, one-hot(class)] input, columns in name order.
    layers = _AGE_CLASS_LAYERS
    save_dnn_checkpoint(tmp_path, {"age": ("dense", 1), "class_indicator": ("indicator", 3)}, layers, global_step=7)
    est = estimator.DNNClassifier((2, 2), [fc.indicator_column(CLASS), AGE], model_dir=str(tmp_path))
    feats = {"age": [[2.0], [-1.0], [0.5]], "class": [["Third"], ["First"], ["Second"]]}
    logits = np.array([p["logits"][0] for p in est.predict(lambda: feats)])
    x = np.array([[2.0, 0, 0, 1], [-1.0, 1, 0, 0], [0.5, 0, 1, 0]], np.float32)
    np.testing.assert_allclose(logits, _numpy_logits(x, layers)[:, 0], rtol=1e-5, atol=1e-6)


def test_a_value_outside_the_vocabulary_is_ignored_as_tf_estimator_did(tmp_path):
    # A vocabulary list without OOV buckets maps an unseen value to id -1, which tf.estimator's lookups
    # dropped: the example scores as if the column had no value. An unseen class at evaluation or
    # serving time must not fail the call.
    layers = _AGE_CLASS_LAYERS
    save_dnn_checkpoint(tmp_path, {"age": ("dense", 1), "class_indicator": ("indicator", 3)}, layers, global_step=7)
    est = estimator.DNNClassifier((2, 2), [fc.indicator_column(CLASS), AGE], model_dir=str(tmp_path))
    feats = {"age": [[2.0], [-1.0]], "class": [["Crew"], ["First"]]}
    logits = np.array([p["logits"][0] for p in est.predict(lambda: feats)])
    x = np.array([[2.0, 0, 0, 0], [-1.0, 1, 0, 0]], np.float32)  # "Crew": no class row
    np.testing.assert_allclose(logits, _numpy_logits(x, layers)[:, 0], rtol=1e-5, atol=1e-6)

    train = {"age": [[2.0], [-1.0], [0.5], [1.0]], "class": [["Third"], ["First"], ["Second"], ["First"]]}
    labels = [[1], [0], [1], [0]]
    unseen = {"age": [[2.0], [-1.0]], "class": [["Crew"], [""]]}
    linear = estimator.LinearClassifier([CLASS, AGE], model_dir=str(tmp_path / "linear"))
    linear.train(lambda: (train, labels), steps=5)
    assert linear.evaluate(lambda: (unseen, [[1], [0]]), steps=1)["global_step"] == 5
    got = [p["logits"][0] for p in linear.predict(lambda: unseen)]
    want = (
        linear.get_variable_value("linear/linear_model/bias_weights")[0]
        + np.array([2.0, -1.0]) * linear.get_variable_value("linear/linear_model/age/weights")[0, 0]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)
    embedded = estimator.DNNClassifier((2,), [fc.embedding_column(CLASS, 2), AGE], model_dir=str(tmp_path / "emb"))
    embedded.train(lambda: (train, labels), steps=3)
    preds = [p["logits"][0] for p in embedded.predict(lambda: {"age": [[1.0], [1.0]], "class": [["Crew"], ["Cook"]]})]
    assert preds[0] == preds[1]  # both unseen: the same all-zero embedding


# ---- warm starting ------------------------------------------------------------------------------------------------


def test_warm_start_settings_filter_and_savedmodel(titanic, tmp_path):
    models, _, eval_csv = titanic
    source = models["dnn"]
    frozen = lambda: tf_keras.optimizers.legacy.SGD(0.0)  # noqa: E731 - keeps the warm-started values
    cols = [AGE, FARE, fc.indicator_column(CLASS), fc.indicator_column(SEX), fc.embedding_column(TOWN, 4)]
    settings = estimator.WarmStartSettings(source.model_dir, vars_to_warm_start=".*hiddenlayer.*")
    est = estimator.DNNClassifier(
        [32, 16],
        cols,
        model_dir=str(tmp_path / "ws"),
        optimizer=frozen,
        warm_start_from=settings,
        config=estimator.RunConfig(tf_random_seed=99),
    )
    est.train(make_input_fn(eval_csv), steps=1)
    for name in ("dnn/hiddenlayer_0/kernel", "dnn/hiddenlayer_1/bias"):
        np.testing.assert_array_equal(est.get_variable_value(name), source.get_variable_value(name))
    assert not np.array_equal(
        est.get_variable_value("dnn/logits/kernel"), source.get_variable_value("dnn/logits/kernel")
    )
    assert est.get_variable_value("global_step") == 1

    # From an exported SavedModel: the linear model's weights come across.
    linear = models["linear"]
    export = linear.export_saved_model(
        str(tmp_path / "export"), estimator.export.build_parsing_serving_input_receiver_fn(TITANIC_SPEC)
    )
    warm = estimator.LinearClassifier(
        [AGE, FARE, CLASS, SEX, TOWN],
        model_dir=str(tmp_path / "from_sm"),
        optimizer=frozen,
        warm_start_from=export.decode(),
    )
    warm.train(make_input_fn(eval_csv), steps=1)
    np.testing.assert_array_equal(
        warm.get_variable_value("linear/linear_model/sex/weights"),
        linear.get_variable_value("linear/linear_model/sex/weights"),
    )

    smaller = estimator.DNNClassifier([8], cols, model_dir=str(tmp_path / "bad"), warm_start_from=source.model_dir)
    with pytest.raises(ConfigError, match="shape"):
        smaller.train(make_input_fn(eval_csv), steps=1)


def test_batch_norm_and_dropout_train(tmp_path):
    train_rows, eval_rows = split_penguins()
    numeric, _cats = _penguin_columns(train_rows)
    est = estimator.DNNRegressor(
        [16, 8], numeric, batch_norm=True, dropout=0.1, optimizer="Adam", model_dir=str(tmp_path), config=SEED
    )
    est.train(_penguin_input(train_rows), steps=50)
    assert est.evaluate(_penguin_input(eval_rows, epochs=1))["average_loss"] > 0  # eval uses the moving stats
    names = est.get_variable_names()
    assert {"dnn/hiddenlayer_0/batchnorm_0/gamma", "dnn/hiddenlayer_1/batchnorm_1/moving_mean"} <= set(names)
    assert np.any(est.get_variable_value("dnn/hiddenlayer_0/batchnorm_0/moving_mean") != 0)


# ---- bad use ------------------------------------------------------------------------------------------------------


def test_bad_use_fails_clearly(tmp_path):
    age = fc.numeric_column("age")
    with pytest.raises(ConfigError, match="unknown optimizer 'Adamm'"):
        estimator.DNNClassifier([4], [age], optimizer="Adamm")
    with pytest.raises(ConfigError, match="unknown optimizer 'ftrl'"):
        estimator.DNNLinearCombinedRegressor(linear_feature_columns=[age], linear_optimizer="ftrl")
    with pytest.raises(ConfigError, match="hidden_units must be a non-empty list"):
        estimator.DNNRegressor([], [age])
    with pytest.raises(ConfigError, match="indicator_column"):
        estimator.DNNClassifier([4], [CLASS])
    with pytest.raises(ConfigError, match="linear_feature_columns, dnn_feature_columns or both"):
        estimator.DNNLinearCombinedClassifier()
    with pytest.raises(ConfigError, match="label_dimension must be an int >= 1"):
        estimator.LinearRegressor([age], label_dimension=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be < n_classes \(3\)"):
        estimator.DNNClassifier([4], [age], n_classes=3, model_dir=str(tmp_path / "a")).train(
            lambda: ({"age": [[1.0]]}, [[3]]), steps=1
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="not in label_vocabulary"):
        estimator.BaselineClassifier(label_vocabulary=["no", "yes"], model_dir=str(tmp_path / "b")).train(
            lambda: ({"age": [[1.0]]}, [["maybe"]]), steps=1
        )
    with pytest.raises(ConfigError, match="regression labels must be numbers"):
        estimator.BaselineRegressor(model_dir=str(tmp_path / "c")).train(lambda: ({"age": [[1.0]]}, [["x"]]), steps=1)


def test_a_dnn_over_indicator_columns_only_matches_the_one_hot_network(tmp_path):
    # No numeric input: the first layer is the indicator columns' kernel rows alone.
    layers = (
        (np.arange(6, dtype=np.float32).reshape(3, 2) / 10 - 0.2, [0.1, -0.1]),
        _GOLDEN_LAYERS[1],
        _GOLDEN_LAYERS[2],
    )
    save_dnn_checkpoint(tmp_path, {"class_indicator": ("indicator", 3)}, layers, global_step=7)
    est = estimator.DNNClassifier((2, 2), [fc.indicator_column(CLASS)], model_dir=str(tmp_path))
    feats = {"class": [["Third"], ["First"], ["Second"]]}
    logits = np.array([p["logits"][0] for p in est.predict(lambda: feats)])
    x = np.eye(3, dtype=np.float32)[[2, 0, 1]]
    np.testing.assert_allclose(logits, _numpy_logits(x, layers)[:, 0], rtol=1e-5, atol=1e-6)
    # A new one trains, evaluates and names its variables.
    est = estimator.DNNClassifier((2, 2), [fc.indicator_column(CLASS)], model_dir=str(tmp_path / "new"))
    est.train(lambda: (feats, [[1], [0], [1]]), steps=3)
    assert est.evaluate(lambda: (feats, [[1], [0], [1]]), steps=1)["global_step"] == 3
    names = est.get_variable_names()
    assert "dnn/hiddenlayer_0/indicator_kernels/class_indicator" in names and "dnn/hiddenlayer_0/kernel" not in names
