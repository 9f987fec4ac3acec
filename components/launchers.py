"""Launchers: run the tasks of a TF_CONFIG cluster (chief, workers, parameter servers, an evaluator) and wait
for them, restarting the cluster when a task dies.

A step that trains on a cluster (the trainer with `cluster:` in its section) describes the job (its tasks,
each task's command line, which tasks must finish for the job to be done) and hands it to a launcher:

- `local`: one process per task on this machine, each given its TF_CONFIG. A task listens on the host its
  place names (default 127.0.0.1) at a free port, and may run inside a network namespace (`ip netns exec`),
  so a cluster of several hosts can be tried on one machine. Each task's output lines reach the step's log
  prefixed with its role (`[worker:1] ...`).
- `kubernetes` (components.k8s): one Job and one headless Service per task, created through the Kubernetes
  API in a namespace, the tasks' pods sharing a volume (a PersistentVolumeClaim) that holds the model
  directory; each pod's log lines reach the step's log the same way. Not yet run on a real cluster.

Tasks share nothing but the folder the step owns (the model directory): no /tmp, no environment of the
step's beyond what the process inherits. When a task dies, every task is stopped and the cluster starts
again (MultiWorkerMirroredStrategy's collectives cannot take a new member mid-run; with parameter servers a
restarted ps has lost its variables): training resumes from the last checkpoint, up to `max_restarts`
times. A stop asked for from outside (SIGTERM, Ctrl-C: components.stop) reaches every task as SIGTERM, the
training tasks first (they write a checkpoint at the step they reached), then the servers; whatever still
runs a few seconds later is killed. That loop (start, wait, restart, stop) is `Launcher.run`, the same for
every launcher; each says only how it starts, polls and stops a task. Nothing here imports TensorFlow,
Prefect or ml_metadata.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from components import stop as stop_lib
from components.contract import Parameters
from components.errors import ClusterError, ConfigError, InputError, Stopped, TfpipeError

ROLES = ("chief", "worker", "ps", "evaluator")
# A task that meets an error its user must fix (a bad config, bad input) exits with this code after printing
# `tfpipe-task-error: <Type>: <message>` as its last line: a restart would meet it again, so there is none.
USER_ERROR_EXIT = 3
USER_ERROR_MARK = "tfpipe-task-error: "
_ERRORS: dict[str, type[TfpipeError]] = {"ConfigError": ConfigError, "InputError": InputError}
STOP_GRACE_S = 5.0  # how long training tasks get to checkpoint and exit after SIGTERM
SERVER_GRACE_S = 2.0  # ... and servers, after that


def _place(value):
    return {"host": value} if isinstance(value, str) else value


class TaskPlace(Parameters):
    """Where one task runs: the address the other tasks dial, and (local launcher) its network namespace."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)  # None: a free port, chosen at each start
    netns: str | None = None  # local launcher: run the task inside this network namespace (ip netns exec)


# Kubernetes object names: a DNS label (namespaces) or a DNS subdomain (claims, service accounts).
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$"
# How deploy/docker's image runs Python in the project's locked environment (its ENTRYPOINT's words).
IMAGE_PYTHON = ("uv", "run", "--locked", "--no-dev", "python")


class SharedVolume(Parameters):
    """The volume every pod mounts, holding the pipeline's root (the model directory the step owns, the
    transformed examples, the user's module): a ReadWriteMany PersistentVolumeClaim."""

    claim: str = Field(pattern=_DNS_SUBDOMAIN)  # the PersistentVolumeClaim's name
    # Where the pods mount it, and where the step's own process must see it too (the same files at the same
    # paths): the pipeline's root lies under it.
    mount_path: str = Field(pattern=r"^/")


class KubernetesConfig(Parameters):
    """`trainer.cluster.kubernetes`: where and how the kubernetes launcher runs the tasks' pods."""

    image: str = Field(min_length=1)  # holds tfpipe and the user's dependencies (deploy/docker/Dockerfile)
    volume: SharedVolume
    namespace: str = Field(default="default", pattern=_DNS_LABEL)
    # default: the namespace's `default` account
    service_account: str | None = Field(default=None, pattern=_DNS_SUBDOMAIN)
    python: list[str] = Field(default_factory=lambda: list(IMAGE_PYTHON), min_length=1)  # the image's Python
    # Each task container's resources, as Kubernetes writes them: {requests: {cpu: 2, memory: 4Gi}, limits: ...}
    resources: dict[Literal["requests", "limits"], dict[str, str | int | float]] = Field(default_factory=dict)
    # The pods' terminationGracePeriodSeconds: after SIGTERM a training task writes its checkpoint, then exits.
    grace_period_s: int = Field(default=30, ge=1)
    port: int = Field(default=2222, ge=1, le=65535)  # each task's gRPC port, behind its Service's name
    # The kubeconfig context to use; default: inside a pod its service account, else the current context.
    context: str | None = None


