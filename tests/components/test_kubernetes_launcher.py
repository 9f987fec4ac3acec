"""The kubernetes launcher without a cluster: its manifests checked against the client's own models, and its
real client calls (BatchV1Api, CoreV1Api, the pod-log stream) made to a small HTTP server that plays the API
server: Jobs and Services created and deleted, pods whose lines and ends a script sets. No Kubernetes cluster
ran these; the README says so."""

import itertools
import json
import logging
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from kubernetes import client

from components import k8s, launchers
from components import stop as stop_lib
from components.errors import ClusterError, ConfigError, Stopped
from components.launchers import ClusterConfig, Job, KubernetesConfig, SharedVolume, Task
from pipeline.config import ConfigFileError, load_config
from tests.conftest import tiny_titanic

ROOT = Path(__file__).resolve().parents[2]
NS = "training"
API = client.ApiClient()  # only (de)serializes: the launcher's own client talks to the server below


def _model(doc: dict, kind: str):
    """`doc` as the client's model `kind`, and nothing of it lost on the way (the client drops keys it does
    not know, so a misspelt field would otherwise pass)."""
    model = API.deserialize(json.dumps(doc), kind, "application/json")
    assert API.sanitize_for_serialization(model) == doc, f"{kind}: fields the client does not know"
    return model


def _mount_of(path: Path) -> str:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return str(path)


# ---- a stand-in API server -----------------------------------------------------------------------------------


