"""The Prefect flow: ingest -> transform -> trainer -> evaluator -> pusher, one task each."""

from __future__ import annotations

import logging
import os
import time
import uuid

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here: no telemetry
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tfpipe")  # step and training logs in the Prefect UI
# ... when there is a flow run; tfpipe's loggers also run outside one (the Estimator API, a server watcher).
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# Several `tfpipe run`s at once each start Prefect's temporary server, on a busy machine: give it time.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow, task  # noqa: E402
from prefect.states import Completed  # noqa: E402


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
        subprocess.Popen = lambda *a, **k: popen(*a, preexec_fn=own_session, **k)
        try:
            return original(self)
        finally:
            subprocess.Popen = popen

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
                log.error("Prefect's temporary server on %s exited (code %s) for the 4th time; not starting it "
                          "again", self.address, code)
                return
            log.warning("Prefect's temporary server on %s exited (code %s) during the run; starting it again",
                        self.address, code)
            process = self.server_process = spawn(self)

    def stop(self):
        self._tfpipe_stopping = True
        return original_stop(self)

    run_uvicorn._tfpipe = True
    server.SubprocessASGIServer._run_uvicorn_command = run_uvicorn
    server.SubprocessASGIServer.stop = stop


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

from components.errors import ConfigError  # noqa: E402
from pipeline.config import COMPONENTS, load_config
from pipeline.metadata import PASSWORD_ENV, PRODUCTION, MetadataStore, redact
from pipeline.steps import STEPS, run_step

log = logging.getLogger("tfpipe.pipeline")


def open_store(cfg) -> MetadataStore:
    """The config's MLMD store; a password kept in a Prefect Secret block is fetched into the process
    environment, where the store reads it, so it never sits in the config, a flow parameter or a log."""
    if cfg.metadata_secret and not os.environ.get(PASSWORD_ENV):
        from prefect.blocks.system import Secret

        try:
            os.environ[PASSWORD_ENV] = Secret.load(cfg.metadata_secret).get()
        except ValueError as e:
            from components.errors import ConfigError

            raise ConfigError(f"metadata_secret: no Prefect Secret block {cfg.metadata_secret!r} ({e}); create it "
                              f"with Secret(value=...).save({cfg.metadata_secret!r})") from None
    return MetadataStore(cfg.metadata, cfg.metadata_timeout, cfg.metadata_query_timeout)


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
        why = (f"did not answer in {timeout:g} s" if isinstance(e.reason, TimeoutError)
               else f"cannot be reached ({getattr(e.reason, 'strerror', None) or e.reason})")
    except (TimeoutError, OSError) as e:
        why = f"did not answer in {timeout:g} s" if isinstance(e, TimeoutError) else f"cannot be reached ({e})"
    raise ConfigError(f"the Prefect API at {url} {why}; start it (`uv run prefect server start`), fix "
                      "PREFECT_API_URL, or unset it to run with a temporary local server")


def _no_cache(no_cache, component: str) -> bool:
    return no_cache is True or (isinstance(no_cache, (list, tuple)) and component in no_cache)


@task(name="tfpipe-component", task_run_name="{component}", retries=0)
def component_task(config_path: str, overrides: dict, component: str, run_id: str, input_ids: dict,
                   no_cache, purpose: str = PRODUCTION) -> dict:
    """One component: resolve its input artifacts by id, run or reuse it, return its outputs' ids and its state."""
    cfg = load_config(config_path, overrides)
    store = open_store(cfg)
    run = store.start_run(cfg.name, run_id)
    inputs = {name: store.artifact(i) for name, i in input_ids.items()}
    outputs, state, compute = run_step(cfg, store, run, component, inputs, use_cache=not _no_cache(no_cache, component),
                                       purpose=purpose)
    result = {"state": state, "outputs": {name: a.id for name, a in outputs.items()},
              "uris": {name: a.uri for name, a in outputs.items()}, "compute_seconds": compute}
    if state == "CACHED":
        # Shown as "Cached" in the UI: the outputs are an earlier execution's, reused.
        return Completed(name="Cached", message="outputs reused from an earlier run", data=result)
    return result


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
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if flow_run.id and pipeline not in (flow_run.tags or []):
        try:
            with get_client(sync_client=True) as client:
                client.update_flow_run(flow_run.id, tags=sorted({*(flow_run.tags or []), pipeline}))
        except Exception as e:  # a tag is not worth failing a run for
            log.debug("could not tag the flow run: %s", e)


def check_inputs(store: MetadataStore, component: str, inputs: dict) -> dict:
    """{input name: artifact id or URI} given by a user -> {input name: artifact id}, or a ConfigError naming the
    component's input names, a missing artifact, or the type an artifact has against the one the input takes."""
    step = STEPS[component]
    out = {}
    for name, ref in inputs.items():
        if name not in step.inputs:
            raise ConfigError(f"{component} has no input {name!r}; its inputs are {', '.join(step.inputs)}")
        artifact = store.artifact(store.resolve(ref))
        upstream, output = step.inputs[name]
        wanted = STEPS[upstream].outputs[output]
        if artifact.type != wanted:
            raise ConfigError(f"--input {name}={ref}: artifact {artifact.id} has type {artifact.type}; "
                              f"{component}'s input {name} takes a {wanted} ({upstream}'s {output})")
        if artifact.state != "LIVE":
            raise ConfigError(f"--input {name}={ref}: artifact {artifact.id} is {artifact.state}, not LIVE")
        out[name] = artifact.id
    return out


@flow(name="tfpipe", flow_run_name=_flow_run_name, log_prints=True)
def pipeline_flow(config_path: str, overrides: dict | None = None, no_cache=False, run_id: str | None = None,
                  components: list | None = None, inputs: dict | None = None, purpose: str = PRODUCTION,
                  run_name: str | None = None) -> dict:
    """Runs the components in order (all by default). The flow run is named `<pipeline>/<run id>`; `run_name`
    is ignored (deployments made before that still pass it).

    A component's inputs are its upstream outputs in this run, else the upstream's latest LIVE
    outputs in MLMD; `inputs` ({input name: artifact id or URI}) overrides them.
    """
    overrides = overrides or {}
    cfg = load_config(config_path, overrides)  # validated once, before anything runs
    run_id = run_id or _run_id_from_name(cfg.name)
    _tag(cfg.name)
    store = open_store(cfg)
    if inputs:
        inputs = check_inputs(store, (components or COMPONENTS)[0], inputs)  # before the run is recorded
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
                input_ids[name] = inputs[name]
        started = time.perf_counter()
        # A task that reports itself Cached hands back its State: .result() gives the same dict either way.
        state = component_task(config_path, overrides, component, run_id, input_ids, no_cache, purpose,
                               return_state=True)
        result = state.result()
        result["wall_seconds"] = time.perf_counter() - started
        produced[component] = result["outputs"]
        results[component] = result
    if results:
        ui.publish(store, cfg.name, run_id, results)
    return {"pipeline": cfg.name, "run_id": run_id, "metadata": redact(cfg.metadata), "root": cfg.root,
            "serving_base": cfg.pusher.serving_base, "components": results}

