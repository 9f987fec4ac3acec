"""Kubernetes: the manifests of a TF_CONFIG cluster (one Job and one headless Service per task, every pod
mounting one shared volume), and the `kubernetes` launcher that creates them through the Kubernetes API
and follows them.

deploy/k8s/render.py renders the same manifests for a cluster run by hand (`kubectl apply`): the rule for
names, labels, TF_CONFIG, ports and the volume lives here once. The two differ in who restarts a pod: by
hand, its Job does (`restartPolicy: OnFailure`); under the launcher nothing does (`Never`, `backoffLimit:
0`), so a dead task fails its Job and the launcher restarts the whole cluster (components.launchers).

The launcher has been tested against the client's own models and a stand-in API server (tests/components/
test_kubernetes_launcher.py), never against a real cluster.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from components.errors import ClusterError, ConfigError, TfpipeError
from components.launchers import (
    Job,
    KubernetesConfig,
    Launcher,
    SharedVolume,
    Started,
    Task,
    describe_exit,
    stop_order,
    tf_config,
)

PORT = 2222
VOLUME = "shared"  # the shared volume's name inside each pod
CONTAINER = "tensorflow"
MODEL_DIR = "tfpipe/model-dir"  # a launcher's Job's annotation: the folder of the run that made it
# A container waiting for one of these will not start by waiting longer: the user's to fix, not restarted.
_CANNOT_START = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
}


# ---- manifests -----------------------------------------------------------------------------------------------


def object_name(prefix: str, task: Task) -> str:
    """The task's Job and Service name, and so its address in TF_CONFIG."""
    return f"{prefix}-{task.role}-{task.index}"


def labels(prefix: str, task: Task) -> dict[str, str]:
    return {"app": prefix, "tf-role": task.role, "tf-index": str(task.index)}


def placed(prefix: str, tasks: list[Task], port: int = PORT) -> list[Task]:
    """The tasks at their Services' names: the addresses TF_CONFIG gives."""
    return [Task(t.role, t.index, object_name(prefix, t), port) for t in tasks]


def claim_manifest(name: str, storage: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": storage}}},
    }


def service_manifest(prefix: str, task: Task) -> dict:
    """A headless Service: DNS gives the task's name the address of its pod."""
    selector = labels(prefix, task)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": object_name(prefix, task), "labels": selector},
        "spec": {"clusterIP": "None", "selector": selector, "ports": [{"name": "grpc", "port": task.port}]},
    }


def job_manifest(
    prefix: str,
    tasks: list[Task],
    task: Task,
    *,
    image: str,
    command: list[str],
    volume: SharedVolume,
    resources: dict | None = None,
    env: dict[str, str] | None = None,
    service_account: str | None = None,
    grace_period_s: int | None = None,
    restart_policy: str = "Never",
    backoff_limit: int = 0,
    annotations: dict[str, str] | None = None,
) -> dict:
    """The Job that runs `task` (of `tasks`, as `placed` gives them): one pod told its role by TF_CONFIG."""
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "command": list(command),
        "env": [{"name": "TF_CONFIG", "value": tf_config(tasks, task)}]
        + [{"name": k, "value": v} for k, v in (env or {}).items()],
        "ports": [{"containerPort": task.port, "name": "grpc"}],
        "volumeMounts": [{"name": VOLUME, "mountPath": volume.mount_path}],
    }
    if resources:
        container["resources"] = {kind: {k: str(v) for k, v in amounts.items()} for kind, amounts in resources.items()}
    pod: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "containers": [container],
        "volumes": [{"name": VOLUME, "persistentVolumeClaim": {"claimName": volume.claim}}],
    }
    if service_account:
        pod["serviceAccountName"] = service_account
    if grace_period_s is not None:
        pod["terminationGracePeriodSeconds"] = grace_period_s
    metadata: dict[str, Any] = {"name": object_name(prefix, task), "labels": labels(prefix, task)}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"metadata": {"labels": labels(prefix, task)}, "spec": pod},
        },
    }


