"""A cache lookup against an MLMD store holding 10,000 executions: `find_cached` against the scan it replaced.

    uv run python bench/cache_lookup.py [--executions 10000] [--repeat 200] [--store PATH]

Builds a SQLite MLMD store in a temporary folder holding `--executions` COMPLETE executions of one component
instance (`trainer`), each with its own cache key, registered as the runner registers them
(`MetadataStore.start_run`, `start`, `finish`: the pipeline, pipeline_run, component and cache_key contexts,
output events and a LIVE Model artifact each). It is built on /dev/shm when there is one (a minute or two;
on a disk, SQLite's fsync per commit makes it ~10 minutes), then moved into the temporary folder, so the
lookups read it from disk. `--store PATH` keeps it there and reuses it on the next run (it must have been
built with the same `--executions`).

Then times, `--repeat` times each, in one warm process:
- `find_cached("trainer", key)` for a hit (the middle execution's key; its output folder exists and has the
  file manifest recorded on its artifact, so the runner's own damage check, `pipeline.runner._damage`, runs
  and passes) and for a miss (a key no execution has);
- the same two lookups done the old way, as the baseline: every execution of the type
  (`get_executions_by_type("tfpipe.trainer")`) filtered by its cache_key property, then the newest match's
  outputs and damage check, as `find_cached` did before the cache_key context.
Reports the median and p95 in ms and old/new ratios. Target (issue 26): a lookup in at most 50 ms.
The executions carry only the cache_key and pipeline properties (no run manifest), so the scan reads less
than it would in a real store: the baseline is, if anything, flattered.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from _report import emit  # noqa: E402

PIPELINE, COMPONENT, PER_RUN = "bench", "trainer", 100


def _key(i: int) -> str:
    return hashlib.sha256(f"bench-cache-key-{i}".encode()).hexdigest()


def build(path: Path, root: Path, executions: int) -> tuple[float, int]:
    """The store: `executions` COMPLETE trainer executions, PER_RUN to a pipeline run; returns (seconds, the
    hit's execution index)."""
    from pipeline import manifest
    from pipeline.metadata import MetadataStore

    store = MetadataStore(str(path))
    hit = executions // 2
    started_at = time.perf_counter()
    run = store.start_run(PIPELINE, "run00000")
    for i in range(executions):
        if i and i % PER_RUN == 0:
            run = store.start_run(PIPELINE, f"run{i // PER_RUN:05d}")
        key = _key(i)
        started = store.start(
            run,
            COMPONENT,
            {},
            {"model": "Model"},
            {"cache_key": key, "pipeline": PIPELINE},
            lambda output, execution_id: str(root / COMPONENT / output / str(execution_id)),
        )
        props = {"fingerprint": key[:16]}
        if i == hit:  # the one a hit returns: a real output folder, with its file manifest recorded
            uri = started.outputs["model"].uri
            os.makedirs(uri)
            Path(uri, "saved_model.pb").write_bytes(os.urandom(4096))
            props["files"] = json.dumps(manifest.file_manifest(uri))
        store.finish(started, "COMPLETE", artifact_props={"model": props})
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} executions registered ({time.perf_counter() - started_at:.0f} s)", file=sys.stderr)
    return time.perf_counter() - started_at, hit


def old_find_cached(store, component: str, cache_key: str, damage):
    """find_cached as it was before the cache_key context: a scan of every execution of the type."""
    from ml_metadata.proto import metadata_store_pb2 as pb

    candidates = [
        e
        for e in store.store.get_executions_by_type(f"tfpipe.{component}")
        if e.last_known_state == pb.Execution.COMPLETE and e.properties["cache_key"].string_value == cache_key
    ]
    for execution in sorted(candidates, key=lambda e: (e.create_time_since_epoch, e.id), reverse=True):
        outputs = store.outputs_of(execution.id)
        if not outputs or not all(a.state == "LIVE" for a in outputs.values()):
            continue
        if not any(damage(a) for a in outputs.values()):
            return execution, outputs
    return None


def _timed(fn, repeat: int) -> dict:
    fn()  # warm: type and context caches, SQLite's pages
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(times[min(len(times) - 1, round(0.95 * len(times)) - 1)], 3),
        "max_ms": round(times[-1], 3),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200, help="timed lookups of each kind")
    parser.add_argument("--store", help="a folder to build the store in and keep (reused when it has one)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args(argv)
    logging.getLogger("tfpipe").setLevel(logging.ERROR)

    from pipeline.metadata import MetadataStore
    from pipeline.runner import _damage

    work = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="bench_cache_lookup_"))
    try:
        path, root = work / "metadata.sqlite", work / "root"
        if path.exists():
            build_seconds, hit = None, args.executions // 2
        else:
            work.mkdir(parents=True, exist_ok=True)
            # Built in memory where there is a tmpfs (SQLite's fsync per commit is most of the time on a disk,
            # ~50 ms an execution here), then moved beside the outputs: the lookups read the file from disk.
            shm = Path("/dev/shm")
            scratch = Path(tempfile.mkdtemp(prefix="bench_cache_lookup_", dir=shm if shm.is_dir() else work))
            try:
                build_seconds, hit = build(scratch / "metadata.sqlite", root, args.executions)
                shutil.move(scratch / "metadata.sqlite", path)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        store = MetadataStore(str(path))  # a fresh one, as a run opens it
        count = len(store.store.get_executions_by_type(f"tfpipe.{COMPONENT}"))
        hit_key, miss_key = _key(hit), _key(-1)

        found = store.find_cached(COMPONENT, hit_key, damage=_damage)
        assert found is not None and found[0].properties["cache_key"] == hit_key, "the hit was not found"
        assert store.find_cached(COMPONENT, miss_key, damage=_damage) is None, "the miss was found"
        old = old_find_cached(store, COMPONENT, hit_key, _damage)
        assert old is not None and old[0].id == found[0].id, "the old way found another execution"
        assert old_find_cached(store, COMPONENT, miss_key, _damage) is None

        new_hit = _timed(lambda: store.find_cached(COMPONENT, hit_key, damage=_damage), args.repeat)
        new_miss = _timed(lambda: store.find_cached(COMPONENT, miss_key, damage=_damage), args.repeat)
        old_hit = _timed(lambda: old_find_cached(store, COMPONENT, hit_key, _damage), max(5, args.repeat // 10))
        old_miss = _timed(lambda: old_find_cached(store, COMPONENT, miss_key, _damage), max(5, args.repeat // 10))
        size = path.stat().st_size
    finally:
        if not args.store:
            shutil.rmtree(work, ignore_errors=True)
    doc = {
        "benchmark": "cache_lookup",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "executions_in_store": count,
        "store_mb": round(size / 2**20, 1),
        "build_seconds": round(build_seconds, 1) if build_seconds is not None else "reused",
        "repeat": {"find_cached": args.repeat, "old_scan": max(5, args.repeat // 10)},
        "damage_check": "pipeline.runner._damage (the hit's output folder exists, its file manifest recorded)",
        "find_cached_hit": new_hit,
        "find_cached_miss": new_miss,
        "old_scan_hit": old_hit,
        "old_scan_miss": old_miss,
        "old_over_new_hit": round(old_hit["median_ms"] / new_hit["median_ms"], 1),
        "old_over_new_miss": round(old_miss["median_ms"] / new_miss["median_ms"], 1),
        "target_ms": 50,
        "within_target": max(new_hit["p95_ms"], new_miss["p95_ms"]) <= 50,
    }
    return emit(doc, "cache-lookup", write=not args.no_write)


if __name__ == "__main__":
    main()
