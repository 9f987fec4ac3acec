"""example_validator: a data drop's statistics against the schema, the previous drop and its own train split.

Output layout (TFX's ExampleValidator layout): `<out>/Split-<name>/SchemaDiff.pb`, a binary tensorflow-metadata
`Anomalies` per split, with TFDV's anomaly types and descriptions, severities, and the measured distances in
`drift_skew_info`.

Checks:
- **schema** (every split): a feature the schema expects is missing (SCHEMA_MISSING_COLUMN) or present in too
  few examples (FEATURE_TYPE_LOW_FRACTION_PRESENT / LOW_NUMBER_PRESENT); a changed type (UNEXPECTED_DATA_TYPE);
  too few or too many values (FEATURE_TYPE_LOW/HIGH_NUMBER_VALUES); values outside an int or float domain
  (INT_TYPE_SMALL/BIG_INT, FLOAT_TYPE_SMALL/BIG_FLOAT); a string outside the feature's string domain
  (ENUM_TYPE_UNEXPECTED_STRING_VALUES), unless the values inside still make up the feature's
  `distribution_constraints.min_domain_mass` (TFDV's rule: ingest's inferred domains come from the train split and
  carry one, so that an eval value the train split lacks by chance is not an anomaly); a feature the schema
  lacks (SCHEMA_NEW_COLUMN).
- **new values** (every split): the domain ingest would infer (schemas.schema's rule) from the previous drop's
  train split: a value outside it is ENUM_TYPE_UNEXPECTED_STRING_VALUES. Skipped for a feature whose domain a
  pinned schema gives (the user's word); an inferred schema's domain came from this very drop, so it is checked.
- **drift** (the train split against the previous drop's train split, from the `previous_statistics`
  resolver) and **skew** (the eval split against the train split): per feature, the L-infinity distance of
  the value frequencies for strings (COMPARATOR_L_INFTY_HIGH), the Jensen-Shannon divergence (base 2, so in
  [0, 1]) of the standard histograms for numbers (COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH), and the rise in
  the fraction of examples missing the feature (FEATURE_TYPE_LOW_FRACTION_PRESENT). Thresholds come from the
  YAML (`drift:`, `skew:`, by feature, `default` for the rest: a feature's entry replaces the default, so
  `PassengerId: {}` turns the checks off for it), else from the schema's drift_comparator / skew_comparator.

Each anomaly has a severity, `error` unless `severity:` says `warn` for its feature or its check (`schema`,
`new_values`, `drift`, `skew`), or `default`. Warnings are logged. Errors stop the run: the anomalies are
still published (the execution is COMPLETE and records them), with the one-line summary in the artifact's
`blocked` property, which makes the runner stop before anything that depends on them (components.contract).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from components.contract import BLOCKED, Component, InputSpec, Parameters, Upstream
from components.errors import ConfigError, InputError
from components.statistics import by_split, feature_name, load_statistics
from schemas.artifacts import split_dir
from schemas.schema import domain_of, min_domain_mass, string_domain

log = logging.getLogger("tfpipe.example_validator")

ANOMALIES_FILE = "SchemaDiff.pb"
CHECKS = ("schema", "new_values", "drift", "skew")
Severity = Literal["error", "warn"]
_ERROR: Severity = "error"


class Thresholds(BaseModel):
    """The largest distance allowed; a measure left out is not checked."""

    model_config = ConfigDict(extra="forbid")

    jensen_shannon: float | None = Field(default=None, ge=0, le=1)  # numeric features
    l_infinity: float | None = Field(default=None, ge=0, le=1)  # string features
    missing_increase: float | None = Field(default=None, ge=0, le=1)  # fraction of examples without the feature


class ValidatorConfig(Parameters):
    """example_validator's parameters (its YAML section)."""

    # feature (or default) -> thresholds: this train split against the previous data drop's
    drift: dict[str, Thresholds] = Field(default_factory=dict)
    # feature (or default) -> thresholds: the eval split against the train split
    skew: dict[str, Thresholds] = Field(default_factory=dict)
    # feature, check (schema, new_values, drift, skew) or default -> error (stop the run) or warn
    severity: dict[str, Severity] = Field(default_factory=lambda: {"default": _ERROR})
    new_values: bool = True  # check string values against the previous drop's (when the schema has no domain)
    max_domain_size: int = Field(default=100, ge=1)
    train_split: str = "train"
    eval_split: str = "eval"


