"""transform: the user's preprocessing_fn, analyzed on the train split and applied to every split by tf.Transform on Beam."""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from components.contract import Component, InputSpec, Parameters, UserModule
from components.errors import InputError, TfpipeError
from components.progress import Progress, doing
from components.user_module import load_function, local_imports, where_in
from schemas import artifacts
from schemas.schema import load_schema

if TYPE_CHECKING:
    from schemas.examples import CanonicalEncoder

_BATCH = 1000  # rows per record batch, fixed (see transform())
_POOL_BYTES = 32 << 20  # below this much input, starting worker processes (~4 s each) costs more than it saves
log = logging.getLogger("tfpipe.transform")  # under "tfpipe": on the CLI and in the Prefect UI


class TransformError(TfpipeError):
    """The user's preprocessing_fn failed."""


class TransformConfig(Parameters):
    """transform's parameters (its YAML section)."""

    # a .py path or dotted module holding preprocessing_fn(inputs)
    module: Annotated[str, UserModule("preprocessing_fn")]
    analyze_split: str = "train"
    beam_args: list[str] = Field(default_factory=lambda: ["--runner=DirectRunner", "--direct_num_workers=1"])
    # Where the graph is applied to the splits: "local" streams the files through this process (fast, flat
    # memory); "beam" runs TransformDataset on the runner; "auto": local on the DirectRunner, else beam.
    apply: Literal["auto", "local", "beam"] = "auto"


