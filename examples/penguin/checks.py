"""The penguin pipeline's own components, written as a user writes them: typed functions made components
by `@component`. They get what the standard components get: a cache key over this file and their
parameters and inputs, lineage in MLMD, staging and an atomic publish, FAILED on error.

- `drop_implausible` sits between ingest and transform: it drops the rows whose measurements are missing
  or outside plausible bounds, split by split.
- `model_card` is a leaf after the evaluator: a Markdown report of the evaluation and the blessing.
"""

from __future__ import annotations

import json
from pathlib import Path

from components.contract import Input, Output, component
from schemas.artifacts import (
    ArtifactType,
    Examples,
    ModelBlessing,
    ModelEvaluation,
    gzip_writer,
    split_dir,
    split_files,
    split_names,
)


class ModelCard(ArtifactType):
    """A type of this pipeline's own: <uri>/model_card.md."""


MEASUREMENTS = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")


def _value(example, name: str) -> float | None:
    feature = example.features.feature.get(name)
    if feature is None:
        return None
    values = list(feature.float_list.value) or list(feature.int64_list.value)
    return float(values[0]) if values else None


@component
def drop_implausible(
    examples: Input[Examples],
    filtered: Output[Examples],
    required: tuple[str, ...] = MEASUREMENTS,
    max_body_mass_g: float = 7000.0,
) -> dict:
    """Drops rows missing any `required` measurement or heavier than `max_body_mass_g` (a typo, not a penguin)."""
    import tensorflow as tf

    kept, dropped = {}, {}
    for split in split_names(examples.uri):
        split_dir(filtered, split).mkdir(parents=True)
        kept[split] = dropped[split] = 0
        with gzip_writer(split_dir(filtered, split) / "data-00000.tfrecord.gz") as writer:
            for path in split_files(examples.uri, split):
                for record in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
                    example = tf.train.Example.FromString(record)
                    values = [_value(example, name) for name in required]
                    mass = _value(example, "body_mass_g")
                    if any(v is None for v in values) or (mass is not None and mass > max_body_mass_g):
                        dropped[split] += 1
                        continue
                    writer.write(record)
                    kept[split] += 1
    # The rows keep the split ingest gave them: say so, so that baselines judged on these splits still count.
    return {
        "filtered": {
            "split_names": json.dumps(sorted(kept)),
            "counts": json.dumps(kept),
            "dropped": json.dumps(dropped),
            "split_rule": examples.properties.get("split_rule", ""),
        }
    }


@component
def model_card(evaluation: Input[ModelEvaluation], blessing: Input[ModelBlessing], card: Output[ModelCard]):
    """A Markdown model card: the verdict, the overall metrics against their thresholds, and each slice."""
    doc = json.loads((Path(evaluation.uri) / "metrics.json").read_text())
    verdict = "BLESSED" if doc["blessed"] else "NOT BLESSED: " + "; ".join(doc["reasons"])
    lines = [
        "# Penguin species classifier",
        "",
        f"**{verdict}**",
        "",
        "| metric | value | threshold |",
        "|---|---|---|",
    ]
    for metric, value in sorted(doc["overall"].items()):
        bounds = doc.get("thresholds", {}).get(metric, {})
        lines.append(f"| {metric} | {value:.4f} | {', '.join(f'{k} {v}' for k, v in bounds.items()) or '-'} |")
    for name, metrics in sorted((doc.get("slices") or {}).items()):
        lines.append(
            f"\n{name}: {int(metrics.get('example_count', 0))} examples, accuracy "
            f"{metrics.get('accuracy', float('nan')):.3f}"
        )
    (Path(card) / "model_card.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"card": {"blessed": bool(doc["blessed"]), "accuracy": float(doc["overall"].get("accuracy", 0.0))}}