# ---- distances ------------------------------------------------------------------------------------------------


def _standard(feature) -> list[tuple[float, float, float]]:
    from tensorflow_metadata.proto.v0 import statistics_pb2 as sp

    for h in feature.num_stats.histograms:
        if h.type == sp.Histogram.STANDARD:
            return [(b.low_value, b.high_value, b.sample_count) for b in h.buckets]
    return []


def _masses(buckets: list, edges: list[float]) -> dict:
    """A histogram's mass on the intervals between `edges` (spread evenly within each bucket), and on points."""
    total = sum(c for _, _, c in buckets) or 1.0
    out: dict = {}
    for lo, hi, count in buckets:
        if hi <= lo:
            out[("point", lo)] = out.get(("point", lo), 0.0) + count / total
            continue
        for a, b in zip(edges, edges[1:]):  # noqa: RUF007 (pairwise makes mypy lose the types)
            overlap = min(b, hi) - max(a, lo)
            if overlap > 0:
                out[(a, b)] = out.get((a, b), 0.0) + count / total * overlap / (hi - lo)
    return out


def jensen_shannon(a: list, b: list) -> float | None:
    """The Jensen-Shannon divergence (base 2) of two histograms, on the union of their bucket edges."""
    if not a or not b:
        return None
    edges = sorted({x for lo, hi, _ in a + b for x in (lo, hi)})
    p, q = _masses(a, edges), _masses(b, edges)
    out = 0.0
    for key in set(p) | set(q):
        pi, qi = p.get(key, 0.0), q.get(key, 0.0)
        m = (pi + qi) / 2
        out += (pi * math.log2(pi / m) if pi > 0 else 0.0) + (qi * math.log2(qi / m) if qi > 0 else 0.0)
    return max(0.0, min(1.0, out / 2))


def frequencies(feature) -> dict[str, float]:
    """A string feature's values and their shares (its rank histogram, else its top values)."""
    s = feature.string_stats
    buckets = [(b.label, b.sample_count) for b in s.rank_histogram.buckets] or [
        (t.value, t.frequency) for t in s.top_values
    ]
    total = sum(c for _, c in buckets) or 1.0
    return {label: count / total for label, count in buckets}


def l_infinity(a, b) -> tuple[float, str] | None:
    """The largest difference in a value's frequency between two string features, and that value."""
    p, q = frequencies(a), frequencies(b)
    if not p or not q:
        return None
    value = max(set(p) | set(q), key=lambda v: (abs(p.get(v, 0.0) - q.get(v, 0.0)), v))
    return abs(p.get(value, 0.0) - q.get(value, 0.0)), value


def _missing(feature, num_examples: int) -> float:
    return 1 - _common(feature).num_non_missing / num_examples if num_examples else 0.0


def _common(feature):
    return feature.string_stats.common_stats if feature.HasField("string_stats") else feature.num_stats.common_stats


def _is_string(feature) -> bool:
    from tensorflow_metadata.proto.v0 import statistics_pb2 as sp

    return feature.type in (sp.FeatureNameStatistics.STRING, sp.FeatureNameStatistics.BYTES)


def _g(x: float) -> str:
    return f"{x:.6g}"


# ---- the checks -------------------------------------------------------------------------------------------------


class _Found:
    """The anomalies found, per split and feature, each with its check and severity."""

    def __init__(self, config: ValidatorConfig):
        self.config = config
        self.items: list[dict] = []
        self.measured: dict[str, dict[str, list]] = {}  # split -> feature -> [(kind, type, value, threshold)]

    def severity(self, feature: str, check: str) -> str:
        s = self.config.severity
        return s.get(feature) or s.get(check) or s.get("default") or "error"

    def add(self, split: str, feature: str, check: str, kind: str, short: str, description: str, summary: str):
        self.items.append(
            {
                "split": split,
                "feature": feature,
                "check": check,
                "type": kind,
                "short": short,
                "description": description,
                "summary": summary,
                "severity": self.severity(feature, check),
            }
        )


def _type_name(stats_feature) -> str:
    from tensorflow_metadata.proto.v0 import statistics_pb2 as sp

    return sp.FeatureNameStatistics.Type.Name(stats_feature.type)