def transform(
    config: TransformConfig,
    examples_dir: str,
    schema_path: str,
    transform_graph_dir: str,
    transformed_examples_dir: str,
) -> dict:
    """Writes the tf.Transform graph to transform_graph_dir and transformed_examples_dir/Split-<name>/."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tfx_bsl.public import tfxio

    preprocessing_fn = load_function(config.module, "preprocessing_fn")
    module = sys.modules.get(preprocessing_fn.__module__)
    if module is not None and module.__name__.startswith("tfpipe_user_"):
        # A module loaded from a file path cannot be imported by Beam's worker processes
        # (--direct_running_mode=multi_processing, remote runners): send its code along by value.
        from apache_beam.internal.cloudpickle import cloudpickle

        cloudpickle.register_pickle_by_value(module)
        for name in local_imports(config.module):  # and the helpers beside it that it imports
            if name in sys.modules and "." not in name:
                cloudpickle.register_pickle_by_value(sys.modules[name])
    examples = Path(examples_dir)
    splits = artifacts.split_names(examples)
    if config.analyze_split not in splits:
        raise InputError(f"transform: analyze_split {config.analyze_split!r} is not among the splits {splits}")
    schema = load_schema(schema_path)

    def guarded(inputs):
        import tensorflow as tf

        try:
            outputs = preprocessing_fn(inputs)
        except Exception as e:
            raise TransformError(
                f"preprocessing_fn at {where_in(config.module, e)} failed: {type(e).__name__}: {e}"
            ) from e
        if not isinstance(outputs, dict) or not all(isinstance(k, str) for k in outputs):
            raise TransformError(
                f"preprocessing_fn in {config.module} returned {type(outputs).__name__}; it must "
                "return a dict of feature name -> tensor"
            )
        for key, value in outputs.items():
            if not isinstance(value, (tf.Tensor, tf.SparseTensor, tf.RaggedTensor)):
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                raise TransformError(
                    f"preprocessing_fn in {config.module} returned {type(value).__name__} {shown} for {key!r}; "
                    "each value must be a tensor computed from the inputs (tf.constant(...) for a constant)"
                )
        return outputs

    def source(split):
        return tfxio.TFExampleRecord(
            file_pattern=artifacts.split_pattern(examples, split), schema=schema, telemetry_descriptors=["tfpipe"]
        )

    local = _applies_locally(config)
    # Same data, same bits: analyzers sum floats batch by batch, so batches must not follow Beam's timing-
    # adaptive sizes, and Beam's hot-key fanout draws shards from `random`.
    random.seed(0)
    t = time.perf_counter()
    log.info("transform: analyzing Split-%s with Beam (%s)", config.analyze_split, " ".join(config.beam_args))
    with (
        doing(log, f"transform: Beam is analyzing Split-{config.analyze_split}"),
        tempfile.TemporaryDirectory(prefix="tft_", dir=transformed_examples_dir) as tmp,
    ):
        # Deep copy: each analysis phase re-reads the input instead of the runner holding it all in memory
        # between phases (the Titanic preprocessing_fn has two: a mean, then a z-score that uses it).
        with (
            beam.Pipeline(options=PipelineOptions(list(config.beam_args))) as pipeline,
            tft_beam.Context(temp_dir=tmp, use_deep_copy_optimization=True),
        ):
            analyze_io = source(config.analyze_split)
            if local:  # whole record batches per element: Beam's per-element cost is paid once per _BATCH rows
                files = artifacts.split_files(examples, config.analyze_split)
                raw = (
                    pipeline
                    | "Files-analyze" >> beam.Create([files])
                    | "Read-analyze" >> beam.FlatMap(_read_batches, schema=schema)
                )
            else:
                raw = pipeline | "Read-analyze" >> analyze_io.BeamSource(_BATCH)
            transform_fn = (raw, analyze_io.TensorAdapterConfig()) | tft_beam.AnalyzeDataset(guarded)
            _ = transform_fn | tft_beam.WriteTransformFn(str(transform_graph_dir))
            for split in [] if local else splits:
                split_io = source(split)
                data = pipeline | f"Read-{split}" >> split_io.BeamSource(_BATCH)
                (batches, metadata) = (
                    (data, split_io.TensorAdapterConfig()),
                    transform_fn,
                ) | f"Transform-{split}" >> tft_beam.TransformDataset(output_record_batches=True)
                target = artifacts.split_dir(transformed_examples_dir, split)
                _ = (
                    batches
                    | f"Encode-{split}"
                    >> beam.FlatMapTuple(lambda batch, _, schema=metadata: _encoder(schema).encode(batch))
                    | f"Write-{split}" >> beam.io.WriteToTFRecord(str(target / "data"), file_name_suffix=".gz")
                )
    tft.TFTransformOutput(str(transform_graph_dir)).transformed_feature_spec()  # fails early if unreadable
    log.info("transform: Beam pipeline done in %.0f s", time.perf_counter() - t)
    if local:
        jobs = []
        for split in splits:
            files = artifacts.split_files(examples, split)
            target = artifacts.split_dir(transformed_examples_dir, split)
            target.mkdir(parents=True, exist_ok=True)
            jobs += [(f, str(target / f"data-{i:05d}-of-{len(files):05d}.gz")) for i, f in enumerate(files)]
        _apply_all(jobs, str(transform_graph_dir), schema.SerializeToString(), config.module)
    return {"splits": splits}


def _applies_locally(config: TransformConfig) -> bool:
    """On the DirectRunner (the default), the graph is applied here, file by file; on a cluster runner, by Beam."""
    if config.apply != "auto":
        return config.apply == "local"
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    runner = PipelineOptions(list(config.beam_args)).view_as(StandardOptions).runner or "DirectRunner"
    return runner in ("DirectRunner", "direct")


def _read_batches(files: list, schema) -> Iterator:
    """Record batches of _BATCH rows from gzipped tf.Example files, in file order (deterministic batches);
    TFRecord reading and Example decoding both run in C++."""
    import tensorflow as tf
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString())
    for path in files:
        for records in tf.data.TFRecordDataset(path, compression_type="GZIP").batch(_BATCH).prefetch(2):
            yield decoder.DecodeBatch(list(records.numpy()))


def _apply_all(jobs: list, graph_dir: str, schema: bytes, module: str) -> None:
    """Applies the graph to each (input file, output file) job: here for small inputs, else in a pool of
    processes (one per core) that each load the graph once; the bytes are the same either way."""
    size = sum(os.path.getsize(source) for source, _ in jobs)
    workers = min(len(jobs), os.cpu_count() or 1) if size > _POOL_BYTES else 1
    rows, progress = 0, Progress(log, f"transform: applying the graph to {len(jobs)} files, rows")
    results: Iterator[int]
    if workers <= 1:
        _init_applier(graph_dir, schema, module)
        results = map(_apply_file, jobs)
    else:
        import multiprocessing

        # spawn, not fork: TensorFlow's threads do not survive a fork
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_applier,
            initargs=(graph_dir, schema, module),
        )
        results = pool.map(_apply_file, jobs)
    try:
        for _job, n in zip(jobs, results):
            rows += n
            progress.update(rows)
        progress.finish()
    except BrokenProcessPool as e:
        raise TransformError(
            "transform: a worker process applying the graph died. If a script of yours calls "
            "transform(), put that call under `if __name__ == '__main__':` (worker processes "
            "import the main module); otherwise the machine may be out of memory"
        ) from e
    finally:
        if workers > 1:
            pool.shutdown(cancel_futures=True)


_APPLIER: _Applier | None = None  # this process's, made by _init_applier


def _init_applier(graph_dir: str, schema: bytes, module: str) -> None:
    global _APPLIER
    _APPLIER = _Applier(graph_dir, schema, module)


def _apply_file(job: tuple) -> int:
    assert _APPLIER is not None, "_init_applier runs first, in this process or as the pool's initializer"
    return _APPLIER.file(*job)


class _Applier:
    """Applies a written transform graph to a file one record batch at a time (memory stays flat in the row
    count); the output bytes are those of Beam's TransformDataset."""

    def __init__(self, graph_dir: str, schema: bytes, module: str):
        import tensorflow as tf
        import tensorflow_transform as tft
        from tensorflow_metadata.proto.v0 import schema_pb2
        from tensorflow_transform import impl_helper
        from tfx_bsl.public import tfxio

        self.module = module
        self.schema = schema_pb2.Schema.FromString(schema)
        self.adapter = tfxio.TensorAdapter(
            tfxio.TFExampleRecord(file_pattern="-", schema=self.schema).TensorAdapterConfig()
        )
        output = tft.TFTransformOutput(graph_dir)
        self.converter = impl_helper.make_tensor_to_arrow_converter(output.transformed_metadata.schema)
        self.encoder = _encoder(output.transformed_metadata.schema)
        layer = output.transform_features_layer()
        self.apply = tf.function(lambda features: layer(features))

    def file(self, source: str, target: str) -> int:
        rows = 0
        with artifacts.gzip_writer(target) as writer:
            for batch in _read_batches([source], self.schema):
                try:
                    outputs = self.apply(self.adapter.ToBatchTensors(batch, produce_eager_tensors=True))
                except Exception as e:
                    raise TransformError(
                        f"preprocessing_fn at {where_in(self.module, e)} failed on {source}, records "
                        f"{rows + 1}-{rows + batch.num_rows}: {type(e).__name__}: {e}"
                    ) from e
                for example in self.encoder.encode(self.converter.convert(outputs)):
                    writer.write(example)
                rows += batch.num_rows
        return rows


