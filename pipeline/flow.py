"""The Prefect flow: the pipeline's graph of component instances, one task each. Instances that do not depend
on each other run concurrently, as submitted tasks with their upstreams as dependencies (the UI draws the
edges); an instance that runs alone runs in the flow's own thread."""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here: no telemetry
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tfpipe")  # step and training logs in the Prefect UI
# ... when there is a flow run; tfpipe's loggers also run outside one (the Estimator API, a server watcher).
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# Several `tfpipe run`s at once each start Prefect's temporary server, on a busy machine: give it time.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow, task  # noqa: E402
from prefect.states import Completed  # noqa: E402

if TYPE_CHECKING:
    from prefect.states import State


def _detach_temporary_server() -> None:
    """Starts Prefect's temporary API server in a session of its own: Ctrl-C at the terminal reaches the
    whole foreground process group, and a server killed with the run left the run retrying it for minutes
    before it could record that it stopped. It still ends with the run: at exit (Prefect stops it), or by
    the kernel's parent-death signal if the run is killed outright. If it dies while the run goes on (the
    OOM killer, a stray kill), it is started again on its port, where Prefect's client retries find it.
    (Prefect private API: the tests of Ctrl-C and of a killed server fail when it moves.)"""
    import ctypes
    import subprocess
    import threading

    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return  # a Prefect server of the user's: nothing to start (and no need to import Prefect's server code)
    from prefect.server.api import server

    original = server.SubprocessASGIServer._run_uvicorn_command
    if getattr(original, "_tfpipe", False):
        return
    original_stop = server.SubprocessASGIServer.stop

    def own_session():
        os.setsid()
        ctypes.CDLL(None).prctl(1, 15)  # PR_SET_PDEATHSIG = SIGTERM

    def spawn(self):
        popen = subprocess.Popen
        # The server is started by Prefect's own Popen call: this one, for that call, adds the preexec_fn.
        subprocess.Popen = lambda *a, **k: popen(*a, preexec_fn=own_session, **k)  # type: ignore[misc, assignment, call-overload]
        try:
            return original(self)
        finally:
            subprocess.Popen = popen  # type: ignore[misc]  # undoes the patch above

    def run_uvicorn(self):
        process = spawn(self)
        threading.Thread(target=watch, args=(self, process), daemon=True, name="tfpipe-prefect-server").start()
        return process

    def watch(self, process):
        # Restarts happen in this thread, which lives as long as the server: the parent-death signal is
        # sent when the *thread* that started the process ends.
        for restart in range(1, 5):
            code = process.wait()
            if getattr(self, "_tfpipe_stopping", False) or self.server_process is not process or code == 3:
                return  # stopped by Prefect at exit, or replaced while starting (3: its port was taken)
            if restart == 4:
                log.error(
                    "Prefect's temporary server on %s exited (code %s) for the 4th time; not starting it again",
                    self.address,
                    code,
                )
                return
            log.warning(
                "Prefect's temporary server on %s exited (code %s) during the run; starting it again",
                self.address,
                code,
            )
            process = self.server_process = spawn(self)

    def stop(self):
        self._tfpipe_stopping = True
        # At exit the run is over and recorded: the server shuts down on its own, and the command returns
        # now instead of waiting up to 5 s (seen: 6 to 14 s of silence after the summary) for it to finish.
        process, self.server_process = self.server_process, None
        if process is not None:
            process.terminate()
        return original_stop(self)

    # Patches Prefect's private server class (see the docstring); the mark makes a second call a no-op.
    run_uvicorn._tfpipe = True  # type: ignore[attr-defined]
    server.SubprocessASGIServer._run_uvicorn_command = run_uvicorn  # type: ignore[method-assign]
    server.SubprocessASGIServer.stop = stop  # type: ignore[method-assign]


_detach_temporary_server()


def _quick_flow_exit() -> None:
    """The flow-run heartbeat thread sleeps in 1 s ticks, and the sync engine joins it at the end of every
    run: half a second, on average, added to each run (a third of a fully cached one). Not joining is what
    Prefect's async engine does; the thread is a daemon and sees the stop at its next tick. (Prefect private
    API: tests/pipeline/test_cached_run.py fails when it moves.)"""
    import functools

    from prefect import flow_engine

    send = getattr(flow_engine, "_send_heartbeats", None)
    if send is not None and not isinstance(send, functools.partial):
        flow_engine._send_heartbeats = functools.partial(send, join_on_exit=False)


_quick_flow_exit()

from pipeline import console, ui  # noqa: E402

console.adopt_prefect()  # one log format, no library noise, no traceback for an expected error

from components.errors import Blocked, ConfigError  # noqa: E402
from components.progress import doing  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.metadata import PASSWORD_ENV, PRODUCTION, MetadataStore, redact  # noqa: E402
from pipeline.runner import check_inputs, run_component, stop_handlers  # noqa: E402

log = logging.getLogger("tfpipe.pipeline")


_OPEN: dict[tuple[str, str], MetadataStore] = {}  # (store URL, run id) -> the run's store, shared by its tasks