_SCHEMA_TYPE = {"INT": "INT", "FLOAT": "FLOAT", "BYTES": "STRING"}


def _check_schema(found: _Found, split: str, stats, schema) -> None:
    from tensorflow_metadata.proto.v0 import schema_pb2

    features = {feature_name(f): f for f in stats.features}
    n = stats.num_examples
    for f in schema.feature:
        name = f.name
        have = features.get(name)
        wanted = f.presence.min_fraction if f.HasField("presence") else 0.0
        if have is None or _common(have).num_non_missing == 0:
            if wanted > 0 or (f.HasField("presence") and f.presence.min_count > 0):
                found.add(
                    split,
                    name,
                    "schema",
                    "SCHEMA_MISSING_COLUMN",
                    "Column dropped",
                    "Column is completely missing",
                    f"{name} is missing from every example of split {split}, and the schema requires it",
                )
            continue
        common = _common(have)
        fraction = common.num_non_missing / n if n else 1.0
        if fraction < wanted:
            found.add(
                split,
                name,
                "schema",
                "FEATURE_TYPE_LOW_FRACTION_PRESENT",
                "Column dropped",
                f"The feature was present in fewer examples than expected: minimum fraction = {_g(wanted)}, "
                f"actual = {_g(fraction)}",
                f"{name} is present in {fraction:.1%} of split {split}'s examples, below the schema's {wanted:.1%}",
            )
        if f.HasField("presence") and common.num_non_missing < f.presence.min_count:
            found.add(
                split,
                name,
                "schema",
                "FEATURE_TYPE_LOW_NUMBER_PRESENT",
                "Column dropped",
                f"The feature was present in fewer examples than expected: minimum = {f.presence.min_count}, "
                f"actual = {common.num_non_missing}",
                f"{name} is present in {common.num_non_missing} examples of split {split}, below the schema's "
                f"{f.presence.min_count}",
            )
        expected = _SCHEMA_TYPE.get(schema_pb2.FeatureType.Name(f.type))
        actual = _type_name(have)
        if expected and actual != expected and not (expected == "STRING" and actual == "BYTES"):
            found.add(
                split,
                name,
                "schema",
                "UNEXPECTED_DATA_TYPE",
                "Unexpected data type",
                f"Expected data of type: {expected} but got {actual}",
                f"{name} holds {actual} values in split {split} where the schema says {expected}",
            )
            continue
        if f.HasField("value_count"):
            lo_count, hi_count = f.value_count.min, f.value_count.max
        elif [d.size for d in f.shape.dim] == [1]:  # one value in each example that has the feature
            lo_count, hi_count = 1, 1
        else:
            lo_count = hi_count = 0
        if lo_count and common.min_num_values < lo_count:
            found.add(
                split,
                name,
                "schema",
                "FEATURE_TYPE_LOW_NUMBER_VALUES",
                "Missing values",
                "Some examples have fewer values than expected.",
                f"{name} has {common.min_num_values} value(s) in some example of split {split}, the schema "
                f"at least {lo_count}",
            )
        if hi_count and common.max_num_values > hi_count:
            found.add(
                split,
                name,
                "schema",
                "FEATURE_TYPE_HIGH_NUMBER_VALUES",
                "Superfluous values",
                "Some examples have more values than expected.",
                f"{name} has {common.max_num_values} values in some example of split {split}, the schema at "
                f"most {hi_count}",
            )
        if not _is_string(have):
            _check_range(found, split, f, have)
        else:
            domain = domain_of(schema, f)
            if domain is not None:
                mass = f.distribution_constraints.min_domain_mass if f.HasField("distribution_constraints") else 1.0
                _unexpected_values(found, split, name, have, set(domain), "the schema's domain", "schema", mass)
    known = {f.name for f in schema.feature}
    for name in sorted(set(features) - known):
        found.add(
            split,
            name,
            "schema",
            "SCHEMA_NEW_COLUMN",
            "New column",
            "New column (column in data but not in schema)",
            f"{name} is in split {split} but not in the schema",
        )


