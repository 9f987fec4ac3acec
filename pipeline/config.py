"""The pipeline file: validated once, here, into a graph of component instances, with paths resolved
against the file's folder.

Two forms. The graph form lists instances, each with an id, a type (a standard component's name,
`package.module:function` or `file.py:function` for a user's @component), its inputs wired from other
instances' outputs, and its parameters:

    components:
      - {id: ingest, type: ingest, input: data.csv}
      - {id: filter, type: checks.py:drop_outliers, inputs: {examples: ingest.examples}, max_fare: 300}

The standard form has one section per standard component (ingest:, transform:, ...) and means the standard
chain (components.registry.STANDARD_WIRING). Everything that can be checked without running anything is
checked here: unknown types and parameters, unwired inputs, wrong artifact types, cycles, user modules.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from components.contract import Component, PathParam, Upstream, UserModule, as_component, field_markers
from components.errors import ConfigError
from components.registry import OPTIONAL_SECTIONS, REQUIRED_SECTIONS, STANDARD, STANDARD_WIRING, standard
from components.user_module import check_defines, load_function


class ConfigFileError(ConfigError):
    """The pipeline file is wrong; nothing has run or been recorded (the CLI exits 2)."""


class Settings(BaseModel):
    """The pipeline's own keys (besides its components)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    root: str | None = None  # default: ./tfpipe_root/<name>, beside the config file
    metadata: str | None = None  # sqlite path or URL, postgresql://, mysql://; default <root>/metadata.sqlite
    metadata_secret: str | None = None  # a Prefect Secret block holding the store's password
    metadata_timeout: float = Field(default=10.0, gt=0, le=3600)  # seconds to reach a shared store (or the
    # Prefect API) and hear it answer
    metadata_query_timeout: float = Field(default=60.0, gt=0, le=86400)  # seconds for one call to it, logged in


@dataclass
class Node:
    """One component instance: its declaration, validated parameters, and wiring
    {input: (upstream instance id, its output)}."""

    id: str
    type: str
    component: Component
    params: Any
    wiring: dict[str, tuple[str, str]]

    def section(self) -> dict:
        """The parameters as plain data (MLMD properties, manifests)."""
        return self.params.model_dump(by_alias=True)


