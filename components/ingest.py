"""ingest: CSV, TFRecord (tf.Example) or Parquet in; gzipped tf.Example TFRecords per split, statistics and a schema out.

Reading streams (a row at a time, two passes when the schema is inferred), so memory does not grow
with the input; only the statistics' value counters do, and they stop adding new values at a cap.
"""

from __future__ import annotations

import collections
import csv
import glob
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from components._examples import gzip_writer
from components.errors import ConfigError, InputError

FORMATS = ("csv", "tfrecord", "parquet")
_TOP_VALUES_CAP = 10_000
_MAX_FIELD = 1 << 20  # characters in one CSV field; longer is almost always an unclosed quote
_SHARD_ROWS = 250_000  # rows per output file: a big input becomes several files, which transform applies in parallel
_TYPE_NAMES = {schema_pb2.INT: "INT", schema_pb2.FLOAT: "FLOAT", schema_pb2.BYTES: "BYTES"}


@dataclass
class IngestConfig:
    """What to read and how to split it (validated by pipeline.config before it gets here)."""

    input: str | dict  # a path or glob; or {split name: path or glob} for pre-split data
    format: str | None = None  # csv | tfrecord | parquet; None: from the file extension
    splits: dict = field(default_factory=lambda: {"train": 7, "eval": 3})  # name -> weight, hash split
    schema: str | None = None  # a tensorflow-metadata Schema (pbtxt) to check against; None: inferred
    na_values: list = field(default_factory=lambda: [""])  # CSV strings that mean "missing"
    label: str | None = None  # the label column: must be present in every file and row
    label_is_class: bool = True  # its values in other splits must occur in train_split (unless FLOAT)
    train_split: str = "train"


@dataclass
class IngestResult:
    counts: dict
    schema_path: str
    statistics_path: str


def _files(pattern: str) -> list[str]:
    found = sorted(glob.glob(os.path.expanduser(pattern)))
    if not found:
        raise InputError(f"ingest: no file matches {pattern!r}")
    return found


def _format(path: str, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise ConfigError(f"ingest: format must be one of {FORMATS}, got {given!r}")
        return given
    name = path.lower()
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    if ".tfrecord" in name or name.endswith(".tfr"):
        return "tfrecord"
    raise ConfigError(f"ingest: cannot tell the format of {path!r} from its name; set format: csv|tfrecord|parquet")


# ---- reading: every reader yields (file, row number, {column: value or None}) ----------------------------------

def _read_csv(path: str, na_values=("",)) -> Iterator[tuple[str, int, dict]]:
    import gzip

    # csv's own limit is global and low (128 KiB); ours, checked per field below, names the column.
    csv.field_size_limit(max(csv.field_size_limit(), 16 * _MAX_FIELD))
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        reader = csv.reader(_decoded(f))
        header = []
        rows = _numbered(reader, path, header)
        if next(rows, None) is None:
            return
        if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
            raise InputError(f"{path}: the header {header[0]!r} is one column; the file looks delimited by "
                             "something other than commas, and ingest reads comma-separated CSV")
        if len(set(header)) != len(header) or any(not h.strip() for h in header):
            raise InputError(f"{path}: the header row has empty or repeated column names: {header}")
        for line, row in rows:
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"{path}, row {line}: {len(row)} fields where the header has {len(header)} "
                                 f"({', '.join(header)})")
            for h, v in zip(header, row):
                if len(v) > _MAX_FIELD:
                    raise InputError(f"{path}, row {line}, column {h!r}: the field is {len(v):,} characters long, over "
                                     f"the {_MAX_FIELD:,} allowed; is a quote left unclosed?")
            yield path, line, {h: (None if v in na_values else v) for h, v in zip(header, row)}


_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")


class _NotUtf8(Exception):
    def __init__(self, line: int, before: str, byte: int):
        super().__init__(line, before, byte)
        self.line, self.before, self.byte = line, before, byte


def _decoded(f) -> Iterator[str]:
    """Lines of bytes decoded one at a time, so an undecodable byte is placed on its own line.

    Lines end at \n, \r\n or a lone \r (old spreadsheets), with the ending kept, as csv expects.
    """
    pieces = (piece for line in f for piece in _LONE_CR.split(line) if piece)
    for n, raw in enumerate(pieces, 1):
        try:
            yield raw.decode("utf-8-sig" if n == 1 else "utf-8")  # a spreadsheet's byte-order mark is not data
        except UnicodeDecodeError as e:
            raise _NotUtf8(n, raw[:e.start].decode("utf-8", "replace"), raw[e.start]) from None


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
            raise InputError(f"{path}, row {e.line}{named}: not UTF-8 text (byte {e.byte:#04x}); save the file as "
                             "UTF-8") from None
        except csv.Error as e:
            hint = "; is a quote left unclosed?" if "field limit" in str(e) else ""
            raise InputError(f"{path}, row {reader.line_num}: not valid CSV ({e}){hint}") from None
        if not header:
            header.extend(row)
            yield 1, row
        else:
            yield reader.line_num, row