class ClusterConfig(Parameters):
    """`trainer.cluster`: the cluster's shape and how it is launched.

    With `ps` > 0: ParameterServerStrategy, driven by a chief, with `workers` workers and `ps` parameter servers.
    With `ps: 0`: MultiWorkerMirroredStrategy over `workers` workers (worker 0 is the chief).
    `evaluator: true` adds a task that evaluates each new checkpoint and exports the final model."""

    workers: int = Field(ge=1, le=64)
    ps: int = Field(default=0, ge=0, le=64)
    evaluator: bool = False
    max_restarts: int = Field(default=2, ge=0)  # cluster restarts after a task dies, before the step fails
    launcher: Literal["local", "kubernetes"] = "local"
    host: str = "127.0.0.1"  # every task's address unless `hosts` names one
    # Per role, by task index: an address ("10.0.0.2") or {host, port, netns}; tasks not listed use `host`.
    hosts: dict[Literal["chief", "worker", "ps", "evaluator"], list[Annotated[TaskPlace, BeforeValidator(_place)]]] = (
        Field(default_factory=dict)
    )
    kubernetes: KubernetesConfig | None = None  # launcher: kubernetes: its image, namespace, shared volume...

    @model_validator(mode="after")
    def _launcher_settings(self):
        if self.launcher == "kubernetes":
            if self.kubernetes is None:
                raise ValueError(
                    "launcher kubernetes needs a `kubernetes:` section with at least `image` and `volume: {claim, "
                    "mount_path}` (README: Distributed training)"
                )
            given = sorted({"host", "hosts"} & self.model_fields_set)
            if given:
                raise ValueError(
                    f"{' and '.join(given)}: not read by launcher kubernetes (each task's address is its Service's "
                    "name); leave them out"
                )
        elif self.kubernetes is not None:
            raise ValueError(
                "a `kubernetes:` section is read only with launcher: kubernetes; add that, or leave it out"
            )
        return self

    @model_validator(mode="after")
    def _places_fit(self):
        counts = self.counts()
        for role, places in self.hosts.items():
            if len(places) > counts.get(role, 0):
                raise ValueError(
                    f"hosts.{role} lists {len(places)} place(s), but the cluster has {counts.get(role, 0)} {role} "
                    f"task(s) ({self.shape()})"
                )
        return self

    def counts(self) -> dict[str, int]:
        """Tasks per role, in TF_CONFIG's terms."""
        out = {"chief": 1, "worker": self.workers, "ps": self.ps} if self.ps else {"worker": self.workers}
        if self.evaluator:
            out["evaluator"] = 1
        return out

    def strategy(self) -> str:
        return "ParameterServerStrategy" if self.ps else "MultiWorkerMirroredStrategy"

    def shape(self) -> str:
        """`chief:1 worker:2 ps:1 evaluator:1`."""
        return " ".join(f"{role}:{n}" for role, n in self.counts().items())


@dataclass(frozen=True)
class Task:
    role: str
    index: int
    host: str = "127.0.0.1"
    port: int | None = None
    netns: str | None = None

    @property
    def name(self) -> str:
        return f"{self.role}:{self.index}"


def tasks_of(cluster: ClusterConfig) -> list[Task]:
    """The cluster's tasks, chief first, each at its place."""
    out = []
    for role, n in cluster.counts().items():
        places = cluster.hosts.get(role, [])  # type: ignore[call-overload]
        for i in range(n):
            place = places[i] if i < len(places) else TaskPlace(host=cluster.host)
            out.append(Task(role, i, place.host, place.port, place.netns))
    return out


def tf_config(tasks: list[Task], task: Task) -> str:
    """TF_CONFIG for `task` in a cluster of `tasks` (each with its port chosen)."""
    cluster: dict[str, list[str]] = {}
    for t in tasks:
        host = f"[{t.host}]" if ":" in t.host else t.host
        cluster.setdefault(t.role, []).append(f"{host}:{t.port}")
    return json.dumps({"cluster": cluster, "task": {"type": task.role, "index": task.index}})


def with_ports(tasks: list[Task]) -> list[Task]:
    """The tasks, each without a fixed port given a free one (told apart from the others')."""
    held, out = [], []
    try:
        for t in tasks:
            if t.port is not None:
                out.append(t)
                continue
            s = socket.socket(socket.AF_INET6 if ":" in t.host else socket.AF_INET)
            held.append(s)
            try:
                s.bind((t.host, 0))
            except OSError:  # an address of another host or network namespace: any port free here
                s.bind(("", 0))
            out.append(Task(t.role, t.index, t.host, s.getsockname()[1], t.netns))
    finally:
        for s in held:
            s.close()
    return out