def run_name(job: Job) -> str:
    """The name prefix of a step's objects: the step and a hash of its key (its folder of runs), so two
    steps in one namespace never meet and a re-run of a step finds what a killed run of it left."""
    what = re.sub(r"[^a-z0-9]+", "-", job.what.lower()).strip("-")[:24] or "task"
    digest = hashlib.sha256(os.path.abspath(job.key or job.workdir).encode()).hexdigest()[:8]
    return f"tfpipe-{what}-{digest}"


def check_on_volume(volume: SharedVolume, paths: list[tuple[str, str]], what: str) -> None:
    """A ConfigError naming the first path the pods could not see: one not under the shared volume."""
    mount = os.path.normpath(volume.mount_path)
    for label, path in paths:
        full = os.path.normpath(os.path.abspath(path))
        if os.path.commonpath([full, mount]) != mount:
            raise ConfigError(
                f"{what + ': ' if what else ''}{label} {full} is not on the shared volume (trainer.cluster.kubernetes.volume: claim "
                f"{volume.claim} mounted at {mount}), so the cluster's pods cannot see it: set the pipeline's "
                f"`root:` and the trainer's module under {mount}, where tfpipe sees the same volume as the pods"
            )


# ---- the launcher --------------------------------------------------------------------------------------------


def _container_code(exit_code: int) -> int:
    """A container's exit code as launchers.Started.code gives it: 128 + N (a signal, as shells and container
    runtimes report it) is -N."""
    return -(exit_code - 128) if 128 < exit_code < 160 else exit_code


class _Pod(Started):
    """One task's Job (and Service) as created, what the last poll saw of it, and the thread that copies its
    pod's log lines into the step's log once the pod runs."""

    def __init__(self, task: Task, name: str):
        super().__init__(task)
        self.name = name
        self.pod: str | None = None  # its pod, once the poll saw it running (or ended)
        self.ready = threading.Event()  # set then, or when it is stopped
        self.ended: tuple[int, str] | None = None  # (code, why)
        self.deleted = False
        self.thread: threading.Thread | None = None

    def code(self) -> int | None:
        return None if self.ended is None else self.ended[0]

    def why(self) -> str:
        return self.ended[1] if self.ended else "still runs"

    def drain(self) -> None:
        if self.thread is not None:
            self.thread.join(timeout=5)


def _message(e: Exception) -> str:
    """One line from the API's answer: its Status message when there is one."""
    body = getattr(e, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)
    return str(getattr(e, "reason", None) or e).splitlines()[0]