def open_store(cfg, run_id: str | None = None) -> MetadataStore:
    """The config's MLMD store: one per run in a process (the flow opens it, its tasks share it). A password
    kept in a Prefect Secret block is fetched into the process environment, where the store reads it, so it
    never sits in the config, a flow parameter or a log."""
    if run_id is not None and (cfg.metadata, run_id) in _OPEN:
        return _OPEN[(cfg.metadata, run_id)]
    if cfg.metadata_secret and not os.environ.get(PASSWORD_ENV):
        from prefect.blocks.system import Secret

        try:
            # Secret.load is sync here (no event loop), though typed as sync or async.
            os.environ[PASSWORD_ENV] = Secret.load(cfg.metadata_secret).get()  # type: ignore[union-attr]
        except ValueError as e:
            raise ConfigError(
                f"metadata_secret: no Prefect Secret block {cfg.metadata_secret!r} ({e}); create it "
                f"with Secret(value=...).save({cfg.metadata_secret!r})"
            ) from None
    store = MetadataStore(cfg.metadata, cfg.metadata_timeout, cfg.metadata_query_timeout)
    if run_id is not None:
        _OPEN[(cfg.metadata, run_id)] = store
    return store


def check_prefect_api(timeout: float = 10.0) -> None:
    """A configured Prefect API (PREFECT_API_URL) that is down or silent, named in one line before anything
    runs: Prefect's client would print tracebacks after its retries, or wait forever on a silent server.
    Any HTTP answer (401 from a cloud workspace included) counts as there."""
    import urllib.error
    import urllib.request

    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return  # a temporary local server is started for the run
    try:
        urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout).close()
        return
    except urllib.error.HTTPError:
        return
    except urllib.error.URLError as e:
        why = (
            f"did not answer in {timeout:g} s"
            if isinstance(e.reason, TimeoutError)
            else f"cannot be reached ({getattr(e.reason, 'strerror', None) or e.reason})"
        )
    except (TimeoutError, OSError) as e:
        why = f"did not answer in {timeout:g} s" if isinstance(e, TimeoutError) else f"cannot be reached ({e})"
    raise ConfigError(
        f"the Prefect API at {url} {why}; start it (`uv run prefect server start`), fix "
        "PREFECT_API_URL, or unset it to run with a temporary local server"
    )


def _no_cache(no_cache, component: str) -> bool:
    return no_cache is True or (isinstance(no_cache, (list, tuple)) and component in no_cache)


@task(name="tfpipe-component", task_run_name="{component}", retries=0)
def component_task(
    config_path: str, overrides: dict, component: str, run_id: str, input_ids: dict, no_cache, purpose: str = PRODUCTION
) -> dict:
    """One component instance: resolve its input artifacts by id, run or reuse it, return its outputs' ids
    and its state."""
    cfg = load_config(config_path, overrides)
    store = open_store(cfg, run_id)
    run = store.start_run(cfg.name, run_id)
    inputs = {name: store.artifact(i) for name, i in input_ids.items()}
    outputs, state, compute = run_component(
        cfg, store, run, component, inputs, use_cache=not _no_cache(no_cache, component), purpose=purpose
    )
    result = {
        "state": state,
        "outputs": {name: a.id for name, a in outputs.items()},
        "uris": {name: a.uri for name, a in outputs.items()},
        "types": {name: a.type for name, a in outputs.items()},
        "compute_seconds": compute,
    }
    if state == "CACHED":
        # Shown as "Cached" in the UI: the outputs are an earlier execution's, reused.
        # Prefect takes a returned State as the task's (its result is `result`); its types cannot say so.
        return Completed(name="Cached", message="outputs reused from an earlier run", data=result)  # type: ignore[return-value]
    return result


SLOT_TAG = "tfpipe-{}"  # the Prefect tag of a slot a component holds (Component.holds)
_SLOTTED: dict[tuple[str, ...], Any] = {}  # tags -> component_task with them


def slot_tags(component) -> list[str]:
    """The Prefect tags of the slots a component declares it holds: `tfpipe-training` for the trainer. A tag
    concurrency limit on one (`prefect concurrency-limit create tfpipe-training 1`) is a slot the server
    hands out: the task run waits for it before it starts and frees it when it ends, whichever worker runs it."""
    return [SLOT_TAG.format(slot) for slot in component.holds]


def task_for(component):
    """component_task, tagged with the slots the component holds (its concurrency limits apply to it)."""
    tags = tuple(slot_tags(component))
    if not tags:
        return component_task
    if tags not in _SLOTTED:
        _SLOTTED[tags] = component_task.with_options(tags=set(tags))
    return _SLOTTED[tags]


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _flow_run_name() -> str:
    """`<pipeline>/<run id>`: runs of different pipelines look different in the UI, and show tfpipe's run id."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    try:
        name = load_config(params["config_path"], params.get("overrides") or {}).name
    except Exception:  # the flow body reports a bad config properly
        name = "tfpipe"
    return f"{name}/{params.get('run_id') or new_run_id()}"


def _run_id_from_name(pipeline: str) -> str:
    from prefect.runtime import flow_run

    name = flow_run.name or ""
    return name.split("/", 1)[1] if name.startswith(pipeline + "/") else new_run_id()


def _tag(pipeline: str) -> None:
    """Tags the flow run with the pipeline's name (filterable in the UI), however the run was started."""
    ui.add_tags(pipeline)


