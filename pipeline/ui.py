"""What a run shows in the Prefect UI besides its task runs and logs: the metrics against their thresholds,
the pushed model, and the run's lineage (MLMD ids), as Prefect artifacts on the flow run."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline import lineage
from pipeline.metadata import MetadataStore


def _key(pipeline: str, what: str) -> str:
    # Prefect artifact keys: lowercase letters, digits and dashes.
    return re.sub(r"[^a-z0-9-]+", "-", f"{pipeline.lower()}-{what}")


def _holds(bound: str, limit: float, value: float, baseline: float | None) -> str:
    """One bound's verdict, from the numbers: pass, FAIL, or "no baseline" for a change bound on a first run."""
    if bound in ("max_decrease", "max_increase"):
        if baseline is None:
            return "no baseline"
        ok = (baseline - value if bound == "max_decrease" else value - baseline) <= limit
    else:
        ok = value >= limit if bound == "lower" else value <= limit if bound == "upper" else True
    return "pass" if ok else "FAIL"


def metrics_rows(doc: dict) -> list[dict]:
    """One row per overall metric: its value, the baseline's, the bounds it had to meet, and whether it met
    them ("result": as the evaluator decided; "checks": each bound's verdict, "no baseline" for a change bound
    on a first run)."""
    rows = []
    failed = set(doc.get("failed_metrics", []))
    for metric, value in doc["overall"].items():
        bounds = {**doc.get("thresholds", {}).get(metric, {}), **doc.get("change_thresholds", {}).get(metric, {})}
        baseline = (doc.get("baseline") or {}).get(metric)
        rows.append(
            {
                "metric": metric,
                "value": round(float(value), 6),
                "threshold": ", ".join(f"{k} {v}" for k, v in bounds.items()) or "-",
                "baseline": "-" if baseline is None else round(float(baseline), 6),
                "result": "-" if not bounds else ("FAIL" if metric in failed else "pass"),
                "checks": [(f"{k} {v}", _holds(k, float(v), float(value), baseline)) for k, v in bounds.items()],
            }
        )
    return rows


def slice_below(doc: dict, metrics: dict) -> list[str]:
    """The value bounds a slice does not meet (shown, not judged: blessing looks at the overall metrics)."""
    out = []
    for metric, bounds in doc.get("thresholds", {}).items():
        if metric in metrics:
            out += [
                f"{metric} {k} {v}" for k, v in bounds.items() if _holds(k, float(v), metrics[metric], None) == "FAIL"
            ]
    return out


def slice_rows(doc: dict) -> list[dict]:
    """One row per slice value ("Sex=female"): its example count, the slice's metrics, and the overall
    value bounds it falls short of ("below")."""
    rows = []
    for name, metrics in (doc.get("slices") or {}).items():
        row: dict = {"slice": name, "examples": int(metrics.get("example_count", 0))}
        row.update({k: round(float(v), 6) for k, v in metrics.items() if k != "example_count"})
        row["below"] = ", ".join(slice_below(doc, metrics)) or "-"
        rows.append(row)
    return rows


def statistics_rows(dataset, anomalies=None) -> list[dict]:
    """One row per feature of a split's DatasetFeatureStatistics: presence, the figures of its kind, and the
    split's anomaly on it (with its severity) and drift or skew measured, from an Anomalies proto if given."""
    from components.statistics import feature_name

    info = dict(anomalies.anomaly_info) if anomalies is not None else {}
    measured = {}
    for entry in anomalies.drift_skew_info if anomalies is not None else []:
        values = [("drift", m) for m in entry.drift_measurements] + [("skew", m) for m in entry.skew_measurements]
        measured[".".join(entry.path.step)] = ", ".join(
            f"{kind} {m.value:.3g} (max {m.threshold:.3g})" for kind, m in values
        )
    rows = []
    n = dataset.num_examples or 1
    for f in dataset.features:
        name = feature_name(f)
        numeric = f.HasField("num_stats")
        common = f.num_stats.common_stats if numeric else f.string_stats.common_stats
        row = {
            "feature": name,
            "type": f.Type.Name(f.type),
            "present": int(common.num_non_missing),
            "missing": f"{common.num_missing / n:.1%}",
        }
        if numeric:
            s = f.num_stats
            row.update(mean=f"{s.mean:.4g}", std=f"{s.std_dev:.4g}", min=f"{s.min:.4g}", max=f"{s.max:.4g}")
            row.update(unique="-", top="-")
        else:
            s = f.string_stats
            top = s.top_values[0] if s.top_values else None
            row.update(mean="-", std="-", min="-", max="-", unique=int(s.unique))
            row["top"] = f"{top.value[:20]} ({int(top.frequency)})" if top is not None else "-"
        if common.max_num_values > 1:
            row["values"] = f"{common.min_num_values}-{common.max_num_values}"
        row["drift/skew"] = measured.get(name, "-")
        anomaly = info.get(name)
        row["anomaly"] = (
            f"{'ERROR' if anomaly.severity == anomaly.ERROR else 'warning'}: {anomaly.short_description}"
            if anomaly is not None
            else "-"
        )
        rows.append(row)
    return rows


