"""Running one component instance: the same for every component, standard or the user's.

`run_component` is what every Prefect task does: resolve the inputs a resolver fills, check the cache,
register the execution, run the executor into staging folders, publish (rename staging -> final URIs,
outputs LIVE) or fail (execution FAILED, nothing LIVE, staging removed). It reads the component's
declaration (components.contract) and knows no component by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
import traceback
from pathlib import Path

from components import stop as stop_lib
from components.contract import BLOCKED, Component, user_modules
from components.errors import Blocked, ConfigError, DiskFull, Stopped, disk_full, no_space
from components.progress import doing
from components.user_module import module_files
from pipeline import manifest
from pipeline.config import Node, PipelineConfig
from pipeline.manifest import fingerprint, library_versions
from pipeline.metadata import PRODUCTION, Execution, MetadataStore
from pipeline.resolvers import RESOLVERS
from schemas.artifacts import Artifact

log = logging.getLogger("tfpipe.pipeline")


# ---- fingerprints and the cache key ---------------------------------------------------------------------------


def component_code(component: Component) -> dict:
    """The source a component runs: its tfpipe modules and everything they import (the Estimator engine,
    schemas, ...), and for a user's component its file and the local modules that imports."""
    code = manifest.code_files(*component.code) if component.code else {}
    if component.user_file:
        code.update(module_files(component.user_file))
    return dict(sorted(code.items()))


def canonical_params(node: Node) -> dict:
    """The parameters as plain data, equal for two configs exactly when they give equal outputs."""
    canonical = node.component.canonical
    return canonical(node.params) if canonical else node.section()


def input_files(node: Node) -> dict | None:
    """{path: content hash} of the raw files the component reads (its declaration says which), or None."""
    if node.component.input_files is None:
        return None
    return {f: manifest.input_hash(f) for f in node.component.input_files(node.params)}


def cache_key(
    node: Node,
    inputs: dict[str, Artifact],
    files: dict | None = None,
    purpose: str = PRODUCTION,
    code: dict | None = None,
) -> str:
    """What the component's outputs depend on, hashed: its type, code, parameters, inputs (resolved ones
    included), raw input files, user modules and the libraries that change results. `code`: component_code(),
    when the caller has it already."""
    parts = {
        "component": node.component.name,
        "code": code if code is not None else component_code(node.component),
        "config": canonical_params(node),
        "inputs": {
            name: [a.id, a.properties.get("fingerprint", "")]
            for name, a in sorted(inputs.items())
            if not (name in node.component.inputs and node.component.inputs[name].gate)  # orders only
        },
        "libraries": library_versions(),
        "purpose": purpose,  # a reproduction never serves a production run from its outputs
    }
    modules = user_modules(node.component, node.params)
    if modules:
        parts["user_modules"] = {field: module_files(m) for field, m in modules.items()}  # with their helpers
    if files is not None:
        parts["input_files"] = files  # an edited CSV must be read again
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def check_inputs(store: MetadataStore, cfg, component: str, inputs: dict) -> dict:
    """{input name: artifact id or URI} given by a user -> {input name: artifact id}, or a ConfigError naming the
    component's input names, a missing artifact, or the type an artifact has against the one the input takes."""
    node = cfg.node(component)
    declared = node.component.inputs
    out = {}
    for name, ref in inputs.items():
        if name not in declared:
            raise ConfigError(f"{component} has no input {name!r}; its inputs are {', '.join(declared)}")
        artifact = store.artifact(store.resolve(ref))
        wanted = declared[name].type
        if artifact.type != wanted:
            wired = node.wiring.get(name)
            source = f" ({wired[0]}'s {wired[1]})" if wired else ""
            raise ConfigError(
                f"--input {name}={ref}: artifact {artifact.id} has type {artifact.type}; "
                f"{component}'s input {name} takes a {wanted}{source}"
            )
        if artifact.state != "LIVE":
            raise ConfigError(f"--input {name}={ref}: artifact {artifact.id} is {artifact.state}, not LIVE")
        out[name] = artifact.id
    return out


def resolve_inputs(node: Node, store: MetadataStore, pipeline: str, inputs: dict[str, Artifact]) -> dict:
    """The wired inputs plus those the component's resolvers find in MLMD (left out when they find none)."""
    out = dict(inputs)
    for name, spec in node.component.inputs.items():
        if spec.resolver is not None and name not in out:
            found = RESOLVERS[spec.resolver](store, pipeline, inputs)
            if found is not None:
                out[name] = found
    return out


