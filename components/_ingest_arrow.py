"""ingest's fast path for CSV: Arrow reads, types, checks and encodes whole blocks of rows in C++.

Anything unusual (a value that does not convert, a missing required value, NaN, an over-long field, a
label the train split lacks, a column mismatch) raises Fallback: the row-by-row reader in ingest.py then
reads the file again and names the file, row and column of the problem. Memory is bounded by Arrow's
block size and the value counters' cap, whatever the number of rows.
"""

from __future__ import annotations

import collections
import hashlib

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from tensorflow_metadata.proto.v0 import schema_pb2

from components._examples import CanonicalEncoder
from components.ingest import _TOP_VALUES_CAP
from components.ingest import _Stats as row_stats

_BLOCK = 1 << 23  # bytes of CSV per block
_ARROW = {schema_pb2.INT: pa.int64(), schema_pb2.FLOAT: pa.float64(), schema_pb2.BYTES: pa.string()}
_WIDTH = {schema_pb2.INT: 0, schema_pb2.FLOAT: 1, schema_pb2.BYTES: 2}


class Fallback(Exception):
    """The fast path cannot vouch for this input; the row-by-row path must read it."""


def _batches(path: str, header: list, types: dict, na_values):
    convert = pcsv.ConvertOptions(column_types=types, null_values=list(na_values), strings_can_be_null=True,
                                  quoted_strings_can_be_null=True)
    read = pcsv.ReadOptions(block_size=_BLOCK, column_names=header, skip_rows=1)
    try:
        with pcsv.open_csv(path, read_options=read, convert_options=convert,
                           parse_options=pcsv.ParseOptions(newlines_in_values=True)) as reader:
            for batch in reader:
                yield batch
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as e:
        raise Fallback(str(e)) from None


def _kind_of(column: pa.Array) -> int:
    values = column.drop_null()
    for kind in (schema_pb2.INT, schema_pb2.FLOAT):
        try:
            pc.cast(values, _ARROW[kind])
            return kind
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return schema_pb2.BYTES


def infer(files: list, headers: dict, na_values) -> schema_pb2.Schema:
    """ingest.infer_schema's rules (widest of INT < FLOAT < BYTES; required when never missing), by block."""
    kinds, missing = {}, collections.Counter()
    for path in files:
        header = headers[path]
        strings = {h: pa.string() for h in header}
        for batch in _batches(path, header, strings, na_values):
            for name, column in zip(batch.schema.names, batch.columns):
                missing[name] += column.null_count
                if column.null_count == len(column):
                    continue
                k = _kind_of(column)
                if kinds.get(name) is None or _WIDTH[k] > _WIDTH[kinds[name]]:
                    kinds[name] = k
    columns = list(dict.fromkeys(h for p in files for h in headers[p]))  # first-seen order
    # a column some file lacks is optional, as when the row-by-row reader meets it
    lacking = {name for name in columns if any(name not in headers[p] for p in files)}
    schema = schema_pb2.Schema()
    for name in columns:
        feature = schema.feature.add(name=name, type=kinds.get(name, schema_pb2.BYTES))
        if missing[name] == 0 and name not in lacking and name in kinds:
            feature.presence.min_fraction = 1.0
            feature.shape.dim.add().size = 1
        else:
            feature.presence.min_fraction = 0.0
    return schema


class _Stats(row_stats):
    """statistics.json's per-feature figures, merged block by block (the row-by-row class's output)."""

    def add(self, name: str, column: pa.Array) -> None:
        self.missing[name] += column.null_count
        present = len(column) - column.null_count
        self.count[name] += present
        if not present:
            return
        if name in self.num:
            lo_hi = pc.min_max(column).as_py()
            acc = self.num[name]
            acc[0], acc[1] = min(acc[0], lo_hi["min"]), max(acc[1], lo_hi["max"])
            acc[2] += pc.sum(column).as_py()
        else:
            counter = self.top[name]
            counts = pc.value_counts(column.drop_null())
            for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
                key = value.encode("utf-8")
                if key in counter or len(counter) < _TOP_VALUES_CAP:
                    counter[key] += n


