"""transform: the user's preprocessing_fn, analyzed on the train split and applied to every split by tf.Transform on Beam."""

from __future__ import annotations

import random
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from components.errors import InputError, TfpipeError
from components.user_module import load_function

_BATCH = 1000  # rows per record batch, fixed (see transform())


class TransformError(TfpipeError):
    """The user's preprocessing_fn failed."""


@dataclass
class TransformConfig:
    module: str  # a .py path or dotted module holding preprocessing_fn(inputs)
    analyze_split: str = "train"
    beam_args: list = field(default_factory=lambda: ["--runner=DirectRunner", "--direct_num_workers=1"])


def _split_names(examples_dir: Path) -> list[str]:
    names = sorted(p.name[len("Split-"):] for p in examples_dir.glob("Split-*") if p.is_dir())
    if not names:
        raise InputError(f"transform: {examples_dir} holds no Split-* folders; is it an ingest output?")
    return names


def transform(config: TransformConfig, examples_dir: str, schema_path: str, transform_graph_dir: str,
              transformed_examples_dir: str) -> dict:
    """Writes the tf.Transform graph to transform_graph_dir and transformed_examples_dir/Split-<name>/."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx_bsl.public import tfxio

    from components.ingest import load_schema

    preprocessing_fn = load_function(config.module, "preprocessing_fn")
    module = sys.modules.get(preprocessing_fn.__module__)
    if module is not None and module.__name__.startswith("tfpipe_user_"):
        # A module loaded from a file path cannot be imported by Beam's worker processes
        # (--direct_running_mode=multi_processing, remote runners): send its code along by value.
        from apache_beam.internal.cloudpickle import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    examples = Path(examples_dir)
    splits = _split_names(examples)
    if config.analyze_split not in splits:
        raise InputError(f"transform: analyze_split {config.analyze_split!r} is not among the splits {splits}")
    schema = load_schema(schema_path)

    def guarded(inputs):
        try:
            return preprocessing_fn(inputs)
        except Exception as e:
            raise TransformError(f"preprocessing_fn in {config.module} failed: {type(e).__name__}: {e}") from e

    def source(split):
        return tfxio.TFExampleRecord(file_pattern=str(examples / f"Split-{split}" / "*.gz"), schema=schema,
                                     telemetry_descriptors=["tfpipe"])

    # Same data, same bits: analyzers sum floats batch by batch, so batches must not follow Beam's timing-
    # adaptive sizes, and Beam's hot-key fanout draws shards from `random`.
    random.seed(0)
    with tempfile.TemporaryDirectory(prefix="tft_", dir=transformed_examples_dir) as tmp:
        with beam.Pipeline(options=PipelineOptions(list(config.beam_args))) as pipeline, \
                tft_beam.Context(temp_dir=tmp):
            analyze_io = source(config.analyze_split)
            raw = pipeline | "Read-analyze" >> analyze_io.BeamSource(_BATCH)
            transform_fn = (raw, analyze_io.TensorAdapterConfig()) | tft_beam.AnalyzeDataset(guarded)
            _ = transform_fn | tft_beam.WriteTransformFn(str(transform_graph_dir))
            for split in splits:
                split_io = source(split)
                data = pipeline | f"Read-{split}" >> split_io.BeamSource(_BATCH)
                (batches, metadata) = ((data, split_io.TensorAdapterConfig()), transform_fn) | \
                    f"Transform-{split}" >> tft_beam.TransformDataset(output_record_batches=True)
                target = Path(transformed_examples_dir) / f"Split-{split}"
                _ = (batches
                     | f"Encode-{split}" >> beam.FlatMapTuple(
                         lambda batch, _, schema=metadata: _canonical(_encoder(schema).encode(batch)))
                     | f"Write-{split}" >> beam.io.WriteToTFRecord(str(target / "data"), file_name_suffix=".gz"))
    tft.TFTransformOutput(str(transform_graph_dir)).transformed_feature_spec()  # fails early if unreadable
    return {"splits": splits}


_ENCODERS = {}


def _canonical(serialized: list) -> list:
    """Examples re-serialized with their features in key order. The encoder's order follows a hash map
    (it changes from run to run); canonical, the same rows give the same bytes (about 2.5 us a row)."""
    import tensorflow as tf

    parse = tf.train.Example.FromString
    return [parse(s).SerializeToString(deterministic=True) for s in serialized]


def _encoder(metadata):
    from tfx_bsl.public import tfxio

    schema = metadata.schema if hasattr(metadata, "schema") else metadata
    key = schema.SerializeToString()
    if key not in _ENCODERS:
        _ENCODERS[key] = tfxio.RecordBatchToExamplesEncoder(schema)
    return _ENCODERS[key]
