"""Which split a row goes to: a function of the row's typed values (or of one column's) and the split
names with their weights, and of nothing else.

A row's point in [0, 1) is the first 8 bytes of the SHA-256 of its canonical tf.Example (schemas.examples:
the typed values, features in a fixed order), or, with `split_key`, of the canonical tf.Example holding
that one column. The splits, in name order, take consecutive shares of [0, 1) by weight. So the file
format, the reader, the order of the names in the YAML, the process and the machine change nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TypedDict

import numpy as np


class CanonicalSplit(TypedDict):
    """A split rule in the form two equal rules share (SplitRule.canonical)."""

    shares: dict[str, float]  # split name -> its share of the rows, rounded to 12 places
    key: str | None  # the column rows are split by, or None for the whole canonical Example


class SplitRule:
    def __init__(self, weights: Mapping[str, float], key: str | None = None):
        total = sum(float(w) for w in weights.values())
        self.key = key
        self.names = sorted(weights)  # the order the names were written in must not matter
        self.shares = {name: float(weights[name]) / total for name in self.names}
        running, self.cuts = 0.0, []
        for name in self.names:
            running += self.shares[name]
            self.cuts.append((name, running))
        self.uppers = np.array([upper for _, upper in self.cuts])  # a point goes to the first split above it

    def canonical(self) -> CanonicalSplit:
        """Equal for two rules exactly when they split every row alike (7:3 is 70:30)."""
        return {"shares": {n: round(s, 12) for n, s in self.shares.items()}, "key": self.key}

    def assign(self, records: list) -> list:
        """The split of each row, from its canonical Example bytes (or its key column's)."""
        heads = b"".join(hashlib.sha256(record).digest()[:8] for record in records)
        # A 64-bit integer over 2**64 rounds once, the same way in numpy as in Python's int / int.
        points = np.frombuffer(heads, ">u8").astype(np.float64) / 2.0**64
        index = np.minimum(np.searchsorted(self.uppers, points, side="right"), len(self.names) - 1)
        return [self.names[i] for i in index]
