"""evaluator: the served model on the raw eval split, overall and per slice, and a blessing that is explicit either way."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
from pydantic import Field

from components.contract import Component, InputSpec, Parameters, Upstream
from components.errors import ConfigError, InputError
from components.progress import Progress
from schemas.artifacts import split_pattern
from schemas.schema import feature_spec

log = logging.getLogger("tfpipe.evaluator")  # under "tfpipe": on the console and in the Prefect UI

BLESSED, NOT_BLESSED = "BLESSED", "NOT_BLESSED"
_LOWER_IS_BETTER = {"average_loss", "mean_absolute_error"}


class EvaluatorConfig(Parameters):
    """evaluator's parameters (its YAML section)."""

    label: str  # the label's key among the transformed features (what the model was trained on)
    slices: list[str] = Field(default_factory=list)  # raw feature names to slice by
    thresholds: dict[str, dict[str, float]] = Field(default_factory=dict)  # metric -> {lower: x} and/or {upper: y}
    # metric -> {max_decrease: x} (or max_increase), against the baseline: the last pushed model
    change_thresholds: dict[str, dict[str, float]] = Field(default_factory=dict)
    split: str = "eval"


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged); 0.5 when only one class is present."""
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _metrics(kind: str, labels: np.ndarray, preds: dict[str, np.ndarray]) -> dict[str, float]:
    out: dict[str, float] = {"example_count": len(labels)}
    if not len(labels):
        return out
    if kind == "classification":
        out["accuracy"] = float(np.mean(preds["class_ids"] == labels))
        if "logistic" in preds:
            out["auc"] = _auc(labels, preds["logistic"])
            out["label/mean"] = float(np.mean(labels))
            out["prediction/mean"] = float(np.mean(preds["logistic"]))
    else:
        err = preds["predictions"] - labels
        out.update(
            {
                "average_loss": float(np.mean(err**2)),
                "mean_absolute_error": float(np.mean(np.abs(err))),
                "label/mean": float(np.mean(labels)),
                "prediction/mean": float(np.mean(preds["predictions"])),
            }
        )
    return out


def _score(model_dir: str, examples_pattern: str, label: str, tft_output, raw_spec: dict, slices: list):
    """Runs the model's predict signature over the raw examples; returns kind, labels, predictions, slice values."""
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    if "predict" not in model.signatures:
        raise ConfigError(f"evaluator: {model_dir} has no 'predict' signature")
    predict = model.signatures["predict"]
    layer = tft_output.transform_features_layer()
    labels: list[np.ndarray] = []
    preds: defaultdict[str, list[np.ndarray]] = defaultdict(list)
    slice_values: defaultdict[str, list[str]] = defaultdict(list)
    ds = tf.data.TFRecordDataset(tf.io.gfile.glob(examples_pattern), compression_type="GZIP").batch(256)
    kind, progress = None, Progress(log, "evaluator: examples scored", unit="examples")
    for batch in ds:
        progress.update(progress.done + int(tf.shape(batch)[0]))
        out = predict(examples=batch)
        kind = kind or ("classification" if "class_ids" in out else "regression")
        raw = tf.io.parse_example(batch, raw_spec)
        transformed = layer(raw)
        if label not in transformed:
            raise ConfigError(f"evaluator: label {label!r} is not among the transformed features {sorted(transformed)}")
        labels.append(tf.reshape(transformed[label], [-1]).numpy())
        if kind == "classification":
            preds["class_ids"].append(out["class_ids"].numpy().reshape(-1))
            if "logistic" in out:
                preds["logistic"].append(out["logistic"].numpy().reshape(-1))
        else:
            preds["predictions"].append(out["predictions"].numpy().reshape(-1))
        for name in slices:
            value = raw[name]
            if isinstance(value, tf.SparseTensor):
                value = tf.sparse.to_dense(value, default_value=b"" if value.dtype == tf.string else 0)
            flat = value.numpy().reshape(len(batch), -1)[:, 0] if value.shape.rank else value.numpy()
            slice_values[name].extend(v.decode() if isinstance(v, bytes) else str(v) for v in flat)
    if kind is None:
        raise InputError(f"evaluator: no examples in {examples_pattern}")
    progress.finish()
    return kind, np.concatenate(labels), {k: np.concatenate(v) for k, v in preds.items()}, slice_values


def _check(overall: dict, baseline: dict | None, config: EvaluatorConfig) -> list[tuple[str, str]]:
    """(metric, reason) for each check the model fails (empty: blessed)."""
    reasons = []
    for metric, bounds in config.thresholds.items():
        value = overall.get(metric)
        if value is None:
            reasons.append((metric, f"{metric}: not computed for this model (it has {sorted(overall)})"))
            continue
        if "lower" in bounds and value < bounds["lower"]:
            reasons.append((metric, f"{metric} = {value:.4g} is below the lower bound {bounds['lower']}"))
        if "upper" in bounds and value > bounds["upper"]:
            reasons.append((metric, f"{metric} = {value:.4g} is above the upper bound {bounds['upper']}"))
    if baseline is not None:
        for metric, change in config.change_thresholds.items():
            if metric not in overall or metric not in baseline:
                reasons.append((metric, f"{metric}: missing for the candidate or the baseline"))
                continue
            delta = overall[metric] - baseline[metric]
            if "max_decrease" in change and -delta > change["max_decrease"]:
                reasons.append(
                    (
                        metric,
                        f"{metric} fell by {-delta:.4g} against the baseline "
                        f"({baseline[metric]:.4g}); at most {change['max_decrease']} is allowed",
                    )
                )
            if "max_increase" in change and delta > change["max_increase"]:
                reasons.append(
                    (
                        metric,
                        f"{metric} rose by {delta:.4g} against the baseline "
                        f"({baseline[metric]:.4g}); at most {change['max_increase']} is allowed",
                    )
                )
    return reasons