def _check_range(found: _Found, split: str, f, have) -> None:
    s, name = have.num_stats, f.name
    for domain, small, big in (
        ("int_domain", "INT_TYPE_SMALL_INT", "INT_TYPE_BIG_INT"),
        ("float_domain", "FLOAT_TYPE_SMALL_FLOAT", "FLOAT_TYPE_BIG_FLOAT"),
    ):
        if not f.HasField(domain):
            continue
        d = getattr(f, domain)
        if d.HasField("min") and s.min < d.min:
            found.add(
                split,
                name,
                "schema",
                small,
                "Out-of-range values",
                f"Unexpectedly low values: {_g(s.min)}<{_g(d.min)}(upto six significant digits)",
                f"{name} is as low as {_g(s.min)} in split {split}, below the schema's minimum {_g(d.min)}",
            )
        if d.HasField("max") and s.max > d.max:
            found.add(
                split,
                name,
                "schema",
                big,
                "Out-of-range values",
                f"Unexpectedly high value: {_g(s.max)}>{_g(d.max)}(upto six significant digits)",
                f"{name} is as high as {_g(s.max)} in split {split}, above the schema's maximum {_g(d.max)}",
            )


def _unexpected_values(
    found: _Found, split: str, name: str, have, allowed: set, where: str, check: str, mass: float = 1.0
) -> None:
    """Values outside `allowed`, unless they are so rare that the values inside still make up `mass` of the
    split's (TFDV's distribution_constraints.min_domain_mass; 1.0: any value outside is an anomaly)."""
    counts = {b.label: b.sample_count for b in have.string_stats.rank_histogram.buckets}
    new = sorted((v for v in counts if v not in allowed), key=lambda v: (-counts[v], v))
    if not new:
        return
    total = sum(counts.values()) or 1.0
    inside = 1 - sum(counts[v] for v in new) / total
    if inside >= mass:
        log.info(
            "%s: %d value(s) in split %s outside %s, %.2g%% of its values: within min_domain_mass %g",
            name,
            len(new),
            split,
            where,
            100 * (1 - inside),
            mass,
        )
        return
    shown = ", ".join(f"{v} (~{counts[v] / total:.0%})" for v in new[:5]) + (" ..." if len(new) > 5 else "")
    values = ", ".join(repr(v) for v in new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
    found.add(
        split,
        name,
        check,
        "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
        "Unexpected string values",
        f"Examples contain values missing from {where}: {shown}."
        + (
            f" The share of values in the domain is {_g(inside)}, below min_domain_mass {_g(mass)}." if mass < 1 else ""
        ),
        f"{name} has value(s) {values} in split {split}, never in {where}; if they are valid, add them to the "
        f"schema's domain or set severity {name}: warn",
    )


def _inferred_domain(feature, max_size: int) -> tuple[set[str], float] | None:
    """The domain ingest would infer from a (previous drop's) string feature (schemas.schema's rule), and the
    min_domain_mass that goes with it."""
    s = feature.string_stats
    counts = {b.label: b.sample_count for b in s.rank_histogram.buckets}
    values = s.common_stats.tot_num_values
    domain = string_domain(counts, s.unique, values, max_size)
    return None if domain is None else (set(domain), min_domain_mass(values))


def _thresholds(table: dict[str, Thresholds], name: str) -> Thresholds:
    return table.get(name) or table.get("default") or Thresholds()


def _compare(
    found: _Found, check: str, split: str, current, base, thresholds: dict, schema_features: dict, against: str
) -> None:
    """Drift or skew of each feature of `current` (a split's statistics) against `base`."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2 as ap

    base_features = {feature_name(f): f for f in base.features}
    measured = found.measured.setdefault(split, {})
    comparator_field = "drift_comparator" if check == "drift" else "skew_comparator"
    words = "current and previous" if check == "drift" else "training and serving"
    for f in current.features:
        name = feature_name(f)
        b = base_features.get(name)
        if b is None:
            continue
        t = _thresholds(thresholds, name)
        schema_f = schema_features.get(name)
        comparator = getattr(schema_f, comparator_field) if schema_f is not None else None
        js_t, linf_t = t.jensen_shannon, t.l_infinity
        if js_t is None and comparator is not None and comparator.HasField("jensen_shannon_divergence"):
            js_t = comparator.jensen_shannon_divergence.threshold
        if linf_t is None and comparator is not None and comparator.HasField("infinity_norm"):
            linf_t = comparator.infinity_norm.threshold
        verb = "drifted" if check == "drift" else "is skewed"
        if _is_string(f) and _is_string(b) and linf_t is not None:
            result = l_infinity(f, b)
            if result is not None:
                value, at = result
                measured.setdefault(name, []).append((check, ap.DriftSkewInfo.Measurement.L_INFTY, value, linf_t))
                if value > linf_t:
                    found.add(
                        split,
                        name,
                        check,
                        "COMPARATOR_L_INFTY_HIGH",
                        f"High Linfty distance between {words}",
                        f"The Linfty distance between {words} is {_g(value)} (up to six significant digits), above "
                        f"the threshold {_g(linf_t)}. The feature value with maximum difference is: {at}",
                        f"{name} {verb}: L-infinity distance {value:.3g} > {_g(linf_t)} (value {at!r}) in split "
                        f"{split} against {against}",
                    )
        elif not _is_string(f) and not _is_string(b) and js_t is not None:
            value_js = jensen_shannon(_standard(f), _standard(b))
            if value_js is not None:
                kind = ap.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE
                measured.setdefault(name, []).append((check, kind, value_js, js_t))
                if value_js > js_t:
                    found.add(
                        split,
                        name,
                        check,
                        "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
                        f"High approximate Jensen-Shannon divergence between {words}",
                        f"The approximate Jensen-Shannon divergence between {words} is {_g(value_js)} (up to six "
                        f"significant digits), above the threshold {_g(js_t)}.",
                        f"{name} {verb}: Jensen-Shannon divergence {value_js:.3g} > {_g(js_t)} in split {split} "
                        f"against {against}",
                    )
        if t.missing_increase is not None:
            now, before = _missing(f, current.num_examples), _missing(b, base.num_examples)
            if now - before > t.missing_increase:
                found.add(
                    split,
                    name,
                    check,
                    "FEATURE_TYPE_LOW_FRACTION_PRESENT",
                    "Column dropped",
                    f"The feature was present in fewer examples than expected: minimum fraction = "
                    f"{_g(1 - before - t.missing_increase)}, actual = {_g(1 - now)}",
                    f"{name} is missing in {now:.0%} of split {split}'s examples, {before:.0%} in {against}: a "
                    f"rise of {now - before:.2f} > {_g(t.missing_increase)}",
                )


def validate(
    config: ValidatorConfig, stats_uri: str, schema_path: str, baseline: Any, out_dir: str, pinned: bool = False
) -> tuple[_Found, dict[str, Any]]:
    """Runs the checks and writes <out_dir>/Split-<name>/SchemaDiff.pb; returns the findings and the protos.

    `pinned`: the schema is the user's (ingest's `schema:`), so a string domain in it is the user's word and
    replaces the previous drop's values in the new-values check. An inferred schema's domains come from this
    very drop, so the previous drop's values are checked as well."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2 as ap

    from schemas.schema import load_schema

    schema = load_schema(schema_path)
    current = by_split(load_statistics(stats_uri))
    found = _Found(config)
    schema_features = {f.name: f for f in schema.feature}
    for split, stats in current.items():
        _check_schema(found, split, stats, schema)
    train = current.get(config.train_split)
    if baseline is not None:
        previous = by_split(load_statistics(baseline.uri)).get(config.train_split)
        against = f"the previous data drop (statistics artifact {baseline.id})"
        if train is not None and previous is not None:
            _compare(found, "drift", config.train_split, train, previous, config.drift, schema_features, against)
            if config.new_values:
                old = {feature_name(f): f for f in previous.features if _is_string(f)}
                for split, stats in current.items():
                    for f in stats.features:
                        name = feature_name(f)
                        schema_f = schema_features.get(name)
                        if name not in old or not _is_string(f):
                            continue
                        if pinned and schema_f is not None and domain_of(schema, schema_f) is not None:
                            continue
                        inferred = _inferred_domain(old[name], config.max_domain_size)
                        if inferred is not None:
                            _unexpected_values(
                                found,
                                split,
                                name,
                                f,
                                inferred[0],
                                f"the previous data drop's {config.train_split} split (statistics artifact "
                                f"{baseline.id})",
                                "new_values",
                                inferred[1],
                            )
    if config.skew and train is not None and config.eval_split in current:
        _compare(
            found,
            "skew",
            config.eval_split,
            current[config.eval_split],
            train,
            config.skew,
            schema_features,
            f"split {config.train_split}",
        )
    protos = {}
    for split in current:
        anomalies = ap.Anomalies(anomaly_name_format=ap.Anomalies.SERIALIZED_PATH)
        anomalies.baseline.CopyFrom(schema)
        for item in (i for i in found.items if i["split"] == split):
            info = anomalies.anomaly_info[item["feature"]]
            info.path.step[:] = [item["feature"]]
            severity = ap.AnomalyInfo.ERROR if item["severity"] == "error" else ap.AnomalyInfo.WARNING
            info.severity = max(info.severity, severity)
            info.reason.add(
                type=ap.AnomalyInfo.Type.Value(item["type"]),
                short_description=item["short"],
                description=item["description"],
            )
            info.short_description = (
                item["short"] if len(info.reason) == 1 else "Multiple errors"
            )  # TFDV's wording for several
            info.description = " ".join(r.description for r in info.reason)
        for feature, rows in sorted(found.measured.get(split, {}).items()):
            entry = anomalies.drift_skew_info.add()
            entry.path.step.append(feature)
            for check, kind, value, threshold in rows:
                target = entry.drift_measurements if check == "drift" else entry.skew_measurements
                target.add(type=kind, value=value, threshold=threshold)
        folder = split_dir(out_dir, split)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ANOMALIES_FILE).write_bytes(anomalies.SerializeToString())
        protos[split] = anomalies
    return found, protos


