"""tensorflow-metadata Schemas: reading and writing them, the schema of what ingest saw, feature specs."""

from __future__ import annotations

import os
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
        self.kind, self.missing, self.longest, self.rows = {}, {}, {}, 0
        self.numbers, self.others, self.first_other = {}, {}, {}  # text columns: for stray words

    def batch(self, rows: int, columns: dict, text: bool, where=None) -> None:
        """`where(i)`: what to remember of row i of this batch, for naming it later."""
        before = self.rows
        self.rows += rows
        for name, column in columns.items():
            self.kind[name] = widest(self.kind.get(name), kind_of(column, text))
            self.missing[name] = self.missing.get(name, before) + column.null_count
            self.longest[name] = max(self.longest.get(name, 0), _longest(column))
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
        """Each column's kind (BYTES when it never has a value); required, one value a row, when no row
        lacks it and it never holds a list of other than one value. Columns in name order."""
        schema = schema_pb2.Schema()
        for name in sorted(self.kind):
            feature = schema.feature.add(name=name, type=self.kind.get(name) or BYTES)
            always = self.missing.get(name, self.rows) == 0 and self.kind.get(name)
            if always and self.longest.get(name, 1) <= 1:
                feature.presence.min_fraction = 1.0
                feature.shape.dim.add().size = 1
            else:
                feature.presence.min_fraction = 0.0
        return schema


def _longest(column) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)) or column.null_count == len(column):
        return 1
    return int(pc.max(pc.list_value_length(column)).as_py() or 0)


def feature_spec(schema_path: str) -> dict[str, Any]:
    """The schema as a tf.io parsing spec (FixedLen for required single values, VarLen otherwise)."""
    from tensorflow_transform.tf_metadata import schema_utils

    return dict(schema_utils.schema_as_feature_spec(load_schema(schema_path)).feature_spec)
