"""The data contract holds whatever the reader: for random tables, CSV (Arrow's reader and Python's csv),
csv.gz, Parquet and TFRecord inputs, with the split names in any order, give the same schema, the same
rows in the same splits and byte-identical examples."""

import csv
import gzip
import io
import os
import tempfile
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components import ingest as ingest_module
from components.ingest import IngestConfig, ingest
from components.statistics import read_records
from schemas.split import SplitRule

SETTINGS = settings(
    max_examples=int(os.environ.get("TFPIPE_FUZZ_EXAMPLES", 40)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True)
# Text that is not a number: it starts with a letter that begins no number word (nan, inf).
words = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abcdeghjklmopqrstuvwxyzABCDEGHJKLMOPQRSTUVWXYZé"),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=12),
)
VALUES = {
    "INT": st.integers(-(2**63), 2**63 - 1),
    "FLOAT": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "BYTES": words,
}
pads = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def tables(draw):
    header = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    kinds = [draw(st.sampled_from(list(VALUES))) for _ in header]
    n = draw(st.integers(1, 25))
    columns = [
        draw(st.lists(st.none() | VALUES[k], min_size=n, max_size=n).filter(lambda c: any(v is not None for v in c)))
        for k in kinds
    ]
    padding = [draw(st.lists(pads, min_size=n, max_size=n)) for _ in header]
    return header, kinds, columns, padding


def _csv_text(header, kinds, columns, padding, dialect) -> str:
    """The table as a spreadsheet would save it; numbers may carry spaces around them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=dialect[0], quoting=dialect[1])
    writer.writerow(header)
    for i in range(len(columns[0])):
        row = []
        for kind, column, pad in zip(kinds, columns, padding):
            v = column[i]
            row.append("" if v is None else v if kind == "BYTES" else f"{pad[i]}{v!r}{pad[i][::-1]}")
        writer.writerow(row)
    return out.getvalue()


def _tfrecord(path: Path, header, kinds, columns) -> None:
    with tf.io.TFRecordWriter(str(path), "GZIP") as w:
        for i in range(len(columns[0])):
            example = tf.train.Example()
            for name, kind, column in zip(header, kinds, columns):
                v = column[i]
                if v is None:
                    continue
                f = example.features.feature[name]
                {"INT": f.int64_list, "FLOAT": f.float_list, "BYTES": f.bytes_list}[kind].value.append(
                    v.encode() if kind == "BYTES" else v
                )
            w.write(example.SerializeToString())


def _outputs(folder: Path, result) -> tuple:
    # tfpipe's own record reader (statistics reads the examples with it), not tf.data: a TFRecordDataset costs
    # more to set up than this whole ingest, and the test makes 400 of them
    splits = {}
    for split in sorted(folder.glob("Split-*")):
        splits[split.name] = [r for f in sorted(split.glob("*.gz")) for chunk in read_records(str(f)) for r in chunk]
    return Path(result.schema_path).read_text(), splits


def _ingest_all(folder: Path, table, dialect, splits: dict) -> dict:
    header, kinds, columns, padding = table
    text = _csv_text(header, kinds, columns, padding, dialect)
    (folder / "t.csv").write_text(text, encoding="utf-8", newline="")
    (folder / "t.csv.gz").write_bytes(gzip.compress(text.encode("utf-8")))
    arrow_types = {"INT": pa.int64(), "FLOAT": pa.float64(), "BYTES": pa.string()}
    pq.write_table(
        pa.table({n: pa.array(c, arrow_types[k]) for n, k, c in zip(header, kinds, columns)}), folder / "t.parquet"
    )
    _tfrecord(folder / "t.tfrecord.gz", header, kinds, columns)
    out = {}

    def run(name, source, weights):
        target = folder / f"out-{name}-{'-'.join(weights)}"
        out[(name, tuple(weights))] = _outputs(
            target, ingest(IngestConfig(input=str(folder / source), splits=weights, label=None), target)
        )

    for order in (list(splits), list(reversed(splits))):
        weights = {k: splits[k] for k in order}
        for name, source in (
            ("arrow-csv", "t.csv"),
            ("csv.gz", "t.csv.gz"),
            ("parquet", "t.parquet"),
            ("tfrecord", "t.tfrecord.gz"),
        ):
            run(name, source, weights)
        with mock.patch.object(ingest_module, "_csv_arrow", side_effect=ingest_module._Unlocated):
            run("python-csv", "t.csv", weights)  # the row-by-row reader, as when a row must be named
    return out


@SETTINGS
@given(
    tables(),
    st.sampled_from([("\n", csv.QUOTE_MINIMAL), ("\r\n", csv.QUOTE_MINIMAL), ("\n", csv.QUOTE_ALL)]),
    st.sampled_from([{"train": 7, "eval": 3}, {"a": 1, "b": 1, "c": 2}]),
)
def test_every_reader_and_split_order_gives_the_same_examples(table, dialect, splits):
    with tempfile.TemporaryDirectory() as tmp:
        out = _ingest_all(Path(tmp), table, dialect, splits)
    (first_key, first), *rest = out.items()
    assert sum(len(v) for v in first[1].values()) == len(table[2][0])
    for key, got in rest:
        assert got[0] == first[0], f"schema of {key} differs from {first_key}"
        assert got[1] == first[1], f"examples or splits of {key} differ from {first_key}"


def test_numbers_with_spaces_are_numbers_and_underscores_are_text(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,c\n 1,1_000,x\n2 ,2_000,y\n")
    for arrow in (True, False):
        patch = (
            mock.patch.object(ingest_module, "_csv_arrow", side_effect=ingest_module._Unlocated)
            if not arrow
            else mock.patch.object(ingest_module, "_BATCH_ROWS", 4096)
        )
        with patch:
            result = ingest(IngestConfig(input=str(tmp_path / "t.csv")), tmp_path / f"out{arrow}")
        schema = Path(result.schema_path).read_text()
        assert 'name: "a"\n  type: INT' in schema and 'name: "b"\n  type: BYTES' in schema, schema


def test_split_key_keeps_a_row_in_its_split_when_other_columns_change(tmp_path):
    rows = [f"{i},{i % 3},{i * 1.5}" for i in range(200)]
    (tmp_path / "a.csv").write_text("id,group,score\n" + "\n".join(rows) + "\n")
    corrected = [f"{i},{(i + 1) % 3},{i * 2.5}" for i in range(200)]
    (tmp_path / "b.csv").write_text("id,group,score\n" + "\n".join(corrected) + "\n")

    def ids(source, key):
        result = ingest(IngestConfig(input=str(tmp_path / source), split_key=key), tmp_path / f"{source}-{key}")
        out = _outputs(tmp_path / f"{source}-{key}", result)[1]
        return {
            s: sorted(tf.train.Example.FromString(r).features.feature["id"].int64_list.value[0] for r in rs)
            for s, rs in out.items()
        }

    assert ids("a.csv", "id") == ids("b.csv", "id")  # the key decides
    assert ids("a.csv", None) != ids("b.csv", None)  # the whole row decides
    assert 40 < len(ids("a.csv", "id")["Split-eval"]) < 80  # 3 in 10 of 200


def test_split_rule_ignores_the_order_of_names_and_the_scale_of_weights():
    a, b = SplitRule({"train": 7, "eval": 3}), SplitRule({"eval": 30, "train": 70})
    assert a.canonical() == b.canonical()
    records = [str(i).encode() for i in range(500)]
    assert a.assign(records) == b.assign(records)
    assert SplitRule({"train": 7, "eval": 3}).canonical() != SplitRule({"train": 6, "eval": 4}).canonical()