def _read_tfrecord(path: str) -> Iterator[tuple[str, int, dict]]:
    compression = "GZIP" if path.endswith(".gz") else ""
    for i, record in enumerate(tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator(), 1):
        example = tf.train.Example()
        try:
            example.ParseFromString(record)
        except Exception as e:
            raise InputError(f"{path}, record {i}: not a serialized tf.train.Example ({e})") from e
        row = {}
        for name, feat in example.features.feature.items():
            kind = feat.WhichOneof("kind")
            values = list(getattr(feat, kind).value) if kind else []
            values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
            row[name] = None if not values else (values[0] if len(values) == 1 else values)
        yield path, i, row


def _read_parquet(path: str) -> Iterator[tuple[str, int, dict]]:
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield path, n, row


_READERS = {"csv": _read_csv, "tfrecord": _read_tfrecord, "parquet": _read_parquet}


def _rows(files: list[str], config: IngestConfig) -> Iterator[tuple[str, int, dict]]:
    for path in files:
        fmt = _format(path, config.format)
        yield from (_read_csv(path, set(config.na_values)) if fmt == "csv" else _READERS[fmt](path))


# ---- schema -----------------------------------------------------------------------------------------------------

def _kind(value) -> int:
    """The narrowest schema type that holds `value` (a CSV string or a typed value)."""
    if isinstance(value, list):
        kinds = {_kind(v) for v in value}
        return max(kinds) if kinds else schema_pb2.INT
    if isinstance(value, bool) or isinstance(value, int):
        return schema_pb2.INT
    if isinstance(value, float):
        return schema_pb2.FLOAT
    text = str(value)
    try:
        int(text)
        return schema_pb2.INT
    except ValueError:
        pass
    try:
        float(text)
        return schema_pb2.FLOAT
    except ValueError:
        return schema_pb2.BYTES


# INT < FLOAT < BYTES: a column takes the widest type any of its values needs.
_WIDTH = {schema_pb2.INT: 0, schema_pb2.FLOAT: 1, schema_pb2.BYTES: 2}


def infer_schema(rows) -> schema_pb2.Schema:
    """Each column's widest type (INT < FLOAT < BYTES); required (presence 1.0) when no row lacks it."""
    kinds, present, total = {}, collections.Counter(), 0
    for _, _, row in rows:
        total += 1
        for name, value in row.items():
            kinds.setdefault(name, None)
            if value is None:
                continue
            present[name] += 1
            k = _kind(value)
            if kinds[name] is None or _WIDTH[k] > _WIDTH[kinds[name]]:
                kinds[name] = k
    schema = schema_pb2.Schema()
    for name, kind in kinds.items():
        feature = schema.feature.add()
        feature.name = name
        feature.type = kind if kind is not None else schema_pb2.BYTES
        if present[name] == total:
            feature.presence.min_fraction = 1.0
            feature.shape.dim.add().size = 1
        else:
            feature.presence.min_fraction = 0.0
    return schema


def load_schema(path: str) -> schema_pb2.Schema:
    try:
        with open(path, encoding="utf-8") as f:
            return text_format.Parse(f.read(), schema_pb2.Schema())
    except FileNotFoundError as e:
        raise InputError(f"ingest: schema file {path} does not exist") from e
    except text_format.ParseError as e:
        raise InputError(f"{path}: not a tensorflow-metadata Schema text proto ({e})") from e


def write_text_proto(proto, path: Path) -> None:
    path.write_text(text_format.MessageToString(proto), encoding="utf-8")


# ---- conversion and statistics ----------------------------------------------------------------------------------