@dataclass
class Job:
    """What a launcher runs. `command(task)`: the task's argv. `finishers`: the tasks that must exit 0 for the
    job to be done (the others serve until then and are stopped). `workdir`: the one folder the tasks share.
    `resume_note()`: where a restart resumes from ("the checkpoint at step 200"), for the log and errors."""

    what: str  # "trainer": names the step in log lines and errors
    tasks: list[Task]
    command: Callable[[Task], list[str]]
    finishers: Callable[[Task], bool]
    workdir: str
    log: logging.Logger
    resume_note: Callable[[], str] = lambda: "the last checkpoint"
    max_restarts: int = 2
    env: dict[str, str] = field(default_factory=dict)  # added to each task's environment
    # Paths the tasks read besides `workdir` (their inputs, the user's module): a launcher whose tasks run on
    # other machines checks that they can see them.
    reads: list[str] = field(default_factory=list)
    # Names the step across its runs (what a launcher creates outside this process is named after it, so a
    # re-run finds what a killed run left); default: `workdir`.
    key: str = ""


@dataclass
class Outcome:
    restarts: int
    tasks: list[Task]  # as last started (ports chosen)


class Started:
    """One started task, as the launcher's loop sees it: whether and how it ended, and its log lines."""

    def __init__(self, task: Task):
        self.task = task
        self.last_error = ""  # the text after USER_ERROR_MARK, once the task printed it

    def code(self) -> int | None:
        """None while it runs; else its exit code (negative: killed by that signal)."""
        raise NotImplementedError

    def why(self) -> str:
        """How it ended, for the log and errors: "killed by SIGKILL", "exited with code 1"."""
        code = self.code()
        return "still runs" if code is None else describe_exit(code)

    def relay(self, lines, log: logging.Logger) -> None:
        """Copies the task's output lines into the step's log with its role as prefix, noting a user error."""
        for raw in lines:
            line = raw.rstrip("\n")
            if line.startswith(USER_ERROR_MARK):
                self.last_error = line[len(USER_ERROR_MARK) :]
            if line.strip():
                log.info("[%s] %s", self.task.name, line)

    def drain(self) -> None:
        """Waits (briefly) until its last lines are in the log: a failed task's error comes before the verdict."""


class Launcher:
    """Runs a Job's cluster until its finishers are done (see the module docstring): `run` is the loop every
    launcher shares; a launcher says how it readies (`prepare`), places, starts, polls and stops tasks."""

    name = "launcher"
    poll_s = 0.1  # between two looks at the tasks

    def run(self, job: Job) -> Outcome:
        self.prepare(job)
        restarts = 0
        while True:
            tasks = self.place(job)
            running: list[Started] = []
            try:
                for t in tasks:  # inside the try: a task that cannot start stops those started before it
                    running.append(self.start(job, tasks, t))
                job.log.info(
                    "%s: cluster started (%s)%s",
                    job.what,
                    ", ".join(self.where(r) for r in running),
                    f", restart {restarts} of {job.max_restarts}" if restarts else "",
                )
                failed = self._wait(job, running)
                if failed is None:
                    return Outcome(restarts, tasks)
            finally:
                self.stop(running)
            why = f"{failed.task.name} {failed.why()}"
            if failed.code() == USER_ERROR_EXIT and failed.last_error:
                kind, _, message = failed.last_error.partition(": ")
                raise _ERRORS.get(kind, ClusterError)(message or failed.last_error)
            if restarts >= job.max_restarts:
                raise ClusterError(
                    f"{job.what}: task {why} and the cluster has no restarts left (max_restarts: {job.max_restarts}); "
                    f"{job.resume_note()} is kept: run again to resume, or raise max_restarts"
                )
            restarts += 1
            job.log.warning(
                "%s: task %s; restarting the cluster (restart %d of %d): training resumes from %s",
                job.what,
                why,
                restarts,
                job.max_restarts,
                job.resume_note(),
            )

    def _wait(self, job: Job, running: list[Started]) -> Started | None:
        """Until every finisher exited 0 (None), a task failed (that task), or a stop was asked for (Stopped)."""
        while True:
            why = stop_lib.requested()
            if why:
                self.stop(running, first=job.finishers)
                raise Stopped(
                    f"training stopped by {why}: the cluster's {len(running)} tasks are stopped; "
                    f"{job.resume_note()} is where it resumes"
                )
            self.poll(job, running)
            for r in running:
                code = r.code()
                if code is None:
                    continue
                if code != 0 or not job.finishers(r.task):  # a server never ends on its own
                    r.drain()
                    return r
            if all(r.code() is not None for r in running if job.finishers(r.task)):
                return None
            time.sleep(self.poll_s)

    def prepare(self, job: Job) -> None:
        """Before the first start: fails early (a ConfigError) on what cannot work."""

    def place(self, job: Job) -> list[Task]:
        """The tasks with the addresses they get at this start."""
        return job.tasks

    def start(self, job: Job, tasks: list[Task], task: Task) -> Started:
        raise NotImplementedError

    def where(self, started: Started) -> str:
        """The task and where it runs, for the log."""
        return started.task.name

    def poll(self, job: Job, running: list[Started]) -> None:
        """Brings what `Started.code` answers up to date (one look at every task)."""

    def stop(self, running: list[Started], first: Callable[[Task], bool] | None = None) -> None:
        """Stops every task still running, those `first` picks (the training tasks) before the servers they
        need to finish a step and checkpoint; a second call finds nothing left to stop."""
        raise NotImplementedError


