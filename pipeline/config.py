"""The pipeline's YAML config: validated once, here, with paths resolved against the file's folder."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from components.errors import ConfigError
from components.user_module import check_defines

COMPONENTS = ("ingest", "transform", "trainer", "evaluator", "pusher")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestSection(_Section):
    input: Union[str, dict[str, str]]
    format: Optional[str] = None
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 7, "eval": 3})
    split_key: Optional[str] = None  # hash this column only, so corrections elsewhere in a row keep its split
    schema_file: Optional[str] = Field(default=None, alias="schema")
    na_values: list[str] = Field(default_factory=lambda: [""])
    label: Optional[str] = None  # the raw label column; default: trainer.raw_label, else trainer.label
    # A class label: each value in another split must occur in the train split, or the model cannot learn it.
    # Set false for a quantity (regression) stored as integers.
    label_is_class: bool = True

    @field_validator("splits")
    @classmethod
    def _positive(cls, splits):
        if not splits or any(w <= 0 for w in splits.values()):
            raise ValueError("splits must map split names to positive weights, e.g. {train: 7, eval: 3}")
        return splits


class TransformSection(_Section):
    module: str
    analyze_split: str = "train"
    beam_args: list[str] = Field(default_factory=lambda: ["--runner=DirectRunner", "--direct_num_workers=1"])
    apply: Literal["auto", "local", "beam"] = "auto"


class TrainerSection(_Section):
    module: str
    label: str
    raw_label: Optional[str] = None
    train_steps: int = Field(default=1000, gt=0)
    checkpoint_steps: Optional[int] = Field(default=None, gt=0)
    eval_steps: Optional[int] = Field(default=None, gt=0)
    batch_size: int = Field(default=32, gt=0)
    seed: int = 42
    deterministic: bool = True
    params: dict = Field(default_factory=dict)
    train_split: str = "train"
    eval_split: str = "eval"


class EvaluatorSection(_Section):
    label: Optional[str] = None  # default: the trainer's label
    slices: list[str] = Field(default_factory=list)
    thresholds: dict[str, dict[str, float]] = Field(default_factory=dict)
    change_thresholds: dict[str, dict[str, float]] = Field(default_factory=dict)
    split: str = "eval"


class PusherSection(_Section):
    serving_base: Optional[str] = None  # default: <root>/serving


class PipelineConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    root: Optional[str] = None  # default: ./tfpipe_root/<name>, beside the config file
    metadata: Optional[str] = None  # sqlite path or URL, postgresql://, mysql://; default <root>/metadata.sqlite
    metadata_secret: Optional[str] = None  # a Prefect Secret block holding the store's password
    metadata_timeout: float = Field(default=10.0, gt=0, le=3600)  # seconds to reach a shared store (or the
    # Prefect API) and hear it answer
    metadata_query_timeout: float = Field(default=60.0, gt=0, le=86400)  # seconds for one call to it, logged in
    ingest: IngestSection
    transform: TransformSection
    trainer: TrainerSection
    evaluator: EvaluatorSection = Field(default_factory=EvaluatorSection)
    pusher: PusherSection = Field(default_factory=PusherSection)
    source: Optional[str] = None  # the YAML file this came from (set by load_config)

    @model_validator(mode="after")
    def _defaults(self):
        if self.evaluator.label is None:
            self.evaluator.label = self.trainer.label
        if self.ingest.label is None:
            self.ingest.label = self.trainer.raw_label or self.trainer.label
        return self

    def section(self, component: str) -> dict:
        """The component's config as plain data (for MLMD properties and the cache key)."""
        return getattr(self, component).model_dump(by_alias=True)


_SECTIONS = {"ingest": IngestSection, "transform": TransformSection, "trainer": TrainerSection,
             "evaluator": EvaluatorSection, "pusher": PusherSection}
_MODULE_FUNCTIONS = {"transform": "preprocessing_fn", "trainer": "build_estimator"}


def _problem(err: dict) -> str:
    """One pydantic error as a person wants it: where, what is wrong, and what is allowed."""
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        model = _SECTIONS.get(str(err["loc"][0])) if len(err["loc"]) == 2 else PipelineConfig
        keys = [f.alias or n for n, f in model.model_fields.items() if n != "source"] if model else []
        close = difflib.get_close_matches(str(err["loc"][-1]), keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{loc}: unknown key{hint}; the keys here are {', '.join(keys)}"
    if err["type"] == "missing":
        return f"{loc}: required, but not given"
    return f"{loc}: {err['msg']} (got {err['input']!r})"


def _resolve(base: Path, value: str, field: str = "") -> str:
    value = os.path.expanduser(value)
    if os.path.isabs(value) or "://" in value:
        return value
    resolved = (base / value).resolve()
    if field and not resolved.is_relative_to(base):
        # A relative path is read as "in this pipeline's folder"; one that climbs out is likely a mistake
        # (or a config copied from elsewhere), so it must be said explicitly, as an absolute path.
        raise ConfigError(f"{field}: {value!r} points outside the pipeline's folder {base}; "
                          f"write it as an absolute path ({resolved}) if that is intended")
    return str(resolved)


def _is_path(value: str) -> bool:
    return value.endswith(".py") or "/" in value or value.startswith(".")


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> PipelineConfig:
    """Reads and validates a pipeline YAML; errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"pipeline config {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (name, ingest, transform, trainer, ...)")
    raw.update(overrides or {})
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as e:
        problems = [_problem(err) for err in e.errors()]
        raise ConfigError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems)) from None
    try:
        _resolve_paths(config, path.resolve())
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return config


def _resolve_paths(config: PipelineConfig, source: Path) -> None:
    """Relative paths are relative to the config file's folder; user modules must define their function."""
    base = source.parent
    config.source = str(source)
    config.root = _resolve(base, config.root or f"tfpipe_root/{config.name}", "root")
    if config.metadata is None:
        config.metadata = str(Path(config.root) / "metadata.sqlite")
    elif "://" not in config.metadata:
        config.metadata = _resolve(base, config.metadata, "metadata")
    ing = config.ingest
    ing.input = {k: _resolve(base, v, f"ingest.input.{k}") for k, v in ing.input.items()} \
        if isinstance(ing.input, dict) else _resolve(base, ing.input, "ingest.input")
    if ing.schema_file:
        ing.schema_file = _resolve(base, ing.schema_file, "ingest.schema")
    for name, function in _MODULE_FUNCTIONS.items():
        section = getattr(config, name)
        if _is_path(section.module):
            section.module = _resolve(base, section.module, f"{name}.module")
        try:
            check_defines(section.module, function)
        except ConfigError as e:
            raise ConfigError(f"{name}.module: {e}") from None
    serving = config.pusher.serving_base
    config.pusher.serving_base = _resolve(base, serving, "pusher.serving_base") if serving \
        else str(Path(config.root) / "serving")
