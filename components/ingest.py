"""ingest: CSV (or .csv.gz), TFRecord (tf.Example) or Parquet in; gzipped tf.Example TFRecords per split,
statistics and a schema out.

Readers only turn files into Arrow record batches: CSV as text, Parquet and tf.Example as typed values.
Typing, checks, canonical bytes and the split all come from `schemas`, the same for every reader, so a
row gives the same example in the same split whatever file it came from. Reading streams a batch at a
time (two passes when the schema is inferred); memory does not grow with the input.

Each split's TFDV statistics are gathered in the writing pass, from the typed columns, by the statistics
component's own accumulators, and saved beside the split's files for that component (components/statistics.py).

CSV is read by Arrow in C++, which cannot tell which line a row came from. When a row must be named (a
bad value, a missing label, a label the train split lacks), the files are read again, the same way but
through Python's csv module, which can.
"""

from __future__ import annotations

import collections
import csv
import glob
import gzip
import json
import logging
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from components import statistics as tfdv_statistics
from components.contract import Component, Parameters, PathParam
from components.errors import ConfigError, InputError
from components.progress import Progress
from schemas.artifacts import gzip_writer, split_dir
from schemas.examples import CanonicalEncoder
from schemas.labels import LabelValues
from schemas.schema import Domains, Observed, kinds, load_schema, required, write_text_proto
from schemas.split import SplitRule
from schemas.types import BYTES, FLOAT, TYPE_NAMES, BadValue, to_lists

FORMATS = ("csv", "tfrecord", "parquet")
_TOP_VALUES_CAP = 10_000
_MAX_FIELD = 1 << 20  # characters in one CSV field; longer is almost always an unclosed quote
_SHARD_ROWS = 250_000  # rows per output file: a big input becomes several files, which transform applies in parallel
_BATCH_ROWS = 4096  # rows per batch where the reader chooses (Python's csv, Parquet, TFRecord)
# Bytes of CSV per Arrow block. Arrow's streaming reader reads blocks ahead on its I/O thread, up to 32 of them
# (its background queue), whatever the consumer keeps up with: with 8 MiB blocks that held up to 256 MiB of raw
# CSV, all of a small file but a fixed slice of a big one, so peak memory grew from 1M to 10M rows (1.23x).
# 2 MiB caps it at 64 MiB, less than a 1M-row file: the same at any size (and no slower, measured).
_BLOCK = 1 << 21
_DEFAULT_SPLITS: dict[str, float] = {"train": 7, "eval": 3}  # ingest.splits unless given


class IngestConfig(Parameters):
    """ingest's parameters (its YAML section): what to read and how to split it."""

    # a path or glob; or {split name: path or glob} for pre-split data
    input: Annotated[str | dict[str, str], PathParam()]
    format: str | None = None  # csv | tfrecord | parquet; None: from the file extension
    splits: dict[str, float] = Field(default_factory=lambda: _DEFAULT_SPLITS.copy())  # name -> weight, hash split
    split_key: str | None = None  # hash this column only, so corrections elsewhere in a row keep its split
    # a tensorflow-metadata Schema (pbtxt) to check against; None: inferred
    schema_file: Annotated[str | None, PathParam()] = Field(default=None, alias="schema")
    na_values: list[str] = Field(default_factory=lambda: [""])  # CSV strings that mean "missing"
    label: str | None = None  # the label column: must be present in every file and row
    # A class label: each value in another split must occur in the train split, or the model cannot learn it.
    # Set false for a quantity (regression) stored as integers.
    label_is_class: bool = True
    train_split: str = "train"

    @field_validator("splits")
    @classmethod
    def _positive(cls, splits):
        if not splits or any(w <= 0 for w in splits.values()):
            raise ValueError("splits must map split names to positive weights, e.g. {train: 7, eval: 3}")
        return splits


@dataclass
class IngestResult:
    counts: dict
    schema_path: str
    statistics_path: str


class _Unlocated(Exception):
    """A row must be named, and the reader that read it cannot tell its line."""


