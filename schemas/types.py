"""The type rules: which raw values are INT, FLOAT or BYTES, and how each becomes a tf.Example value.

Readers hand over Arrow columns: CSV text still to be typed (`text=True`), or values that already have
a type (Parquet, tf.Example). Every path types and converts through these functions, so the same row
gives the same typed values whatever file it came from.

CSV text is a number when, less surrounding spaces and tabs, it matches INT_TEXT or FLOAT_TEXT: no
thousands separators or underscores, no hexadecimal, ASCII digits only (what every CSV tool reads the
same way). A column is INT when all its values are integers that fit in 64 bits, else FLOAT when all
are numbers, else BYTES; a column with no values at all is BYTES.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import schema_pb2

INT, FLOAT, BYTES = schema_pb2.INT, schema_pb2.FLOAT, schema_pb2.BYTES
TYPE_NAMES = {INT: "INT", FLOAT: "FLOAT", BYTES: "BYTES"}
# INT < FLOAT < BYTES: a column takes the widest type any of its values needs.
WIDTH = {INT: 0, FLOAT: 1, BYTES: 2}
# The value type of each kind in a tf.Example (and so in the list columns the encoder takes).
ARROW = {INT: pa.int64(), FLOAT: pa.float32(), BYTES: pa.large_binary()}

INT_TEXT = r"^[+-]?[0-9]+$"
FLOAT_TEXT = r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))$"
_BLANKS = " \t"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class BadValue(ValueError):
    """Row `index` of a column holds a value its kind cannot take; `reason` says why, for the user."""

    def __init__(self, index: int, reason: str):
        super().__init__(index, reason)
        self.index, self.reason = index, reason


def widest(a: int | None, b: int | None) -> int | None:
    if a is None or (b is not None and WIDTH[b] > WIDTH[a]):
        return b
    return a


def _is_text(arrow_type) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _values(column: pa.Array) -> pa.Array:
    """The present values, flattened out of list columns."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return column.flatten()
    return column.drop_null()


def kind_of(column: pa.Array, text: bool) -> int | None:
    """The narrowest kind that holds every value in the column; None when it holds none."""
    values = _values(column)
    if len(values) == 0 or pa.types.is_null(values.type):
        return None
    if text:
        return _text_kind(pc.utf8_trim(values, _BLANKS))
    t = values.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return INT
    if pa.types.is_floating(t):
        return FLOAT
    return BYTES


def _text_kind(trimmed: pa.Array) -> int:
    if pc.all(pc.match_substring_regex(trimmed, INT_TEXT)).as_py():
        try:
            pc.cast(pc.replace_substring_regex(trimmed, r"^\+", ""), pa.int64())
            return INT
        except pa.ArrowInvalid:  # over 64 bits: a number, but not an INT
            pass
    if pc.all(pc.match_substring_regex(trimmed, FLOAT_TEXT)).as_py():
        return FLOAT
    return BYTES


def count_numbers(column: pa.Array) -> tuple[int, int, int | None]:
    """(numbers, other values, index of the first other) among a text column's present values."""
    present = len(column) - column.null_count
    if not present:
        return 0, 0, None
    is_number = pc.fill_null(pc.match_substring_regex(pc.utf8_trim(column, _BLANKS), FLOAT_TEXT), True)
    others = len(column) - pc.sum(pc.cast(is_number, pa.int64())).as_py()
    return present - others, others, _first_false(is_number) if others else None