def _convert(value, kind, where: str):
    values = value if isinstance(value, list) else [value]
    try:
        if kind == schema_pb2.INT:
            out = []
            for v in values:
                if isinstance(v, float) and not v.is_integer():
                    raise ValueError
                out.append(int(v) if not isinstance(v, str) else int(v.strip()))
            return out
        if kind == schema_pb2.BYTES:
            return [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(f"{where}: {value!r} is not {_TYPE_NAMES[kind]}, which the schema says this column is") from None
    if not all(math.isfinite(v) for v in out):
        raise InputError(f"{where}: {value!r} is not a finite number; write a missing value as an empty field "
                         "(or list its spelling in na_values)")
    return out


class _Stats:
    def __init__(self, schema):
        self.kinds = {f.name: f.type for f in schema.feature}
        self.count = collections.Counter()
        self.missing = collections.Counter()
        self.num = {n: [math.inf, -math.inf, 0.0] for n, k in self.kinds.items() if k != schema_pb2.BYTES}
        self.top = {n: collections.Counter() for n, k in self.kinds.items() if k == schema_pb2.BYTES}

    def add(self, name, values):
        if values is None:
            self.missing[name] += 1
            return
        self.count[name] += 1
        if name in self.num:
            acc = self.num[name]
            for v in values:
                acc[0], acc[1], acc[2] = min(acc[0], v), max(acc[1], v), acc[2] + v
        else:
            counter = self.top[name]
            for v in values:
                if v in counter or len(counter) < _TOP_VALUES_CAP:
                    counter[v] += 1

    def as_dict(self) -> dict:
        out = {}
        for name, kind in self.kinds.items():
            entry = {"type": _TYPE_NAMES[kind], "count": self.count[name], "missing": self.missing[name]}
            if name in self.num and self.count[name]:
                lo, hi, total = self.num[name]
                entry.update(min=lo, max=hi, mean=total / self.count[name])
            elif name in self.top:
                entry["top_values"] = [[v.decode("utf-8", "replace"), n] for v, n in self.top[name].most_common(10)]
                entry["unique"] = len(self.top[name])
            out[name] = entry
        return out


def _check_columns(path: str, row: dict, kinds: dict, required: set, config: IngestConfig) -> None:
    """A file's columns (seen on its first row) against the schema and the label."""
    if config.label and config.label not in row:
        raise InputError(f"{path}: the label column {config.label!r} is missing; the file has {sorted(row)}")
    lacking = sorted(required - set(row))
    if lacking:
        raise InputError(f"{path}: column(s) {lacking} that the schema requires are missing; the file has {sorted(row)}")
    extra = sorted(set(row) - set(kinds))
    if extra and config.schema:
        raise InputError(f"{path}: column(s) {extra} are not in the schema {config.schema}; remove them from the "
                         "file or add them to the schema")


class _LabelValues:
    """Where each class label value first occurs, per split: a value the train split lacks cannot be learned."""

    def __init__(self, config: IngestConfig, kinds: dict):
        kind = kinds.get(config.label)
        self.on = bool(config.label and config.label_is_class and kind is not None and kind != schema_pb2.FLOAT)
        self.label, self.train = config.label, config.train_split
        self.first = collections.defaultdict(dict)  # split -> {value: (path, row)}

    def note(self, split, values, path, line):
        if self.on and values is not None:
            seen = self.first[split]
            if tuple(values) not in seen:
                seen[tuple(values)] = (path, line)
                if len(seen) > _TOP_VALUES_CAP:
                    self.on = False  # this many distinct values: a quantity, not classes

    def check(self):
        if not self.on or self.train not in self.first:
            return
        for split, seen in self.first.items():
            for value, (path, line) in seen.items():
                if value not in self.first[self.train]:
                    shown = value[0].decode("utf-8", "replace") if isinstance(value[0], bytes) else value[0]
                    raise InputError(
                        f"{path}, row {line}, column {self.label!r}: the label {shown!r} (split {split!r}) never "
                        f"occurs in the {self.train!r} split, so the model cannot learn it; fix or drop the row, or "
                        "set ingest.label_is_class: false if the label is a quantity")


def _split_of(row: dict, cuts: list[tuple[str, float]]) -> str:
    # A stable hash of the row's content: the same row always lands in the same split.
    key = json.dumps(row, sort_keys=True, default=str).encode("utf-8")
    point = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    for name, upper in cuts:
        if point < upper:
            return name
    return cuts[-1][0]


def ingest(config: IngestConfig, examples_dir: str | os.PathLike, schema_dir: str | os.PathLike | None = None,
           statistics_dir: str | os.PathLike | None = None) -> IngestResult:
    """Writes <examples_dir>/Split-<name>/data-NNNNN.tfrecord.gz, <schema_dir>/schema.pbtxt, <statistics_dir>/statistics.json."""
    out = Path(examples_dir)
    pre_split = isinstance(config.input, dict)
    sources = {name: _files(p) for name, p in config.input.items()} if pre_split else {None: _files(config.input)}
    cuts = None
    if not pre_split:
        weights = {k: float(v) for k, v in config.splits.items()}
        total_w = sum(weights.values())
        running, cuts = 0.0, []
        for name, w in weights.items():
            running += w / total_w
            cuts.append((name, running))
    names = list(config.input) if pre_split else list(config.splits)
    fast = _fast(config, sources, out, names, cuts)
    if fast is not None:
        schema, counts, statistics = fast
    else:
        schema, counts, statistics = _row_by_row(config, sources, out, names, cuts)
    schema_path = Path(schema_dir or out) / "schema.pbtxt"
    stats_path = Path(statistics_dir or out) / "statistics.json"
    write_text_proto(schema, schema_path)
    counts = {name: counts.get(name, 0) for name in names}
    stats_path.write_text(json.dumps({"num_examples": counts, "features": statistics}, indent=2), encoding="utf-8")
    return IngestResult(counts, str(schema_path), str(stats_path))


def _open_writers(out: Path, names: list) -> dict:
    writers = {}
    for name in names:
        folder = out / f"Split-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("data-*.tfrecord.gz"):  # the fast path's, when the row-by-row path rewrites
            stale.unlink()
        writers[name] = _ShardWriter(folder)
    return writers


class _ShardWriter:
    """A split's gzipped TFRecord files, data-00000.tfrecord.gz and on, a new one every _SHARD_ROWS rows."""

    def __init__(self, folder: Path):
        self.folder, self.rows, self.writer = folder, 0, None
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


def _fast(config: IngestConfig, sources: dict, out: Path, names: list, cuts):
    """The Arrow path for plain .csv files: (schema, counts, statistics), or None to read row by row."""
    files = [f for fs in sources.values() for f in fs]
    if not all(f.lower().endswith(".csv") and _format(f, config.format) == "csv" for f in files):
        return None
    from components import _ingest_arrow

    headers = {}
    for path in files:
        next(_read_csv(path, set(config.na_values)), None)  # the header's own checks, with their messages
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            headers[path] = next(csv.reader(f), [])
    if not all(headers.values()):
        return None
    writers = {}
    try:
        schema = load_schema(config.schema) if config.schema else \
            _ingest_arrow.infer(files, headers, config.na_values)
        writers = _open_writers(out, names)
        counts, statistics = _ingest_arrow.write(config, sources, headers, schema, writers, cuts,
                                                 _TOP_VALUES_CAP, _MAX_FIELD)
    except _ingest_arrow.Fallback:
        return None  # the row-by-row reader names the file, row and column (it rewrites the splits)
    finally:
        for w in writers.values():
            w.close()
    return schema, counts, statistics


def _row_by_row(config: IngestConfig, sources: dict, out: Path, names: list, cuts):
    pre_split = cuts is None
    if config.schema:
        schema = load_schema(config.schema)
    else:
        schema = infer_schema(r for files in sources.values() for r in _rows(files, config))
    kinds = {f.name: f.type for f in schema.feature}
    required = {f.name for f in schema.feature if f.presence.min_fraction >= 1.0}
    writers = {}
    stats, counts = _Stats(schema), collections.Counter()
    labels = _LabelValues(config, kinds)
    try:
        writers = _open_writers(out, names)
        checked_files = set()
        for split_name, files in sources.items():
            for path, line, row in _rows(files, config):
                if path not in checked_files:
                    checked_files.add(path)
                    _check_columns(path, row, kinds, required, config)
                example, label_values = tf.train.Example(), None
                for name, kind in kinds.items():
                    value = row.get(name)
                    where = f"{path}, row {line}, column {name!r}"
                    if value is None:
                        if name == config.label:
                            raise InputError(f"{where}: the label is missing; every row needs one "
                                             "(fill it in or drop the row)")
                        if name in required:
                            raise InputError(f"{where}: the value is missing, but the schema requires it")
                        stats.add(name, None)
                        continue
                    values = _convert(value, kind, where)
                    stats.add(name, values)
                    if name == config.label:
                        label_values = values
                    feature = example.features.feature[name]
                    {schema_pb2.INT: feature.int64_list, schema_pb2.FLOAT: feature.float_list,
                     schema_pb2.BYTES: feature.bytes_list}[kind].value.extend(values)
                target = split_name if pre_split else _split_of(row, cuts)
                labels.note(target, label_values, path, line)
                # deterministic: map fields (the features) in key order, so the same rows give the same bytes
                writers[target].write(example.SerializeToString(deterministic=True))
                counts[target] += 1
    finally:
        for w in writers.values():
            w.close()
    if sum(counts.values()) == 0:
        where = ", ".join(f for files in sources.values() for f in files)
        raise InputError(f"ingest: no rows in {where} (an empty file, or a header alone)")
    labels.check()
    return schema, counts, stats.as_dict()
