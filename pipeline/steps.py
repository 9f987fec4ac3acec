"""The five steps: what each reads, what it writes, and how it calls its component.

`run_step` is what every Prefect task does: resolve inputs, check the cache, register the execution,
run the component into staging folders, publish (rename staging -> final URIs, outputs LIVE) or fail
(execution FAILED, nothing LIVE, staging removed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from components import stop as stop_lib
from components.errors import ConfigError, Stopped
from components.user_module import module_files
from pipeline import manifest
from pipeline.config import PipelineConfig
from pipeline.manifest import fingerprint, library_versions
from pipeline.metadata import PRODUCTION, Artifact, MetadataStore
from schemas.split import SplitRule

log = logging.getLogger("tfpipe.pipeline")


@dataclass
class Step:
    name: str
    inputs: dict  # input name -> (upstream step, its output name)
    outputs: dict  # output name -> artifact type
    run: Callable  # (config, {input: Artifact}, {output: staging dir}, store) -> {output: {property: value}}
    code: str  # the component module, whose source is part of the cache key (imported only when the step runs:
    # a fully cached run never loads TensorFlow or Beam)
    resumable: tuple = ()  # outputs a re-run adopts from a dead run of the same inputs (checkpoints)


def _ingest(cfg: PipelineConfig, inputs, out, store) -> dict:
    from components import ingest

    c = cfg.ingest
    result = ingest.ingest(ingest.IngestConfig(input=c.input, format=c.format, splits=dict(c.splits),
                                               split_key=c.split_key,
                                               schema=c.schema_file, na_values=list(c.na_values),
                                               label=c.label, label_is_class=c.label_is_class,
                                               train_split=cfg.trainer.train_split),
                           out["examples"], out["schema"], out["statistics"])
    return {"examples": {"split_names": json.dumps(list(result.counts)), "counts": json.dumps(result.counts),
                         "split_rule": split_rule(cfg)}}


def split_rule(cfg: PipelineConfig) -> str:
    """How ingest assigned rows to splits: two Examples artifacts with the same rule split a row alike."""
    c = cfg.ingest
    if isinstance(c.input, dict):
        return json.dumps({"pre_split": sorted(c.input)})
    return json.dumps({"hash": "sha256 of the canonical tf.Example", **SplitRule(c.splits, c.split_key).canonical()},
                      sort_keys=True)


def _transform(cfg: PipelineConfig, inputs, out, store) -> dict:
    from components import transform

    c = cfg.transform
    result = transform.transform(transform.TransformConfig(**c.model_dump()),
                                 inputs["examples"].uri, _schema_file(inputs["schema"]),
                                 out["transform_graph"], out["transformed_examples"])
    return {"transformed_examples": {"split_names": json.dumps(result["splits"])}}


def _trainer(cfg: PipelineConfig, inputs, out, store) -> dict:
    from components import trainer

    c = cfg.trainer
    config = trainer.TrainerConfig(**c.model_dump())
    result = trainer.train(config, inputs["transformed_examples"].uri, inputs["transform_graph"].uri,
                           _schema_file(inputs["schema"]), out["model"], out["model_run"])
    return {"model_run": {**{k: v for k, v in result["eval"].items() if isinstance(v, float)}, **result["topology"]}}


def _evaluator(cfg: PipelineConfig, inputs, out, store) -> dict:
    from components import evaluator

    c = cfg.evaluator
    baseline = baseline_model(cfg, store, inputs)
    doc = evaluator.evaluate(
        evaluator.EvaluatorConfig(**c.model_dump()),
        inputs["model"].uri, inputs["examples"].uri, _schema_file(inputs["schema"]), inputs["transform_graph"].uri,
        out["evaluation"], out["blessing"], baseline)
    props = {f"metric:{k}": float(v) for k, v in doc["overall"].items()}
    return {"evaluation": props, "blessing": {"blessed": bool(doc["blessed"]), "baseline": baseline or ""}}


def _pusher(cfg: PipelineConfig, inputs, out, store) -> dict:
    from components import evaluator, pusher

    blessed = evaluator.is_blessed(inputs["blessing"].uri)
    # The same model already in serving, intact: say so rather than push a copy as a new version.
    same = next((p for p in _pushes(cfg, store) if p.properties.get("model_uri") == inputs["model"].uri
                 and Path(p.properties.get("pushed_destination", "")).parent == Path(cfg.pusher.serving_base)
                 and not _damage(p)), None)
    doc = pusher.push(inputs["model"].uri, blessed, cfg.pusher.serving_base, out["pushed_model"],
                      already=same.properties["pushed_destination"] if same is not None else None)
    if doc.get("already_in_serving"):
        log.info("pusher: this model is already in serving at %s; nothing pushed again", doc["path"])
    files = json.dumps(manifest.file_manifest(doc["path"])) if doc["pushed"] else ""
    return {"pushed_model": {"pushed": bool(doc["pushed"]), "pushed_destination": doc.get("path", ""),
                             "destination_files": files,
                             "pushed_version": str(doc.get("version", "")), "model_uri": inputs["model"].uri}}


def _schema_file(artifact: Artifact) -> str:
    return str(Path(artifact.uri) / "schema.pbtxt")


def _pushes(cfg: PipelineConfig, store: MetadataStore):
    """This pipeline's pushes that put a model in serving, newest first."""
    for outputs in store.live_outputs(cfg.name, "pusher"):
        pushed = outputs.get("pushed_model")
        if pushed is not None and pushed.properties.get("pushed"):
            yield pushed