def refuse_blocked(node_id: str, inputs: dict[str, Artifact]) -> None:
    """An instance never runs on an artifact that stopped a run (a validator's verdict on bad data)."""
    for name, artifact in sorted(inputs.items()):
        why = artifact.properties.get(BLOCKED)
        if why:
            raise Blocked(
                f"{node_id}: not run: its input {name} (artifact {artifact.id}) stopped an earlier run: {why}"
            )


def stop_if_blocked(node_id: str, execution_id: int, outputs: dict[str, Artifact]) -> None:
    """Outputs (just published, or reused) that stop the run: errors.Blocked, naming where they are."""
    for artifact in outputs.values():
        why = artifact.properties.get(BLOCKED)
        if why:
            log.error("%s: the run stops here (execution %d): %s", node_id, execution_id, why)
            raise Blocked(f"{node_id}: {why} (execution {execution_id}, details in {artifact.uri})")


def _damage(artifact: Artifact) -> str | None:
    """What of a published output (and, for a push, of the serving version) is no longer as it was made."""
    recorded = artifact.properties.get("files")
    if not recorded:  # published by an older tfpipe: all it recorded is where
        return None if os.path.exists(artifact.uri) else f"{artifact.uri} is gone"
    problem = manifest.damage(artifact.uri, json.loads(recorded))
    if problem is None and artifact.properties.get("pushed") and artifact.properties.get("destination_files"):
        problem = manifest.damage(
            artifact.properties["pushed_destination"], json.loads(artifact.properties["destination_files"])
        )
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


# ---- stopping: SIGTERM and SIGINT ------------------------------------------------------------------------------
# While components run, SIGTERM and SIGINT ask them to stop. One with resumable outputs (the trainer) stops at
# its next chunk of steps with a checkpoint (the Estimator checks components.stop); any other stops at once. A
# second signal, or 8 s without stopping, stops all at once. Signal handlers live in the main thread; a
# component running in a task thread (independent components run concurrently) is stopped by an exception
# raised in that thread.

_RUNNING: dict[int, tuple[str, bool]] = {}  # thread ident -> (instance id, resumable)
_RUNNING_LOCK = threading.Lock()


def _stop_thread(ident: int, message: str) -> None:
    if ident == threading.get_ident():
        raise Stopped(message)
    error = type("Stopped", (Stopped,), {"__init__": lambda self: Stopped.__init__(self, message)})
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(error))


def _stop_all(why: str, patient: bool) -> None:
    with _RUNNING_LOCK:
        running = dict(_RUNNING)
    mine = None
    for ident, (name, resumable) in running.items():
        if patient and resumable:
            continue
        if ident == threading.get_ident():
            mine = f"{name} stopped by {why}"  # raised last, once the others know
        else:
            _stop_thread(ident, f"{name} stopped by {why}")
    if mine:
        raise Stopped(mine)


def _in_logging(frame) -> bool:
    """Whether the main thread was writing a log record when the signal came."""
    while frame is not None:
        if frame.f_code.co_filename == logging.__file__:
            return True
        frame = frame.f_back
    return False


def _on_signal(signum, frame) -> None:
    if _in_logging(frame):
        # Raised inside a log handler, the stop would be swallowed by logging's handleError (which prints
        # "--- Logging error ---") and the step would run on for minutes: the signal again once the record is out.
        threading.Timer(0.05, signal.pthread_kill, (threading.main_thread().ident, signum)).start()
        return
    why = signal.Signals(signum).name
    first = stop_lib.request(why)
    with _RUNNING_LOCK:
        patient = first and any(resumable for _, resumable in _RUNNING.values())
    if patient:
        signal.signal(signal.SIGALRM, _on_patience_over)
        signal.setitimer(signal.ITIMER_REAL, 8)
    _stop_all(stop_lib.requested() or why, patient)


def _on_patience_over(signum, frame) -> None:
    if _in_logging(frame):
        signal.setitimer(signal.ITIMER_REAL, 0.05)  # as above: once the log record is out
        return
    _stop_all(stop_lib.requested() or "SIGTERM", patient=False)


