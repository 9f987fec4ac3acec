"""`tfpipe reproduce` and `tfpipe diff`: a recorded run re-executed from its manifest and compared, and two
runs set side by side."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from components.contract import PathParam, field_markers
from components.errors import ConfigError
from pipeline import manifest
from pipeline.config import Node, PipelineConfig, parse
from pipeline.metadata import REPRODUCE, Execution, MetadataStore

IDENTICAL, WITHIN, DIFFERENT = "identical", "within tolerance", "different"


def _run(store: MetadataStore, ref: str) -> tuple[str, list[Execution]]:
    name = store.find_run(ref)
    return name, store.run_executions(name)


def _by_component(executions: list[Execution]) -> dict[str, Execution]:
    """The last execution of each component instance in a run (a retried step counts once), in run order."""
    out: dict[str, Execution] = {}
    for e in executions:
        out.pop(e.component, None)
        out[e.component] = e
    return dict(sorted(out.items(), key=lambda item: min(x.id for x in executions if x.component == item[0])))


def _affected(kind: str, order: list[str]) -> str:
    """The first instance a change takes effect in: a user module's own instance ("<id>.<field>"), else the
    first of the run (input files, libraries, code, hardware and config reach everything)."""
    node_id = kind.split(".", 1)[0]
    return node_id if "." in kind and node_id in order else order[0]


def _outside_root(node: Node) -> list[str]:
    """The YAML keys of the instance's paths where results leave the pipeline (serving): what a reproduction
    moves beside itself, and so what comparing two runs' configs leaves out."""
    fields = node.component.parameters.model_fields
    return [
        fields[name].alias or name
        for name, marker in field_markers(node.component.parameters, PathParam).items()
        if marker.outside_root
    ]


def _redirected(cfg: PipelineConfig, folder: Path) -> dict:
    """The config with every path where results leave the pipeline (serving) moved into `folder`."""
    raw = cfg.to_raw()
    for item in raw["components"]:
        for key in _outside_root(cfg.nodes[item["id"]]):
            item[key] = str(folder / item["id"] / key)
    return raw


def reproduce(store: MetadataStore, ref: str, workdir: str | None = None) -> dict:
    """Re-runs `ref` from its manifest (config and input paths), nothing cached, then compares the outputs."""
    from pipeline.flow import pipeline_flow

    original_name, executions = _run(store, ref)
    recorded = _by_component(executions)
    first = next((e.manifest for e in executions if e.manifest), None)
    if not first:
        raise ConfigError(f"run {original_name} has no manifest (it predates them); it cannot be reproduced")
    config = dict(first["config"])
    folder = Path(workdir or Path(config["root"]) / "reproduce" / f"{original_name}-{time.strftime('%Y%m%dT%H%M%S')}")
    folder.mkdir(parents=True, exist_ok=True)
    # Same store, same root (new execution ids keep URIs apart); pushes go beside, never to production serving.
    config.update(metadata=store.url)
    config.pop("source", None)
    config_path = folder / "pipeline.yaml"
    # The recorded config (either form, paths absolute) read as a pipeline file in that folder.
    config = _redirected(parse(dict(config), config_path), folder)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    result = pipeline_flow(str(config_path), no_cache=True, components=list(recorded), purpose=REPRODUCE)
    new_name, new_executions = _run(store, result["run_id"])
    report = compare(store, original_name, executions, new_name, new_executions)
    report["config"] = str(config_path)
    return report