_ENCODERS: dict[bytes, CanonicalEncoder] = {}  # serialized schema -> its encoder


def _encoder(metadata):
    """A CanonicalEncoder for a transformed schema (or its DatasetMetadata), made once per process."""
    from schemas.examples import CanonicalEncoder

    schema = metadata.schema if hasattr(metadata, "schema") else metadata
    key = schema.SerializeToString()
    if key not in _ENCODERS:
        _ENCODERS[key] = CanonicalEncoder(schema)
    return _ENCODERS[key]


def _run(inputs: dict, outputs: dict, config: TransformConfig) -> dict:
    result = transform(
        config,
        inputs["examples"].uri,
        str(Path(inputs["schema"].uri) / "schema.pbtxt"),
        outputs["transform_graph"],
        outputs["transformed_examples"],
    )
    return {"transformed_examples": {"split_names": json.dumps(result["splits"])}}


COMPONENT = Component(
    name="transform",
    inputs={
        "examples": InputSpec("Examples"),
        "schema": InputSpec("Schema"),
        # A data validator's verdict: the transform (and so the trainer) waits for it, and does not run on
        # examples it blocked. Not read, and not in the cache key.
        "anomalies": InputSpec("ExampleAnomalies", optional=True, gate=True),
    },
    outputs={"transform_graph": "TransformGraph", "transformed_examples": "TransformedExamples"},
    parameters=TransformConfig,
    executor=_run,
    code=(__name__,),
    description="preprocessing_fn on tf.Transform: analyzed on the train split, applied to all",
)