@dataclass
class _Batch:
    path: str
    rows: list | None  # each row's number in its file (line, record), None where the reader cannot tell
    columns: dict  # name -> pa.Array
    text: bool  # CSV text, still to be typed; else typed values

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def where(self, i: int, column: str | None = None) -> str:
        if self.rows is None:
            raise _Unlocated
        return f"{self.path}, row {self.rows[i]}" + (f", column {column!r}" if column else "")


def _files(pattern: str) -> list[str]:
    found = sorted(glob.glob(os.path.expanduser(pattern)))
    if not found:
        raise InputError(f"ingest: no file matches {pattern!r}")
    folders = [f for f in found if os.path.isdir(f)]
    if folders:
        raise InputError(
            f"ingest: {folders[0]} is a folder, not a file; name the files in it (e.g. {folders[0]}/*.csv)"
        )
    return found


def _format(path: str, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise ConfigError(f"ingest: format must be one of {FORMATS}, got {given!r}")
        return given
    name = path.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    if ".tfrecord" in name or name.endswith(".tfr"):
        return "tfrecord"
    raise ConfigError(f"ingest: cannot tell the format of {path!r} from its name; set format: csv|tfrecord|parquet")


# ---- readers: files to batches --------------------------------------------------------------------------------


def _csv_lines(path: str) -> tuple[Iterator, list]:
    """(numbered rows after the header, the header) of a CSV file, with the header's own checks."""
    f = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    reader = csv.reader(_decoded(f))
    header: list[str] = []
    rows = _numbered(reader, path, header)
    if next(rows, None) is None:
        f.close()
        return iter(()), []
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        f.close()
        raise InputError(
            f"{path}: the header {header[0]!r} is one column; the file looks delimited by "
            "something other than commas, and ingest reads comma-separated CSV"
        )
    if len(set(header)) != len(header) or any(not h.strip() for h in header):
        f.close()
        raise InputError(f"{path}: the header row has empty or repeated column names: {header}")
    return rows, header


def _read_csv(path: str, na_values=("",)) -> Iterator[tuple[str, int, dict]]:
    """(file, line, {column: text or None}) for each row, by Python's csv module: it can name the line."""
    # csv's own limit is global and low (128 KiB); ours, checked per field, names the column.
    csv.field_size_limit(max(csv.field_size_limit(), 16 * _MAX_FIELD))
    rows, header = _csv_lines(path)
    for line, row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise InputError(
                f"{path}, row {line}: {len(row)} fields where the header has {len(header)} ({', '.join(header)})"
            )
        yield path, line, {h: (None if v in na_values else v) for h, v in zip(header, row)}


_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")


class _NotUtf8(Exception):
    def __init__(self, line: int, before: str, byte: int):
        super().__init__(line, before, byte)
        self.line, self.before, self.byte = line, before, byte


def _decoded(f) -> Iterator[str]:
    """Lines of bytes decoded one at a time, so an undecodable byte is placed on its own line.

    Lines end at \\n, \\r\\n or a lone \\r (old spreadsheets), with the ending kept, as csv expects.
    """
    with f:
        pieces = (piece for line in f for piece in _LONE_CR.split(line) if piece)
        for n, raw in enumerate(pieces, 1):
            try:
                yield raw.decode("utf-8-sig" if n == 1 else "utf-8")  # a spreadsheet's byte-order mark is not data
            except UnicodeDecodeError as e:
                raise _NotUtf8(n, raw[: e.start].decode("utf-8", "replace"), raw[e.start]) from None


def _numbered(reader, path: str, header: list):
    """(line number, row) pairs after the header (which fills `header`); bad bytes or CSV name the row."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except _NotUtf8 as e:
            column = len(next(csv.reader([e.before]), [""])) - 1 if e.before else 0
            named = f", column {header[column]!r}" if column < len(header) else ""
            raise InputError(
                f"{path}, row {e.line}{named}: not UTF-8 text (byte {e.byte:#04x}); save the file as UTF-8"
            ) from None
        except csv.Error as e:
            hint = "; is a quote left unclosed?" if "field limit" in str(e) else ""
            raise InputError(f"{path}, row {reader.line_num}: not valid CSV ({e}){hint}") from None
        if not header:
            header.extend(row)
            yield 1, row
        else:
            yield reader.line_num, row


def _csv_python(path: str, na_values) -> Iterator[_Batch]:
    chunk = []
    for _, line, row in _read_csv(path, set(na_values)):
        chunk.append((line, row))
        if len(chunk) == _BATCH_ROWS:
            yield _text_batch(path, chunk)
            chunk = []
    if chunk:
        yield _text_batch(path, chunk)


def _text_batch(path: str, chunk: list) -> _Batch:
    names = list(chunk[0][1])
    return _Batch(
        path,
        [line for line, _ in chunk],
        {n: pa.array([row[n] for _, row in chunk], pa.string()) for n in names},
        text=True,
    )


def _csv_arrow(path: str, header: list, na_values) -> Iterator[_Batch]:
    """Blocks of rows parsed by Arrow in C++ (the lines are not known: see _Unlocated)."""
    import pyarrow.csv as pcsv

    convert = pcsv.ConvertOptions(
        column_types={h: pa.string() for h in header},
        null_values=list(na_values),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    read = pcsv.ReadOptions(block_size=_BLOCK, column_names=header, skip_rows=1)
    try:  # a .gz name is decompressed on the way
        with pcsv.open_csv(
            path, read_options=read, convert_options=convert, parse_options=pcsv.ParseOptions(newlines_in_values=True)
        ) as reader:
            for batch in reader:
                yield _Batch(path, None, dict(zip(batch.schema.names, batch.columns)), text=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, OSError):
        raise _Unlocated from None  # Python's csv will say what and where


def _parquet(path: str) -> Iterator[_Batch]:
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    n = 0
    for batch in source.iter_batches(batch_size=_BATCH_ROWS):
        columns = {}
        for name, column in zip(batch.schema.names, batch.columns):
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            if pa.types.is_struct(column.type) or pa.types.is_map(column.type):
                raise InputError(
                    f"{path}, column {name!r}: a {column.type} column; ingest reads columns of numbers "
                    "or text and lists of them (flatten the column, or drop it)"
                )
            if pa.types.is_temporal(column.type) or pa.types.is_decimal(column.type):
                column = column.cast(pa.string())  # dates, times and decimals: their text
            columns[name] = column
        yield _Batch(path, list(range(n + 1, n + batch.num_rows + 1)), columns, text=False)
        n += batch.num_rows


def _tfrecord(path: str) -> Iterator[_Batch]:
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    records = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
    n = 0
    try:
        for chunk in records.batch(_BATCH_ROWS).as_numpy_iterator():
            try:
                batch = decoder.DecodeBatch(list(chunk))
            except RuntimeError:
                for i, record in enumerate(chunk, n + 1):
                    try:
                        tf.train.Example.FromString(record)
                    except Exception as e:
                        raise InputError(f"{path}, record {i}: not a serialized tf.train.Example ({e})") from None
                raise
            columns = {
                name: (pa.nulls(len(chunk)) if pa.types.is_null(c.type) else c)
                for name, c in zip(batch.schema.names, batch.columns)
            }
            yield _Batch(path, list(range(n + 1, n + len(chunk) + 1)), columns, text=False)
            n += len(chunk)
    except tf.errors.OpError as e:
        raise InputError(f"{path}: not a readable TFRecord file ({e.message})") from None


def _batches(path: str, config: IngestConfig, located: bool) -> Iterator[_Batch]:
    """The file's batches; a file that cannot be read (permissions, a truncated .gz) is named."""
    try:
        yield from _reader(path, config, located)
    except (OSError, EOFError, zlib.error) as e:
        hint = (
            "is the file whole? (a truncated download or copy)"
            if isinstance(e, (EOFError, zlib.error)) or "gzip" in str(e).lower()
            else "check that it exists and that this user may read it"
        )
        raise InputError(f"{path}: cannot be read ({type(e).__name__}: {e}); {hint}") from None


def _reader(path: str, config: IngestConfig, located: bool) -> Iterator[_Batch]:
    fmt = _format(path, config.format)
    if fmt == "parquet":
        return _parquet(path)
    if fmt == "tfrecord":
        return _tfrecord(path)
    if located:
        return _csv_python(path, config.na_values)
    _, header = _csv_lines(path)  # the header's checks, with their messages; Arrow reads the rest
    return _csv_arrow(path, header, config.na_values) if header else iter(())


# ---- statistics -------------------------------------------------------------------------------------------------


def _shown(kind: int, value):
    # FLOAT values are 32-bit: print them with the digits they hold, not float64's noise
    return float(f"{value:.7g}") if kind == FLOAT else value


class _Stats:
    """statistics.json's per-feature figures, merged batch by batch from the typed list columns."""

    def __init__(self, schema):
        self.kinds = kinds(schema)
        self.count: collections.Counter[str] = collections.Counter()
        self.missing: collections.Counter[str] = collections.Counter()
        # name -> [min, max, sum]; min and max stay None until a value is seen
        self.num: dict[str, list[Any]] = {n: [None, None, 0.0] for n, k in self.kinds.items() if k != BYTES}
        self.top: dict[str, collections.Counter[bytes]] = {
            n: collections.Counter() for n, k in self.kinds.items() if k == BYTES
        }

    def add(self, name: str, lists: pa.Array | None, rows: int) -> None:
        if lists is None:  # the batch has no such column
            self.missing[name] += rows
            return
        self.missing[name] += lists.null_count
        self.count[name] += len(lists) - lists.null_count
        values = lists.flatten()
        if not len(values):
            return
        if name in self.num:
            lo_hi, acc = pc.min_max(values).as_py(), self.num[name]
            acc[0] = lo_hi["min"] if acc[0] is None else min(acc[0], lo_hi["min"])
            acc[1] = lo_hi["max"] if acc[1] is None else max(acc[1], lo_hi["max"])
            acc[2] += pc.sum(pc.cast(values, pa.float64(), safe=False)).as_py()  # a mean: 53 bits do
        else:
            counter = self.top[name]
            counts = pc.value_counts(values)
            for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
                if value in counter or len(counter) < _TOP_VALUES_CAP:
                    counter[value] += n

    def as_dict(self) -> dict:
        out = {}
        for name, kind in self.kinds.items():
            entry = {"type": TYPE_NAMES[kind], "count": self.count[name], "missing": self.missing[name]}
            if name in self.num and self.num[name][0] is not None:
                lo, hi, total = self.num[name]
                entry.update(min=_shown(kind, lo), max=_shown(kind, hi), mean=total / self.count[name])
            elif name in self.top:
                entry["top_values"] = [[v.decode("utf-8", "replace"), n] for v, n in self.top[name].most_common(10)]
                entry["unique"] = len(self.top[name])
            out[name] = entry
        return out


# ---- the whole step ---------------------------------------------------------------------------------------------


def ingest(
    config: IngestConfig,
    examples_dir: str | os.PathLike,
    schema_dir: str | os.PathLike | None = None,
    statistics_dir: str | os.PathLike | None = None,
) -> IngestResult:
    """Writes <examples_dir>/Split-<name>/data-NNNNN.tfrecord.gz, <schema_dir>/schema.pbtxt, <statistics_dir>/statistics.json."""
    out = Path(examples_dir)
    pre_split = isinstance(config.input, dict)
    sources: dict[str | None, list[str]] = (
        {name: _files(p) for name, p in config.input.items()}
        if isinstance(config.input, dict)
        else {None: _files(config.input)}
    )
    rule = None if pre_split else SplitRule(config.splits, config.split_key)
    names = sorted(config.input if pre_split else config.splits)  # outputs must not follow the YAML's key order
    try:
        schema, counts, statistics = _read(config, sources, out, names, rule, located=False)
    except _Unlocated:  # something must be named by its row: read again, row by row
        schema, counts, statistics = _read(config, sources, out, names, rule, located=True)
    schema_path = Path(schema_dir or out) / "schema.pbtxt"
    stats_path = Path(statistics_dir or out) / "statistics.json"
    write_text_proto(schema, schema_path)
    counts = {name: counts.get(name, 0) for name in names}
    stats_path.write_text(json.dumps({"num_examples": counts, "features": statistics}, indent=2), encoding="utf-8")
    return IngestResult(counts, str(schema_path), str(stats_path))


def _read(config: IngestConfig, sources: dict, out: Path, names: list, rule: SplitRule | None, located: bool):
    files = [(split, path) for split, paths in sources.items() for path in paths]
    if config.schema_file:
        schema = load_schema(config.schema_file)
    else:
        seen = Observed()
        for _, path in files:
            for batch in _batches(path, config, located):
                seen.batch(
                    len(batch),
                    batch.columns,
                    batch.text,
                    where=lambda i, b=batch: (b.path, b.rows[i] if b.rows is not None else None),
                )
        for name, (path, row), value, numbers, others in seen.stray_words():
            if row is None:
                raise _Unlocated
            raise InputError(
                f"{path}, row {row}, column {name!r}: {value!r} is not a number, though {numbers:,} of the column's "
                f"{numbers + others:,} values are; fix it, list it in ingest.na_values if it means missing, or, "
                "if the column is text, say so in a schema (ingest.schema, with type: BYTES for it)"
            )
        schema = seen.schema()
    if rule is not None and rule.key and rule.key not in kinds(schema):
        raise InputError(
            f"ingest.split_key: the column {rule.key!r} is not in the data; the columns are {sorted(kinds(schema))}"
        )
    stats = _Stats(schema)
    counts: collections.Counter[str] = collections.Counter()
    label_kind = kinds(schema).get(config.label) if config.label is not None else None
    labels = LabelValues(config.label, config.label_is_class, label_kind, config.train_split)
    encoder = CanonicalEncoder(schema, drop_missing=True)  # a missing value: no feature at all
    # An inferred schema's string domains come from the train split's values (schemas.schema); a pinned one is kept.
    domains = None if config.schema_file else Domains(schema)
    key_encoder = _key_encoder(schema, rule.key) if rule is not None and rule.key else None
    # TFDV's statistics per split, gathered from the typed columns as they are written, so that the statistics
    # component need not read and decode the examples again (it loads these; components/statistics.py).
    split_stats = tfdv_statistics.SplitAccumulators(names)
    writers, progress = {}, Progress(logging.getLogger("tfpipe.ingest"), "ingest: rows read")
    try:
        writers = _open_writers(out, names)
        for split, path in files:
            for batch in _batches(path, config, located):
                lists = _typed(batch, schema, config, rule)
                typed = _record_batch(lists)
                records = encoder.encode(typed)
                if rule is None:
                    targets = [split] * len(batch)
                else:
                    targets = rule.assign(
                        key_encoder.encode(_record_batch({rule.key: lists[rule.key]})) if key_encoder else records
                    )
                for name in stats.kinds:
                    stats.add(name, lists.get(name), len(batch))
                split_stats.add(typed, targets, path)
                if domains is not None:
                    _count_domains(domains, lists, targets, config.train_split)
                if config.label in lists:
                    labels.note(targets, lists[config.label], path, batch.rows)
                for target, record in zip(targets, records):
                    writers[target].write(record)
                counts.update(targets)
                progress.update(sum(counts.values()))
    finally:
        for w in writers.values():
            w.close()
    progress.finish()
    if sum(counts.values()) == 0:
        raise InputError(
            f"ingest: no rows in {', '.join(path for _, path in files)} (an empty file, or a header alone)"
        )
    one = labels.one_class()
    if one is not None:
        raise InputError(
            f"ingest: the label {config.label!r} is {one!r} in every row of the {config.train_split!r} "
            "split, so a classifier has nothing to tell apart; check the input (or set "
            "ingest.label_is_class: false if the label is a quantity)"
        )
    bad = labels.unlearnable()
    if bad:
        value, split, path, row = bad
        if row is None:
            raise _Unlocated
        assert config.label is not None  # LabelValues finds unlearnable values only for a named label
        raise LabelValues.error(value, split, path, row, config.label, config.train_split)
    if domains is not None:
        domains.apply(schema, {name: (acc[0], acc[1]) for name, acc in stats.num.items()})
    split_stats.save(out)  # last: written only once the examples are whole and checked
    return schema, counts, stats.as_dict()


def _count_domains(domains: Domains, lists: dict, targets: list, train_split: str) -> None:
    names = [n for n, counts in domains.counts.items() if counts is not None and n in lists]
    if not names:
        return
    train = pa.array([t == train_split for t in targets], pa.bool_())
    if not pc.any(train).as_py():
        return
    for name in names:
        domains.add(name, lists[name].filter(train).flatten())


def _key_encoder(schema, key: str) -> CanonicalEncoder:
    from tensorflow_metadata.proto.v0 import schema_pb2

    only = schema_pb2.Schema()
    only.feature.add().CopyFrom(next(f for f in schema.feature if f.name == key))
    return CanonicalEncoder(only, drop_missing=True)


def _record_batch(lists: dict) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(list(lists.values()), list(lists))


def _check_columns(batch: _Batch, kinds_: dict, required_: set, config: IngestConfig) -> None:
    """The batch's columns against the schema and the label."""
    path, have = batch.path, sorted(batch.columns)
    if config.label and config.label not in batch.columns:
        raise InputError(f"{path}: the label column {config.label!r} is missing; the file has {have}")
    lacking = sorted(required_ - set(batch.columns))
    if lacking:
        raise InputError(f"{path}: column(s) {lacking} that the schema requires are missing; the file has {have}")
    extra = sorted(set(batch.columns) - set(kinds_))
    if extra and config.schema_file:
        raise InputError(
            f"{path}: column(s) {extra} are not in the schema {config.schema_file}; remove them from the "
            "file or add them to the schema"
        )


def _typed(batch: _Batch, schema, config: IngestConfig, rule: SplitRule | None) -> dict:
    """{column: list array} in schema order, each checked; errors name the file, row and column."""
    kinds_, required_ = kinds(schema), required(schema)
    _check_columns(batch, kinds_, required_, config)
    out = {}
    for name, kind in kinds_.items():
        column = batch.columns.get(name)
        if column is None:
            continue
        if column.null_count:
            first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            if name == config.label:
                raise InputError(
                    f"{batch.where(first, name)}: the label is missing; every row needs one "
                    "(fill it in or drop the row)"
                )
            if name in required_:
                raise InputError(f"{batch.where(first, name)}: the value is missing, but the schema requires it")
            if rule is not None and name == rule.key:
                raise InputError(
                    f"{batch.where(first, name)}: the value is missing, and it is the split_key, "
                    "which decides the row's split; every row needs one"
                )
        if batch.text and column.null_count < len(column):
            lengths = pc.utf8_length(column)
            if pc.max(lengths).as_py() > _MAX_FIELD:
                i = int(np.argmax(pc.fill_null(lengths, 0).to_numpy(zero_copy_only=False)))
                raise InputError(
                    f"{batch.where(i, name)}: the field is {lengths[i].as_py():,} characters long, over "
                    f"the {_MAX_FIELD:,} allowed; is a quote left unclosed?"
                )
        try:
            out[name] = to_lists(column, kind, batch.text)
        except BadValue as e:
            raise InputError(f"{batch.where(e.index, name)}: {e.reason}") from None
    return out


def _open_writers(out: Path, names: list) -> dict:
    writers = {}
    for name in names:
        folder = split_dir(out, name)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in [*folder.glob("data-*.tfrecord.gz"), folder / tfdv_statistics.STATE_FILE]:
            stale.unlink(missing_ok=True)  # an earlier pass's, when the rows are read again
        writers[name] = _ShardWriter(folder)
    return writers


class _ShardWriter:
    """A split's gzipped TFRecord files, data-00000.tfrecord.gz and on, a new one every _SHARD_ROWS rows."""

    def __init__(self, folder: Path):
        self.folder, self.rows = folder, 0
        self.writer: Any = None  # a tf.io.TFRecordWriter, once _next() opens one
        self._next()  # an empty split still gets its (empty) file

    def _next(self) -> None:
        self.close()
        name = f"data-{self.rows // _SHARD_ROWS:05d}.tfrecord.gz"
        self.writer = gzip_writer(self.folder / name)

    def write(self, record: bytes) -> None:
        if self.rows and self.rows % _SHARD_ROWS == 0:
            self._next()
        self.writer.write(record)
        self.rows += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ---- the component --------------------------------------------------------------------------------------------


def split_rule(config: IngestConfig) -> str:
    """How rows were assigned to splits: two Examples artifacts with the same rule split a row alike."""
    if isinstance(config.input, dict):
        return json.dumps({"pre_split": sorted(config.input)})
    return json.dumps(
        {"hash": "sha256 of the canonical tf.Example", **SplitRule(config.splits, config.split_key).canonical()},
        sort_keys=True,
    )


def input_files(config: IngestConfig) -> list[str]:
    """Every file the input names (globs expanded), and a pinned schema: the cache key hashes their contents (an
    edited CSV must be read again, and so must one checked against a curated schema)."""
    patterns = config.input.values() if isinstance(config.input, dict) else [config.input]
    found = {f for p in patterns for f in glob.glob(os.path.expanduser(p))}
    if config.schema_file and os.path.isfile(config.schema_file):
        found.add(config.schema_file)
    return sorted(found)


def _canonical(config: IngestConfig) -> dict:
    section = config.model_dump(by_alias=True)
    # 7:3 is 70:30, and the order the split names are written in changes nothing (schemas.split)
    section["splits"] = SplitRule(section["splits"], section.get("split_key")).canonical()
    return section


def columns(config: IngestConfig) -> list[str] | None:
    """The columns the examples will hold, read before anything runs: the pinned schema's features, else the
    first input file's CSV header or Parquet schema. None when that cannot be told cheaply (TFRecords) or the
    file cannot be read (ingest, when it runs, names the problem)."""
    try:
        if config.schema_file:
            return sorted(f.name for f in load_schema(config.schema_file).feature)
        files = input_files(config)
        if not files:
            return None
        fmt = _format(files[0], config.format)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(files[0]).names)
        if fmt == "csv":
            with gzip.open(files[0], "rb") if files[0].endswith(".gz") else open(files[0], "rb") as f:
                return next(csv.reader(_decoded(f)), None)
    except Exception:  # noqa: BLE001  (any problem here is ingest's to report, with the file and row)
        return None
    return None


def _run(inputs: dict, outputs: dict, config: IngestConfig) -> dict:
    result = ingest(config, outputs["examples"], outputs["schema"], outputs["statistics"])
    return {
        "examples": {
            "split_names": json.dumps(list(result.counts)),
            "counts": json.dumps(result.counts),
            "split_rule": split_rule(config),
        },
        # pinned: the user's schema, as given (its domains are the user's word); inferred: from this drop
        "schema": {"source": "pinned" if config.schema_file else "inferred"},
    }


COMPONENT = Component(
    name="ingest",
    inputs={},
    outputs={"examples": "Examples", "schema": "Schema", "statistics": "ExampleStatistics"},
    parameters=IngestConfig,
    executor=_run,
    code=(__name__,),
    input_files=input_files,
    columns=columns,
    canonical=_canonical,
    defaults={"label": ("trainer.raw_label", "trainer.label"), "train_split": ("trainer.train_split",)},
    description="raw CSV, Parquet or TFRecord files -> tf.Examples per split, a schema and statistics",
)