def _waves(cfg, chosen: list[str]) -> list[list[str]]:
    """The chosen instances in rounds: each round's instances depend only on earlier rounds' (or on what is
    already in MLMD), so a round runs concurrently."""
    done, left, waves = set(), list(chosen), []
    while left:
        ready = [i for i in left if all(up in done or up not in chosen for up, _ in cfg.nodes[i].wiring.values())]
        waves.append(ready)
        done.update(ready)
        left = [i for i in left if i not in ready]
    return waves


@flow(name="tfpipe", flow_run_name=_flow_run_name, log_prints=True)
def pipeline_flow(
    config_path: str,
    overrides: dict | None = None,
    no_cache=False,
    run_id: str | None = None,
    components: list | None = None,
    inputs: dict | None = None,
    purpose: str = PRODUCTION,
    run_name: str | None = None,
) -> dict:
    """Runs the pipeline's component instances (all by default), each after its upstreams. The flow run is
    named `<pipeline>/<run id>`; `run_name` is ignored (deployments made before that still pass it).

    An instance's inputs are its upstreams' outputs in this run, else the upstream's latest LIVE outputs
    in MLMD; `inputs` ({input name: artifact id or URI}, for the first chosen instance) overrides them.
    """
    overrides = overrides or {}
    cfg = load_config(config_path, overrides)  # validated once, before anything runs
    for c in components or []:
        cfg.node(c)  # an unknown instance: one line, before anything is recorded
    run_id = run_id or _run_id_from_name(cfg.name)
    _tag(cfg.name)
    store = open_store(cfg, run_id)
    try:
        # Between steps (each step says what it does itself): the flow run's own bookkeeping.
        with doing(log, f"{cfg.name}: flow run {cfg.name}/{run_id}"):
            return _run_graph(cfg, store, config_path, overrides, no_cache, run_id, components, inputs, purpose)
    finally:
        _OPEN.pop((cfg.metadata, run_id), None)


def _run_graph(cfg, store, config_path, overrides, no_cache, run_id, components, inputs, purpose) -> dict:
    chosen = [cfg.node(c).id for c in components] if components else list(cfg.nodes)
    chosen = [i for i in cfg.nodes if i in chosen]  # each after its upstreams
    if inputs:
        inputs = check_inputs(store, cfg, (components or chosen)[0], inputs)  # before the run is recorded
    store.start_run(cfg.name, run_id)
    produced: dict[str, dict[str, int]] = {}  # instance -> {output name: artifact id}
    results: dict[str, dict[str, Any]] = {}  # instance -> its task's result
    states: dict[str, State[Any]] = {}  # instance -> its task's final state
    for wave in _waves(cfg, chosen):
        calls = {}
        for component in wave:
            node = cfg.nodes[component]
            input_ids = {}
            for name, (upstream, output) in node.wiring.items():
                source = produced.get(upstream)
                if source is None:
                    source = {n: a.id for n, a in store.latest_live(cfg.name, upstream).items()}
                if output in source:
                    input_ids[name] = source[output]
            if component == (components or [None])[0]:
                input_ids.update(inputs or {})
            upstream_states = [states[u] for u, _ in node.wiring.values() if u in states]
            calls[component] = (input_ids, upstream_states)
        started = time.perf_counter()
        args = (config_path, overrides)
        if len(wave) == 1:
            [(component, (input_ids, after))] = calls.items()
            # A task that reports itself Cached hands back its State: .result() gives the same dict either way.
            finished = {
                component: task_for(cfg.nodes[component].component)(
                    *args, component, run_id, input_ids, no_cache, purpose, return_state=True, wait_for=after
                )
            }
        else:
            with stop_handlers():
                futures = {
                    # (task_for: component_task with the slots it holds; its arguments are component_task's)
                    c: task_for(cfg.nodes[c].component).submit(*args, c, run_id, ids, no_cache, purpose, wait_for=after)
                    for c, (ids, after) in calls.items()
                }
                finished = {c: f.wait() or f.state for c, f in futures.items()}
        failed = None
        for component, state in finished.items():
            states[component] = state
            try:
                result = state.result()
            except BaseException as e:
                failed = failed or e
                continue
            result["wall_seconds"] = time.perf_counter() - started
            produced[component] = result["outputs"]
            results[component] = result
        if failed is not None:
            if isinstance(failed, Blocked):  # a verdict stopped the run: show it where people look
                try:
                    ui.publish_data_validation(store, cfg, run_id)
                except Exception as e:  # the UI is not worth hiding why the run stopped
                    log.warning("could not publish the data validation artifact: %s", e)
            raise failed
    if results:
        ui.publish(store, cfg, run_id, results)
    serving = [getattr(n.params, "serving_base", None) for n in cfg.nodes.values()]
    return {
        "pipeline": cfg.name,
        "run_id": run_id,
        "metadata": redact(cfg.metadata),
        "root": cfg.root,
        "serving_base": next((s for s in serving if s), None),
        "components": results,
    }
