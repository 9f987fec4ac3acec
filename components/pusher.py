"""pusher: a blessed model to <serving_base>/<version>/, atomically; an unblessed one nowhere."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Annotated, Any

from components._process import alive
from components.contract import Component, InputSpec, Parameters, PathParam
from components.errors import InputError
from schemas.artifacts import file_manifest

log = logging.getLogger("tfpipe.pipeline")


class PusherConfig(Parameters):
    """pusher's parameters (its YAML section)."""

    # blessed models go to <serving_base>/<version>/ (default <root>/serving)
    serving_base: Annotated[str | None, PathParam(outside_root=True, default_under_root="serving")] = None


def push(
    serving_model_dir: str, blessed: bool, serving_base: str, output_dir: str, already: str | None = None
) -> dict[str, Any]:
    """Copies the model to a hidden temp folder beside the target, then renames it into place.

    `already`: the version where this very model is in serving now; nothing is copied again.
    """
    out = Path(output_dir)
    if not blessed or already:
        doc: dict[str, Any]
        if not blessed:
            doc = {"pushed": False, "reason": "the model is not blessed"}
        else:
            assert already is not None  # blessed, so `already` is what brought us here
            doc = {"pushed": True, "version": int(Path(already).name), "path": str(already), "already_in_serving": True}
        (out / "push.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
        return doc
    if not (Path(serving_model_dir) / "saved_model.pb").exists():
        raise InputError(f"pusher: {serving_model_dir} is not a SavedModel")
    base = Path(serving_base)
    base.mkdir(parents=True, exist_ok=True)
    _remove_dead_copies(base)
    existing = [int(p.name) for p in base.iterdir() if p.name.isdigit()]
    version = max([int(time.time())] + [v + 1 for v in existing])
    tmp = base / f".tmp-{version}-{socket.gethostname()}-{os.getpid()}"
    shutil.copytree(serving_model_dir, tmp)
    # rename() within one filesystem is atomic: a serving process sees no model or all of it.
    while True:
        target = base / str(version)
        try:
            os.rename(tmp, target)
            break
        except OSError:
            if not target.exists():
                raise
            version += 1  # another pusher took this version a moment ago
    doc = {"pushed": True, "version": version, "path": str(target)}
    (out / "push.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc


def _remove_dead_copies(base: Path) -> None:
    """Hidden half-copies left by pushers of this host that were killed mid-copy (servers never read them)."""
    host = socket.gethostname()
    for p in base.glob(".tmp-*"):
        _, _, owner = p.name[len(".tmp-") :].partition("-")  # .tmp-<version>-<host>-<pid>
        owner_host, _, pid = owner.rpartition("-")
        if owner_host == host and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


# Written anew by each export, even of the same model: saved_model.pb names its traced functions and tables with
# the exporting process's counters, and fingerprint.pb holds that file's checksum and a random uuid. The
# fingerprint's other hashes are TensorFlow's own, of the graph with those names made regular.
_REGENERATED = ("saved_model.pb", "fingerprint.pb")
_MODEL_HASHES = ("graph_def_program_hash", "signature_def_hash", "saved_object_graph_hash", "checkpoint_hash")


def _files(folder: Path) -> dict[str, int]:
    found = {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()}
    return {name: p.stat().st_size for name, p in found.items() if name not in _REGENERATED}


def _digest(folder: Path, files) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + (folder / name).read_bytes())
    fingerprint = folder / "fingerprint.pb"
    if fingerprint.is_file():
        from tensorflow.core.protobuf import fingerprint_pb2

        found = fingerprint_pb2.FingerprintDef.FromString(fingerprint.read_bytes())
        h.update(repr([getattr(found, field) for field in _MODEL_HASHES]).encode())
    else:  # a SavedModel from before fingerprints: its graph file, byte for byte
        h.update((folder / "saved_model.pb").read_bytes())
    return h.hexdigest()


def in_serving(model_dir: str, serving_base: str) -> str | None:
    """The version folder under serving_base holding this very model (the same variables, assets, graph and
    signatures), if any: a re-run of an unchanged model, or a retrain to the same bits, says so instead of
    pushing a copy as a new version."""
    base, model = Path(serving_base), Path(model_dir)
    if not base.is_dir():
        return None
    wanted = _files(model)
    digest = None
    for version in sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: -int(p.name)):
        if _files(version) == wanted:
            digest = digest or _digest(model, wanted)
            if _digest(version, wanted) == digest:
                return str(version)
    return None


def _run(inputs: dict, outputs: dict, config: PusherConfig) -> dict:
    from components import evaluator

    assert config.serving_base is not None, (
        "pusher: serving_base is unset; the config loader fills it in (default <root>/serving) before a run"
    )
    blessed = evaluator.is_blessed(inputs["blessing"].uri)
    already = in_serving(inputs["model"].uri, config.serving_base) if blessed else None
    doc = push(inputs["model"].uri, blessed, config.serving_base, outputs["pushed_model"], already=already)
    if doc.get("already_in_serving"):
        log.info("pusher: this model is already in serving at %s; nothing pushed again", doc["path"])
    return {
        "pushed_model": {
            "pushed": bool(doc["pushed"]),
            "pushed_destination": doc.get("path", ""),
            "destination_files": json.dumps(file_manifest(doc["path"])) if doc["pushed"] else "",
            "pushed_version": str(doc.get("version", "")),
            "model_uri": inputs["model"].uri,
        }
    }


COMPONENT = Component(
    name="pusher",
    inputs={"model": InputSpec("Model"), "blessing": InputSpec("ModelBlessing")},
    outputs={"pushed_model": "PushedModel"},
    parameters=PusherConfig,
    executor=_run,
    code=(__name__,),
    description="a blessed model to <serving_base>/<version>/, by an atomic rename",
)
