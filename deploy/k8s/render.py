"""Renders training-job.yaml: one Job and one headless Service per task of a TF_CONFIG cluster, each pod
told its own role by TF_CONFIG, all sharing one volume for checkpoints and exports.

    python deploy/k8s/render.py --workers 2 --ps 1 > deploy/k8s/training-job.yaml
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

PORT = 2222


def tasks(workers: int, ps: int) -> dict:
    cluster = {"chief": 1, "worker": workers, "ps": ps, "evaluator": 1}
    return {role: n for role, n in cluster.items() if n}


def host(name: str, role: str, index: int) -> str:
    return f"{name}-{role}-{index}"


def render(name: str, image: str, workers: int, ps: int, steps: int) -> list[dict]:
    roles = tasks(workers, ps)
    cluster = {role: [f"{host(name, role, i)}:{PORT}" for i in range(n)] for role, n in roles.items()}
    docs = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"{name}-shared"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "5Gi"}}},
        }
    ]
    for role, n in roles.items():
        for i in range(n):
            task = host(name, role, i)
            labels = {"app": name, "tf-role": role, "tf-index": str(i)}
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": task, "labels": labels},
                    "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "grpc", "port": PORT}]},
                }
            )
            tf_config = json.dumps({"cluster": cluster, "task": {"type": role, "index": i}}, sort_keys=True)
            container = {
                "name": "tensorflow",
                "image": image,
                "command": [
                    "uv",
                    "run",
                    "--locked",
                    "--no-dev",
                    "python",
                    "-m",
                    "examples.titanic.distributed",
                    "--workdir",
                    "/shared/titanic",
                    "--steps",
                    str(steps),
                ],
                "env": [{"name": "TF_CONFIG", "value": tf_config}],
                "ports": [{"containerPort": PORT, "name": "grpc"}],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
            }
            docs.append(
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {"name": task, "labels": labels},
                    "spec": {
                        "backoffLimit": 4,
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                "restartPolicy": "OnFailure",
                                "containers": [container],
                                "volumes": [
                                    {"name": "shared", "persistentVolumeClaim": {"claimName": f"{name}-shared"}}
                                ],
                            },
                        },
                    },
                }
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
