"""tensorflow-metadata Schemas: reading and writing them, the schema of what ingest saw, feature specs.

Inference, as TFDV's `infer_schema` (infer_feature_shape=True, max_string_domain_size=100) does it, from one set
of rules whatever the input: ingest's own counts while it reads (`Observed`, `Domains`), or a statistics
artifact in TFDV's format (`infer_schema`, for `tfpipe schema`):
- **presence**: `min_fraction: 1, min_count: 1` for a feature no example lacks, `min_count: 1` (optional) for one
  some lack, nothing for one that never has a value; counted over every split (the examples written are parsed
  by one feature spec);
- **shape / value_count**: a required feature with one value in every example gets `shape {dim {size: 1}}` (a
  dense tensor for tf.Transform); another single-valued one `value_count {min: 1 max: 1}`; a list `value_count
  {min: <fewest values>}` (no max: a longer list later is not an anomaly, as in TFDV);
- **string domains** (`string_domain`): a BYTES feature whose train split holds at most MAX_DOMAIN_SIZE distinct
  values, each seen twice on average (TFDV's size rule, plus the repeat rule: names and ids, unique per row, are
  not categories however few rows there are); from the train split only, as TFDV infers from train, with a
  `distribution_constraints.min_domain_mass` (`min_domain_mass`) that lets another split hold a value the train
  split lacks only as rarely as sampling explains;
- **int domains**: an INT feature whose values are all 0 or 1 (a flag or a binary label) gets
  `int_domain {min: 0 max: 1}`; other ranges are left open (the next drop's larger count is not an error).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from components.errors import InputError
from schemas.types import BYTES, count_numbers, kind_of, mostly_numbers, widest


def load_schema(path: str | os.PathLike) -> schema_pb2.Schema:
    try:
        with open(path, encoding="utf-8") as f:
            return text_format.Parse(f.read(), schema_pb2.Schema())
    except FileNotFoundError as e:
        raise InputError(f"schema file {path} does not exist") from e
    except text_format.ParseError as e:
        raise InputError(f"{path}: not a tensorflow-metadata Schema text proto ({e})") from e


def write_text_proto(proto, path: str | os.PathLike) -> None:
    Path(path).write_text(text_format.MessageToString(proto), encoding="utf-8")


def kinds(schema: schema_pb2.Schema) -> dict[str, int]:
    """{column name: its schema_pb2.FeatureType (INT, FLOAT, BYTES)}."""
    return {f.name: f.type for f in schema.feature}


def required(schema: schema_pb2.Schema) -> set[str]:
    """Columns every row must have a value in (presence 1.0)."""
    return {f.name for f in schema.feature if f.presence.min_fraction >= 1.0}


class Observed:
    """What ingest saw of each column while reading (kind, rows with and without it, longest list):
    the schema is built from this, the same way whatever the reader."""

    def __init__(self):
        self.kind, self.missing, self.longest, self.shortest, self.rows = {}, {}, {}, {}, 0
        self.numbers, self.others, self.first_other = {}, {}, {}  # text columns: for stray words

    def batch(self, rows: int, columns: dict, text: bool, where=None) -> None:
        """`where(i)`: what to remember of row i of this batch, for naming it later."""
        before = self.rows
        self.rows += rows
        for name, column in columns.items():
            self.kind[name] = widest(self.kind.get(name), kind_of(column, text))
            self.missing[name] = self.missing.get(name, before) + column.null_count
            lo, hi = _lengths(column)
            self.longest[name] = max(self.longest.get(name, 0), hi)
            if lo is not None:
                self.shortest[name] = min(self.shortest.get(name, lo), lo)
            if text:
                numbers, others, first = count_numbers(column)
                self.numbers[name] = self.numbers.get(name, 0) + numbers
                self.others[name] = self.others.get(name, 0) + others
                if first is not None and name not in self.first_other:
                    self.first_other[name] = (where(first) if where else first, column[first].as_py())
        for name in self.kind.keys() - columns.keys():  # a column this batch lacks: missing in its rows
            self.missing[name] += rows

    def stray_words(self) -> list:
        """(column, remembered row, value, numbers, others) of each number column with a few words in it."""
        return [
            (name, *self.first_other[name], self.numbers[name], self.others[name])
            for name in sorted(self.first_other)
            if mostly_numbers(self.numbers[name], self.others[name])
        ]

    def schema(self) -> schema_pb2.Schema:
        """Each column's kind (BYTES when it never has a value), presence and shape (see the module's rules);
        columns in name order. Domains come later (`Domains.apply`): they need the rows' splits."""
        schema = schema_pb2.Schema()
        for name in sorted(self.kind):
            feature = schema.feature.add(name=name, type=self.kind.get(name) or BYTES)
            present = self.rows - self.missing.get(name, self.rows) if self.kind.get(name) else 0
            set_presence(feature, present, self.rows, self.shortest.get(name, 1), self.longest.get(name, 1))
        return schema