def data_validation_markdown(statistics_uri: str, anomalies_uri: str | None, title: str) -> str:
    """The statistics (and anomalies) as Markdown: a table per split, anomalous features in bold."""
    from components.example_validator import load_anomalies
    from components.statistics import by_split, load_statistics

    anomalies = load_anomalies(anomalies_uri) if anomalies_uri else {}
    parts = [f"## {title}"]
    for split, dataset in by_split(load_statistics(statistics_uri)).items():
        rows = statistics_rows(dataset, anomalies.get(split))
        for row in rows:
            if row["anomaly"] != "-":
                row["feature"] = f"**{row['feature']}**"
                row["anomaly"] = f"**{row['anomaly']}**"
        parts.append(f"### Split {split}: {dataset.num_examples} examples\n\n" + _markdown_table(rows))
    return "\n\n".join(parts)


def _markdown_table(rows: list[dict]) -> str:
    headers = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row.get(h, "-")) for h in headers) + " |" for row in rows]
    return "\n".join(lines)


def outputs_of_type(results: dict, type_name: str) -> list[tuple[str, str]]:
    """(instance id, URI) of each output of that artifact type among a run's results, in run order."""
    return [
        (component, r["uris"][name])
        for component, r in results.items()
        for name, t in r.get("types", {}).items()
        if t == type_name
    ]


def data_validation_pairs(store: MetadataStore, artifacts: list) -> list[tuple]:
    """(statistics artifact, the anomalies judged on them or None) among artifacts, by type: statistics in
    TFDV's format, and each ExampleAnomalies with the statistics its execution read."""
    pairs, judged = [], set()
    for a in artifacts:
        if a.type == "ExampleAnomalies":
            made = [e for e, kind, _ in store.artifact_events(a.id) if kind == "OUTPUT"]
            read = store.inputs_of(min(made)) if made else {}
            # the statistics judged: wired in, not the resolved baseline (which a later drop's statistics are not)
            stats = [s for s in read.values() if s.type == "ExampleStatistics" and s.properties.get("stats_file")]
            baseline = {s.id for s in stats if s.id == a.properties.get("baseline_statistics")}
            for s in stats:
                if s.id not in baseline:
                    pairs.append((s, a))
                    judged.add(s.id)
    for a in artifacts:
        if a.type == "ExampleStatistics" and a.properties.get("stats_file") and a.id not in judged:
            pairs.append((a, None))
    return pairs


def publish_data_validation(store: MetadataStore, cfg, run_id: str) -> None:
    """The run's statistics and anomalies (from MLMD: a run the validator stopped has them too) as a Markdown
    artifact: a table per split, anomalous features in bold."""
    from prefect.artifacts import create_markdown_artifact

    artifacts = [a for e in store.run_executions(f"{cfg.name}.{run_id}") for a in store.outputs_of(e.id).values()]
    for stats, anomalies in data_validation_pairs(store, artifacts):
        verdict = ""
        if anomalies is not None:
            blocked = anomalies.properties.get("blocked")
            verdict = f": STOPPED, {blocked}" if blocked else f": {anomalies.properties.get('warnings', 0)} warning(s)"
        create_markdown_artifact(
            key=_key(cfg.name, "data-validation"),
            markdown=data_validation_markdown(
                stats.uri, anomalies.uri if anomalies else None, f"Data of {cfg.name} run `{run_id}`{verdict}"
            ),
            description=f"{cfg.name} run {run_id}: statistics per split, and anomalies{verdict}",
        )