def evaluate(
    config: EvaluatorConfig,
    serving_model_dir: str,
    examples_dir: str,
    schema_path: str,
    transform_graph_dir: str,
    evaluation_dir: str,
    blessing_dir: str,
    baseline_model_dir: str | None = None,
) -> dict:
    """Writes <evaluation_dir>/metrics.json and <blessing_dir>/BLESSED or NOT_BLESSED; returns the metrics document."""
    import tensorflow_transform as tft

    _check_thresholds(config)
    pattern = split_pattern(examples_dir, config.split)
    tft_output = tft.TFTransformOutput(transform_graph_dir)
    raw_spec = feature_spec(schema_path)
    missing = [s for s in config.slices if s not in raw_spec]
    if missing:
        raise ConfigError(f"evaluator: slice feature(s) {missing} are not in the schema ({sorted(raw_spec)})")
    kind, labels, preds, slice_values = _score(
        serving_model_dir, pattern, config.label, tft_output, raw_spec, config.slices
    )
    overall = _metrics(kind, labels, preds)
    slices = {}
    for name, values in slice_values.items():
        values = np.asarray(values)
        for v in sorted(set(values)):
            mask = values == v
            slices[f"{name}={v}"] = _metrics(kind, labels[mask], {k: p[mask] for k, p in preds.items()})
    baseline = None
    if baseline_model_dir:
        b_kind, b_labels, b_preds, _ = _score(baseline_model_dir, pattern, config.label, tft_output, raw_spec, [])
        baseline = _metrics(b_kind, b_labels, b_preds)
    failures = _check(overall, baseline, config)
    reasons = [reason for _, reason in failures]
    doc = {
        "kind": kind,
        "overall": overall,
        "slices": slices,
        "baseline": baseline,
        "baseline_model": baseline_model_dir,
        "thresholds": config.thresholds,
        "change_thresholds": config.change_thresholds,
        "blessed": not reasons,
        "reasons": reasons,
        "failed_metrics": sorted({metric for metric, _ in failures}),
    }
    (Path(evaluation_dir) / "metrics.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    marker = Path(blessing_dir) / (BLESSED if not reasons else NOT_BLESSED)
    marker.write_text("\n".join(reasons) + "\n", encoding="utf-8")
    return doc


def is_blessed(blessing_dir: str) -> bool:
    """What the evaluator decided; an empty or foreign folder is an error, not a silent "no"."""
    folder = Path(blessing_dir)
    if (folder / BLESSED).exists():
        return True
    if (folder / NOT_BLESSED).exists():
        return False
    raise InputError(f"{blessing_dir} holds no blessing (neither {BLESSED} nor {NOT_BLESSED})")


def _check_thresholds(config: EvaluatorConfig) -> None:
    for metric, bounds in {**config.thresholds, **config.change_thresholds}.items():
        if not isinstance(bounds, dict) or not set(bounds) <= {"lower", "upper", "max_decrease", "max_increase"}:
            raise ConfigError(
                f"evaluator: threshold for {metric!r} must be a dict of lower/upper/max_decrease/"
                f"max_increase, got {bounds!r}"
            )


def _check_early(config: EvaluatorConfig, upstream: Upstream) -> None:
    """Before anything runs: the thresholds' form, and the slice columns against the columns the schema's
    producer can tell already (ingest's pinned schema, or its input's header), whatever sits between it and
    the examples (a user's filter)."""
    _check_thresholds(config)
    wired = upstream("schema")
    if not config.slices or wired is None or wired[0].columns is None:
        return
    known = wired[0].columns(wired[1])
    missing = [s for s in config.slices if known is not None and s not in known]
    if missing:
        where = getattr(wired[1], "schema_file", None) or "the input's header"
        raise ConfigError(f"slices {missing} are not columns of {where}; choose from {', '.join(sorted(known or []))}")


def _run(inputs: dict, outputs: dict, config: EvaluatorConfig) -> dict:
    baseline = inputs.get("baseline")
    baseline_dir = baseline.properties.get("pushed_destination") if baseline is not None else None
    doc = evaluate(
        config,
        inputs["model"].uri,
        inputs["examples"].uri,
        str(Path(inputs["schema"].uri) / "schema.pbtxt"),
        inputs["transform_graph"].uri,
        outputs["evaluation"],
        outputs["blessing"],
        baseline_dir or None,
    )
    return {
        "evaluation": {f"metric:{k}": float(v) for k, v in doc["overall"].items()},
        "blessing": {"blessed": bool(doc["blessed"]), "baseline": baseline_dir or ""},
    }


COMPONENT = Component(
    name="evaluator",
    inputs={
        "model": InputSpec("Model"),
        "examples": InputSpec("Examples"),
        "schema": InputSpec("Schema"),
        "transform_graph": InputSpec("TransformGraph"),
        # TFX's "latest blessed model" resolver: the newest model this pipeline pushed, other than the
        # candidate, trained on rows split the same way; none on a first run.
        "baseline": InputSpec("PushedModel", optional=True, resolver="latest_pushed_model"),
    },
    outputs={"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"},
    parameters=EvaluatorConfig,
    executor=_run,
    code=(__name__,),
    check=_check_early,
    defaults={"label": ("trainer.label",)},
    description="metrics on the eval split, overall and per slice, and a blessing against thresholds",
)
