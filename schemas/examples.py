"""Canonical tf.Example bytes for whole record batches, built column by column in C++ and numpy.

tfx-bsl's encoder writes a row's features in the order of a per-process hash map, so the same rows would
give different bytes from run to run; parsing every Example and re-serializing it deterministically costs
a Python step per row. Where every feature holds at most one value a row (the common case), this module
writes the protobuf wire format directly, a column at a time, in the key order of protobuf's
deterministic form: the same bytes, with no Python step per row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import schema_pb2

_EMPTY = pa.scalar(b"", pa.large_binary())


def _varints(values: np.ndarray) -> pa.Array:
    """Protobuf varints of unsigned 64-bit integers, as a binary array."""
    values = values.astype(np.uint64)
    if not len(values) or values.max() < 128:  # the usual case: one byte each
        return pa.LargeBinaryArray.from_buffers(
            pa.large_binary(),
            len(values),
            [None, pa.py_buffer(np.arange(len(values) + 1, dtype=np.int64)), pa.py_buffer(values.astype(np.uint8))],
        )
    sizes = np.ones(len(values), np.int64)
    for shift in range(7, 64, 7):
        sizes += values >= np.uint64(1 << shift)
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = np.empty(offsets[-1], np.uint8)
    rest = values.copy()
    for i in range(int(sizes.max(initial=1))):
        has = sizes > i
        more = np.where(sizes[has] > i + 1, np.uint64(0x80), np.uint64(0))
        data[offsets[:-1][has] + i] = (rest[has] & np.uint64(0x7F)) | more
        rest >>= np.uint64(7)
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _field(prefix: bytes, payload: pa.Array) -> pa.Array:
    """Each row: prefix (ending in a length-delimited field's tag), the payload's length, the payload."""
    lengths = pc.binary_length(payload)
    bounds = pc.min_max(lengths).as_py()
    if bounds["min"] == bounds["max"] and bounds["max"] < 128:  # one length (a float, say): a constant header
        header = pa.scalar(prefix + bytes([bounds["max"]]), pa.large_binary())
        return pc.binary_join_element_wise(header, payload, _EMPTY)
    return pc.binary_join_element_wise(
        pa.scalar(prefix, pa.large_binary()), _varints(lengths.to_numpy(zero_copy_only=False)), payload, _EMPTY
    )


_LIST_TAG = {schema_pb2.FLOAT: 0x12, schema_pb2.INT: 0x1A, schema_pb2.BYTES: 0x0A}  # Feature's oneof fields


def _payload(kind: int, values: pa.Array) -> tuple:
    """(the list's value bytes, their lengths) for one value a row: a float's 4 bytes, an int's varint, bytes."""
    if kind == schema_pb2.FLOAT:
        data = values.cast(pa.float32()).to_numpy(zero_copy_only=False).astype("<f4").tobytes()
        packed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), len(values), [None, pa.py_buffer(data)])
        return packed.cast(pa.large_binary()), np.full(len(values), 4, np.int64)
    if kind == schema_pb2.INT:
        packed = _varints(values.cast(pa.int64()).to_numpy(zero_copy_only=False).view(np.uint64))
    else:
        packed = values.cast(pa.large_binary())
    offsets = np.frombuffer(packed.buffers()[1], np.int64, len(packed) + 1, packed.offset)
    return packed, np.diff(offsets)


