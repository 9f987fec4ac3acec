"""Canonical tf.Example bytes built column by column equal parsing each Example and re-serializing it deterministically."""

import pyarrow as pa
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.public import tfxio

from schemas.examples import CanonicalEncoder

_KINDS = {
    schema_pb2.INT: (st.integers(-(2**63), 2**63 - 1), pa.int64()),
    schema_pb2.FLOAT: (st.floats(width=32, allow_nan=False), pa.float32()),
    schema_pb2.BYTES: (st.binary(max_size=300), pa.large_binary()),
}
# names whose deterministic order is not plain byte order ("age" sorts after "age_known")
_NAMES = st.sampled_from(["age", "age_known", "a", "b", "Zed", "z_1", "z", "émoji_ü", "x" * 130])


@st.composite
def tables(draw):
    names = draw(st.lists(_NAMES, min_size=1, max_size=6, unique=True))
    kinds = [draw(st.sampled_from(list(_KINDS))) for _ in names]
    rows = draw(st.integers(1, 20))
    multi = draw(st.booleans())  # lists of any length take the general path
    columns = []
    for kind in kinds:
        values, arrow = _KINDS[kind]
        cells = draw(
            st.lists(
                st.one_of(
                    st.none(),
                    st.lists(values, min_size=1, max_size=3) if multi else st.lists(values, min_size=1, max_size=1),
                ),
                min_size=rows,
                max_size=rows,
            )
        )
        columns.append(pa.array(cells, pa.large_list(arrow)))
    schema = schema_pb2.Schema()
    for name, kind in zip(names, kinds):
        schema.feature.add(name=name, type=kind)
    return schema, pa.RecordBatch.from_arrays(columns, names)


def _reference(schema, batch, drop_missing):
    out = []
    for row, s in enumerate(tfxio.RecordBatchToExamplesEncoder(schema).encode(batch)):
        example = tf.train.Example.FromString(s)
        for name in batch.schema.names:
            if drop_missing and not batch.column(name)[row].is_valid:
                del example.features.feature[name]
        out.append(example.SerializeToString(deterministic=True))
    return out


@settings(max_examples=150, deadline=None)
@given(tables(), st.booleans())
def test_same_bytes_as_deterministic_protobuf(table, drop_missing):
    schema, batch = table
    assert CanonicalEncoder(schema, drop_missing).encode(batch) == _reference(schema, batch, drop_missing)


def test_bytes_do_not_depend_on_column_order():
    schema = schema_pb2.Schema()
    for name, kind in (("b", schema_pb2.FLOAT), ("age_known", schema_pb2.INT), ("age", schema_pb2.BYTES)):
        schema.feature.add(name=name, type=kind)
    columns = {
        "b": pa.array([[1.5], [2.0]], pa.large_list(pa.float32())),
        "age_known": pa.array([[1], [0]], pa.large_list(pa.int64())),
        "age": pa.array([[b"x"], None], pa.large_list(pa.large_binary())),
    }
    one = CanonicalEncoder(schema, drop_missing=True).encode(pa.RecordBatch.from_pydict(columns))
    two = CanonicalEncoder(schema, drop_missing=True).encode(
        pa.RecordBatch.from_pydict(dict(reversed(list(columns.items()))))
    )
    assert one == two
    assert tf.train.Example.FromString(one[1]).features.feature.keys() == {"b", "age_known"}