def stop_order(live: list, first: Callable[[Task], bool] | None) -> list[list]:
    """The tasks to stop in groups, one after the other: those `first` picks (the training tasks, which
    checkpoint on SIGTERM), then the servers they need until then."""
    if first is None:
        return [live]
    return [[r for r in live if first(r.task)], [r for r in live if not first(r.task)]]


def launcher(cluster: ClusterConfig) -> Launcher:
    """The launcher `cluster.launcher` names, with its settings (nothing is contacted yet)."""
    if cluster.launcher == "kubernetes":
        from components import k8s  # the Kubernetes client loads only where it is used

        assert cluster.kubernetes is not None  # ClusterConfig requires it with this launcher
        return k8s.KubernetesLauncher(cluster.kubernetes)
    return LocalLauncher()


def check_place(task: Task) -> None:
    """Fails early (a ConfigError) when the local launcher cannot run `task` where its place says."""
    if task.netns is not None and not Path("/run/netns", task.netns).exists():
        raise ConfigError(
            f"{task.name}: network namespace {task.netns!r} does not exist (`ip netns list` shows those there "
            f"are; `ip netns add {task.netns}` makes one)"
        )


def describe_exit(code: int) -> str:
    """How a task that exited with `code` ended: "killed by SIGKILL", "exited with code 1"."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class _Running(Started):
    """One started process and the thread that copies its output lines into the log."""

    def __init__(self, task: Task, proc: subprocess.Popen, job: Job):
        super().__init__(task)
        self.proc = proc
        self.reader = threading.Thread(
            target=self.relay, args=(proc.stdout, job.log), name=f"tfpipe-task-{task.name}", daemon=True
        )
        self.reader.start()

    def code(self) -> int | None:
        return self.proc.poll()

    def drain(self) -> None:
        self.reader.join(timeout=5)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)  # the task's own process group: what it started goes too

    def done(self) -> bool:
        return self.proc.poll() is not None


class LocalLauncher(Launcher):
    """One process per task on this machine (see the module docstring)."""

    name = "local"

    def prepare(self, job: Job) -> None:
        for task in job.tasks:
            check_place(task)

    def place(self, job: Job) -> list[Task]:
        return with_ports(job.tasks)

    def where(self, started: Started) -> str:
        assert isinstance(started, _Running)
        return f"{started.task.name} at {started.task.host}:{started.task.port} pid {started.proc.pid}"

    def start(self, job: Job, tasks: list[Task], task: Task) -> _Running:
        argv = job.command(task)
        if task.netns:
            argv = ["ip", "netns", "exec", task.netns, *argv]
        env = dict(os.environ, **job.env, TF_CONFIG=tf_config(tasks, task), PYTHONUNBUFFERED="1")
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,  # a Ctrl-C to the terminal reaches tfpipe, which stops the tasks in order
            )
        except OSError as e:  # no such program (`ip` for a network namespace), not executable
            raise ConfigError(f"{job.what}: task {task.name} cannot start: {argv[0]}: {e.strerror}") from None
        return _Running(task, proc, job)

    def stop(self, running: list[Started], first: Callable[[Task], bool] | None = None) -> None:
        """SIGTERM to every task still running (those `first` picks first, with STOP_GRACE_S, then the rest with
        SERVER_GRACE_S), then SIGKILL to what is left."""
        procs = [r for r in running if isinstance(r, _Running)]
        live = [r for r in procs if not r.done()]
        if live:
            for group, grace in zip(stop_order(live, first), (STOP_GRACE_S, SERVER_GRACE_S)):
                for r in group:
                    r.signal(signal.SIGTERM)
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and not all(r.done() for r in group):
                    time.sleep(0.05)
            for r in procs:
                if not r.done():
                    r.signal(signal.SIGKILL)
        for r in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.proc.wait(timeout=10)
            r.reader.join(timeout=2)
            if r.proc.stdout is not None:
                r.proc.stdout.close()


def die_with_parent() -> None:
    """In a task process: be killed when the process that launched it dies (Linux), so a tfpipe killed with
    SIGKILL leaves no cluster behind."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
