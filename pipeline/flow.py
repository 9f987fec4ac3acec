"""The Prefect flow: ingest -> transform -> trainer -> evaluator -> pusher, one task each."""

from __future__ import annotations

import logging
import os
import time
import uuid

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here: no telemetry
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tfpipe")  # step and training logs in the Prefect UI
# Several `tfpipe run`s at once each start Prefect's temporary server, on a busy machine: give it time.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow, task  # noqa: E402

from pipeline.config import COMPONENTS, load_config
from pipeline.metadata import MetadataStore, redact
from pipeline.steps import STEPS, run_step

log = logging.getLogger("tfpipe.pipeline")


def _no_cache(no_cache, component: str) -> bool:
    return no_cache is True or (isinstance(no_cache, (list, tuple)) and component in no_cache)


@task(name="tfpipe-component", task_run_name="{component}", retries=0)
def component_task(config_path: str, overrides: dict, component: str, run_id: str, input_ids: dict,
                   no_cache) -> dict:
    """One component: resolve its input artifacts by id, run or reuse it, return its outputs' ids and its state."""
    cfg = load_config(config_path, overrides)
    store = MetadataStore(cfg.metadata)
    run = store.start_run(cfg.name, run_id)
    inputs = {name: store.artifact(i) for name, i in input_ids.items()}
    outputs, state, compute = run_step(cfg, store, run, component, inputs, use_cache=not _no_cache(no_cache, component))
    return {"state": state, "outputs": {name: a.id for name, a in outputs.items()},
            "uris": {name: a.uri for name, a in outputs.items()}, "compute_seconds": compute}


@flow(name="tfpipe", flow_run_name="{run_name}", log_prints=True)
def pipeline_flow(config_path: str, overrides: dict | None = None, no_cache=False, run_name: str = "run",
                  components: list | None = None, inputs: dict | None = None) -> dict:
    """Runs the components in order (all by default).

    A component's inputs are its upstream outputs in this run, else the upstream's latest LIVE
    outputs in MLMD; `inputs` ({input name: artifact id or URI}) overrides them.
    """
    overrides = overrides or {}
    cfg = load_config(config_path, overrides)  # validated once, before anything runs
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    store = MetadataStore(cfg.metadata)
    store.start_run(cfg.name, run_id)
    produced, results = {}, {}
    for component in components or COMPONENTS:
        step = STEPS[component]
        input_ids = {}
        for name, (upstream, output) in step.inputs.items():
            source = produced.get(upstream) or {n: a.id for n, a in store.latest_live(cfg.name, upstream).items()}
            if output in source:
                input_ids[name] = source[output]
            if name in (inputs or {}):
                input_ids[name] = store.resolve(inputs[name])
        started = time.perf_counter()
        result = component_task(config_path, overrides, component, run_id, input_ids, no_cache)
        result["wall_seconds"] = time.perf_counter() - started
        produced[component] = result["outputs"]
        results[component] = result
    if results:
        _attach_lineage(store, cfg.name, results)
    return {"pipeline": cfg.name, "run_id": run_id, "metadata": redact(cfg.metadata), "root": cfg.root,
            "serving_base": cfg.pusher.serving_base, "components": results}


def _attach_lineage(store: MetadataStore, pipeline: str, results: dict) -> None:
    """The lineage of the run's last output (the push, in a whole run), as a Prefect artifact on the flow run."""
    from prefect.artifacts import create_markdown_artifact

    from pipeline import lineage

    last = list(results.values())[-1]["outputs"]
    focus = last.get("pushed_model") or next(iter(last.values()))
    graph = lineage.build(store, focus)
    create_markdown_artifact(key=f"{pipeline.lower().replace('_', '-').replace('.', '-')}-lineage",
                             markdown=f"## Lineage of {graph.nodes[graph.focus]['label']}\n\n" + lineage.markdown(graph),
                             description="MLMD lineage: raw input files -> examples -> transform -> model -> "
                                         "evaluation -> push")
