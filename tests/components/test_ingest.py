"""ingest on its own: formats, splits, statistics, schema inference and checks, bad input."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from components.errors import InputError
from components.ingest import IngestConfig, ingest, load_schema

CSV = "name,age,score,city\nann,31,1.5,Paris\nbob,,2.5,Lyon\ncid,45,3,Paris\ndee,52,0.5,\n"


def _examples(folder):
    out = []
    for path in sorted(folder.glob("Split-*/*.gz")):
        for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP").as_numpy_iterator():
            ex = tf.train.Example()
            ex.ParseFromString(record)
            out.append(ex)
    return out


def test_csv_infers_types_presence_and_statistics(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(CSV)
    result = ingest(IngestConfig(input=str(src), splits={"train": 1, "eval": 1}), tmp_path / "out")
    assert sum(result.counts.values()) == 4 and set(result.counts) == {"train", "eval"}
    schema = {f.name: f for f in load_schema(result.schema_path).feature}
    assert [schema_pb2.FeatureType.Name(schema[n].type) for n in ("name", "age", "score", "city")] == [
        "BYTES",
        "INT",
        "FLOAT",
        "BYTES",
    ]
    assert schema["name"].presence.min_fraction == 1.0 and schema["age"].presence.min_fraction == 0.0
    stats = json.loads(open(result.statistics_path).read())
    assert stats["features"]["age"] == {"type": "INT", "count": 3, "missing": 1, "min": 31, "max": 52, "mean": 128 / 3}
    assert stats["features"]["city"]["top_values"][0] == ["Paris", 2]
    examples = _examples(tmp_path / "out")
    bob = next(e for e in examples if e.features.feature["name"].bytes_list.value[0] == b"bob")
    assert "age" not in bob.features.feature  # a missing value is an absent feature
    assert bob.features.feature["score"].float_list.value[0] == 2.5


def test_hash_split_is_deterministic_and_follows_weights(tmp_path):
    rows = "\n".join(f"{i},{i * 2}" for i in range(1000))
    (tmp_path / "in.csv").write_text("a,b\n" + rows + "\n")
    first = ingest(IngestConfig(input=str(tmp_path / "in.csv")), tmp_path / "one").counts
    second = ingest(IngestConfig(input=str(tmp_path / "in.csv")), tmp_path / "two").counts
    assert first == second and 640 < first["train"] < 760  # 7:3
    assert (tmp_path / "one/Split-eval/data-00000.tfrecord.gz").read_bytes() == (
        tmp_path / "two/Split-eval/data-00000.tfrecord.gz"
    ).read_bytes()


def test_parquet_tfrecord_and_pre_split_inputs(tmp_path):
    pq.write_table(pa.table({"x": [1.0, 2.0, None], "label": ["a", "b", "a"]}), tmp_path / "t.parquet")
    parquet = ingest(IngestConfig(input=str(tmp_path / "t.parquet"), splits={"all": 1}), tmp_path / "pq")
    assert parquet.counts == {"all": 3}
    # Its output is TFRecord input for the next ingest, given pre-split.
    again = ingest(
        IngestConfig(
            input={"train": str(tmp_path / "pq/Split-all/*.gz"), "eval": str(tmp_path / "pq/Split-all/*.gz")},
            schema=parquet.schema_path,
        ),
        tmp_path / "tfr",
    )
    assert again.counts == {"train": 3, "eval": 3}
    assert len(_examples(tmp_path / "tfr")) == 6


def test_bad_input_names_file_row_and_column(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(CSV)
    schema = ingest(IngestConfig(input=str(good)), tmp_path / "g").schema_path
    with pytest.raises(InputError, match="no file matches"):
        ingest(IngestConfig(input=str(tmp_path / "nope*.csv")), tmp_path / "a")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(InputError, match=r"ragged.csv, row 3: 3 fields where the header has 2"):
        ingest(IngestConfig(input=str(tmp_path / "ragged.csv")), tmp_path / "b")
    (tmp_path / "typo.csv").write_text("name,age,score,city\nann,31,1.5,Paris\nbob,old,2,Lyon\n")
    with pytest.raises(InputError, match=r"typo.csv, row 3, column 'age': 'old' is not INT"):
        ingest(IngestConfig(input=str(tmp_path / "typo.csv"), schema=schema), tmp_path / "c")
    (tmp_path / "nocol.csv").write_text("name,age,city\nann,31,Paris\n")
    with pytest.raises(InputError, match=r"nocol.csv: column\(s\) \['score'\] that the schema requires are missing"):
        ingest(IngestConfig(input=str(tmp_path / "nocol.csv"), schema=schema), tmp_path / "d")
    (tmp_path / "empty.csv").write_text("name,age\n")
    with pytest.raises(InputError, match=r"no rows in .*empty.csv"):
        ingest(IngestConfig(input=str(tmp_path / "empty.csv")), tmp_path / "e")


def test_encoding_delimiter_and_non_finite_numbers_are_refused(tmp_path):
    (tmp_path / "latin1.csv").write_bytes("name,city\nann,Paris\nzoe,Orl\xe9ans\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.csv, row 3, column 'city': not UTF-8 text \(byte 0xe9\)"):
        ingest(IngestConfig(input=str(tmp_path / "latin1.csv")), tmp_path / "a")
    (tmp_path / "semi.csv").write_text("name;age\nann;31\n")
    with pytest.raises(InputError, match="looks delimited by something other than commas"):
        ingest(IngestConfig(input=str(tmp_path / "semi.csv")), tmp_path / "b")
    (tmp_path / "nan.csv").write_text("name,score\nann,1.5\nbob,inf\n")
    with pytest.raises(InputError, match=r"nan.csv, row 3, column 'score': 'inf' is not a finite number"):
        ingest(IngestConfig(input=str(tmp_path / "nan.csv")), tmp_path / "c")


def test_a_big_split_is_written_as_several_files(tmp_path, monkeypatch):
    import components.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "_SHARD_ROWS", 300)
    (tmp_path / "in.csv").write_text("a,b\n" + "\n".join(f"{i},{i % 7}" for i in range(1000)) + "\n")
    counts = ingest(IngestConfig(input=str(tmp_path / "in.csv")), tmp_path / "out").counts
    files = sorted((tmp_path / "out" / "Split-train").glob("*.gz"))
    assert [p.name for p in files] == [f"data-{i:05d}.tfrecord.gz" for i in range((counts["train"] + 299) // 300)]
    sizes = [sum(1 for _ in tf.data.TFRecordDataset(str(p), "GZIP")) for p in files]
    assert sizes[:-1] == [300] * (len(files) - 1) and sum(sizes) == counts["train"]
    a = [e.features.feature["a"].int64_list.value[0] for e in _examples(tmp_path / "out")]
    assert sorted(a) == list(range(1000))


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM: on every reader path the first column keeps its own name."""
    from unittest import mock

    import components.ingest as ingest_module

    (tmp_path / "bom.csv").write_bytes("\ufeffid,city\n1,Paris\n2,Lyon\n".encode("utf-8"))
    for arrow in (True, False):
        patch = (
            mock.patch.object(ingest_module, "_csv_arrow", side_effect=ingest_module._Unlocated)
            if not arrow
            else mock.patch.object(ingest_module, "_BATCH_ROWS", 4096)
        )
        with patch:
            result = ingest(IngestConfig(input=str(tmp_path / "bom.csv")), tmp_path / f"out{arrow}")
        assert [f.name for f in load_schema(result.schema_path).feature] == ["city", "id"]