class FakeKube(ThreadingHTTPServer):
    """Jobs, Services and pods in memory. Each created Job gets one pod whose fate `script` gives per task and
    start ("worker:0#1", else "worker:0"): ("exit", code[, reason]) ends it at once, ("serve",) runs it until
    it is deleted, ("pending", reason) never starts its container, ("unschedulable",) finds no node for it,
    and ("vanish",) has its Job deleted at once, as by someone else. A pod's log is `hello from <task>, start <n>` and,
    for exit 3, the user-error line; a serving pod's log stays open until its pod is deleted."""

    daemon_threads = True

    def __init__(self, script: dict):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.jobs: dict[str, dict] = {}
        self.services: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.gone: dict[str, threading.Event] = {}  # pod -> set once deleted
        self.requests: list[tuple[str, str, dict, dict | None]] = []
        self.starts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.clock = itertools.count()
        self.auth: set[str] = set()
        self.refuse: dict | None = None  # a Status to answer every request with
        self.on_create: list = []  # called with each Job created: what its pods would do to the shared volume
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def create_job(self, body: dict) -> dict:
        meta = body["metadata"]
        labels = meta["labels"]
        task = f"{labels['tf-role']}:{labels['tf-index']}"
        start = self.starts.get(task, 0)
        self.starts[task] = start + 1
        fate = self.script.get(f"{task}#{start}", self.script.get(task, ("serve",)))
        now = f"2026-01-01T00:00:{next(self.clock) % 60:02d}Z"
        job = {**body, "metadata": {**meta, "namespace": NS, "creationTimestamp": now}, "status": {}}
        pod_name = f"{meta['name']}-{start}"
        log = [f"hello from {task}, start {start}"]
        container: dict = {"name": k8s.CONTAINER, "image": "x", "imageID": "", "ready": False, "restartCount": 0}
        conditions: list = []
        if fate[0] == "exit":
            code, reason = fate[1], fate[2] if len(fate) > 2 else ("Completed" if fate[1] == 0 else "Error")
            if code == 3:
                log.append("tfpipe-task-error: ConfigError: label 'survived' is not among the features")
            container["state"] = {"terminated": {"exitCode": code, "reason": reason}}
            phase = "Succeeded" if code == 0 else "Failed"
            kind = "Complete" if code == 0 else "Failed"
            job["status"] = {
                "succeeded" if code == 0 else "failed": 1,
                "conditions": [{"type": kind, "status": "True", "reason": "BackoffLimitExceeded" if code else None}],
            }
        elif fate[0] == "pending":
            container["state"] = {"waiting": {"reason": fate[1], "message": 'pull access denied for "x"'}}
            phase = "Pending"
        elif fate[0] == "unschedulable":
            container["state"] = {"waiting": {"reason": "ContainerCreating"}}
            phase = "Pending"
            conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": "0/3 nodes are available: 3 Insufficient cpu."}]  # fmt: skip
        else:
            container["state"] = {"running": {}}
            phase = "Running"
            job["status"] = {"active": 1}
        pod_labels = {**body["spec"]["template"]["metadata"]["labels"], "job-name": meta["name"]}
        self.pods[pod_name] = {
            "metadata": {"name": pod_name, "namespace": NS, "labels": pod_labels, "creationTimestamp": now},
            "status": {"phase": phase, "containerStatuses": [container], "conditions": conditions},
            "_log": log,
            "_serves": fate[0] == "serve",
        }
        self.gone[pod_name] = threading.Event()
        if fate[0] != "vanish":  # ("vanish",): someone deletes the Job (and its pod) at once
            self.jobs[meta["name"]] = job
        else:
            del self.pods[pod_name]
        for hook in self.on_create:
            hook(body)
        return job

    def delete_job(self, name: str) -> None:
        # Foreground deletion: the pods go (their log streams end), then the Job, a moment later.
        for pod_name, pod in list(self.pods.items()):
            if pod["metadata"]["labels"]["job-name"] == name:
                del self.pods[pod_name]
                self.gone[pod_name].set()
        self.jobs[name]["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
        threading.Timer(0.05, lambda: self.jobs.pop(name, None)).start()

    def calls(self, method: str, pattern: str) -> list[tuple[str, str, dict, dict | None]]:
        return [r for r in self.requests if r[0] == method and re.fullmatch(pattern, r[1])]


class _Handler(BaseHTTPRequestHandler):
    server: FakeKube

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, doc: dict) -> None:
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _missing(self, what: str) -> None:
        self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": f"{what} not found",
                         "reason": "NotFound", "code": 404})  # fmt: skip

    def _handle(self, method: str) -> None:
        s = self.server
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        s.auth.add(self.headers.get("Authorization", ""))
        if s.refuse is not None:
            return self._send(s.refuse["code"], s.refuse)
        with s.lock:
            s.requests.append((method, url.path, query, body))
        jobs = f"/apis/batch/v1/namespaces/{NS}/jobs"
        core = f"/api/v1/namespaces/{NS}"
        selected = query.get("labelSelector", "")
        key, _, value = selected.partition("=")

        def chosen(objects):
            return [o for o in objects if not key or o["metadata"].get("labels", {}).get(key) == value]

        def listed(kind, objects):
            items = [{k: v for k, v in o.items() if not k.startswith("_")} for o in chosen(objects)]
            return {"kind": kind, "apiVersion": "v1", "metadata": {}, "items": items}

        with s.lock:
            if method == "POST" and url.path == jobs:
                _model(body, "V1Job")
                if body["metadata"]["name"] in s.jobs:
                    return self._send(409, {"kind": "Status", "message": "already exists", "code": 409})
                return self._send(201, s.create_job(body))
            if method == "POST" and url.path == f"{core}/services":
                _model(body, "V1Service")
                s.services[body["metadata"]["name"]] = body
                return self._send(201, body)
            if method == "GET" and url.path == jobs:
                return self._send(200, {**listed("JobList", list(s.jobs.values())), "apiVersion": "batch/v1"})
            if method == "GET" and url.path == f"{core}/pods":
                return self._send(200, listed("PodList", list(s.pods.values())))
            if method == "GET" and url.path == f"{core}/services":
                return self._send(200, listed("ServiceList", list(s.services.values())))
            name = url.path.rsplit("/", 1)[-1]
            if url.path == f"{jobs}/{name}":
                if name not in s.jobs:
                    return self._missing(f'jobs.batch "{name}"')
                if method == "DELETE":
                    _model(body, "V1DeleteOptions")
                    s.delete_job(name)
                return self._send(200, s.jobs[name])
            if method == "DELETE" and url.path == f"{core}/services/{name}":
                _model(body or {}, "V1DeleteOptions")
                if name not in s.services:
                    return self._missing(f'services "{name}"')
                return self._send(200, s.services.pop(name))
            pod_name = url.path.split("/")[-2]
            if method == "GET" and url.path == f"{core}/pods/{pod_name}/log":
                pod = s.pods.get(pod_name)
                if pod is None:
                    return self._missing(f'pods "{pod_name}"')
                gone = s.gone[pod_name]
        if method == "GET" and url.path.endswith("/log"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for line in pod["_log"]:
                self.wfile.write(line.encode() + b"\n")
                self.wfile.flush()
            if pod["_serves"] and query.get("follow") == "true":
                gone.wait(timeout=20)
            return None
        return self._send(405, {"kind": "Status", "message": f"{method} {url.path} is not played here"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")


@pytest.fixture
def kube(tmp_path, monkeypatch):
    """A FakeKube with an empty script, and KUBECONFIG naming it (the launcher loads it as from any cluster)."""
    server = FakeKube({})
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
        "users": [{"name": "tfpipe", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tfpipe"}}],
        "current-context": "fake",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield server
    server.shutdown()
    server.server_close()


def _settings(tmp_path: Path, **more) -> KubernetesConfig:
    return KubernetesConfig.model_validate(
        {
            "image": "registry.example/tfpipe-worker:1",
            "namespace": NS,
            "volume": {"claim": "tfpipe-shared", "mount_path": _mount_of(tmp_path)},
            "service_account": "tfpipe-trainer",
            "resources": {"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"memory": "6Gi"}},
            **more,
        }
    )


def _launcher(settings: KubernetesConfig) -> k8s.KubernetesLauncher:
    out = k8s.KubernetesLauncher(settings)
    out.poll_s, out.gone_wait_s = 0.02, 3.0  # the stand-in answers at once
    return out


SPEC = '{"config": "..."}'


def _job(tmp_path: Path, tasks: list[Task], max_restarts: int = 2, finishers=None) -> Job:
    work = tmp_path / "root" / "trainer" / "model_run" / "7"
    work.mkdir(parents=True, exist_ok=True)
    return Job(
        what="trainer",
        tasks=tasks,
        command=lambda task: ["uv", "run", "python", "-m", "components.trainer", "task", SPEC],
        finishers=finishers or (lambda task: task.role in ("chief", "evaluator")),
        workdir=str(work),
        log=logging.getLogger("tfpipe.trainer"),
        resume_note=lambda: "the checkpoint at step 7",
        max_restarts=max_restarts,
    )


PS_CLUSTER = [Task("chief", 0), Task("worker", 0), Task("worker", 1), Task("ps", 0), Task("evaluator", 0)]


# ---- the manifests -------------------------------------------------------------------------------------------


def test_the_launcher_s_manifests_are_the_client_s_jobs_and_services_each_pod_told_its_role(tmp_path):
    cluster = ClusterConfig(workers=2, ps=1, evaluator=True)
    settings = _settings(tmp_path, port=2345)
    launcher = k8s.KubernetesLauncher(settings)
    job = _job(tmp_path, launchers.tasks_of(cluster))
    launcher.prefix = k8s.run_name(job)
    tasks = launcher.place(job)
    jobs = [_model(launcher.job_manifest(job, tasks, t), "V1Job") for t in tasks]
    services = [_model(k8s.service_manifest(launcher.prefix, t), "V1Service") for t in tasks]

    assert re.fullmatch(r"tfpipe-trainer-[0-9a-f]{8}", launcher.prefix)
    names = [f"{launcher.prefix}-{t.name.replace(':', '-')}" for t in job.tasks]
    assert [j.metadata.name for j in jobs] == [s.metadata.name for s in services] == names
    configs = []
    for t, j, s in zip(job.tasks, jobs, services):
        pod = j.spec.template.spec
        (container,) = pod.containers
        env = {e.name: e.value for e in container.env}
        configs.append(json.loads(env["TF_CONFIG"]))
        assert configs[-1]["task"] == {"type": t.role, "index": t.index}
        assert env["PYTHONUNBUFFERED"] == "1"
        assert container.command == ["uv", "run", "python", "-m", "components.trainer", "task", SPEC]
        assert container.image == "registry.example/tfpipe-worker:1"
        assert [(p.name, p.container_port) for p in container.ports] == [("grpc", 2345)]
        assert [(m.name, m.mount_path) for m in container.volume_mounts] == [("shared", _mount_of(tmp_path))]
        assert [(v.name, v.persistent_volume_claim.claim_name) for v in pod.volumes] == [("shared", "tfpipe-shared")]
        assert container.resources.requests == {"cpu": "2", "memory": "4Gi"}
        assert container.resources.limits == {"memory": "6Gi"}
        # Nothing restarts a pod but the launcher, which restarts the whole cluster.
        assert (pod.restart_policy, j.spec.backoff_limit) == ("Never", 0)
        assert (pod.service_account_name, pod.termination_grace_period_seconds) == ("tfpipe-trainer", 30)
        labels = {"app": launcher.prefix, "tf-role": t.role, "tf-index": str(t.index)}
        assert j.metadata.labels == j.spec.template.metadata.labels == s.spec.selector == labels
        assert s.spec.cluster_ip == "None" and [(p.name, p.port) for p in s.spec.ports] == [("grpc", 2345)]
    # The same TF_CONFIG the local launcher gives, every address a Service's name at the task's port.
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)
    assert configs[0]["cluster"] == {
        role: [f"{launcher.prefix}-{role}-{i}:2345" for i in range(n)] for role, n in cluster.counts().items()
    }
    assert [json.loads(launchers.tf_config(tasks, t)) for t in tasks] == configs


def test_render_py_renders_the_same_manifests_for_a_cluster_run_by_hand():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "training-job.yaml").read_text()))
    kinds = {"PersistentVolumeClaim": "V1PersistentVolumeClaim", "Service": "V1Service", "Job": "V1Job"}
    models = [_model(d, kinds[d["kind"]]) for d in docs]
    jobs = [m for m in models if isinstance(m, client.V1Job)]
    assert len(jobs) == 5
    tasks = k8s.placed(
        "tfpipe-titanic", [Task(j.metadata.labels["tf-role"], int(j.metadata.labels["tf-index"])) for j in jobs]
    )
    volume = SharedVolume(claim="tfpipe-titanic-shared", mount_path="/shared")
    for j, t in zip(jobs, tasks):
        # Built by the launcher's own function: by hand, each Job restarts its pod.
        pod = j.spec.template.spec
        assert pod.restart_policy == "OnFailure" and j.spec.backoff_limit == 4
        expected = k8s.job_manifest("tfpipe-titanic", tasks, t, image="tfpipe-worker:latest",
                                    command=pod.containers[0].command, volume=volume,
                                    resources={"requests": {"cpu": "2", "memory": "4Gi"}},
                                    restart_policy="OnFailure", backoff_limit=4)  # fmt: skip
        assert API.sanitize_for_serialization(j) == expected


# ---- the launcher against the stand-in API server ------------------------------------------------------------


def test_jobs_and_services_are_created_followed_and_deleted_with_each_pod_s_lines_by_role(tmp_path, kube, caplog):
    kube.script.update({"chief:0": ("exit", 0), "evaluator:0": ("exit", 0)})
    job = _job(tmp_path, PS_CLUSTER)
    with caplog.at_level(logging.INFO, logger="tfpipe"):
        outcome = _launcher(_settings(tmp_path)).run(job)
    assert outcome.restarts == 0
    prefix = k8s.run_name(job)
    assert [t.host for t in outcome.tasks] == [f"{prefix}-{t.name.replace(':', '-')}" for t in PS_CLUSTER]
    lines = [r.getMessage() for r in caplog.records]
    for t in PS_CLUSTER:
        assert f"[{t.name}] hello from {t.name}, start 0" in lines
    started = next(line for line in lines if line.startswith("trainer: cluster started ("))
    assert f"worker:1 job {prefix}-worker-1" in started
    # One Service and one Job per task, in the namespace, with the kubeconfig's credentials; everything
    # deleted at the end (Jobs in the foreground, so their pods get SIGTERM and their grace period).
    created = [b["metadata"]["name"] for _, _, _, b in kube.calls("POST", r".*/jobs")]
    assert created == [f"{prefix}-{t.name.replace(':', '-')}" for t in PS_CLUSTER]
    assert len(kube.calls("POST", rf"/api/v1/namespaces/{NS}/services")) == 5
    deletes = kube.calls("DELETE", rf"/apis/batch/v1/namespaces/{NS}/jobs/.*")
    assert sorted(p.rsplit("/", 1)[1] for _, p, _, _ in deletes) == sorted(created)
    assert all(b == {"propagationPolicy": "Foreground"} for _, _, _, b in deletes)
    assert kube.jobs == {} and kube.services == {} and kube.pods == {}
    assert kube.auth == {"Bearer secret-token"}
    logs = kube.calls("GET", rf"/api/v1/namespaces/{NS}/pods/.*/log")
    assert logs and all(q["follow"] == "true" and q["container"] == "tensorflow" for _, _, q, _ in logs)


def test_a_failed_job_restarts_the_cluster_which_then_finishes(tmp_path, kube, caplog):
    kube.script.update({"worker:0#0": ("exit", 137), "chief:0#1": ("exit", 0), "evaluator:0#1": ("exit", 0)})
    job = _job(tmp_path, PS_CLUSTER)
    with caplog.at_level(logging.INFO, logger="tfpipe"):
        outcome = _launcher(_settings(tmp_path)).run(job)
    assert outcome.restarts == 1
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warning == (
        "trainer: task worker:0 killed by SIGKILL; restarting the cluster (restart 1 of 2): "
        "training resumes from the checkpoint at step 7"
    )
    # The whole cluster was deleted, then made anew: every Job created twice, deleted twice.
    assert kube.starts == {t.name: 2 for t in PS_CLUSTER}
    order = [(m, p.rsplit("/", 1)[1]) for m, p, _, _ in kube.requests if m in ("POST", "DELETE") and "/jobs" in p]
    first_recreate = next(i for i, (m, _) in enumerate(order) if m == "POST" and i >= 5)
    assert {m for m, _ in order[5:first_recreate]} == {"DELETE"} and first_recreate == 10
    assert kube.jobs == {} and kube.services == {}
    lines = [r.getMessage() for r in caplog.records]
    assert "[worker:0] hello from worker:0, start 1" in lines


def test_restarts_running_out_are_one_line(tmp_path, kube):
    kube.script.update({"worker:1": ("exit", 137, "OOMKilled")})
    job = _job(tmp_path, PS_CLUSTER, max_restarts=1)
    with pytest.raises(ClusterError) as e:
        _launcher(_settings(tmp_path)).run(job)
    assert str(e.value) == (
        "trainer: task worker:1 killed by SIGKILL (OOMKilled: over its memory limit) and the cluster has no "
        "restarts left (max_restarts: 1); the checkpoint at step 7 is kept: run again to resume, or raise "
        "max_restarts"
    )
    assert kube.starts["worker:1"] == 2 and kube.jobs == {} and kube.services == {}


def test_a_task_s_user_error_is_not_restarted(tmp_path, kube):
    kube.script.update({"chief:0": ("exit", 3)})
    with pytest.raises(ConfigError, match=r"^label 'survived' is not among the features$"):
        _launcher(_settings(tmp_path)).run(_job(tmp_path, PS_CLUSTER))
    assert kube.starts == {t.name: 1 for t in PS_CLUSTER} and kube.jobs == {}


def test_a_job_deleted_outside_tfpipe_is_a_dead_task(tmp_path, kube):
    kube.script.update({"worker:1": ("vanish",)})
    with pytest.raises(ClusterError, match=r"^trainer: task worker:1 is gone: its Job tfpipe-trainer-\w+-worker-1 was "
                       r"deleted outside tfpipe and the cluster has no restarts left \(max_restarts: 0\); "):  # fmt: skip
        _launcher(_settings(tmp_path)).run(_job(tmp_path, PS_CLUSTER, max_restarts=0))
    assert kube.jobs == {} and kube.services == {}


def test_a_pod_that_waits_for_a_node_is_said_once(tmp_path, kube, caplog):
    kube.script.update({"worker:1": ("unschedulable",)})
    asked = threading.Timer(1.0, stop_lib.request, args=("SIGTERM",))  # many polls until then
    asked.start()
    try:
        with caplog.at_level(logging.INFO, logger="tfpipe"), pytest.raises(Stopped):
            _launcher(_settings(tmp_path)).run(_job(tmp_path, PS_CLUSTER))
    finally:
        asked.cancel()
        stop_lib.clear()
    assert len(kube.calls("GET", rf"/api/v1/namespaces/{NS}/pods")) > 2
    waits = [r.getMessage() for r in caplog.records if "waits for a node" in r.getMessage()]
    assert waits == [
        "trainer: task worker:1 waits for a node: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    ]


def test_an_image_that_cannot_be_pulled_is_one_line_and_not_restarted(tmp_path, kube):
    kube.script.update({"worker:1": ("pending", "ImagePullBackOff")})
    with pytest.raises(ConfigError) as e:
        _launcher(_settings(tmp_path)).run(_job(tmp_path, PS_CLUSTER))
    assert str(e.value).startswith("trainer: task worker:1: pod tfpipe-trainer-")
    assert str(e.value).endswith(
        'cannot start its container: ImagePullBackOff: pull access denied for "x" '
        "(trainer.cluster.kubernetes.image: registry.example/tfpipe-worker:1)"
    )
    assert kube.starts["worker:1"] == 1 and kube.jobs == {}


def test_a_stop_deletes_every_job_and_service_the_training_tasks_first(tmp_path, kube):
    job = _job(tmp_path, PS_CLUSTER)
    asked = threading.Timer(0.5, stop_lib.request, args=("SIGTERM",))
    asked.start()
    try:
        with pytest.raises(Stopped, match=r"^training stopped by SIGTERM: the cluster's 5 tasks are stopped; the ch"):
            _launcher(_settings(tmp_path)).run(job)
    finally:
        asked.cancel()
        stop_lib.clear()
    prefix = k8s.run_name(job)
    deleted = [p.rsplit("/", 1)[1].removeprefix(prefix + "-") for _, p, _, _ in kube.calls("DELETE", r".*/jobs/.*")]
    assert deleted == ["chief-0", "evaluator-0", "worker-0", "worker-1", "ps-0"]
    assert kube.jobs == {} and kube.services == {} and kube.pods == {}


def test_what_a_killed_run_left_is_deleted_before_the_cluster_starts_and_a_live_run_is_left_alone(
    tmp_path, kube, caplog
):
    # A tfpipe killed with SIGKILL leaves its Jobs and Services (nothing ties pods to its process); the
    # re-run adopts its folder (renames it), so a Job whose folder is gone is a leftover.
    job = _job(tmp_path, [Task("worker", 0), Task("worker", 1)], finishers=lambda t: True)
    job.key = str(Path(job.workdir).parent)
    prefix = k8s.run_name(job)
    tasks = k8s.placed(prefix, job.tasks)

    def leave(owner: Path) -> None:
        body = k8s.job_manifest(prefix, tasks, tasks[1], image="x", command=["x"], volume=SharedVolume(claim="c", mount_path="/"),
                                annotations={k8s.MODEL_DIR: str(owner)})  # fmt: skip
        with kube.lock:
            kube.create_job(body)
            kube.services[f"{prefix}-worker-1"] = k8s.service_manifest(prefix, tasks[1])

    leave(Path(job.workdir).parent / "6")  # adopted: gone
    kube.script.update({"worker:0": ("exit", 0), "worker:1": ("exit", 0)})
    with caplog.at_level(logging.INFO, logger="tfpipe"):
        _launcher(_settings(tmp_path)).run(job)
    assert f"trainer: deleting 1 Job(s) and 1 Service(s) an earlier run of this step left in namespace {NS}" in [
        r.getMessage() for r in caplog.records
    ]
    assert kube.starts == {"worker:0": 1, "worker:1": 2} and kube.jobs == {} and kube.services == {}
    # The Jobs the launcher makes say whose they are.
    annotations = {b["metadata"]["annotations"][k8s.MODEL_DIR] for _, _, _, b in kube.calls("POST", r".*/jobs")[1:]}
    assert annotations == {job.workdir}

    live = Path(job.workdir).parent / "8"  # another run of the step, training now
    live.mkdir()
    leave(live)
    with pytest.raises(ClusterError, match=rf"^trainer: another run of this step is training in namespace {NS} \(Job "):
        _launcher(_settings(tmp_path)).run(job)
    assert set(kube.jobs) == {f"{prefix}-worker-1"}  # left alone


def test_the_model_directory_off_the_shared_volume_is_one_line_before_anything_is_created(tmp_path, kube):
    settings = _settings(tmp_path, volume={"claim": "tfpipe-shared", "mount_path": "/shared"})
    with pytest.raises(ConfigError) as e:
        _launcher(settings).run(_job(tmp_path, PS_CLUSTER))
    work = tmp_path / "root" / "trainer" / "model_run" / "7"
    assert str(e.value) == (
        f"trainer: the model directory {work} is not on the shared volume (trainer.cluster.kubernetes.volume: "
        "claim tfpipe-shared mounted at /shared), so the cluster's pods cannot see it: set the pipeline's `root:` "
        "and the trainer's module under /shared, where tfpipe sees the same volume as the pods"
    )
    assert kube.requests == []


def test_no_cluster_to_talk_to_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match=r"^launcher kubernetes: no cluster to talk to \(.*\): run tfpipe in a pod"):
        _launcher(_settings(tmp_path)).run(_job(tmp_path, PS_CLUSTER))


def test_no_rights_in_the_namespace_is_one_line(tmp_path, kube):
    kube.refuse = {"kind": "Status", "code": 403, "reason": "Forbidden",
                   "message": 'jobs.batch is forbidden: User "tfpipe" cannot list resource "jobs"'}  # fmt: skip
    with pytest.raises(ConfigError) as e:
        _launcher(_settings(tmp_path)).run(_job(tmp_path, PS_CLUSTER))
    assert str(e.value).startswith(
        f"launcher kubernetes: listing Jobs in namespace {NS}: 403 Forbidden: jobs.batch is forbidden: "
    )
    assert "\n" not in str(e.value)


def test_the_trainer_step_runs_its_tasks_as_pods_of_the_image_and_takes_their_result(tmp_path, kube, monkeypatch):
    # The pods' side (TensorFlow in the image) cannot run here: the stand-in writes what the chief would
    # leave on the shared volume. What is checked is the step's side: the command, the spec, the result.
    from components import trainer

    root = tmp_path / "root"
    model_run, model = root / "trainer" / "model_run" / "9", root / "trainer" / "model" / "9"
    model_run.mkdir(parents=True)
    model.mkdir(parents=True)

    def chief_writes_its_result(body: dict) -> None:
        if body["metadata"]["labels"]["tf-role"] == "chief":
            (model_run / "export" / "1").mkdir(parents=True)
            (model_run / "export" / "1" / "saved_model.pb").write_text("model")
            (model_run / "cluster_result.json").write_text(json.dumps({"metrics": {"auc": 0.8}, "export": "export/1"}))
            (model_run / "cluster_topology.json").write_text(
                json.dumps({"strategy": "ParameterServerStrategy", "replicas": 2})
            )

    kube.on_create.append(chief_writes_its_result)
    kube.script.update({"chief:0": ("exit", 0), "evaluator:0": ("exit", 0)})
    monkeypatch.setattr(k8s.KubernetesLauncher, "poll_s", 0.02)
    section = {
        "workers": 2,
        "ps": 1,
        "evaluator": True,
        "launcher": "kubernetes",
        "kubernetes": _settings(tmp_path).model_dump(),
    }
    config = trainer.TrainerConfig(module=str(root / "model.py"), label="survived", cluster=section)
    paths = [str(root / p) for p in ("transform/examples/3", "transform/graph/3", "schema/3/schema.pbtxt")]
    result = trainer.train_on_cluster(config, *paths, str(model), str(model_run))

    assert result["eval"] == {"auc": 0.8} and result["topology"]["launcher"] == "kubernetes"
    assert (model / "saved_model.pb").read_text() == "model"
    bodies = [_model(b, "V1Job") for _, _, _, b in kube.calls("POST", r".*/jobs")]
    assert len(bodies) == 5
    for body in bodies:
        (container,) = body.spec.template.spec.containers
        assert container.command[:-1] == [*launchers.IMAGE_PYTHON, "-m", "components.trainer", "task"]
        spec = json.loads(container.command[-1])
        assert (spec["model_run_dir"], spec["schema_path"]) == (str(model_run), paths[2])
        assert {e.name for e in container.env} == {"TF_CONFIG", "PYTHONUNBUFFERED"}  # no PYTHONPATH of this host
    assert kube.jobs == {} and kube.services == {}


# ---- trainer.cluster.kubernetes in the YAML ------------------------------------------------------------------


def _config(tmp_path: Path, cluster: dict, root: str | None = None) -> Path:
    config = tiny_titanic(tmp_path / "p")
    doc = yaml.safe_load(config.read_text())
    doc["trainer"]["cluster"] = cluster
    if root is not None:
        doc["root"] = root
    config.write_text(yaml.safe_dump(doc))
    return config


def _kube_section(**more) -> dict:
    return {"image": "tfpipe-worker:1", "volume": {"claim": "tfpipe-shared", "mount_path": "/shared"}, **more}


@pytest.mark.parametrize(
    "cluster, message",
    [
        (
            {"workers": 2, "launcher": "kubernetes"},
            "launcher kubernetes needs a `kubernetes:` section with at least `image` and `volume: {claim, mount_path}`",
        ),
        (
            {"workers": 2, "kubernetes": _kube_section()},
            "a `kubernetes:` section is read only with launcher: kubernetes",
        ),
        (
            {"workers": 2, "launcher": "kubernetes", "kubernetes": _kube_section(imag="x")},
            "trainer.cluster.kubernetes.imag: unknown key",
        ),
        (
            {"workers": 2, "launcher": "kubernetes", "kubernetes": {"image": "x"}},
            "trainer.cluster.kubernetes.volume: required, but not given",
        ),
        (
            {"workers": 2, "launcher": "kubernetes", "kubernetes": _kube_section(namespace="Team_A")},
            "trainer.cluster.kubernetes.namespace: String should match pattern",
        ),
        (
            {"workers": 2, "launcher": "kubernetes", "hosts": {"worker": ["10.0.0.1"]}, "kubernetes": _kube_section()},
            "hosts: not read by launcher kubernetes (each task's address is its Service's name); leave them out",
        ),
        (
            {"workers": 2, "launcher": "kubernetes", "kubernetes": _kube_section()},
            "trainer: the pipeline's root ",  # tiny_titanic's root is under tmp_path, not /shared
        ),
    ],
)
def test_the_kubernetes_settings_are_checked_when_the_file_loads(tmp_path, cluster, message):
    with pytest.raises(ConfigFileError) as e:
        load_config(_config(tmp_path, cluster))
    assert message in str(e.value)
    assert "Traceback" not in str(e.value) and "\n" not in str(e.value)


def test_valid_kubernetes_settings_load_with_their_defaults(tmp_path):
    mount = _mount_of(tmp_path)
    section = _kube_section(volume={"claim": "tfpipe-shared", "mount_path": mount})
    config = load_config(_config(tmp_path, {"workers": 2, "launcher": "kubernetes", "kubernetes": section}))
    settings = config.node("trainer").params.cluster.kubernetes
    assert (settings.namespace, settings.port, settings.grace_period_s) == ("default", 2222, 30)
    assert settings.python == list(launchers.IMAGE_PYTHON) and settings.service_account is None
    assert isinstance(launchers.launcher(config.node("trainer").params.cluster), k8s.KubernetesLauncher)
    # Where the tasks run does not change the model: the cache key is the local run's.
    local = load_config(_config(tmp_path, {"workers": 2})).node("trainer")
    node = config.node("trainer")
    assert node.component.canonical(node.params) == local.component.canonical(local.params)
