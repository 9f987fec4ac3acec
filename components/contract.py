"""The component contract: what a component declares, once, in its own module.

A component is a plain executor function plus a declaration of its typed input and output artifacts, its
parameters (one pydantic model, which is also its YAML section), what its cache key covers and which outputs
a re-run may adopt. The runner in `pipeline/` reads only this declaration: it knows no component by name.
The standard components (ingest, transform, trainer, evaluator, pusher) are declared with it, and so is a
user's, through the `@component` decorator:

    from components.contract import Input, Output, component

    @component
    def drop_outliers(examples: Input[Examples], filtered: Output[Examples], max_fare: float = 500.0):
        ...  # read examples.uri, write into the folder `filtered`

Nothing here imports TensorFlow, Beam, Prefect or ml_metadata.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, create_model

from components.errors import ConfigError
from schemas.artifacts import Artifact, ArtifactType

# (input artifacts by name, output folders by name (staging: the runner publishes them), parameters) ->
# {output name: {property: value}} recorded on the published artifacts, or None.
# (The parameters are the component's own model: typed Any here, since a Callable's arguments cannot narrow.)
Executor = Callable[[dict[str, Artifact], dict[str, str], Any], "Mapping[str, Mapping[str, Any]] | None"]


class Parameters(BaseModel):
    """Base of a component's parameters: unknown keys are errors, and field names may be given by alias."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ---- markers on parameter fields: what the loader does with them ---------------------------------------------


@dataclass(frozen=True)
class PathParam:
    """A path (or a glob, or a {name: path} mapping of them) relative to the pipeline file's folder.
    `outside_root`: where results leave the pipeline (serving); a reproduction redirects it beside itself.
    `default_under_root`: when not given, this folder under the pipeline's root."""

    outside_root: bool = False
    default_under_root: str | None = None


@dataclass(frozen=True)
class UserModule:
    """A user module (a .py path or a dotted name) that must define `function`; its source, and the local
    modules it imports, are part of the component's cache key and manifest."""

    function: str


@dataclass(frozen=True)
class InputSpec:
    """An input slot. `resolver`: filled by the runner, not wired (e.g. the latest pushed model, the
    evaluator's baseline), and recorded in MLMD as an input like any other. `gate`: the input only orders the
    instance after its producer (a validator's verdict before a transform): it is recorded in MLMD, and a
    blocked one stops the instance, but it stays out of the cache key (re-judging the same data with other
    thresholds does not redo the work after it)."""

    type: str
    optional: bool = False
    resolver: str | None = None
    gate: bool = False


# An executor that returns a non-empty `blocked` property on an output stops the run once its outputs are
# published and its execution is recorded COMPLETE (or found CACHED): the runner raises errors.Blocked with
# it, and no instance that depends on it runs, nor any that takes a blocked artifact as input later.
BLOCKED = "blocked"


