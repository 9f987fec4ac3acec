"""The Titanic data: Kaggle's raw 891 rows, turned into the columns of the TensorFlow tutorials' CSV."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

RAW_CSV = Path(__file__).parent / "data" / "train.csv"
FIELDS = ["survived", "sex", "age", "n_siblings_spouses", "parch", "fare", "class", "deck", "embark_town", "alone"]
_CLASS = {"1": "First", "2": "Second", "3": "Third"}
_TOWN = {"S": "Southampton", "C": "Cherbourg", "Q": "Queenstown", "": "unknown"}


def _convert(row: dict, fill_age: float) -> dict:
    sib, parch = int(row["SibSp"]), int(row["Parch"])
    return {
        "survived": int(row["Survived"]),
        "sex": row["Sex"],
        "age": float(row["Age"]) if row["Age"] else fill_age,
        "n_siblings_spouses": sib,
        "parch": parch,
        "fare": float(row["Fare"]),
        "class": _CLASS[row["Pclass"]],
        "deck": row["Cabin"][:1] or "unknown",
        "embark_town": _TOWN[row["Embarked"]],
        "alone": "y" if sib + parch == 0 else "n",
    }


def split_titanic(
    out_dir: str | os.PathLike, seed: int = 42, train_fraction: float = 0.7, raw_csv: str | os.PathLike = RAW_CSV
) -> tuple[Path, Path]:
    """Writes train.csv and eval.csv (a seeded split) in the tutorials' columns; returns their paths.

    Missing ages get the training split's median, as the tutorials' CSV did.
    """
    with open(raw_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    random.Random(seed).shuffle(rows)
    cut = round(len(rows) * train_fraction)
    train_rows, eval_rows = rows[:cut], rows[cut:]
    ages = sorted(float(r["Age"]) for r in train_rows if r["Age"])
    median = ages[len(ages) // 2]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, part in (("train.csv", train_rows), ("eval.csv", eval_rows)):
        path = out / name
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # tasks of a cluster may split into one shared folder at once
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(_convert(r, median) for r in part)
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]