def test_a_stray_word_in_a_number_column_is_named_not_turned_into_text(tmp_path):
    rows = [f"{i},{20 + i % 50}" for i in range(300)]
    rows[137] = "137,unknown"
    (tmp_path / "ages.csv").write_text("id,age\n" + "\n".join(rows) + "\n")
    with pytest.raises(
        InputError,
        match=r"ages.csv, row 139, column 'age': 'unknown' is not a number, though 299 of "
        r"the column's 300 values are; .* ingest.na_values .* type: BYTES",
    ):
        ingest(IngestConfig(input=str(tmp_path / "ages.csv")), tmp_path / "a")
    # Listed as a missing-value spelling, it is one; and a text column with numbers in it stays text.
    result = ingest(IngestConfig(input=str(tmp_path / "ages.csv"), na_values=["", "unknown"]), tmp_path / "b")
    assert json.loads(open(result.statistics_path).read())["features"]["age"]["missing"] == 1
    (tmp_path / "tickets.csv").write_text("t\n" + "\n".join(["113803", "A/5 21171", "PC 17599"] * 30) + "\n")
    ingest(IngestConfig(input=str(tmp_path / "tickets.csv")), tmp_path / "c")


def test_a_class_label_with_one_value_in_the_train_split_is_refused(tmp_path):
    (tmp_path / "one.csv").write_text("x,y\n" + "\n".join(f"{i},1" for i in range(50)) + "\n")
    with pytest.raises(InputError, match=r"the label 'y' is 1 in every row of the 'train' split"):
        ingest(IngestConfig(input=str(tmp_path / "one.csv"), label="y"), tmp_path / "a")
    ingest(IngestConfig(input=str(tmp_path / "one.csv"), label="y", label_is_class=False), tmp_path / "b")


def test_nested_parquet_columns_are_refused_with_the_column(tmp_path):
    pq.write_table(pa.table({"id": [1, 2], "where": [{"x": 1}, {"x": 2}]}), tmp_path / "nested.parquet")
    with pytest.raises(InputError, match=r"nested.parquet, column 'where': a struct<x: int64> column"):
        ingest(IngestConfig(input=str(tmp_path / "nested.parquet")), tmp_path / "a")


def test_inputs_that_cannot_be_read_are_named(tmp_path):
    import gzip
    import os

    whole = gzip.compress(("a,b\n" + "\n".join(f"{i},{i}" for i in range(2000)) + "\n").encode())
    (tmp_path / "cut.csv.gz").write_bytes(whole[: len(whole) // 2])  # a download that stopped half-way
    with pytest.raises(InputError, match=r"cut.csv.gz: cannot be read \(EOFError: .*\); is the file whole\?"):
        ingest(IngestConfig(input=str(tmp_path / "cut.csv.gz")), tmp_path / "a")
    (tmp_path / "data.csv").mkdir()
    with pytest.raises(InputError, match=r"data.csv is a folder, not a file; name the files in it"):
        ingest(IngestConfig(input=str(tmp_path / "data.csv")), tmp_path / "b")
    if os.geteuid() != 0:  # root reads anything
        (tmp_path / "secret.csv").write_text("a\n1\n")
        (tmp_path / "secret.csv").chmod(0)
        with pytest.raises(InputError, match=r"secret.csv: cannot be read \(PermissionError"):
            ingest(IngestConfig(input=str(tmp_path / "secret.csv")), tmp_path / "c")