@dataclass(frozen=True)
class Component:
    """A component's whole declaration. See the module docstring."""

    name: str
    inputs: dict[str, InputSpec]
    outputs: dict[str, str]  # output name -> artifact type
    parameters: type[BaseModel]
    executor: Executor
    # The code the cache key covers: these tfpipe modules and what they import (all the way down), or, for a
    # user's component, its file and the local modules that imports.
    code: tuple[str, ...] = ()
    user_file: str | None = None
    resumable: tuple[str, ...] = ()  # outputs a re-run adopts from a stopped or dead run with the same key
    # Raw input files the cache key hashes by content (an edited CSV must be read again).
    input_files: Callable[[Any], list[str]] | None = None
    # The parameters as plain data, equal exactly when the outputs would be (7:3 is 70:30); default: as given.
    canonical: Callable[[Any], dict] | None = None
    # A parameter left out takes the first of these that the pipeline sets ("<instance id>.<parameter>"):
    # how the sections of a pipeline file in the standard form share the label.
    defaults: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Checks against the graph before anything runs: (parameters, Upstream) -> None or a ConfigError.
    check: Callable[[Any, Upstream], None] | None = None
    # The raw columns its examples will hold, when that can be told before it runs (a pinned schema, a CSV
    # header), else None: what a downstream `check` compares its column names with.
    columns: Callable[[Any], list[str] | None] | None = None
    # Where the executor's work runs when not all in this process (a TF_CONFIG cluster it launches):
    # parameters -> {"tf_config_cluster": {role: tasks}, ...} or None; recorded in the manifest's hardware,
    # whose determinism verdict it informs.
    placement: Callable[[Any], dict | None] | None = None
    # Shared resources the executor occupies while it runs, one slot of each (the trainer: ("training",)).
    # The pipeline's orchestrator holds the slots for the whole run of the instance: under Prefect, its task
    # run is tagged `tfpipe-<slot>`, so a concurrency limit on that tag (`prefect concurrency-limit create
    # tfpipe-training 1`) bounds how many such instances run at once on every worker of the server.
    holds: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self):
        for slot in self.holds:
            if not isinstance(slot, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", slot):
                raise ConfigError(
                    f"component {self.name}: holds={self.holds!r}: a slot is a lowercase name of letters, digits, "
                    "'-' and '_' (e.g. 'training')"
                )

    def run(self, inputs: dict[str, Artifact], outputs: dict[str, str], params: BaseModel) -> dict:
        return dict(self.executor(inputs, outputs, params) or {})


class Upstream:
    """What a component's `check` may ask of the graph: the component and parameters wired to an input."""

    def __init__(self, lookup: Callable[[str], tuple[Component, BaseModel] | None], root: str | None = None):
        self._lookup = lookup
        self.root = root  # the pipeline's root folder (where its outputs go), when the loader knows it

    def __call__(self, input_name: str) -> tuple[Component, BaseModel] | None:
        return self._lookup(input_name)


def field_markers(params: type[BaseModel], kind: type) -> dict[str, Any]:
    """{field name: marker} of the parameters' fields annotated with a marker of `kind`."""
    return {name: m for name, f in params.model_fields.items() for m in f.metadata if isinstance(m, kind)}


def user_modules(component: Component, params: BaseModel) -> dict[str, str]:
    """{field: module} of the user modules the parameters name."""
    return {
        name: getattr(params, name) for name in field_markers(component.parameters, UserModule) if getattr(params, name)
    }


# ---- components users write ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    kind: str  # "input" or "output"
    type: str


T = TypeVar("T")


def _type_name(item: Any) -> str:
    """An artifact type's name: from an ArtifactType subclass (Examples, a ModelCard of your own) or a string."""
    if isinstance(item, str):
        return item
    if isinstance(item, type) and issubclass(item, ArtifactType):
        return item.__name__
    raise ConfigError(
        f"Input[...] and Output[...] take an artifact type (a schemas.artifacts.ArtifactType subclass, "
        f"e.g. Examples) or its name, not {item!r}"
    )


class Input(Artifact, Generic[T]):
    """`Input[Examples]`: an input artifact of that type (an `Artifact`: `.uri`, `.properties`). A type
    checker sees an Artifact."""

    def __class_getitem__(cls, item):
        return Annotated[Artifact, _Slot("input", _type_name(item))]


class Output(str, Generic[T]):
    """`Output[ModelCard]`: an output of that type; the function gets the folder to write it into (a str).
    A type checker sees a str."""

    def __class_getitem__(cls, item):
        return Annotated[str, _Slot("output", _type_name(item))]


def component(
    fn: Callable | None = None,
    *,
    name: str | None = None,
    resumable: tuple[str, ...] = (),
    holds: tuple[str, ...] = (),
):
    """Turns a typed function into a component: `Input[...]` arguments are its inputs, `Output[...]`
    arguments its outputs (folders it writes into), and every other argument a parameter, typed and
    defaulted as in the signature. It may return {output: {property: value}} to record on its outputs.
    `holds`: the shared slots it occupies while it runs, as the trainer's ("training",) (see Component).
    The function stays callable as it was; its declaration is `fn.component`."""
    if fn is None:
        return lambda f: component(f, name=name, resumable=resumable, holds=holds)
    hints = typing.get_type_hints(fn, include_extras=True)
    inputs, outputs, fields = {}, {}, {}
    for arg, p in inspect.signature(fn).parameters.items():
        slot = next((m for m in getattr(hints.get(arg), "__metadata__", ()) if isinstance(m, _Slot)), None)
        if slot is not None and slot.kind == "input":
            inputs[arg] = InputSpec(slot.type, optional=p.default is None)
        elif slot is not None:
            outputs[arg] = slot.type
        elif p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigError(f"component {fn.__name__}: *{arg} cannot be a parameter; name each one")
        else:
            fields[arg] = (hints.get(arg, Any), ... if p.default is p.empty else p.default)
    if not outputs:
        raise ConfigError(f"component {fn.__name__} declares no output: give it an argument typed Output[SomeType]")
    params = create_model(f"{fn.__name__}_parameters", __base__=Parameters, **fields)  # type: ignore[call-overload]

    def executor(ins: dict[str, Artifact], outs: dict[str, str], values: BaseModel):
        return fn(**{k: ins.get(k) for k in inputs}, **outs, **dict(values))

    fn.component = Component(  # type: ignore[attr-defined]
        name=name or fn.__name__,
        inputs=inputs,
        outputs=outputs,
        parameters=params,
        executor=executor,
        code=("components.contract",),
        user_file=inspect.getfile(fn),
        resumable=tuple(resumable),
        holds=(holds,) if isinstance(holds, str) else tuple(holds),
        description=(fn.__doc__ or "").strip().split("\n")[0],
    )
    return fn


def as_component(obj: Any, where: str) -> Component:
    """A Component from a declaration or from a function made one by @component."""
    if isinstance(obj, Component):
        return obj
    found = getattr(obj, "component", None)
    if isinstance(found, Component):
        return found
    raise ConfigError(
        f"{where} is neither a component declaration nor a function decorated with @components.contract.component"
    )
