"""What every benchmark does with its result: print the JSON and keep it under bench/results/."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path


def emit(doc: dict, kind: str, write: bool = True) -> dict:
    text = json.dumps(doc, indent=2)
    print(text)
    if write:
        out = Path(__file__).parent / "results" / f"{dt.date.today().isoformat()}-{kind}.json"
        out.write_text(text + "\n")
    return doc