class KubernetesLauncher(Launcher):
    """A Job and a headless Service per task in `settings.namespace` (see the module docstring)."""

    name = "kubernetes"
    poll_s = 2.0  # between two looks at the Jobs and pods
    gone_wait_s = 60.0  # how long deleted Jobs may take to go, beyond their pods' grace period
    api_patience_s = 60.0  # how long the API server may fail to answer a poll before the step fails

    def __init__(self, settings: KubernetesConfig, api_client: Any = None):
        self.settings = settings
        self._client = api_client  # a kubernetes.client.ApiClient; default: from the kubeconfig or the pod
        self.prefix = ""
        self._failing_since: float | None = None
        self._noted: set[str] = set()  # pods whose wait was already said

    # -- talking to the API server

    def _apis(self):
        from kubernetes import client, config

        if self._client is None:
            configuration = client.Configuration()
            try:
                if self.settings.context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                    config.load_incluster_config(client_configuration=configuration)
                else:
                    config.load_kube_config(  # KUBECONFIG as it is now (the client reads it once, at its import)
                        config_file=os.environ.get("KUBECONFIG") or None,
                        context=self.settings.context,
                        client_configuration=configuration,
                    )
            except (config.ConfigException, OSError, ValueError) as e:
                raise ConfigError(
                    f"launcher kubernetes: no cluster to talk to ({str(e).splitlines()[0]}): run tfpipe in a pod "
                    "(its service account), or point KUBECONFIG at a kubeconfig (trainer.cluster.kubernetes.context "
                    "picks its context)"
                ) from None
            self._client = client.ApiClient(configuration)
        return client.BatchV1Api(self._client), client.CoreV1Api(self._client)

    def _call(self, doing: str, fn: Callable, *args, missing_ok: bool = False, **kwargs):
        """`fn(*args, **kwargs)`, its failure one line (`_error`); None for a 404 when `missing_ok`."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except (ApiException, HTTPError, OSError) as e:
            if missing_ok and getattr(e, "status", None) == 404:
                return None
            raise self._error(doing, e) from None

    def _error(self, doing: str, e: Exception) -> TfpipeError:
        """What the API's failure means in one line: a ConfigError where the user must act (no rights, no
        such namespace), a ClusterError otherwise."""
        ns = self.settings.namespace
        status = getattr(e, "status", None)
        if status is None:  # no answer at all
            return ClusterError(
                f"launcher kubernetes: {doing}: the API server at {self._client.configuration.host} does not "
                f"answer ({str(e).splitlines()[0]})"
            )
        said = f"launcher kubernetes: {doing} in namespace {ns}: {status} {getattr(e, 'reason', '')}: {_message(e)}"
        if status in (401, 403):
            return ConfigError(
                f"{said} (the account tfpipe uses needs to create, list and delete Jobs and Services and read "
                "pods and their logs there)"
            )
        if status == 409:
            return ClusterError(
                f"{said} (a run of this step still going, or its objects not yet gone: `kubectl delete "
                f"job,service -l app={self.prefix} -n {ns}` removes them)"
            )
        if status == 404:
            return ConfigError(f"{said} (does namespace {ns} exist?)")
        return ClusterError(said)

    # -- Launcher

    def prepare(self, job: Job) -> None:
        volume = self.settings.volume
        check_on_volume(
            volume, [("the model directory", job.workdir), *(("the input", p) for p in job.reads)], job.what
        )
        if not os.path.ismount(volume.mount_path):
            raise ConfigError(
                f"{job.what}: {volume.mount_path} is not a mount point here, so the model directory would be "
                f"written where the pods cannot see it: run tfpipe where the claim {volume.claim} is mounted at "
                f"{volume.mount_path} too (a pod mounting it, or a host mounting the storage behind it)"
            )
        self.prefix = run_name(job)
        batch, core = self._apis()
        ns, selector = self.settings.namespace, f"app={self.prefix}"
        jobs = self._call("listing Jobs", batch.list_namespaced_job, ns, label_selector=selector).items
        services = self._call("listing Services", core.list_namespaced_service, ns, label_selector=selector).items
        for found in jobs:  # another run's, alive while its folder is there (a re-run adopts a killed run's)
            owner = (found.metadata.annotations or {}).get(MODEL_DIR)
            if owner and owner != os.path.abspath(job.workdir) and os.path.exists(owner):
                raise ClusterError(
                    f"{job.what}: another run of this step is training in namespace {ns} (Job "
                    f"{found.metadata.name}, model directory {owner}), or a killed run left it there: wait until "
                    f"it ends, or delete it (`kubectl delete job,service -l app={self.prefix} -n {ns}`)"
                )
        if jobs or services:  # a tfpipe that was killed leaves its Jobs running: they would clash and share files
            job.log.warning(
                "%s: deleting %d Job(s) and %d Service(s) an earlier run of this step left in namespace %s",
                job.what,
                len(jobs),
                len(services),
                ns,
            )
            self._delete_jobs(job.log, [j.metadata.name for j in jobs])
            self._delete_services(job.log, [s.metadata.name for s in services])

    def place(self, job: Job) -> list[Task]:
        return placed(self.prefix, job.tasks, self.settings.port)

    def where(self, started: Started) -> str:
        assert isinstance(started, _Pod)
        return f"{started.task.name} job {started.name}"

    def start(self, job: Job, tasks: list[Task], task: Task) -> _Pod:
        from kubernetes import client

        s = self.settings
        batch, core = self._apis()
        name = object_name(self.prefix, task)
        body = self.job_manifest(job, tasks, task)
        self._call(
            f"creating Service {name}",
            core.create_namespaced_service,
            s.namespace,
            client.V1Service.from_dict(service_manifest(self.prefix, task)),
        )
        try:
            self._call(f"creating Job {name}", batch.create_namespaced_job, s.namespace, client.V1Job.from_dict(body))
        except Exception:
            self._delete_services(job.log, [name])
            raise
        started = _Pod(task, name)
        started.thread = threading.Thread(
            target=self._follow, args=(started, job.log), name=f"tfpipe-pod-{task.name}", daemon=True
        )
        started.thread.start()
        return started

    def job_manifest(self, job: Job, tasks: list[Task], task: Task) -> dict:
        """The Job manifest for `task` under this launcher: nothing restarts its pod but the launcher."""
        s = self.settings
        return job_manifest(
            self.prefix,
            tasks,
            task,
            image=s.image,
            command=job.command(task),
            volume=s.volume,
            resources=s.resources,
            env={**job.env, "PYTHONUNBUFFERED": "1"},  # lines reach the log as they are printed
            service_account=s.service_account,
            grace_period_s=s.grace_period_s,
            annotations={MODEL_DIR: os.path.abspath(job.workdir)},
        )

    def _follow(self, started: _Pod, log: logging.Logger) -> None:
        """Copies the pod's log into the step's log, from when the poll saw it run until its container ends."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        started.ready.wait()
        if started.pod is None:  # stopped before its pod ran
            return
        _, core = self._apis()
        try:
            lines = watch.Watch().stream(
                core.read_namespaced_pod_log, started.pod, self.settings.namespace, container=CONTAINER, follow=True
            )
            started.relay(lines, log)
        except (ApiException, HTTPError, OSError) as e:  # the pod went first; its Job still gives the verdict
            log.debug("%s: the log of pod %s ended: %s", started.task.name, started.pod, _message(e))

    def poll(self, job: Job, running: list[Started]) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        batch, core = self._apis()
        ns, selector = self.settings.namespace, f"app={self.prefix}"
        try:  # Jobs first: a Job that failed has its pod's ended state in the list that follows
            jobs = {j.metadata.name: j for j in batch.list_namespaced_job(ns, label_selector=selector).items}
            pods = core.list_namespaced_pod(ns, label_selector=selector).items
        except (ApiException, HTTPError, OSError) as e:
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
                job.log.warning(
                    "%s: the Kubernetes API server did not answer (%s); trying again", job.what, _message(e)
                )
            if now - self._failing_since > self.api_patience_s:
                raise self._error("following the cluster", e) from None
            return
        self._failing_since = None
        newest: dict[str, Any] = {}
        for pod in sorted(pods, key=lambda p: str(p.metadata.creation_timestamp or "")):  # the newest last
            pod_labels = pod.metadata.labels or {}
            newest[f"{pod_labels.get('tf-role')}:{pod_labels.get('tf-index')}"] = pod
        for r in running:
            assert isinstance(r, _Pod)
            if r.ended is not None:
                continue
            pod = newest.get(r.task.name)
            if pod is not None:
                self._look_at_pod(job, r, pod)
            found = jobs.get(r.name)
            if found is None:
                r.ended = (1, f"is gone: its Job {r.name} was deleted outside tfpipe")
            else:
                r.ended = self._ended(found, pod)
            if r.ended is not None and r.pod is None:
                r.ready.set()  # ended before it was seen running: no log to follow

    def _look_at_pod(self, job: Job, r: _Pod, pod: Any) -> None:
        status = pod.status
        phase = status.phase if status else None
        if phase in ("Running", "Succeeded", "Failed") and r.pod is None:
            r.pod = pod.metadata.name
            r.ready.set()
        if phase != "Pending":
            return
        for c in status.container_statuses or []:
            waiting = c.state.waiting if c.state else None
            if waiting is not None and waiting.reason in _CANNOT_START:
                raise ConfigError(
                    f"{job.what}: task {r.task.name}: pod {pod.metadata.name} cannot start its container: "
                    f"{waiting.reason}: {waiting.message or ''} (trainer.cluster.kubernetes.image: "
                    f"{self.settings.image})"
                )
        for cond in status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False" and pod.metadata.name not in self._noted:
                self._noted.add(pod.metadata.name)
                job.log.warning(
                    "%s: task %s waits for a node: %s: %s", job.what, r.task.name, cond.reason, cond.message
                )

    @staticmethod
    def _ended(found: Any, pod: Any) -> tuple[int, str] | None:
        """(code, why) once the Job is done or failed, from its pod's container where it is known."""
        status = found.status
        conditions = {c.type: c for c in (status.conditions or []) if c.status == "True"} if status else {}
        if "Complete" in conditions or (status and status.succeeded):
            return (0, "exited with code 0")
        if "Failed" not in conditions and not (status and status.failed):
            return None
        for c in (pod.status.container_statuses or []) if pod is not None and pod.status else []:
            ended = c.state.terminated if c.state else None
            if ended is not None:
                code = _container_code(ended.exit_code)
                why = describe_exit(code)
                return (code, f"{why} (OOMKilled: over its memory limit)" if ended.reason == "OOMKilled" else why)
        failed = conditions.get("Failed")
        said = f"{failed.reason}: {failed.message}" if failed is not None else "its pod failed"
        return (1, f"failed ({said})")

    def stop(self, running: list[Started], first: Callable[[Task], bool] | None = None) -> None:
        """Deletes the tasks' Jobs (their pods get SIGTERM and their grace period: training tasks write a
        checkpoint) and Services, those `first` picks before the others, waiting until each group is gone."""
        pods = [r for r in running if isinstance(r, _Pod)]
        live = [r for r in pods if not r.deleted]
        log = logging.getLogger("tfpipe.launchers")
        for group in stop_order(live, first):
            for r in group:
                if r.ended is not None:
                    r.drain()  # its log is whole before its pod goes with it
                r.deleted = True
            self._delete_jobs(log, [r.name for r in group])
            self._delete_services(log, [r.name for r in group])
        for r in pods:
            r.ready.set()
            if r.thread is not None:
                r.thread.join(timeout=2)

    def _delete_jobs(self, log: logging.Logger, names: list[str]) -> None:
        """Deletes the Jobs in the foreground (a Job goes once its pods are gone) and waits for that, so a
        restart can make them anew; a failure is a warning (the caller may be on its way out with another)."""
        from kubernetes import client

        if not names:
            return
        batch, _ = self._apis()
        ns = self.settings.namespace
        options = client.V1DeleteOptions(propagation_policy="Foreground")
        for name in names:
            try:
                self._call(f"deleting Job {name}", batch.delete_namespaced_job, name, ns, body=options, missing_ok=True)
            except (ClusterError, ConfigError) as e:
                log.warning("%s", e)
        deadline = time.monotonic() + self.settings.grace_period_s + self.gone_wait_s
        left = set(names)
        while left and time.monotonic() < deadline:
            for name in sorted(left):
                try:
                    if self._call(f"reading Job {name}", batch.read_namespaced_job, name, ns, missing_ok=True) is None:
                        left.discard(name)
                except (ClusterError, ConfigError):
                    pass  # asked again until the deadline
            if left:
                time.sleep(self.poll_s)
        if left:
            log.warning(
                "launcher kubernetes: Job(s) %s still there %.0f s after their deletion (kubectl get pods -l app=%s "
                "-n %s)",
                ", ".join(sorted(left)),
                self.settings.grace_period_s + self.gone_wait_s,
                self.prefix,
                ns,
            )

    def _delete_services(self, log: logging.Logger, names: list[str]) -> None:
        _, core = self._apis()
        for name in names:
            try:
                self._call(
                    f"deleting Service {name}",
                    core.delete_namespaced_service,
                    name,
                    self.settings.namespace,
                    missing_ok=True,
                )
            except (ClusterError, ConfigError) as e:
                log.warning("%s", e)