def baseline_model(cfg: PipelineConfig, store: MetadataStore, inputs: dict) -> str | None:
    """The newest model this pipeline pushed other than the candidate itself (comparing a model with
    itself says nothing): what change thresholds compare to. Once the candidate is pushed, the baseline
    it was judged against stays its baseline, so an unchanged re-run keeps the evaluator's cache key."""
    pushed = next((p for p in _pushes(cfg, store) if p.properties.get("model_uri") != inputs["model"].uri), None)
    if pushed is None:
        return None
    candidate_rule = inputs["examples"].properties.get("split_rule") if "examples" in inputs else None
    if candidate_rule is not None and _examples_rule(store, pushed.properties.get("model_uri", "")) != candidate_rule:
        # Its training rows were split another way (other weights, an older tfpipe): some of today's eval
        # rows may have trained it, so a comparison would favour it. Judge on value thresholds alone.
        log.warning("evaluator: the last pushed model was trained on splits made another way; change "
                    "thresholds are not applied this time")
        return None
    destination = pushed.properties.get("pushed_destination", "")
    return destination if os.path.isdir(destination) else None


def _examples_rule(store: MetadataStore, model_uri: str) -> str | None:
    """The split rule of the Examples a model was trained from, read back through its lineage."""
    def upstream(artifact, component_input):
        for execution_id, kind, _ in store.artifact_events(artifact.id):
            if kind == "OUTPUT":
                return store.inputs_of(execution_id).get(component_input)
        return None

    for model in store.artifacts_by_uri(model_uri):
        transformed = upstream(model, "transformed_examples")
        examples = upstream(transformed, "examples") if transformed else None
        if examples is not None:
            return examples.properties.get("split_rule")
    return None