def compare(store: MetadataStore, name_a: str, execs_a: list, name_b: str, execs_b: list) -> dict:
    """Each output of run a against the same output of run b, with the manifest differences that explain it."""
    a, b = _by_component(execs_a), _by_component(execs_b)
    causes = manifest_changes(a, b)
    exact = all(e.manifest.get("determinism", {}).get("exact", True) for e in [*a.values(), *b.values()])
    replicas = [
        out.properties.get("replicas", 1)
        for e in [*a.values(), *b.values()]
        for out in store.outputs_of(e.id).values()
        if out.type == "ModelRun"
    ]
    if any(r and r > 1 for r in replicas):
        exact = False
    rows = []
    order = [c for c in a if c in b]
    for component in order:
        outs_a, outs_b = store.outputs_of(a[component].id), store.outputs_of(b[component].id)
        for output in sorted(set(outs_a) & set(outs_b)):
            verdict = _verdict(outs_a[output], outs_b[output], outs_a, outs_b, exact)
            likely = [c for c in causes if order.index(_affected(c["kind"], order)) <= order.index(component)]
            rows.append(
                {
                    "component": component,
                    "output": output,
                    "type": outs_a[output].type,
                    "verdict": verdict,
                    "a": outs_a[output].id,
                    "b": outs_b[output].id,
                    "likely_cause": [c["text"] for c in likely] if verdict == DIFFERENT else [],
                }
            )
    verdicts = {r["verdict"] for r in rows}
    overall = DIFFERENT if DIFFERENT in verdicts else WITHIN if WITHIN in verdicts else IDENTICAL
    return {
        "original": name_a,
        "reproduction": name_b,
        "verdict": overall,
        "exact_expected": exact,
        "outputs": rows,
        "changes": [c["text"] for c in causes],
    }


def _floats(artifact) -> dict[str, float]:
    return {k: v for k, v in artifact.properties.items() if isinstance(v, float)}


def _verdict(x, y, outs_x, outs_y, exact: bool) -> str:
    if x.type == "ModelEvaluation":
        fx, fy = _floats(x), _floats(y)
    elif x.type in ("ModelBlessing", "PushedModel"):
        flag = "blessed" if x.type == "ModelBlessing" else "pushed"
        return IDENTICAL if x.properties.get(flag) == y.properties.get(flag) else DIFFERENT
    elif x.properties.get("fingerprint") == y.properties.get("fingerprint"):
        return IDENTICAL
    elif exact:
        return DIFFERENT
    else:  # weights cannot match bit for bit here: judge them by what the run measured
        run_x = next((o for o in outs_x.values() if o.type == "ModelRun"), x)
        run_y = next((o for o in outs_y.values() if o.type == "ModelRun"), y)
        fx, fy = _floats(run_x), _floats(run_y)
        if not fx:
            return DIFFERENT
    if fx.keys() != fy.keys():
        return DIFFERENT
    gaps = [abs(fx[k] - fy[k]) for k in fx]
    if all(g == 0 for g in gaps):
        return IDENTICAL
    return WITHIN if not exact and all(g <= manifest.TOLERANCE["metric_abs"] for g in gaps) else DIFFERENT