def _entries(key: bytes, kind: int, values: pa.Array) -> pa.Array:
    """Each row's map entry: 0a |E| (key: 0a |k| name 12) |F| tag |L| 0a |v| value (|x|: a length varint)."""
    payload, v = _payload(kind, values)
    tag = _LIST_TAG[kind]
    if len(v) and v.max() + len(key) + 6 >= 128:  # some length needs a 2-byte varint: field by field
        feature = _field(bytes([tag]), _field(b"\x0a", payload))
        return _field(b"\x0a", _field(key, feature))
    k = len(key)
    header = np.empty((len(v), k + 7), np.uint8)  # every length fits one byte: a fixed-width header
    header[:, 0] = 0x0A
    header[:, 1] = v + k + 5
    header[:, 2 : 2 + k] = np.frombuffer(key, np.uint8)
    header[:, 2 + k] = v + 4
    header[:, 3 + k] = tag
    header[:, 4 + k] = v + 2
    header[:, 5 + k] = 0x0A
    header[:, 6 + k] = v
    header = pa.FixedSizeBinaryArray.from_buffers(pa.binary(k + 7), len(v), [None, pa.py_buffer(header.tobytes())])
    return pc.binary_join_element_wise(header.cast(pa.large_binary()), payload, _EMPTY)


def _key_order(names: list) -> list:
    """The order protobuf's deterministic serialization gives these map keys (not plain byte order)."""
    import tensorflow as tf

    example = tf.train.Example()
    for name in names:
        example.features.feature[name].SetInParent()
    data, order, i = example.features.SerializeToString(deterministic=True), [], 0
    while i < len(data):  # entries: 0x0a, length, (0x0a, key length, key, 0x12, 0x00)
        size, i = _read_varint(data, i + 1)
        key_size, j = _read_varint(data, i + 1)
        order.append(data[j : j + key_size].decode("utf-8"))
        i += size
    return order


def _read_varint(data: bytes, i: int) -> tuple:
    value, shift = 0, 0
    while True:
        value |= (data[i] & 0x7F) << shift
        i += 1
        if data[i - 1] < 0x80:
            return value, i
        shift += 7


class CanonicalEncoder:
    """Record batches (a list column per feature) to tf.Example bytes, features in deterministic order."""

    def __init__(self, schema, drop_missing: bool = False):
        from tfx_bsl.public import tfxio

        self.drop_missing = drop_missing  # a null list: no feature at all (else the encoder's empty one)
        self.kinds = {f.name: f.type for f in schema.feature}
        self.order = _key_order(list(self.kinds))
        self.prefixes = {
            n: b"\x0a" + bytes(_varints(np.array([len(n.encode())])).to_pylist()[0]) + n.encode() + b"\x12"
            for n in self.order
        }
        self.general = tfxio.RecordBatchToExamplesEncoder(schema)

    def encode(self, batch: pa.RecordBatch) -> list:
        entries = []
        for name in self.order:
            index = batch.schema.get_field_index(name)
            if index < 0:
                continue
            column = batch.column(index)
            if (column.null_count and not self.drop_missing) or pc.any(
                pc.not_equal(pc.list_value_length(column), 1)
            ).as_py():
                return self._slow(batch)
            # one value per present row: flatten() lines up with the present rows
            entry = _entries(self.prefixes[name], self.kinds[name], column.flatten())
            if column.null_count:  # a missing row gets no entry: spread the entries out over the rows
                valid = column.is_valid().to_numpy(zero_copy_only=False)
                at = pa.array(np.cumsum(valid) - 1, mask=~valid)
                entry = entry.take(at).fill_null(_EMPTY)
            entries.append(entry)
        if not entries:
            return self._slow(batch)
        joined = pc.binary_join_element_wise(*entries, _EMPTY) if len(entries) > 1 else entries[0]
        return _field(b"\x0a", joined).to_pylist()

    def _slow(self, batch: pa.RecordBatch) -> list:
        """Any shape: the encoder, then each Example parsed and re-serialized deterministically."""
        import tensorflow as tf

        missing = [n for n in batch.schema.names if self.drop_missing and batch.column(n).null_count]
        out = []
        for row, s in enumerate(self.general.encode(batch)):
            example = tf.train.Example.FromString(s)
            for name in missing:
                if not batch.column(name)[row].is_valid:
                    del example.features.feature[name]
            out.append(example.SerializeToString(deterministic=True))
        return out