STEPS = {
    "ingest": Step("ingest", {}, {"examples": "Examples", "schema": "Schema", "statistics": "ExampleStatistics"},
                   _ingest, "components.ingest"),
    "transform": Step("transform", {"examples": ("ingest", "examples"), "schema": ("ingest", "schema")},
                      {"transform_graph": "TransformGraph", "transformed_examples": "TransformedExamples"},
                      _transform, "components.transform"),
    "trainer": Step("trainer", {"transformed_examples": ("transform", "transformed_examples"),
                                "transform_graph": ("transform", "transform_graph"), "schema": ("ingest", "schema")},
                    {"model": "Model", "model_run": "ModelRun"}, _trainer, "components.trainer",
                    resumable=("model_run",)),
    "evaluator": Step("evaluator", {"model": ("trainer", "model"), "examples": ("ingest", "examples"),
                                    "schema": ("ingest", "schema"), "transform_graph": ("transform", "transform_graph")},
                      {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"}, _evaluator, "components.evaluator"),
    "pusher": Step("pusher", {"model": ("trainer", "model"), "blessing": ("evaluator", "blessing")},
                   {"pushed_model": "PushedModel"}, _pusher, "components.pusher"),
}


# ---- fingerprints and the cache key ---------------------------------------------------------------------------

def step_code(step: Step) -> dict:
    """The tfpipe source a step runs: its component and everything that imports (the Estimator engine,
    schemas, ...), and this file, which builds the component's config."""
    return {**manifest.code_files(step.code), **manifest.code_files(__name__, follow=False)}


def canonical_config(step: Step, cfg: PipelineConfig) -> dict:
    """The step's config as plain data, equal for two configs exactly when they give equal outputs."""
    section = cfg.section(step.name)
    if step.name == "ingest":
        # 7:3 is 70:30, and the order the split names are written in changes nothing (schemas.split)
        section["splits"] = SplitRule(section["splits"], section.get("split_key")).canonical()
        section["train_split"] = cfg.trainer.train_split  # ingest checks labels against it
    return section


def cache_key(step: Step, cfg: PipelineConfig, inputs: dict, store: MetadataStore,
              input_files: dict | None = None, purpose: str = PRODUCTION, code: dict | None = None) -> str:
    """`code`: step_code(step), when the caller has it already."""
    section = canonical_config(step, cfg)
    parts = {
        "component": step.name,
        "code": code if code is not None else step_code(step),
        "config": section,
        "inputs": {name: [a.id, a.properties.get("fingerprint", "")] for name, a in sorted(inputs.items())},
        "libraries": library_versions(),
        "purpose": purpose,  # a reproduction never serves a production run from its outputs
    }
    module = section.get("module")
    if module:
        parts["user_module"] = module_files(module)  # with the helpers it imports
    if step.name == "ingest":
        parts["input_files"] = input_files or manifest.input_files(cfg)  # an edited CSV must be read again
    if step.name == "pusher":
        parts["serving_base"] = cfg.pusher.serving_base
    if step.name == "evaluator":
        parts["baseline"] = baseline_model(cfg, store, inputs)  # a new baseline must re-judge the model
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _damage(artifact: Artifact) -> str | None:
    """What of a published output (and, for a push, of the serving version) is no longer as it was made."""
    recorded = artifact.properties.get("files")
    if not recorded:  # published by an older tfpipe: all it recorded is where
        return None if os.path.exists(artifact.uri) else f"{artifact.uri} is gone"
    problem = manifest.damage(artifact.uri, json.loads(recorded))
    if problem is None and artifact.properties.get("pushed") and artifact.properties.get("destination_files"):
        problem = manifest.damage(artifact.properties["pushed_destination"],
                                  json.loads(artifact.properties["destination_files"]))
    return problem


def _unpublish(uri: str) -> None:
    """Removes an output from its final URI, and the serving version it pushed, if any."""
    push = Path(uri) / "push.json"
    try:
        doc = json.loads(push.read_text()) if push.is_file() else {}
    except (OSError, ValueError):
        doc = {}
    if doc.get("pushed") and not doc.get("already_in_serving") and doc.get("path"):
        shutil.rmtree(doc["path"], ignore_errors=True)
        log.warning("removed serving version %s: its push was never recorded", doc["path"])
    shutil.rmtree(uri, ignore_errors=True)


def _checkpoint_step(model_dir: str) -> str:
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(model_dir)
    return latest.rsplit("-", 1)[-1] if latest else "0"


@contextlib.contextmanager
def _graceful_stop(name: str):
    """While a step runs, SIGTERM and SIGINT ask it to stop: the trainer stops at its next chunk of steps
    with a checkpoint (the Estimator checks components.stop); any other step stops at once. A second
    signal, or 8 s without stopping, stops at once too."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers live in the main thread; a worker thread's step runs as before
        return

    def now(signum, frame):
        raise Stopped(f"{name} stopped by {stop_lib.requested() or signal.Signals(signum).name}")

    def asked(signum, frame):
        if stop_lib.request(signal.Signals(signum).name) and name == "trainer":
            signal.signal(signal.SIGALRM, now)
            signal.setitimer(signal.ITIMER_REAL, 8)
            return
        now(signum, frame)

    stop_lib.clear()
    previous = {s: signal.signal(s, asked) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s, handler in previous.items():
            signal.signal(s, handler)


# ---- running one step -----------------------------------------------------------------------------------------

def run_step(cfg: PipelineConfig, store: MetadataStore, run: dict, name: str, inputs: dict,
             use_cache: bool = True, purpose: str = PRODUCTION) -> tuple[dict, str, float]:
    """Runs (or reuses) one step; returns ({output: Artifact}, COMPLETE or CACHED, seconds in the component)."""
    step = STEPS[name]
    missing = sorted(set(step.inputs) - set(inputs))
    if missing:
        raise ConfigError(f"{name}: inputs {missing} are missing; run the upstream components first")
    files = manifest.input_files(cfg) if name == "ingest" else None
    code = step_code(step)  # parses every source file the step runs: once, for the key and the manifest
    key = cache_key(step, cfg, inputs, store, files, purpose, code)

    def props(hw: dict | None = None) -> dict:
        recorded = manifest.build(cfg, name, inputs, files, hw)
        recorded["step_code"] = code
        return {"cache_key": key, "config": json.dumps(cfg.section(name), sort_keys=True, default=str),
                "code_version": json.dumps(recorded["code"]), "library_versions": json.dumps(library_versions()),
                "pipeline": cfg.name, "run_id": run["run"].name, "manifest": json.dumps(recorded, sort_keys=True),
                "purpose": purpose}

    # Executions left RUNNING by a killed process become FAILED; their checkpoints may be adopted below,
    # as may those of a run stopped by a signal (SIGTERM, Ctrl-C), which kept them on purpose.
    adoptable = {}
    unfinished = [(e, outs, "died") for e, outs in store.recover_dead(name, cfg.name)] + \
        [(e, store.outputs_of(e.id), "stopped") for e in store.executions(name)
         if e.custom_properties["stopped"].string_value and e.custom_properties["adopted"].string_value != "yes"
         and e.properties["pipeline"].string_value == cfg.name]
    for dead, dead_outputs, how in unfinished:
        if how == "died":
            log.warning("%s: execution %d was left RUNNING by a process that died; marked FAILED", name, dead.id)
        for out, artifact in dead_outputs.items():
            left = artifact.uri + ".staging"
            if out in step.resumable and dead.properties["cache_key"].string_value == key and os.path.isdir(left):
                adoptable[out] = left
            elif how == "died":
                shutil.rmtree(left, ignore_errors=True)  # a dead run's partial output: nobody will read it
            if how == "died":
                _unpublish(artifact.uri)  # published on disk, but its record never made it: not an output
    if use_cache:
        hit = store.find_cached(name, key, damage=_damage)
        if hit is not None:
            made, outputs = hit
            store.record_cached(run, name, inputs, outputs,
                                props(store.describe(made)["manifest"].get("hardware", {})))
            log.info("%s: cached (reusing execution outputs %s)", name, ", ".join(a.uri for a in outputs.values()))
            return outputs, "CACHED", 0.0

    def uri_of(output: str, execution_id: int) -> str:
        return str(Path(cfg.root) / name / output / str(execution_id))

    execution, artifacts, contexts = store.start(run, name, inputs, step.outputs, props(), uri_of)
    staging = {out: a.uri + ".staging" for out, a in artifacts.items()}
    for out, path in staging.items():
        shutil.rmtree(path, ignore_errors=True)
        if out in adoptable:
            # Resume: the dead or stopped run's checkpoints become this run's starting point.
            os.rename(adoptable[out], path)
            store.mark_adopted(adoptable[out])
            log.info("%s: resuming from the checkpoint at step %s (left by an earlier run in %s)", name,
                     _checkpoint_step(path), adoptable[out])
        else:
            os.makedirs(path)
    log.info("%s: running (execution %d)", name, execution.id)
    started = time.perf_counter()
    try:
        with _graceful_stop(name):
            extra = step.run(cfg, inputs, staging, store) or {}
        compute = time.perf_counter() - started
        for out, path in staging.items():
            os.rename(path, artifacts[out].uri)  # publish: the final URI appears complete or not at all
    except BaseException as e:
        stopped = stop_lib.requested() or ("SIGINT" if isinstance(e, KeyboardInterrupt) else None)
        for out, path in staging.items():
            if stopped and out in step.resumable and os.path.isdir(path):
                continue  # checkpoints: the next run adopts them and resumes
            shutil.rmtree(path, ignore_errors=True)
        store.finish(execution, artifacts, contexts, "FAILED", stopped=stopped,
                     error=f"stopped by {stopped}: {e}" if stopped else
                     f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}")
        log.error("%s: %s (execution %d): %s", name, f"stopped by {stopped}" if stopped else "FAILED",
                  execution.id, e)
        raise
    try:
        props_out = {out: dict(extra.get(out, {}), fingerprint=fingerprint(a.uri),
                               files=json.dumps(manifest.file_manifest(a.uri))) for out, a in artifacts.items()}
        outputs = store.finish(execution, artifacts, contexts, "COMPLETE", artifact_props=props_out)
    except BaseException as e:
        # All or nothing: without its record an output (or a serving version) must not exist.
        for a in artifacts.values():
            _unpublish(a.uri)
        try:
            store.finish(execution, artifacts, contexts, "FAILED", error=f"publishing failed: {type(e).__name__}: {e}")
        except Exception:
            pass  # the store is unwell too: the next run marks this execution FAILED (its process is gone)
        log.error("%s: FAILED (execution %d) while publishing: %s", name, execution.id, e)
        raise
    log.info("%s: COMPLETE (execution %d)", name, execution.id)
    return outputs, "COMPLETE", compute
