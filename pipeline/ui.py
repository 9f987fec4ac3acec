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


def metrics_rows(doc: dict) -> list[dict]:
    """One row per overall metric: its value, the bounds it had to meet, and whether it met them."""
    rows = []
    failed = set(doc.get("failed_metrics", []))
    for metric, value in doc["overall"].items():
        bounds = {**doc.get("thresholds", {}).get(metric, {}), **doc.get("change_thresholds", {}).get(metric, {})}
        baseline = (doc.get("baseline") or {}).get(metric)
        rows.append({"metric": metric, "value": round(float(value), 6),
                     "threshold": ", ".join(f"{k} {v}" for k, v in bounds.items()) or "-",
                     "baseline": "-" if baseline is None else round(float(baseline), 6),
                     "result": "-" if not bounds else ("FAIL" if metric in failed else "pass")})
    return rows


def publish(store: MetadataStore, pipeline: str, run_name: str, results: dict) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    if "evaluator" in results:
        doc = json.loads((Path(results["evaluator"]["uris"]["evaluation"]) / "metrics.json").read_text())
        verdict = "BLESSED" if doc["blessed"] else "NOT BLESSED: " + "; ".join(doc["reasons"])
        create_table_artifact(key=_key(pipeline, "metrics"), table=metrics_rows(doc),
                              description=f"Evaluation of the candidate model on the eval split: {verdict}")
    if "pusher" in results:
        push = json.loads((Path(results["pusher"]["uris"]["pushed_model"]) / "push.json").read_text())
        text = (f"**Pushed** version `{push['version']}` to `{push['path']}`" if push["pushed"]
                else f"**Not pushed**: {push.get('reason', 'not blessed')}")
        create_markdown_artifact(key=_key(pipeline, "pushed-model"), markdown=f"## Pushed model\n\n{text}\n",
                                 description="Where the blessed model was pushed")
    rows = ["| component | execution | state | inputs (MLMD artifact ids) | outputs (MLMD artifact ids) |",
            "|---|---|---|---|---|"]
    for e in store.run_executions(run_name):
        inputs = ", ".join(f"{n} #{a.id}" for n, a in store.inputs_of(e["id"]).items()) or "-"
        outputs = ", ".join(f"{n} #{a.id}" for n, a in store.outputs_of(e["id"]).items())
        rows.append(f"| {e['component']} | #{e['id']} | {e['state']} | {inputs} | {outputs} |")
    last = list(results.values())[-1]["outputs"]
    # The run's ingest has just hashed its input files: no need to read them again here.
    graph = lineage.build(store, last.get("pushed_model") or next(iter(last.values())), check_files=False)
    create_markdown_artifact(
        key=_key(pipeline, "lineage"),
        markdown="## This run in ML Metadata\n\n" + "\n".join(rows)
                 + f"\n\n## Lineage of {graph.nodes[graph.focus]['label']}\n\n" + lineage.markdown(graph),
        description="MLMD lineage: raw input files -> examples -> transform -> model -> evaluation -> push")