def _lengths(column) -> tuple[int | None, int]:
    """(fewest, most) values in a row that has the column; (None, 1) for plain values or no list at all."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)) or column.null_count == len(column):
        return (1 if column.null_count < len(column) else None), 1
    lo_hi = pc.min_max(pc.list_value_length(column)).as_py()
    return int(lo_hi["min"] or 0), int(lo_hi["max"] or 0)


# ---- inference rules: one place, whatever counted the data --------------------------------------------------

MAX_DOMAIN_SIZE = 100  # TFDV's infer_schema max_string_domain_size


def set_presence(feature, present: int, rows: int, fewest: int, most: int) -> None:
    """presence and shape / value_count of a feature that `present` of `rows` examples have, with `fewest` to
    `most` values each."""
    feature.ClearField("presence")
    feature.ClearField("shape")
    feature.ClearField("value_count")
    if present == 0:
        feature.presence.min_fraction = 0.0
        return
    feature.presence.min_count = 1
    if present == rows:
        feature.presence.min_fraction = 1.0
    if fewest == most == 1:
        if present == rows:
            feature.shape.dim.add().size = 1
        else:
            feature.value_count.min, feature.value_count.max = 1, 1
    else:
        feature.value_count.min = fewest


def string_domain(
    counts: Mapping[str, float], unique: int, total: float, max_size: int = MAX_DOMAIN_SIZE
) -> list[str] | None:
    """The domain of a string feature whose `total` values (of one split) hold `unique` distinct ones, `counts`
    of them known: None unless it looks categorical (at most `max_size` distinct values, every one known, each
    seen twice on average)."""
    if not counts or unique > max_size or len(counts) < unique or unique * 2 > total:
        return None
    return sorted(counts)


def min_domain_mass(train_values: float) -> float:
    """The least share of a split's values a domain inferred from `train_values` values must cover: a value the
    train split never had can still be as frequent as 3 / n (the rule of three, 95 %), so a rarer unknown value
    is sampling, not an anomaly. Rounded down to 3 decimals."""
    if train_values <= 3:
        return 0.0
    return math.floor((1 - 3 / train_values) * 1000) / 1000


def set_string_domain(feature, values: list[str], train_values: float) -> None:
    feature.ClearField("domain")
    feature.string_domain.name = feature.name
    feature.string_domain.value[:] = values
    feature.distribution_constraints.min_domain_mass = min_domain_mass(train_values)


def set_int_domain(feature, lo: float | None, hi: float | None) -> None:
    """int_domain {min: 0 max: 1} for an INT feature whose values (every split's) are all 0 or 1."""
    if feature.type == schema_pb2.INT and lo is not None and hi is not None and lo == 0 and hi == 1:
        feature.int_domain.min, feature.int_domain.max = 0, 1


class Domains:
    """ingest's count of each BYTES column's values in the train split (given up on past MAX_DOMAIN_SIZE
    distinct values): what `string_domain` decides on."""

    def __init__(self, schema: schema_pb2.Schema, max_size: int = MAX_DOMAIN_SIZE):
        self.max_size = max_size
        self.counts: dict[str, dict[str, int] | None] = {f.name: {} for f in schema.feature if f.type == BYTES}
        self.total: dict[str, int] = dict.fromkeys(self.counts, 0)

    def add(self, name: str, values) -> None:
        """`values`: a flat Arrow array of one BYTES column's values in train rows."""
        import pyarrow.compute as pc

        counts = self.counts.get(name)
        if counts is None or not len(values) - values.null_count:
            return
        found = pc.value_counts(values.drop_null())
        for value, n in zip(found.field("values").to_pylist(), found.field("counts").to_pylist()):
            key = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            counts[key] = counts.get(key, 0) + n
        self.total[name] += len(values) - values.null_count
        if len(counts) > self.max_size:
            self.counts[name] = None  # not categorical: stop counting

    def apply(self, schema: schema_pb2.Schema, ranges: Mapping[str, tuple[Any, Any]]) -> None:
        """Adds the string domains, and the int domains of INT columns whose (min, max) over every split in
        `ranges` is (0, 1)."""
        for feature in schema.feature:
            counts = self.counts.get(feature.name)
            if counts:
                domain = string_domain(counts, len(counts), self.total[feature.name], self.max_size)
                if domain is not None:
                    set_string_domain(feature, domain, self.total[feature.name])
            if feature.name in ranges:
                set_int_domain(feature, *ranges[feature.name])


def infer_schema(stats_list, train_split: str = "train", max_size: int = MAX_DOMAIN_SIZE) -> schema_pb2.Schema:
    """The schema ingest would infer, from a statistics artifact in TFDV's format (a DatasetFeatureStatisticsList
    with a dataset per split): presence and shape over every split, string domains from `train_split`."""
    from tensorflow_metadata.proto.v0 import statistics_pb2 as sp

    splits = {d.name: d for d in stats_list.datasets}
    rows = sum(d.num_examples for d in splits.values())
    merged: dict[str, dict[str, Any]] = {}
    for dataset in splits.values():
        for f in dataset.features:
            name = ".".join(f.path.step) if f.path.step else f.name
            m = merged.setdefault(
                name, {"type": f.type, "present": 0, "fewest": None, "most": 0, "lo": None, "hi": None}
            )
            common = f.string_stats.common_stats if f.HasField("string_stats") else f.num_stats.common_stats
            if f.HasField("num_stats") or f.type != sp.FeatureNameStatistics.STRING:
                m["type"] = f.type
            m["present"] += common.num_non_missing
            if common.num_non_missing:
                fewest = common.min_num_values
                m["fewest"] = fewest if m["fewest"] is None else min(m["fewest"], fewest)
                m["most"] = max(m["most"], common.max_num_values)
                if f.HasField("num_stats"):
                    lo, hi = f.num_stats.min, f.num_stats.max
                    m["lo"] = lo if m["lo"] is None else min(m["lo"], lo)
                    m["hi"] = hi if m["hi"] is None else max(m["hi"], hi)
    kind = {sp.FeatureNameStatistics.INT: schema_pb2.INT, sp.FeatureNameStatistics.FLOAT: schema_pb2.FLOAT}
    schema = schema_pb2.Schema()
    train = (
        {(".".join(f.path.step) if f.path.step else f.name): f for f in splits[train_split].features}
        if (train_split in splits)
        else {}
    )
    for name in sorted(merged):
        m = merged[name]
        feature = schema.feature.add(name=name, type=kind.get(m["type"], BYTES))
        set_presence(feature, m["present"], rows, m["fewest"] or 0, m["most"])
        set_int_domain(feature, m["lo"], m["hi"])
        t = train.get(name)
        if feature.type == BYTES and t is not None and t.HasField("string_stats"):
            s = t.string_stats
            counts = {b.label: b.sample_count for b in s.rank_histogram.buckets}
            domain = string_domain(counts, s.unique, s.common_stats.tot_num_values, max_size)
            if domain is not None:
                set_string_domain(feature, domain, s.common_stats.tot_num_values)
    return schema


def domain_of(schema: schema_pb2.Schema, feature) -> list[str] | None:
    """A feature's string domain, inline or named at the schema's top level; None without one."""
    if feature.HasField("string_domain"):
        return list(feature.string_domain.value)
    if feature.HasField("domain"):
        for d in schema.string_domain:
            if d.name == feature.domain:
                return list(d.value)
    return None


def feature_spec(schema_path: str) -> dict[str, Any]:
    """The schema as a tf.io parsing spec (FixedLen for required single values, VarLen otherwise)."""
    from tensorflow_transform.tf_metadata import schema_utils

    return dict(schema_utils.schema_as_feature_spec(load_schema(schema_path)).feature_spec)
