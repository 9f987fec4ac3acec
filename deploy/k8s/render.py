"""Renders training-job.yaml: one Job and one headless Service per task of a TF_CONFIG cluster, each pod
told its own role by TF_CONFIG, all sharing one volume for checkpoints and exports.

    uv run python deploy/k8s/render.py --workers 2 --ps 1 > deploy/k8s/training-job.yaml

The manifests are components.k8s's, the ones the trainer's `kubernetes` launcher creates; here each Job
restarts its own pod (`restartPolicy: OnFailure`), as nothing else watches a cluster run by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repository's packages
from components import k8s  # noqa: E402
from components.launchers import IMAGE_PYTHON, SharedVolume, Task  # noqa: E402


def tasks(workers: int, ps: int) -> dict:
    cluster = {"chief": 1, "worker": workers, "ps": ps, "evaluator": 1}
    return {role: n for role, n in cluster.items() if n}


def render(name: str, image: str, workers: int, ps: int, steps: int) -> list[dict]:
    cluster = k8s.placed(name, [Task(role, i) for role, n in tasks(workers, ps).items() for i in range(n)])
    volume = SharedVolume(claim=f"{name}-shared", mount_path="/shared")
    command = [*IMAGE_PYTHON, "-m", "examples.titanic.distributed", "--workdir", "/shared/titanic"]
    docs = [k8s.claim_manifest(volume.claim, "5Gi")]
    for task in cluster:
        docs.append(k8s.service_manifest(name, task))
        docs.append(
            k8s.job_manifest(
                name,
                cluster,
                task,
                image=image,
                command=[*command, "--steps", str(steps)],
                volume=volume,
                resources={"requests": {"cpu": "2", "memory": "4Gi"}},
                restart_policy="OnFailure",
                backoff_limit=4,
            )
        )
    return docs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="tfpipe-titanic")
    p.add_argument("--image", default="tfpipe-worker:latest")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ps", type=int, default=1)
    p.add_argument("--steps", type=int, default=2000)
    a = p.parse_args(argv)
    sys.stdout.write("# Rendered by deploy/k8s/render.py; edit that, not this.\n")
    yaml.safe_dump_all(render(a.name, a.image, a.workers, a.ps, a.steps), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