def mostly_numbers(numbers: int, others: int) -> bool:
    """A column of numbers with a stray word or two (`unknown`, `n/a`): almost surely a typo or an
    unlisted missing-value spelling, not a text column."""
    return 0 < others <= max(2, (numbers + others) // 100) and numbers >= 10 * others and numbers >= 20


def to_lists(column: pa.Array, kind: int, text: bool) -> pa.LargeListArray:
    """The column as a tf.Example wants it: a list of `kind`'s values per row, null where missing.

    Raises BadValue for the first row whose value the kind cannot take (text that is not a number for a
    number column, a fraction for an INT column, a number that is not finite).
    """
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        values = column.flatten()
        offsets = np.asarray(column.offsets if pa.types.is_large_list(column.type) else column.offsets.cast(pa.int64()))
        row_of = np.repeat(np.arange(len(column)), np.diff(offsets))
    else:
        values = column.drop_null()
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        offsets = np.concatenate([[0], np.cumsum(valid)]).astype(np.int64)
        row_of = np.flatnonzero(valid)
    try:
        converted = _convert(values, kind, text)
    except BadValue as e:
        raise BadValue(int(row_of[e.index]), e.reason) from None
    return pa.LargeListArray.from_arrays(pa.array(offsets - offsets[0], pa.int64()), converted, mask=column.is_null())


def _first_false(mask: pa.Array) -> int | None:
    """Index of the first False (a null counts as False), or None when every entry is True."""
    bad = np.flatnonzero(~pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
    return int(bad[0]) if len(bad) else None


def _convert(values: pa.Array, kind: int, text: bool) -> pa.Array:
    if pa.types.is_null(values.type):
        return pa.array([], ARROW[kind])
    if kind == BYTES:
        if text or _is_text(values.type) or pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
            return values.cast(pa.large_binary())
        return values.cast(pa.string()).cast(pa.large_binary())  # a number in a text column: its digits
    if text or _is_text(values.type):
        trimmed = pc.utf8_trim(values.cast(pa.string()), _BLANKS)
        bad = _first_false(pc.match_substring_regex(trimmed, INT_TEXT if kind == INT else FLOAT_TEXT))
        if bad is not None:
            raise BadValue(
                bad, f"{values[bad].as_py()!r} is not {TYPE_NAMES[kind]}, which the schema says this column is"
            )
        numbers = pc.replace_substring_regex(trimmed, r"^\+", "") if kind == INT else trimmed
        try:
            numbers = pc.cast(numbers, pa.int64() if kind == INT else pa.float64())
        except pa.ArrowInvalid:  # an integer over 64 bits (rare: found one by one)
            bad = next(i for i, v in enumerate(numbers.to_pylist()) if not -(2**63) <= int(v) < 2**63)
            raise BadValue(bad, f"{values[bad].as_py()!r} does not fit in a 64-bit INT") from None
        shown = values
    else:
        numbers, shown = values, values
    if kind == INT:
        if pa.types.is_floating(numbers.type):
            bad = _first_false(pc.equal(numbers, pc.floor(numbers)))
            if bad is not None:
                raise BadValue(bad, f"{shown[bad].as_py()!r} is not INT, which the schema says this column is")
        if not (
            pa.types.is_integer(numbers.type) or pa.types.is_boolean(numbers.type) or pa.types.is_floating(numbers.type)
        ):
            raise BadValue(0, f"{shown[0].as_py()!r} is not INT, which the schema says this column is")
        return pc.cast(numbers, pa.int64())
    if not (
        pa.types.is_integer(numbers.type) or pa.types.is_boolean(numbers.type) or pa.types.is_floating(numbers.type)
    ):
        raise BadValue(0, f"{shown[0].as_py()!r} is not FLOAT, which the schema says this column is")
    wide = pc.cast(numbers, pa.float64())
    bad = _first_false(pc.is_finite(wide))
    if bad is not None:
        raise BadValue(
            bad,
            f"{shown[bad].as_py()!r} is not a finite number; write a missing value as an empty "
            "field (or list its spelling in na_values)",
        )
    bad = _first_false(pc.less_equal(pc.abs(wide), _FLOAT32_MAX))
    if bad is not None:
        raise BadValue(bad, f"{shown[bad].as_py()!r} is too large for a FLOAT (tf.Example floats are 32-bit)")
    return pc.cast(wide, pa.float32())
