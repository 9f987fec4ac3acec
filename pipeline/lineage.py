"""Lineage views: where an artifact came from (back to the raw input files) and what was made from it."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.errors import ConfigError
from pipeline.metadata import MetadataStore, redact


@dataclass
class Graph:
    """Nodes keyed "file:<path>", "artifact:<id>", "execution:<id>"; edges run from input to output."""

    focus: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {"kind", "label", "detail", "state"}
    edges: set[tuple[str, str]] = field(default_factory=set)

    def order(self) -> list[str]:
        """Nodes with every node after its inputs (files first)."""
        incoming = {k: {a for a, b in self.edges if b == k} for k in self.nodes}
        done: set[str] = set()
        out: list[str] = []
        while len(out) < len(self.nodes):
            ready = sorted(k for k in self.nodes if k not in done and incoming[k] <= done)
            if not ready:  # a cycle cannot happen in MLMD lineage; stop rather than spin
                ready = sorted(k for k in self.nodes if k not in done)
            for k in ready:
                done.add(k)
                out.append(k)
        return out


def resolve(store: MetadataStore, ref: str) -> int:
    """An artifact id from an id, an artifact's URI, or a pushed model's serving folder."""
    if str(ref).isdigit():
        return store.artifact(int(ref)).id
    path = os.path.abspath(ref)
    found = store.artifacts_by_uri(path)
    if not found:
        found = [a for a in store.artifacts("PushedModel") if a.properties.get("pushed_destination") == path]
    if not found:
        raise ConfigError(f"no artifact with id or path {ref!r} in {redact(store.url)}; `tfpipe artifacts` lists them")
    return max(found, key=lambda a: a.id).id


def build(store: MetadataStore, artifact_id: int, check_files: bool = True) -> Graph:
    """check_files: mark raw input files whose content no longer matches the recorded hash (reads them)."""
    graph = Graph(focus=f"artifact:{artifact_id}")
    _upstream(store, graph, artifact_id, check_files)
    _downstream(store, graph, artifact_id)
    return graph


def _add_artifact(store, graph, artifact_id) -> str:
    key = f"artifact:{artifact_id}"
    if key not in graph.nodes:
        a = store.artifact(artifact_id)
        where = a.uri + (f" -> {a.properties['pushed_destination']}" if a.properties.get("pushed_destination") else "")
        graph.nodes[key] = {"kind": "artifact", "label": f"{a.type} #{a.id}", "detail": where, "state": a.state}
    return key


def _add_execution(store, graph, execution) -> str:
    key = f"execution:{execution.id}"
    if key not in graph.nodes:
        run = execution.properties.get("run_id", "")
        hw = execution.manifest.get("hardware", {})
        cluster = hw.get("tf_config_cluster")
        if cluster:  # trained on a TF_CONFIG cluster: its shape and strategy
            order = ["chief", "master", "worker", "ps", "evaluator"]  # TF_CONFIG's roles, as a person lists them
            roles = sorted(cluster, key=lambda r: (order.index(r) if r in order else len(order), r))
            shape = " ".join(f"{role}:{cluster[role]}" for role in roles)
            run += f" on a cluster {shape}" + (f" ({hw['strategy']})" if hw.get("strategy") else "")
        graph.nodes[key] = {
            "kind": "execution",
            "label": f"{execution.component} #{execution.id}",
            "detail": run,
            "state": execution.state,
        }
    return key


def _upstream(store, graph, artifact_id, check_files: bool) -> None:
    target = _add_artifact(store, graph, artifact_id)
    producers = [store.execution(e) for e, kind, _ in store.artifact_events(artifact_id) if kind == "OUTPUT"]
    # The execution that made it, not the CACHED ones that later reused it.
    made = [e for e in producers if e.state != "CACHED"] or producers
    for execution in made[:1]:
        seen = f"execution:{execution.id}" in graph.nodes
        ekey = _add_execution(store, graph, execution)
        graph.edges.add((ekey, target))
        if seen:  # its inputs are walked already
            continue
        for input_id in _inputs(store, execution.id):
            graph.edges.add((_add_artifact(store, graph, input_id), ekey))
            _upstream(store, graph, input_id, check_files)
        for path, digest in execution.manifest.get("input_files", {}).items():
            fkey = f"file:{path}"
            graph.nodes[fkey] = {
                "kind": "file",
                "label": Path(path).name,
                "detail": f"{path} sha256:{digest[:12]}",
                "state": ("changed" if _changed(path, digest) else "unchanged") if check_files else "recorded",
            }
            graph.edges.add((fkey, ekey))


def _changed(path: str, digest: str) -> bool:
    from pipeline.manifest import fingerprint

    return not os.path.isfile(path) or fingerprint(path) != digest


def _inputs(store, execution_id) -> list[int]:
    return [a.id for a in store.inputs_of(execution_id).values()]


def _downstream(store, graph, artifact_id) -> None:
    source = _add_artifact(store, graph, artifact_id)
    for execution_id, kind, _ in store.artifact_events(artifact_id):
        if kind != "INPUT":
            continue
        execution = store.execution(execution_id)
        ekey = _add_execution(store, graph, execution)
        if (source, ekey) in graph.edges:
            continue
        graph.edges.add((source, ekey))
        for output in store.outputs_of(execution_id).values():
            graph.edges.add((ekey, _add_artifact(store, graph, output.id)))
            _downstream(store, graph, output.id)


def text(graph: Graph) -> str:
    """One line per node, inputs before outputs, each naming what it came from."""
    lines = []
    for key in graph.order():
        node = graph.nodes[key]
        sources = sorted(graph.nodes[a]["label"] for a, b in graph.edges if b == key)
        mark = "*" if key == graph.focus else " "
        lines.append(
            f"{mark} {node['label']:<22} {node['state']:<9} {node['detail']}"
            + (f"   <- {', '.join(sources)}" if sources else "")
        )
    return "\n".join(lines)


def _tail(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def markdown(graph: Graph) -> str:
    rows = ["| node | state | from | where |", "|---|---|---|---|"]
    for key in graph.order():
        node = graph.nodes[key]
        sources = ", ".join(sorted(graph.nodes[a]["label"] for a, b in graph.edges if b == key))
        detail = _tail(node["detail"], 40)  # the pane is narrow: the end of a path tells it apart
        rows.append(
            f"| {'**' + node['label'] + '**' if key == graph.focus else node['label']} | {node['state']} "
            f"| {sources} | `{detail}` |"
        )
    return "\n".join(rows)


_SHAPES = {"file": "note", "artifact": "box", "execution": "ellipse"}
_COLOURS = {
    "LIVE": "#d9f2d9",
    "COMPLETE": "#d9f2d9",
    "CACHED": "#e0ecff",
    "FAILED": "#f8d0d0",
    "ABANDONED": "#f8d0d0",
    "RUNNING": "#fff2c0",
    "PENDING": "#fff2c0",
    "changed": "#f8d0d0",
}


def dot(graph: Graph) -> str:
    def q(s):
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10, style=filled];']
    for key in graph.order():
        node = graph.nodes[key]
        detail = _tail(node["detail"], 48)
        lines.append(
            f"  {q(key)} [label={q(node['label'] + chr(10) + node['state'] + chr(10) + detail)}, "
            f"shape={_SHAPES[node['kind']]}, fillcolor={q(_COLOURS.get(node['state'], '#eeeeee'))}"
            + (", penwidth=3" if key == graph.focus else "")
            + "];"
        )
    for a, b in sorted(graph.edges):
        lines.append(f"  {q(a)} -> {q(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(graph: Graph) -> str:
    """The graph drawn by graphviz's `dot`."""
    exe = shutil.which("dot")
    if not exe:
        raise ConfigError(
            "`--format svg` needs graphviz's `dot` program: install graphviz (apt install graphviz, "
            "brew install graphviz), or use --format dot and render it elsewhere"
        )
    done = subprocess.run([exe, "-Tsvg"], input=dot(graph), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ConfigError(f"graphviz failed: {done.stderr.strip()}")
    return done.stdout
