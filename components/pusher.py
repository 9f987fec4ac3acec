"""pusher: a blessed model to <serving_base>/<version>/, atomically; an unblessed one nowhere."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from components._process import alive
from components.errors import InputError


def push(serving_model_dir: str, blessed: bool, serving_base: str, output_dir: str,
         already: str | None = None) -> dict:
    """Copies the model to a hidden temp folder beside the target, then renames it into place.

    `already`: the version where this very model is in serving now; nothing is copied again.
    """
    out = Path(output_dir)
    if not blessed or already:
        doc = {"pushed": False, "reason": "the model is not blessed"} if not blessed else \
            {"pushed": True, "version": int(Path(already).name), "path": str(already), "already_in_serving": True}
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
        _, _, owner = p.name[len(".tmp-"):].partition("-")  # .tmp-<version>-<host>-<pid>
        owner_host, _, pid = owner.rpartition("-")
        if owner_host == host and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)

