"""Run manifests: what a step ran with (code, libraries, hardware, seeds, config, input contents), and the
fingerprints that say whether two runs made the same thing."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import platform
import re
import subprocess
import zlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from components.contract import user_modules as contract_modules
from components.user_module import TFPIPE_PACKAGES as PACKAGES
from components.user_module import module_files
from pipeline.config import Node, PipelineConfig
from pipeline.metadata import redact
from schemas.artifacts import damage, file_manifest, fingerprint  # noqa: F401  (the runner's, from here)

REPO = Path(__file__).resolve().parents[1]
CACHE_LIBRARIES = ("tensorflow", "tensorflow-transform", "apache-beam", "tf-keras", "tfx-bsl")
MANIFEST_LIBRARIES = CACHE_LIBRARIES + ("prefect", "ml-metadata", "numpy", "protobuf", "pyarrow")
# How far metrics may move between runs that cannot be bit-identical (several replicas, GPUs).
TOLERANCE = {"metric_abs": 0.02}


@functools.cache  # installed versions do not change under a running process
def library_versions(dists=CACHE_LIBRARIES) -> dict:
    out = {}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """tfpipe's git commit and whether the work tree differs from it; the package version outside git."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode == 0:
            dirty = git("status", "--porcelain", "--untracked-files=no", "--", "components", "pipeline")
            return {"git_commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return {"package": version("tfpipe")}
    except PackageNotFoundError:
        return {"package": "unknown"}


@functools.lru_cache(maxsize=1)
def hardware() -> dict[str, Any]:
    import tensorflow as tf

    devices = [f"{d.device_type}:{d.name.rsplit(':', 1)[-1]}" for d in tf.config.list_physical_devices()]
    out: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "devices": devices,
    }
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    if cluster:
        out["tf_config_cluster"] = {role: len(tasks) for role, tasks in cluster.items()}
    return out


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


# An import statement on a line of its own, at any indentation, with its parenthesized continuation.
_IMPORT_STATEMENT = re.compile(rb"^[ \t]*((?:from[ \t]+\S+[ \t]+)?import[ \t][^\n(]*(?:\([^)]*\))?[^\n]*)", re.M)


def _import_statements(source: bytes, filename: str) -> ast.Module:
    """A syntax tree of the file's import statements alone: a tenth of the cost of the whole file's."""
    try:
        return ast.parse(b"\n".join(m.group(1) for m in _IMPORT_STATEMENT.finditer(source)), filename=filename)
    except SyntaxError:  # an import continued with a backslash, or prose that looks like one: read it all
        return ast.parse(source, filename=filename)


@functools.lru_cache(maxsize=512)
def _imported(source: bytes, is_package: bool, name: str, filename: str) -> frozenset[str]:
    """The tfpipe modules a source file imports, anywhere in it (function-level imports included)."""
    # Keyed by the source itself: the five steps of a run (and a long-lived worker's runs) share most files,
    # and parsing them is most of a cached step's time; an edited file is parsed again.
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(_import_statements(source, filename)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from components import estimator`
    return frozenset(n for n in found if n.split(".")[0] in PACKAGES)


def code_files(*modules: str, follow: bool = True) -> dict[str, str]:
    """{path: sha256} of the tfpipe source files these modules run: themselves, what they import (all the
    way down, lazy imports included; unless not `follow`) and the packages' __init__ files on the way."""
    seen, todo, out = set(), list(modules), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        path = _module_file(name)
        if path is None:
            continue
        source = path.read_bytes()
        out[str(path.relative_to(REPO))] = hashlib.sha256(source).hexdigest()
        if follow:
            todo += sorted(_imported(source, path.name == "__init__.py", name, str(path)))
    return dict(sorted(out.items()))


def input_hash(path: str) -> str:
    """A raw input file's content hash, for the cache key. A file that cannot be read still gets a key (that
    changes once it can be): the component, running as a registered execution, then fails on it with the
    file named, and MLMD records the failure."""
    try:
        return fingerprint(path)
    except (OSError, EOFError, zlib.error) as e:
        return f"unreadable: {type(e).__name__}: {e}"


def user_modules(cfg: PipelineConfig) -> dict:
    """Each user module of the pipeline ("<instance>.<field>"): its path and a hash over it and the local
    modules it imports (listed in `files`)."""
    out = {}
    for node in cfg.nodes.values():
        for field, module in contract_modules(node.component, node.params).items():
            files = module_files(module)
            out[f"{node.id}.{field}"] = {
                "path": module,
                "files": files,
                "sha256": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest(),
            }
    return out


def exactness(hw: dict) -> dict:
    """Whether a re-run can be bit-identical here, and if not, why and within what it should agree."""
    reasons = []
    if any(d.startswith(("GPU", "TPU")) for d in hw.get("devices", [])):
        reasons.append("accelerators (GPU/TPU kernels are not all deterministic)")
    if sum(hw.get("tf_config_cluster", {}).values()) > 1:
        reasons.append("a multi-worker TF_CONFIG cluster (the order of gradient updates varies)")
    return {"exact": not reasons, "why": "; ".join(reasons)} if reasons else {"exact": True}


def build(cfg: PipelineConfig, node: Node, inputs: dict, files: dict | None = None, hw: dict | None = None) -> dict:
    """The manifest recorded on a component's execution. `hw`: the hardware that made its outputs, when that
    was not this process (a cache hit), which also spares a cached run importing TensorFlow to list devices.
    Otherwise this process's, with where the component says its work runs (a cluster it launches)."""
    if hw is None:
        placed = node.component.placement(node.params) if node.component.placement else None
        hw = {**hardware(), **(placed or {})}
    manifest = {
        "component": node.id,
        "component_type": node.type,
        "code": code_version(),
        "user_modules": user_modules(cfg),
        "libraries": {"python": platform.python_version(), **library_versions(MANIFEST_LIBRARIES)},
        "hardware": hw,
        "seeds": {
            **{f"{n.id}.seed": n.params.seed for n in cfg.nodes.values() if hasattr(n.params, "seed")},
            "split": "sha256 of each row's canonical tf.Example (or of its split_key column), no seed",
        },
        "config": {**cfg.to_raw(), "metadata": redact(cfg.metadata)},
        "inputs": {
            name: {"id": a.id, "fingerprint": a.properties.get("fingerprint", "")} for name, a in inputs.items()
        },
        "determinism": exactness(hw),
    }
    if files is not None:
        manifest["input_files"] = files
    return manifest