def _for_table(row: dict) -> dict:
    """A metrics row for the UI's table: each bound's verdict in `result` ("pass; no baseline")."""
    out = {k: v for k, v in row.items() if k != "checks"}
    if len(row["checks"]) > 1:
        out["result"] = "; ".join(verdict for _, verdict in row["checks"])
    return out


def add_tags(*tags: str) -> None:
    """Adds tags to the current flow run (the runs list shows them, and filters by them); a run without a
    Prefect flow run, or an API that refuses, goes on untagged."""
    import logging

    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return
    try:
        with get_client(sync_client=True) as client:
            # The server's tags, not the run context's copy (which misses the tags added since it started).
            have = client.read_flow_run(flow_run.id).tags or []
            if not set(tags) <= set(have):
                client.update_flow_run(flow_run.id, tags=sorted({*have, *tags}))
    except Exception as e:  # a tag is not worth failing a run for
        logging.getLogger("tfpipe.pipeline").debug("could not tag the flow run: %s", e)


def headline(doc: dict) -> str:
    """The metric a runs list shows: the first one with a threshold (what blessing judged), else accuracy."""
    judged = [*doc.get("thresholds", {}), *doc.get("change_thresholds", {})]
    name = next((m for m in judged if m in doc["overall"]), "accuracy" if "accuracy" in doc["overall"] else None)
    return f"{name} {float(doc['overall'][name]):.4f}" if name else ""


def publish(store: MetadataStore, cfg, run_id: str, results: dict) -> None:
    from prefect.artifacts import create_markdown_artifact

    pipeline = cfg.name
    run_name = f"{pipeline}.{run_id}"  # the MLMD pipeline_run context
    for _, uri in outputs_of_type(results, "ModelEvaluation"):
        doc = json.loads((Path(uri) / "metrics.json").read_text())
        verdict = "BLESSED" if doc["blessed"] else "NOT BLESSED: " + "; ".join(doc["reasons"])
        # The runs list shows a run's tags: its verdict and headline metric, at a glance.
        add_tags(*(t for t in ("blessed" if doc["blessed"] else "not blessed", headline(doc)) if t))
        slices = slice_rows(doc)
        create_markdown_artifact(
            key=_key(pipeline, "metrics"),
            markdown=f"## Evaluation of {pipeline} run `{run_id}`: {verdict}\n\n"
            + _markdown_table([_for_table(row) for row in metrics_rows(doc)])
            + ("\n\n### Per slice\n\n" + _markdown_table(slices) if slices else ""),
            description=f"{pipeline} run {run_id}: {verdict}; the candidate model on the eval split, overall and per slice",
        )
    for _, uri in outputs_of_type(results, "PushedModel"):
        push = json.loads((Path(uri) / "push.json").read_text())
        text = (
            f"**Pushed** version `{push['version']}` to `{push['path']}`"
            if push["pushed"]
            else f"**Not pushed**: {push.get('reason', 'not blessed')}"
        )
        create_markdown_artifact(
            key=_key(pipeline, "pushed-model"),
            markdown=f"## Pushed model of {pipeline} run `{run_id}`\n\n{text}\n",
            description=f"{pipeline} run {run_id}: where the blessed model was pushed",
        )
    publish_data_validation(store, cfg, run_id)
    # Narrow enough for the artifact pane: one line per execution, artifact ids only.
    rows = ["| step | execution | state | outputs |", "|---|---|---|---|"]
    for e in store.run_executions(run_name):
        outputs = ", ".join(f"{n} #{a.id}" for n, a in store.outputs_of(e.id).items())
        rows.append(f"| {e.component} | #{e.id} | {e.state} | {outputs} |")
    # The lineage of the run's last output (the push, in the standard chain).
    last = list(results.values())[-1]
    pushed = [i for name, i in last["outputs"].items() if last.get("types", {}).get(name) == "PushedModel"]
    # The run has just hashed its input files: no need to read them again here.
    graph = lineage.build(store, pushed[0] if pushed else next(iter(last["outputs"].values())), check_files=False)
    create_markdown_artifact(
        key=_key(pipeline, "lineage"),
        markdown=f"## {pipeline} run `{run_id}` in ML Metadata\n\n"
        + "\n".join(rows)
        + f"\n\n## Lineage of {graph.nodes[graph.focus]['label']}\n\n"
        + lineage.markdown(graph),
        description=f"{pipeline} run {run_id}: MLMD lineage: raw input files -> examples -> transform -> model -> evaluation -> push",
    )