def manifest_changes(a: dict, b: dict) -> list[dict]:
    """What differs between two runs' manifests, each change with the kind that says where it takes effect."""
    changes = []
    ma = {k: v.manifest for k, v in a.items() if v.manifest}
    mb = {k: v.manifest for k, v in b.items() if v.manifest}
    readers = [k for k in ma if k in mb and ("input_files" in ma[k] or "input_files" in mb[k])]
    for reader in readers:
        files_a, files_b = ma[reader].get("input_files", {}), mb[reader].get("input_files", {})
        for path in sorted(set(files_a) | set(files_b)):
            if files_a.get(path) != files_b.get(path):
                what = (
                    "is gone"
                    if path not in files_b
                    else "is new"
                    if path not in files_a
                    else f"changed (sha256 {files_a[path][:12]} -> {files_b[path][:12]})"
                )
                changes.append({"kind": "input file", "text": f"input file {path} {what}"})
    first_a: dict[str, Any] = next(iter(ma.values()), {})
    first_b: dict[str, Any] = next(iter(mb.values()), {})
    libs_a, libs_b = first_a.get("libraries", {}), first_b.get("libraries", {})
    for lib in sorted(set(libs_a) | set(libs_b)):
        if libs_a.get(lib) != libs_b.get(lib):
            changes.append({"kind": "library", "text": f"library version {lib} {libs_a.get(lib)} -> {libs_b.get(lib)}"})
    mods_a, mods_b = first_a.get("user_modules", {}), first_b.get("user_modules", {})
    for key in sorted(set(mods_a) | set(mods_b)):
        if mods_a.get(key, {}).get("sha256") != mods_b.get(key, {}).get("sha256"):
            changes.append(
                {"kind": key, "text": f"module {key} {mods_b.get(key, mods_a.get(key, {})).get('path')} changed"}
            )
    code_a, code_b = first_a.get("code", {}), first_b.get("code", {})
    if code_a != code_b:
        changes.append({"kind": "tfpipe code", "text": f"tfpipe code {_code(code_a)} -> {_code(code_b)}"})
    hw_a, hw_b = first_a.get("hardware", {}), first_b.get("hardware", {})
    for key in ("devices", "tf_config_cluster", "machine"):
        if hw_a.get(key) != hw_b.get(key):
            changes.append({"kind": "hardware", "text": f"hardware {key} {hw_a.get(key)} -> {hw_b.get(key)}"})
    for key, (x, y) in _flat_diff(_comparable(first_a.get("config", {})), _comparable(first_b.get("config", {}))):
        changes.append({"kind": "config", "text": f"config {key}: {json.dumps(x)} -> {json.dumps(y)}"})
    return changes


def _comparable(config: dict) -> dict:
    """The config less what a reproduction changes on purpose (where results leave the pipeline, which file
    it came from), with the instances keyed by id."""
    out = {k: v for k, v in config.items() if k not in ("source", "metadata")}
    if isinstance(out.get("components"), list):
        out["components"] = {c.get("id"): c for c in out["components"] if isinstance(c, dict)}
    try:
        cfg = parse(
            {k: v for k, v in config.items() if k != "source"},
            Path(config.get("source") or Path(config.get("root", ".")) / "pipeline.yaml"),
        )
    except Exception:  # a config this tfpipe cannot read: compared as it is
        return out
    for node in cfg.nodes.values():
        section = out["components"].get(node.id) if "components" in out else out.get(node.id)
        if isinstance(section, dict):
            for key in _outside_root(node):
                section.pop(key, None)
    return out


def _code(code: dict) -> str:
    if "git_commit" in code:
        return code["git_commit"][:12] + (" (with uncommitted changes)" if code.get("dirty") else "")
    return f"package {code.get('package')}"


def _flat_diff(x, y, prefix=""):
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            yield from _flat_diff(x.get(k), y.get(k), f"{prefix}{k}.")
    elif x != y:
        yield prefix.rstrip("."), (x, y)


def diff(store: MetadataStore, ref_a: str, ref_b: str) -> dict:
    """Config, inputs, versions and metrics of two runs, where they differ."""
    name_a, execs_a = _run(store, ref_a)
    name_b, execs_b = _run(store, ref_b)
    a, b = _by_component(execs_a), _by_component(execs_b)
    metrics: dict[str, dict[str, float]] = {}  # component.metric -> {"a" or "b": value}
    for run, execs in (("a", a), ("b", b)):
        for component, e in execs.items():
            for out in store.outputs_of(e.id).values():
                for k, v in _floats(out).items():
                    metrics.setdefault(f"{component}.{k.removeprefix('metric:')}", {})[run] = v
    return {
        "a": name_a,
        "b": name_b,
        "changes": [c["text"] for c in manifest_changes(a, b)],
        "metrics": {k: v for k, v in sorted(metrics.items()) if v.get("a") != v.get("b")},
        "states": {
            c: [a[c].state if c in a else None, b[c].state if c in b else None] for c in dict.fromkeys([*a, *b])
        },
    }