def load_anomalies(uri: str | Path) -> dict[str, Any]:
    """{split: Anomalies} of an ExampleAnomalies artifact."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2 as ap

    found = sorted(Path(uri).glob(f"Split-*/{ANOMALIES_FILE}"))
    if not found:
        raise InputError(f"{uri} holds no Split-*/{ANOMALIES_FILE} (TFDV anomalies)")
    return {p.parent.name.removeprefix("Split-"): ap.Anomalies.FromString(p.read_bytes()) for p in found}


# ---- the component ----------------------------------------------------------------------------------------------


def _summary(items: list[dict]) -> str:
    head = "; ".join(i["summary"] for i in items[:3]) + (f"; and {len(items) - 3} more" if len(items) > 3 else "")
    return head if len(items) == 1 else f"{len(items)} anomalies: {head}"


def _run(inputs: dict, outputs: dict, config: ValidatorConfig) -> dict:
    baseline = inputs.get("baseline_statistics")
    schema = inputs["schema"]
    found, _ = validate(
        config,
        inputs["statistics"].uri,
        str(Path(schema.uri) / "schema.pbtxt"),
        baseline,
        outputs["anomalies"],
        pinned=schema.properties.get("source") == "pinned",
    )
    errors = [i for i in found.items if i["severity"] == "error"]
    warnings = [i for i in found.items if i["severity"] == "warn"]
    for item in warnings:
        log.warning("warning: %s (%s)", item["summary"], item["type"])
    if baseline is None:
        log.info("no previous data drop: drift and new values are not checked this time")
    return {
        "anomalies": {
            BLOCKED: _summary(errors) if errors else "",
            "errors": len(errors),
            "warnings": len(warnings),
            "baseline_statistics": baseline.id if baseline is not None else 0,
            "anomalous_features": json.dumps(sorted({i["feature"] for i in found.items})),
        }
    }


def _check(config: ValidatorConfig, upstream: Upstream) -> None:
    """Before anything runs: skew needs two splits."""
    if config.skew and config.eval_split == config.train_split:
        raise ConfigError(
            f"skew compares split {config.eval_split!r} with itself; set eval_split to another split than train_split"
        )


COMPONENT = Component(
    name="example_validator",
    inputs={
        "statistics": InputSpec("ExampleStatistics"),
        "schema": InputSpec("Schema"),
        # The previous data drop's statistics, for drift: see pipeline.resolvers.previous_statistics.
        "baseline_statistics": InputSpec("ExampleStatistics", optional=True, resolver="previous_statistics"),
    },
    outputs={"anomalies": "ExampleAnomalies"},
    parameters=ValidatorConfig,
    executor=_run,
    code=(__name__,),
    check=_check,
    defaults={"train_split": ("ingest.train_split", "trainer.train_split")},
    description="anomalies against the schema, drift against the previous data drop, skew between splits",
)