def _as_lists(column: pa.Array, kind: int) -> pa.Array:
    """A column as the encoder wants it: one list per row, empty (null) where the value is missing."""
    values = pc.cast(column.drop_null(), {schema_pb2.INT: pa.int64(), schema_pb2.FLOAT: pa.float32(),
                                          schema_pb2.BYTES: pa.large_binary()}[kind])
    valid = pc.cast(column.is_valid(), pa.int64())
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(valid)])
    return pa.LargeListArray.from_arrays(offsets, values, mask=column.is_null())


def _split_points(batch: pa.RecordBatch) -> list[float]:
    """A stable hash of each row's content, in [0, 1): the same row always lands in the same split."""
    texts = [pc.fill_null(pc.cast(c, pa.string()), "\x00") for c in batch.columns]
    joined = pc.binary_join_element_wise(*texts, "\x1f") if len(texts) > 1 else texts[0]
    return [int.from_bytes(hashlib.sha256(t.encode("utf-8")).digest()[:8], "big") / 2**64
            for t in joined.to_pylist()]


def write(config, sources: dict, headers: dict, schema, writers: dict, cuts, cap: int,
          max_field: int) -> tuple[dict, dict]:
    """Converts, checks and writes every row; returns (counts per split, statistics)."""
    kinds = {f.name: f.type for f in schema.feature}
    required = {f.name for f in schema.feature if f.presence.min_fraction >= 1.0}
    stats, counts = _Stats(schema), collections.Counter()
    encoder = CanonicalEncoder(schema, drop_missing=True)  # a missing value: no feature, as row by row
    label = config.label
    check_labels = bool(label and config.label_is_class and kinds.get(label, schema_pb2.FLOAT) != schema_pb2.FLOAT)
    label_values = collections.defaultdict(set)
    for split_name, files in sources.items():
        for path in files:
            header = headers[path]
            if (label and label not in header) or (required - set(header)) or (config.schema and set(header) - set(kinds)):
                raise Fallback("columns")
            types = {h: _ARROW[kinds[h]] for h in header if h in kinds}
            for batch in _batches(path, header, types, config.na_values):
                columns = {n: c for n, c in zip(batch.schema.names, batch.columns) if n in kinds}
                for name, column in columns.items():
                    if column.null_count and (name in required or name == label):
                        raise Fallback(f"{name} missing")
                    if kinds[name] == schema_pb2.FLOAT and not pc.all(pc.is_finite(column.drop_null())).as_py():
                        raise Fallback(f"{name} not finite")
                    if kinds[name] == schema_pb2.BYTES and column.null_count < len(column) \
                            and pc.max(pc.utf8_length(column)).as_py() > max_field:
                        raise Fallback(f"{name} too long")
                    stats.add(name, column)
                names = [f.name for f in schema.feature if f.name in columns]
                lists = pa.RecordBatch.from_arrays([_as_lists(columns[n], kinds[n]) for n in names], names)
                serialized = encoder.encode(lists)
                if split_name is not None:
                    targets = [split_name] * batch.num_rows
                else:
                    targets = [next((s for s, upper in cuts if p < upper), cuts[-1][0])
                               for p in _split_points(batch)]
                for target, record in zip(targets, serialized):
                    writers[target].write(record)
                counts.update(targets)
                if check_labels:
                    for value, target in zip(columns[label].to_pylist(), targets):
                        label_values[target].add(value)
                        if len(label_values[target]) > cap:
                            check_labels = False
                            break
    if sum(counts.values()) == 0:
        raise Fallback("no rows")
    train = label_values.get(config.train_split)
    if check_labels and train is not None and any(v - train for v in label_values.values()):
        raise Fallback("a label the train split lacks")
    return counts, stats.as_dict()
