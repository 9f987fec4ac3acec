"""Schema inference (schemas.schema): TFDV's rules for presence, value counts and domains, whoever counts.

ingest infers while it reads; `infer_schema` infers from a statistics artifact in TFDV's format; both must
give the same schema for the same data (one rule, one place). The data is the shipped Titanic CSV.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

from components.ingest import IngestConfig, ingest
from components.statistics import StatisticsConfig, compute, load_statistics
from schemas.schema import infer_schema, load_schema, min_domain_mass, string_domain

TITANIC = Path(__file__).resolve().parents[2] / "examples" / "titanic" / "data" / "train.csv"


@pytest.fixture(scope="module")
def titanic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("titanic")
    result = ingest(IngestConfig(input=str(TITANIC)), folder / "examples", folder, folder)
    return folder, result, {f.name: f for f in load_schema(result.schema_path).feature}


def test_titanic_schema_has_domains_for_categories_and_presence_for_missing_values(titanic):
    _, result, schema = titanic
    assert list(schema["Sex"].string_domain.value) == ["female", "male"]
    assert list(schema["Embarked"].string_domain.value) == ["C", "Q", "S"]
    for name in ("Name", "Ticket", "Cabin"):  # names, tickets, cabins: (nearly) one per passenger
        assert not schema[name].HasField("string_domain"), name
    # Age and Cabin are missing in some rows: optional (min_count 1), one value where present, no dense shape
    for name in ("Age", "Cabin", "Embarked"):
        f = schema[name]
        assert f.presence.min_count == 1 and f.presence.min_fraction == 0.0, name
        assert (f.value_count.min, f.value_count.max) == (1, 1) and not f.HasField("shape"), name
    for name in ("Fare", "Sex", "Pclass", "Survived"):  # never missing: required, dense [1]
        f = schema[name]
        assert (f.presence.min_fraction, f.presence.min_count) == (1.0, 1), name
        assert [d.size for d in f.shape.dim] == [1] and not f.HasField("value_count"), name
    assert (schema["Survived"].int_domain.min, schema["Survived"].int_domain.max) == (0, 1)
    assert not schema["Pclass"].HasField("int_domain") and not schema["Age"].HasField("float_domain")
    # The domain comes from the train split: its mass allows another split's unknown values only as rare as
    # 3 / (the train split's values)
    train_sex = result.counts["train"]
    assert schema["Sex"].distribution_constraints.min_domain_mass == math.floor((1 - 3 / train_sex) * 1000) / 1000


def test_infer_schema_from_statistics_is_the_schema_ingest_infers(titanic):
    folder, _, schema = titanic
    compute(str(folder / "examples"), str(folder / "stats"), StatisticsConfig())
    from_stats = infer_schema(load_statistics(folder / "stats"), "train")
    assert {f.name: f for f in from_stats.feature} == schema


def test_domains_come_from_the_train_split_alone(tmp_path):
    (tmp_path / "train.csv").write_text("color,n\n" + "red,1\nblue,2\n" * 10)
    (tmp_path / "eval.csv").write_text("color,n\n" + "red,1\ngreen,2\n" * 3)
    config = IngestConfig(input={"train": str(tmp_path / "train.csv"), "eval": str(tmp_path / "eval.csv")})
    result = ingest(config, tmp_path / "out")
    color = next(f for f in load_schema(result.schema_path).feature if f.name == "color")
    assert list(color.string_domain.value) == ["blue", "red"]
    assert color.distribution_constraints.min_domain_mass == pytest.approx(0.85)  # 1 - 3/20
    n = next(f for f in load_schema(result.schema_path).feature if f.name == "n")
    assert not n.HasField("int_domain")  # 1 and 2: not a flag


def test_string_domain_rule():
    assert string_domain({"a": 5, "b": 5}, 2, 10) == ["a", "b"]
    assert string_domain({"a": 1, "b": 1, "c": 1}, 3, 3) is None  # every value once: an id, not a category
    assert string_domain({"a": 2, "b": 2}, 3, 6) is None  # a distinct value the sketch did not keep
    many = {str(i): 3 for i in range(101)}
    assert string_domain(many, 101, 303) is None and string_domain(many, 101, 303, max_size=200) is not None
    assert min_domain_mass(3) == 0.0 and min_domain_mass(1000) == 0.997


def test_pinned_schema_is_kept_as_given(tmp_path):
    """A pinned (curated) schema is the user's word: ingest writes it back as given, with no domain added."""
    (tmp_path / "in.csv").write_text("color,n\n" + "red,1\nblue,0\n" * 10)
    pinned = schema_pb2.Schema()
    pinned.feature.add(name="color", type=schema_pb2.BYTES)
    pinned.feature.add(name="n", type=schema_pb2.INT)
    (tmp_path / "schema.pbtxt").write_text(str(pinned))
    result = ingest(IngestConfig(input=str(tmp_path / "in.csv"), schema=str(tmp_path / "schema.pbtxt")), tmp_path / "o")
    assert load_schema(result.schema_path) == pinned
