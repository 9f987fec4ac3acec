"""The artifact types, and the files an Examples (or TransformedExamples) artifact holds:
<uri>/Split-<name>/*.gz, gzipped TFRecords of tf.Examples."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.errors import InputError

EXAMPLES, SCHEMA, STATISTICS = "Examples", "Schema", "ExampleStatistics"
TRANSFORM_GRAPH, TRANSFORMED_EXAMPLES = "TransformGraph", "TransformedExamples"
MODEL, MODEL_RUN, EVALUATION, BLESSING, PUSHED_MODEL = (
    "Model",
    "ModelRun",
    "ModelEvaluation",
    "ModelBlessing",
    "PushedModel",
)
ANOMALIES = "ExampleAnomalies"
ARTIFACT_TYPES = (
    EXAMPLES,
    SCHEMA,
    STATISTICS,
    TRANSFORM_GRAPH,
    TRANSFORMED_EXAMPLES,
    MODEL,
    MODEL_RUN,
    EVALUATION,
    BLESSING,
    PUSHED_MODEL,
    ANOMALIES,
)


class ArtifactType:
    """An artifact type, for a component's `Input[...]` and `Output[...]`: the class name is the MLMD type
    name. Subclass it for a type of your own: `class ModelCard(ArtifactType): ...`."""


class Examples(ArtifactType):
    """<uri>/Split-<name>/*.gz: gzipped TFRecords of tf.Examples (from ingest, also statistics_state.json: the
    statistics component's accumulators over those files)."""


class Schema(ArtifactType):
    """<uri>/schema.pbtxt: a tensorflow-metadata Schema."""


class ExampleStatistics(ArtifactType):
    """From the statistics component: <uri>/Split-<name>/FeatureStats.pb, TFDV's DatasetFeatureStatisticsList.
    (ingest's own output of this type is <uri>/statistics.json, a pooled summary.)"""


class ExampleAnomalies(ArtifactType):
    """<uri>/Split-<name>/SchemaDiff.pb: a tensorflow-metadata Anomalies (TFX's layout); its property
    `blocked` is non-empty when they stopped the run."""


class TransformGraph(ArtifactType): ...


class TransformedExamples(ArtifactType): ...


class Model(ArtifactType):
    """<uri>: a SavedModel that takes serialized raw tf.Examples."""


class ModelRun(ArtifactType): ...


class ModelEvaluation(ArtifactType):
    """<uri>/metrics.json"""


class ModelBlessing(ArtifactType):
    """<uri>/BLESSED or <uri>/NOT_BLESSED"""


class PushedModel(ArtifactType):
    """<uri>/push.json; its properties say where the model went (`pushed_destination`)."""


@dataclass
class Artifact:
    """An artifact as components and the runner see it: its MLMD id, type, URI, state and custom properties."""

    id: int
    type: str
    uri: str
    state: str = "LIVE"
    properties: dict[str, Any] = field(default_factory=dict)
    created: int = 0  # ms since the epoch, when MLMD registered it


def split_dir(examples_dir: str | Path, split: str) -> Path:
    return Path(examples_dir) / f"Split-{split}"


def split_pattern(examples_dir: str | Path, split: str) -> str:
    return str(split_dir(examples_dir, split) / "*.gz")


def split_names(examples_dir: str | Path) -> list[str]:
    names = sorted(p.name[len("Split-") :] for p in Path(examples_dir).glob("Split-*") if p.is_dir())
    if not names:
        raise InputError(f"{examples_dir} holds no Split-* folders; is it an ingest output?")
    return names


def split_files(examples_dir: str | Path, split: str) -> list[str]:
    files = sorted(str(p) for p in split_dir(examples_dir, split).glob("*.gz"))
    if not files:
        raise InputError(f"{split_dir(examples_dir, split)} holds no .gz files; is it an ingest output?")
    return files


def gzip_writer(path: str | Path):
    """A TFRecord writer at zlib's fastest level: half the CPU of the default level for about 30% more
    bytes, on files that are written once and read a few times."""
    import tensorflow as tf

    return tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP", compression_level=1))


# ---- what an artifact's files are: fingerprints, and the manifest a cache reuse checks --------------------------


def _volatile(name: str) -> bool:
    # Bytes that change from run to run while the result does not: TensorBoard events (wall times),
    # the checkpoint index (timestamps), the push record (its version is the push time), and a
    # SavedModel's graph, which records the temporary folder tf.Transform analyzed in (its variables,
    # assets and metadata are hashed, and the code that builds the graph is in the manifest).
    return name in ("checkpoint", "push.json", "saved_model.pb", "fingerprint.pb") or name.startswith(
        "events.out.tfevents."
    )


def fingerprint(path: str) -> str:
    """A hash of a folder's (or file's) relative names and contents, run-to-run noise left out.

    Gzipped files are hashed decompressed: the gzip header holds the time it was written.
    """
    import gzip

    digest = hashlib.sha256()
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not _volatile(p.name))
    for f in files:
        digest.update(str(f.relative_to(root) if f != root else f.name).encode())
        with gzip.open(f, "rb") if f.suffix == ".gz" else open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


_HASHED_BELOW = 1 << 20  # files smaller than this are checked by content before a cache reuse; larger by size


def file_manifest(path: str) -> dict:
    """{relative path: [size, sha256 or None]} of every file under `path`: what a cache reuse checks."""
    root = Path(path)
    out = {}
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        size = f.stat().st_size
        out[str(f.relative_to(root))] = [
            size,
            hashlib.sha256(f.read_bytes()).hexdigest() if size < _HASHED_BELOW else None,
        ]
    return out


def damage(path: str, recorded: dict) -> str | None:
    """What no longer matches the manifest recorded at publish (a file gone, resized or changed), or None."""
    root = Path(path)
    if not root.is_dir():
        return f"{path} is gone"
    for rel, (size, digest) in recorded.items():
        f = root / rel
        if not f.is_file():
            return f"{rel} is gone from {path}"
        if f.stat().st_size != size:
            return f"{f} is {f.stat().st_size} bytes, {size} when it was made"
        if digest and hashlib.sha256(f.read_bytes()).hexdigest() != digest:
            return f"{f} has changed since it was made"
    return None