@dataclass
class PipelineConfig:
    name: str
    root: str
    metadata: str
    metadata_secret: str | None
    metadata_timeout: float
    metadata_query_timeout: float
    nodes: dict[str, Node]  # in an order that runs every instance after its upstreams
    source: str | None = None  # the YAML file this came from

    def node(self, node_id: str) -> Node:
        if node_id not in self.nodes:
            close = difflib.get_close_matches(node_id, self.nodes, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigFileError(
                f"{self.source}: no component {node_id!r} in pipeline {self.name}{hint}; "
                f"its components are {', '.join(self.nodes)}"
            )
        return self.nodes[node_id]

    def upstream(self, node_id: str) -> set[str]:
        """The instances `node_id` reads from, directly or not."""
        seen, todo = set(), [node_id]
        while todo:
            for up, _ in self.nodes[todo.pop()].wiring.values():
                if up not in seen:
                    seen.add(up)
                    todo.append(up)
        return seen

    def to_raw(self) -> dict:
        """The whole config in the graph form, paths resolved: what a manifest records and reproduce reads."""
        settings = {k: getattr(self, k) for k in Settings.model_fields}
        return {
            **settings,
            "components": [
                {
                    "id": n.id,
                    "type": n.type,
                    "inputs": {k: f"{u}.{o}" for k, (u, o) in n.wiring.items()},
                    **json.loads(n.params.model_dump_json(by_alias=True)),
                }
                for n in self.nodes.values()
            ],
        }


# ---- messages --------------------------------------------------------------------------------------------------


def _problem(err: ErrorDetails, where: str, model: type[BaseModel]) -> str:
    """One pydantic error as a person wants it: where, what is wrong, and what is allowed."""
    loc = ".".join([where, *map(str, err["loc"])]) if where else ".".join(map(str, err["loc"]))
    if err["type"] == "extra_forbidden":
        model = _nested(model, err["loc"][:-1])
        keys = [f.alias or n for n, f in model.model_fields.items()]
        close = difflib.get_close_matches(str(err["loc"][-1]), keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{loc}: unknown key{hint}; the keys here are {', '.join(keys)}"
    if err["type"] == "missing":
        return f"{loc}: required, but not given"
    return f"{loc}: {err['msg']} (got {err['input']!r})"


def _nested(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The model of a nested section (trainer.cluster) that `loc` leads to, for its keys; `model` itself when
    it leads to none."""
    for part in loc:
        field = model.model_fields.get(str(part))
        inner = (
            next(
                (
                    t
                    for t in typing.get_args(field.annotation) or (field.annotation,)
                    if isinstance(t, type) and issubclass(t, BaseModel)
                ),
                None,
            )
            if field is not None
            else None
        )
        if inner is None:
            return model
        model = inner
    return model


def _refuse(path: Path, problems: list[str]) -> NoReturn:
    if len(problems) == 1:
        raise ConfigFileError(f"{path}: {problems[0]}")
    raise ConfigFileError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


# ---- paths -----------------------------------------------------------------------------------------------------


def _resolve(base: Path, value: str, field: str = "") -> str:
    value = os.path.expanduser(value)
    if os.path.isabs(value) or "://" in value:
        return value
    resolved = (base / value).resolve()
    if field and not resolved.is_relative_to(base):
        # A relative path is read as "in this pipeline's folder"; one that climbs out is likely a mistake
        # (or a config copied from elsewhere), so it must be said explicitly, as an absolute path.
        raise ConfigFileError(
            f"{field}: {value!r} points outside the pipeline's folder {base}; "
            f"write it as an absolute path ({resolved}) if that is intended"
        )
    return str(resolved)


def _is_path(value: str) -> bool:
    return value.endswith(".py") or "/" in value or value.startswith(".")


def _resolve_params(node_id: str, component: Component, params: BaseModel, base: Path, root: str) -> None:
    """Relative paths are relative to the config file's folder; user modules must define their function."""
    for name, marker in field_markers(component.parameters, PathParam).items():
        value, where = getattr(params, name), f"{node_id}.{component.parameters.model_fields[name].alias or name}"
        if value is None and marker.default_under_root:
            value = str(Path(root) / marker.default_under_root)
        elif isinstance(value, dict):
            value = {k: _resolve(base, v, f"{where}.{k}") for k, v in value.items()}
        elif value is not None:
            value = _resolve(base, value, where)
        setattr(params, name, value)
    for name, marker in field_markers(component.parameters, UserModule).items():
        value = getattr(params, name)
        if value and _is_path(value):
            value = _resolve(base, value, f"{node_id}.{name}")
            setattr(params, name, value)
        if value:
            try:
                check_defines(value, marker.function)
            except ConfigError as e:
                raise ConfigFileError(f"{node_id}.{name}: {e}") from None


# ---- component types -----------------------------------------------------------------------------------------


def component_type(ref: str, base: Path, where: str) -> tuple[Component, str]:
    """A standard component by name, or a user's: `package.module:function` or `file.py:function` (beside
    the pipeline file). Returns it with the reference as recorded: a file's path made absolute, so that a
    manifest's config reads the same from anywhere (`tfpipe reproduce` writes it to another folder)."""
    if ref in STANDARD:
        return standard(ref), ref
    module, sep, function = ref.rpartition(":")
    if not sep or not module or not function:
        close = difflib.get_close_matches(ref, STANDARD, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigFileError(
            f"{where}: unknown type {ref!r}; {hint}use a standard component "
            f"({', '.join(STANDARD)}) or a user component as package.module:function or "
            "file.py:function"
        )
    if _is_path(module):
        module = _resolve(base, module, where)
    try:
        found = load_function(module, function)
    except ConfigError as e:
        raise ConfigFileError(f"{where}: type {ref!r}: {e}") from None
    try:
        return as_component(found, f"{where}: type {ref!r}"), f"{module}:{function}"
    except ConfigError as e:
        raise ConfigFileError(str(e)) from None


# ---- loading ---------------------------------------------------------------------------------------------------


def _standard_form(raw: dict) -> list[dict]:
    """The standard form's sections as graph-form instances, wired as the standard chain."""
    out = []
    present = {name for name in STANDARD if name in raw or name not in OPTIONAL_SECTIONS}
    grown = True
    while grown:  # an optional component whose output a present one needs is present too
        grown = False
        for name in list(present):
            for input_name, ref in STANDARD_WIRING.get(name, {}).items():
                source = ref.partition(".")[0]
                if source not in present and not standard(name).inputs[input_name].optional:
                    present.add(source)
                    grown = True
    for name in (n for n in STANDARD if n in present):
        if name not in raw and name not in REQUIRED_SECTIONS:
            raw[name] = {}
        if name not in raw:
            raise ConfigFileError(f"{name}: required, but not given")
        section = raw.pop(name)
        if not isinstance(section, dict):
            raise ConfigFileError(f"{name}: Input should be a valid dictionary (got {section!r})")
        # An edge from an optional component the file leaves out is dropped (the input is optional).
        wiring = {k: v for k, v in STANDARD_WIRING.get(name, {}).items() if v.partition(".")[0] in present}
        out.append({"id": name, "type": name, "inputs": wiring, **section, "_where": name})
    return out


def _sorted(nodes: dict[str, Node], path: Path) -> dict[str, Node]:
    """The nodes, each after the ones it reads from; a cycle is named."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(node_id: str, chain: list[str]) -> None:
        if state.get(node_id) == "done":
            return
        if state.get(node_id) == "visiting":
            cycle = chain[chain.index(node_id) :] + [node_id]
            raise ConfigFileError(
                f"{path}: {cycle[0]}: its inputs form a cycle ({' <- '.join(cycle)}, each reading the next's "
                "output); an instance cannot read, even indirectly, what it writes: wire one of these inputs to "
                "an instance outside the cycle"
            )
        state[node_id] = "visiting"
        for up, _ in nodes[node_id].wiring.values():
            visit(up, chain + [node_id])
        state[node_id] = "done"
        order.append(node_id)

    for node_id in nodes:
        visit(node_id, [])
    return {i: nodes[i] for i in order}


def _defaults(raw_nodes: list[dict]) -> None:
    """A parameter left out takes the first value the component's `defaults` name that the pipeline sets."""
    by_id = {r["id"]: r for r in raw_nodes if isinstance(r.get("id"), str)}
    for r in raw_nodes:
        for param, sources in r["_component"].defaults.items():
            if r.get(param) is not None:
                continue
            for source in sources:
                node_id, _, key = source.partition(".")
                value = by_id.get(node_id, {}).get(key)
                if value is not None:
                    r[param] = value
                    break


def parse(raw: dict, path: Path) -> PipelineConfig:
    """A pipeline file's contents (a mapping) -> a validated PipelineConfig. `path`: the file as the user
    named it (messages say it so); relative paths in it are relative to its folder."""
    source = path.resolve()
    base = source.parent
    graph_form = "components" in raw
    settings_keys = list(Settings.model_fields)
    allowed = settings_keys + (["components"] if graph_form else list(STANDARD))
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        problems = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{k}: unknown key{hint}; the keys here are {', '.join(allowed)}")
        _refuse(path, problems)
    raw = dict(raw)
    try:
        settings = Settings.model_validate({k: raw.pop(k) for k in settings_keys if k in raw})
    except ValidationError as e:
        _refuse(path, [_problem(err, "", Settings) for err in e.errors()])
    if graph_form:
        listed = raw.pop("components")
        if not isinstance(listed, list) or not listed:
            raise ConfigFileError(f"{path}: components: a list of instances ({{id, type, inputs, parameters...}})")
        raw_nodes = []
        for i, item in enumerate(listed):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item.get("type"):
                raise ConfigFileError(
                    f"{path}: components[{i}]: each instance needs an id and a type, e.g. "
                    "{id: trainer, type: trainer, inputs: {...}, module: model.py}"
                )
            raw_nodes.append({**item, "_where": item["id"]})  # messages name an instance by its id, in both forms
    else:
        try:
            raw_nodes = _standard_form(raw)
        except ConfigFileError as e:
            raise ConfigFileError(f"{path}: {e}") from None
    ids = [r["id"] for r in raw_nodes]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ConfigFileError(f"{path}: component id(s) {twice} are used more than once; give each instance its own id")
    for r in raw_nodes:
        r["_component"], r["type"] = component_type(str(r["type"]), base, f"{path}: {r['_where']}")
    _defaults(raw_nodes)

    root = _resolve(base, settings.root or f"tfpipe_root/{settings.name}", "root")
    problems, validated = [], []
    for r in raw_nodes:
        comp = r["_component"]
        values = {k: v for k, v in r.items() if k not in ("id", "type", "inputs") and not k.startswith("_")}
        try:
            validated.append((r, comp.parameters.model_validate(values)))
        except ValidationError as e:
            problems += [_problem(err, r["_where"], comp.parameters) for err in e.errors()]
    if problems:
        _refuse(path, problems)
    nodes = {}
    for r, params in validated:
        try:
            _resolve_params(r["id"], r["_component"], params, base, root)
        except ConfigFileError as e:
            raise ConfigFileError(f"{path}: {e}") from None
        nodes[r["id"]] = Node(r["id"], str(r["type"]), r["_component"], params, _wiring(r, r["_component"], path))
    _check_wiring(nodes, path)
    nodes = _sorted(nodes, path)
    for node in nodes.values():
        if node.component.check is not None:

            def upstream(input_name: str, node=node):
                wired = node.wiring.get(input_name)
                return (nodes[wired[0]].component, nodes[wired[0]].params) if wired else None

            try:
                node.component.check(node.params, Upstream(upstream, root))
            except ConfigError as e:
                raise ConfigFileError(f"{path}: {node.id}: {e}") from None

    metadata = settings.metadata
    if metadata is None:
        metadata = str(Path(root) / "metadata.sqlite")
    elif "://" not in metadata:
        metadata = _resolve(base, metadata, "metadata")
    return PipelineConfig(
        settings.name,
        root,
        metadata,
        settings.metadata_secret,
        settings.metadata_timeout,
        settings.metadata_query_timeout,
        nodes,
        str(source),
    )


def _wiring(r: dict, comp: Component, path: Path) -> dict[str, tuple[str, str]]:
    given = r.get("inputs") or {}
    where = f"{path}: {r['_where']}"
    if not isinstance(given, dict):
        raise ConfigFileError(f"{where}: inputs must map input names to <instance>.<output>, got {given!r}")
    wiring = {}
    for name, ref in given.items():
        if name not in comp.inputs:
            raise ConfigFileError(
                f"{where}: {comp.name} has no input {name!r}; its inputs are {', '.join(comp.inputs) or 'none'}"
            )
        up, dot, output = str(ref).partition(".")
        if not dot or not up or not output:
            raise ConfigFileError(
                f"{where}: input {name}: {ref!r} is not <instance>.<output> (for example ingest.examples)"
            )
        wiring[name] = (up, output)
    for name, spec in comp.inputs.items():
        if name not in wiring and not spec.optional and spec.resolver is None:
            raise ConfigFileError(
                f"{where}: input {name!r} ({spec.type}) is not wired; add "
                f"inputs: {{{name}: <instance>.<output>}} naming an output of type {spec.type}"
            )
    return wiring


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'AEIOU' else 'a'} {word}"


def _check_wiring(nodes: dict[str, Node], path: Path) -> None:
    for node in nodes.values():
        for name, (up, output) in node.wiring.items():
            where = f"{path}: {node.id}: input {name}"
            if up not in nodes:
                close = difflib.get_close_matches(up, nodes, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigFileError(f"{where}: no instance {up!r}{hint}; the instances are {', '.join(nodes)}")
            outputs = nodes[up].component.outputs
            if output not in outputs:
                raise ConfigFileError(f"{where}: {up} has no output {output!r}; its outputs are {', '.join(outputs)}")
            wanted = node.component.inputs[name].type
            if outputs[output] != wanted:
                fits = [f"{up}.{o}" for o, t in outputs.items() if t == wanted]
                hint = f"; wire {fits[0]}" if fits else ""
                raise ConfigFileError(f"{where}: takes {_a(wanted)}, but {up}.{output} is {_a(outputs[output])}{hint}")


@functools.lru_cache(maxsize=32)
def _cached(path: str, resolved: str, stamp: tuple, overrides: str) -> PipelineConfig:
    return _load(Path(path), json.loads(overrides))


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> PipelineConfig:
    """Reads and validates a pipeline YAML; errors name the file and the field. Parsed once per process
    (per file contents and overrides): every task of a run shares it. Treat the result as read-only."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigFileError(f"pipeline config {path} does not exist") from None
    return _cached(
        str(path),
        str(Path(path).resolve()),
        (st.st_mtime_ns, st.st_size, st.st_ino),
        json.dumps(overrides or {}, sort_keys=True),
    )


def _load(path: Path, overrides: dict) -> PipelineConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigFileError(f"pipeline config {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigFileError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigFileError(
            f"{path}: the top level must be a mapping (name, ingest, transform, trainer, ... or name and components)"
        )
    raw.update(overrides)
    return parse(raw, path)
