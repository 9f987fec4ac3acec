"""The label checks: a class label value that another split has and the train split lacks cannot be learned."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.errors import InputError

_CAP = 10_000  # this many distinct values: a quantity, not classes


class LabelValues:
    """Where each class label value first occurs, per split."""

    def __init__(self, label: str | None, is_class: bool, kind, train_split: str):
        from schemas.types import FLOAT

        self.on = bool(label and is_class and kind is not None and kind != FLOAT)
        self.label, self.train = label, train_split
        self.first: dict[str, dict[tuple, tuple[str, int | None]]] = {}  # split -> {value: (path, row or None)}

    def note(self, splits: list, labels: pa.Array, path: str, rows) -> None:
        """`labels`: the label list column of a batch; `rows`: each row's number, or None if unknown."""
        if not self.on:
            return
        pairs: Iterable[tuple[Any, Any, int]]  # (split, label values, row index in the batch)
        if labels.null_count == 0 and pc.all(pc.equal(pc.list_value_length(labels), 1)).as_py():
            # One value a row (the usual label): each (split, value)'s first row, found by Arrow.
            table = pa.table({"s": splits, "v": labels.flatten(), "i": np.arange(len(splits))})
            firsts = table.group_by(["s", "v"], use_threads=False).aggregate([("i", "min")]).sort_by("i_min")
            rows_of = firsts.column("i_min").to_pylist()
            pairs = zip(firsts.column("s").to_pylist(), ([v] for v in firsts.column("v").to_pylist()), rows_of)
        else:
            pairs = ((s, v, i) for i, (s, v) in enumerate(zip(splits, labels.to_pylist())))
        for split, value, i in pairs:
            seen = self.first.setdefault(split, {})
            key = tuple(value or ())
            if key not in seen:
                seen[key] = (path, rows[i] if rows is not None else None)
                if len(seen) > _CAP:
                    self.on = False
                    return

    def one_class(self):
        """The train split's only label value, when it has just one (nothing to learn), else None."""
        seen = self.first.get(self.train, {}) if self.on else {}
        if len(seen) != 1:
            return None
        [value] = seen
        return _shown(value)

    def unlearnable(self):
        """(value, split, path, row) of the first value the train split lacks, or None."""
        if not self.on or self.train not in self.first:
            return None
        for split, seen in self.first.items():
            for value, (path, row) in seen.items():
                if value not in self.first[self.train]:
                    return value, split, path, row
        return None

    @staticmethod
    def error(value, split: str, path: str, row: int, label: str, train: str) -> InputError:
        shown = _shown(value)
        return InputError(
            f"{path}, row {row}, column {label!r}: the label {shown!r} (split {split!r}) never occurs in the "
            f"{train!r} split, so the model cannot learn it; fix or drop the row, or set ingest.label_is_class: "
            "false if the label is a quantity"
        )


def _shown(value: tuple):
    """A label value (a row's tuple of values) as a person reads it: its first value, bytes as text."""
    if not value:
        return None
    return value[0].decode("utf-8", "replace") if isinstance(value[0], bytes) else value[0]
