"""The Palmer penguins (examples/penguin/data/penguins.csv): complete rows, split, as tensors."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

CSV = Path(__file__).parent / "data" / "penguins.csv"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = {
    "species": ["Adelie", "Chinstrap", "Gentoo"],
    "island": ["Biscoe", "Dream", "Torgersen"],
    "sex": ["female", "male"],
}


def load_penguins(path: str | os.PathLike = CSV) -> list[dict]:
    """Rows with every value present (the raw file writes missing values as NA), numbers as floats."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if any(row[k] in ("", "NA") for k in NUMERIC + list(CATEGORICAL)):
                continue
            rows.append({**{k: float(row[k]) for k in NUMERIC}, **{k: row[k] for k in CATEGORICAL}})
    return rows


def split_penguins(seed: int = 42, train_fraction: float = 0.7, path: str | os.PathLike = CSV):
    """(train rows, eval rows), shuffled with `seed`."""
    rows = load_penguins(path)
    random.Random(seed).shuffle(rows)
    cut = round(len(rows) * train_fraction)
    return rows[:cut], rows[cut:]


def columns(rows: list[dict]) -> dict:
    """Rows as a dict of column name -> list, ready for tf.data.Dataset.from_tensor_slices."""
    return {k: [r[k] for r in rows] for k in rows[0]}