@contextlib.contextmanager
def stop_handlers():
    """SIGTERM and SIGINT stop the running components (see above), while this is entered in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stop_lib.clear()
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _stoppable(name: str, resumable: bool):
    ident = threading.get_ident()
    with _RUNNING_LOCK:
        _RUNNING[ident] = (name, resumable)
    try:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is not _on_signal:
            with stop_handlers():
                yield
        else:
            yield
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(ident, None)


# ---- log lines name the final paths ----------------------------------------------------------------------------
# An executor writes into staging folders, which are renamed at publish: a log line that names one ("saved
# checkpoint .../model_run/3.staging/model.ckpt-100") would point at a folder that is gone by the time anyone
# reads it. While components run, tfpipe's log records name the final paths instead.

_STAGED: dict[str, str] = {}  # staging folder -> final URI, for the components running now
_STAGED_LOCK = threading.Lock()
_make_record = logging.getLogRecordFactory()


def _record(*args, **kwargs) -> logging.LogRecord:
    record = _make_record(*args, **kwargs)
    if _STAGED and record.name.startswith("tfpipe") and ".staging" in str(record.msg) + str(record.args):
        text = record.getMessage()
        with _STAGED_LOCK:
            for staging, final in _STAGED.items():
                text = text.replace(staging, final)
        record.msg, record.args = text, None
    return record


logging.setLogRecordFactory(_record)


@contextlib.contextmanager
def _final_paths(staging: dict[str, str], outputs: dict[str, Artifact]):
    with _STAGED_LOCK:
        _STAGED.update({path: outputs[out].uri for out, path in staging.items()})
    try:
        yield
    finally:
        with _STAGED_LOCK:
            for path in staging.values():
                _STAGED.pop(path, None)


# ---- running one component -------------------------------------------------------------------------------------


def run_component(
    cfg: PipelineConfig,
    store: MetadataStore,
    run: dict,
    node_id: str,
    inputs: dict[str, Artifact],
    use_cache: bool = True,
    purpose: str = PRODUCTION,
) -> tuple[dict[str, Artifact], str, float]:
    """Runs (or reuses) one instance; returns ({output: Artifact}, COMPLETE or CACHED, seconds in the executor)."""
    node = cfg.node(node_id)
    comp = node.component
    missing = sorted(n for n, s in comp.inputs.items() if n not in inputs and not s.optional and not s.resolver)
    if missing:
        raise ConfigError(f"{node_id}: inputs {missing} are missing; run the upstream components first")
    inputs = resolve_inputs(node, store, cfg.name, inputs)
    refuse_blocked(node_id, inputs)
    files = input_files(node)
    code = component_code(comp)  # parses every source file the component runs: once, for the key and the manifest
    key = cache_key(node, inputs, files, purpose, code)

    def props(hw: dict | None = None) -> dict:
        recorded = manifest.build(cfg, node, inputs, files, hw)
        recorded["step_code"] = code
        return {
            "cache_key": key,
            "config": json.dumps(node.section(), sort_keys=True, default=str),
            "code_version": json.dumps(recorded["code"]),
            "library_versions": json.dumps(library_versions()),
            "pipeline": cfg.name,
            "run_id": run["run"].name,
            "manifest": json.dumps(recorded, sort_keys=True),
            "purpose": purpose,
            "component_type": node.type,
        }

    # Executions left RUNNING by a killed process become FAILED; their checkpoints may be adopted below,
    # as may those of a run stopped by a signal (SIGTERM, Ctrl-C), which kept them on purpose.
    adoptable = {}
    unfinished: list[tuple[Execution, dict, str]] = [
        (e, outs, "died") for e, outs in store.recover_dead(node_id, cfg.name)
    ] + [(e, store.outputs_of(e.id), "stopped") for e in store.stopped(node_id, cfg.name)]
    for dead, dead_outputs, how in unfinished:
        if how == "died":
            log.warning("%s: execution %d was left RUNNING by a process that died; marked FAILED", node_id, dead.id)
        for out, artifact in dead_outputs.items():
            left = artifact.uri + ".staging"
            if out in comp.resumable and dead.properties.get("cache_key") == key and os.path.isdir(left):
                adoptable[out] = left
            elif how == "died":
                shutil.rmtree(left, ignore_errors=True)  # a dead run's partial output: nobody will read it
            if how == "died":
                _unpublish(artifact.uri)  # published on disk, but its record never made it: not an output
    if use_cache:
        hit = store.find_cached(node_id, key, damage=_damage)
        if hit is not None:
            made, outputs = hit
            store.record_cached(run, node_id, inputs, outputs, props(made.manifest.get("hardware", {})))
            log.info(
                "%s: cached (reusing execution outputs %s)",
                node_id,
                ", ".join(a.uri for a in outputs.values()),
                extra={"tfpipe_summarized": True},  # the run's table says CACHED: logs and the UI keep the URIs
            )
            stop_if_blocked(node_id, made.id, outputs)
            return outputs, "CACHED", 0.0

    def uri_of(output: str, execution_id: int) -> str:
        return str(Path(cfg.root) / node_id / output / str(execution_id))

    started = store.start(run, node_id, inputs, comp.outputs, props(), uri_of)
    staging = {out: a.uri + ".staging" for out, a in started.outputs.items()}
    for out, path in staging.items():
        shutil.rmtree(path, ignore_errors=True)
        if out in adoptable:
            # Resume: the dead or stopped run's checkpoints become this run's starting point.
            os.rename(adoptable[out], path)
            store.mark_adopted(adoptable[out])
            log.info(
                "%s: resuming from the checkpoint at step %s (left by an earlier run in %s)",
                node_id,
                _checkpoint_step(path),
                adoptable[out],
            )
        else:
            os.makedirs(path)
    log.info("%s: running (execution %d)", node_id, started.id)
    clock = time.perf_counter()
    try:
        with (
            _stoppable(node_id, bool(comp.resumable)),
            _final_paths(staging, started.outputs),
            doing(log, f"{node_id}: still running"),  # until the component says more itself
        ):
            extra = comp.run(inputs, dict(staging), node.params)
            if stop_lib.requested():
                # Asked to stop, but a library swallowed the stop (Beam, as it builds the analysis): nothing
                # it made is published, and the stop is said as every stop is.
                raise Stopped(f"{node_id} stopped by {stop_lib.requested()}")
        compute = time.perf_counter() - clock
        for out, path in staging.items():
            os.rename(path, started.outputs[out].uri)  # publish: the final URI appears complete or not at all
    except BaseException as e:
        stopped = stop_lib.requested() or ("SIGINT" if isinstance(e, KeyboardInterrupt) else None)
        for out, path in staging.items():
            if stopped and out in comp.resumable and os.path.isdir(path):
                continue  # checkpoints: the next run adopts them and resumes
            shutil.rmtree(path, ignore_errors=True)
        store.finish(
            started,
            "FAILED",
            stopped=stopped,
            error=f"stopped by {stopped}: {e}"
            if stopped
            else f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}",
        )
        log.error("%s: %s (execution %d): %s", node_id, f"stopped by {stopped}" if stopped else "FAILED", started.id, e)
        if stopped and not isinstance(e, Stopped):
            # The stop surfaced through a library that wraps what it catches (Beam re-raises it as an error of
            # the pipeline's DoFn): still a stop, said as every stop is, not blamed on the user's code.
            raise Stopped(f"{node_id} stopped by {stopped}") from e
        full = no_space(e)
        if full is not None and not isinstance(e, DiskFull):
            raise disk_full(full) from e  # the operator's to fix, in one line, whatever library met it
        raise
    try:
        props_out = {
            out: dict(
                extra.get(out, {}), fingerprint=fingerprint(a.uri), files=json.dumps(manifest.file_manifest(a.uri))
            )
            for out, a in started.outputs.items()
        }
        outputs = store.finish(started, "COMPLETE", artifact_props=props_out)
    except BaseException as e:
        # All or nothing: without its record an output (or a serving version) must not exist.
        for a in started.outputs.values():
            _unpublish(a.uri)
        try:
            store.finish(started, "FAILED", error=f"publishing failed: {type(e).__name__}: {e}")
        except Exception:
            pass  # the store is unwell too: the next run marks this execution FAILED (its process is gone)
        log.error("%s: FAILED (execution %d) while publishing: %s", node_id, started.id, e)
        full = no_space(e)
        if full is not None and not isinstance(e, DiskFull):
            raise disk_full(full) from e
        raise
    log.info(
        "%s: COMPLETE (execution %d): %s",
        node_id,
        started.id,
        ", ".join(f"{name} at {a.uri}" for name, a in outputs.items()),
    )
    stop_if_blocked(node_id, started.id, outputs)
    return outputs, "COMPLETE", compute
