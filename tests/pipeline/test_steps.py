"""Steps with a real ML Metadata store: lineage records, caching, failures that publish nothing; SQLite,
PostgreSQL and MariaDB; config validation."""

import csv
import io
import uuid
from pathlib import Path

import pytest
import yaml

from components.errors import ConfigError, InputError
from components.transform import TransformError
from pipeline.config import load_config
from pipeline.metadata import MetadataStore
from pipeline.runner import run_component as run_step

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CSV = (EXAMPLES / "titanic" / "data" / "train.csv").read_text().splitlines()


def _without(lines, column):
    rows = list(csv.reader(lines))
    i = rows[0].index(column)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([r[:i] + r[i + 1 :] for r in rows])
    return out.getvalue().splitlines()


def _config(tmp_path, input_csv, metadata=None, **sections):
    doc = {
        "name": f"t{uuid.uuid4().hex[:8]}",
        "root": str(tmp_path / "root"),
        "ingest": {"input": str(input_csv)},
        "transform": {"module": str(EXAMPLES / "titanic" / "preprocessing.py")},
        "trainer": {"module": str(EXAMPLES / "titanic" / "model.py"), "label": "survived", "raw_label": "Survived"},
    }
    if metadata:
        doc["metadata"] = metadata
    for key, value in sections.items():
        doc[key].update(value)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(path)


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _nothing_published(store, cfg, execution_state="FAILED"):
    [execution] = store.executions("ingest")[-1:]
    assert execution.state == execution_state
    assert not [a for a in store.artifacts() if a.state == "LIVE"]
    leftovers = [
        p for p in Path(cfg.root).rglob("*") if (p.is_dir() and p.name.isdigit()) or p.name.endswith(".staging")
    ]
    assert leftovers == [] or all(not any(p.iterdir()) for p in leftovers)
    return execution


def test_ingest_records_lineage_and_is_cached_the_second_time(tmp_path):
    cfg = _config(tmp_path, _write(tmp_path / "in.csv", CSV[:60]))
    store = MetadataStore(cfg.metadata)
    run = store.start_run(cfg.name, "r1")
    outputs, state, _ = run_step(cfg, store, run, "ingest", {})
    assert state == "COMPLETE"
    assert {n: (a.type, a.state) for n, a in outputs.items()} == {
        "examples": ("Examples", "LIVE"),
        "schema": ("Schema", "LIVE"),
        "statistics": ("ExampleStatistics", "LIVE"),
    }
    [execution] = store.executions("ingest")
    for name, artifact in outputs.items():
        assert artifact.uri == str(Path(cfg.root) / "ingest" / name / str(execution.id))
        assert Path(artifact.uri).is_dir() and artifact.properties["fingerprint"]
    assert execution.properties.get("config", "") and execution.properties.get("cache_key", "")
    ctx_names = {c.name for c in store.store.get_contexts_by_execution(execution.id)}
    # ... and the cache_key context, which finds it by its key without a scan
    assert ctx_names == {cfg.name, f"{cfg.name}.r1", f"{cfg.name}.ingest", execution.properties["cache_key"]}
    run_ctx = store.store.get_context_by_type_and_name("pipeline_run", f"{cfg.name}.r1")
    assert [p.name for p in store.store.get_parent_contexts_by_context(run_ctx.id)] == [cfg.name]

    again, state, _ = run_step(cfg, store, store.start_run(cfg.name, "r2"), "ingest", {})
    assert state == "CACHED" and {n: a.id for n, a in again.items()} == {n: a.id for n, a in outputs.items()}
    states = [e.state for e in store.executions("ingest")]
    assert states == ["COMPLETE", "CACHED"]
    # Only executions that computed are in their key's context: cached re-runs (hourly, for weeks) do not
    # lengthen the lookup.
    key_context = store.store.get_context_by_type_and_name("cache_key", execution.properties["cache_key"])
    assert [e.id for e in store.store.get_executions_by_context(key_context.id)] == [execution.id]
    cached_outputs = store.outputs_of(store.executions("ingest")[1].id)
    assert {n: a.id for n, a in cached_outputs.items()} == {n: a.id for n, a in outputs.items()}

    _, state, _ = run_step(cfg, store, store.start_run(cfg.name, "r3"), "ingest", {}, use_cache=False)
    assert state == "COMPLETE"


@pytest.mark.parametrize(
    "case, lines, schema, message",
    [
        ("missing file", None, False, r"no file matches .*absent.csv"),
        ("malformed row", CSV[:5] + [CSV[5] + ",extra"], False, r"in.csv, row 6: 13 fields where the header has 12"),
        (
            "missing column",
            _without(CSV[:20], "Sex"),
            True,
            r"in.csv: column\(s\) \['Sex'\] that the schema requires are missing",
        ),
        ("wrong type", CSV[:3] + [CSV[3].replace(",1,", ",one,", 1)], True, r"in.csv, row 4, column 'Survived'"),
        ("empty input", CSV[:1], False, r"no rows in .*in.csv"),
    ],
)
def test_bad_input_fails_the_execution_and_publishes_nothing(tmp_path, case, lines, schema, message):
    schema_file = None
    if schema:  # a schema taken from good data, the way a team pins one
        good = _config(tmp_path / "good", _write(tmp_path / "good.csv", CSV[:40]))
        good_store = MetadataStore(good.metadata)
        outputs, _, _ = run_step(good, good_store, good_store.start_run(good.name, "g"), "ingest", {})
        schema_file = str(Path(outputs["schema"].uri) / "schema.pbtxt")
    source = tmp_path / "absent.csv" if lines is None else _write(tmp_path / "in.csv", lines)
    cfg = _config(tmp_path / "bad", source, ingest={"schema": schema_file})
    store = MetadataStore(cfg.metadata)
    with pytest.raises(InputError, match=message):
        run_step(cfg, store, store.start_run(cfg.name, "bad"), "ingest", {})
    execution = _nothing_published(store, cfg)
    assert "InputError" in execution.properties.get("error", "")
    abandoned = store.artifacts(state="ABANDONED")
    assert {a.type for a in abandoned} == {"Examples", "Schema", "ExampleStatistics"}
    assert not any(Path(a.uri).exists() for a in abandoned)


def test_failing_preprocessing_fn_fails_transform(tmp_path):
    module = tmp_path / "broken.py"
    module.write_text("def preprocessing_fn(inputs):\n    return {'x': inputs['NoSuchColumn']}\n")
    cfg = _config(tmp_path, _write(tmp_path / "in.csv", CSV[:60]), transform={"module": str(module)})
    store = MetadataStore(cfg.metadata)
    run = store.start_run(cfg.name, "r")
    ingested, _, _ = run_step(cfg, store, run, "ingest", {})
    with pytest.raises(TransformError, match=r"preprocessing_fn at .*broken.py:\d+ failed: KeyError: 'NoSuchColumn'"):
        run_step(cfg, store, run, "transform", {"examples": ingested["examples"], "schema": ingested["schema"]})
    [execution] = store.executions("transform")
    assert execution.state == "FAILED"
    assert {a.type for a in store.artifacts(state="LIVE")} == {"Examples", "Schema", "ExampleStatistics"}
    assert not list((Path(cfg.root) / "transform").rglob("saved_model.pb"))


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_shared_store_on_a_database_server(tmp_path, server, request):
    # A database of this module's own on each server (tests/conftest.py): xdist workers never share one.
    url = (
        request.getfixturevalue("pg_url")
        if server == "postgresql"
        else f"mysql://root@127.0.0.1:3306/{request.getfixturevalue('mysql_db')}"
    )
    cfg = _config(tmp_path, _write(tmp_path / "in.csv", CSV[:30]), metadata=url)
    assert cfg.metadata == url
    store = MetadataStore(url)
    outputs, state, _ = run_step(cfg, store, store.start_run(cfg.name, "a"), "ingest", {})
    assert state == "COMPLETE"
    # A second client (another machine, in production) sees the same records and reuses them.
    other = MetadataStore(url)
    assert other.latest_live(cfg.name, "ingest")["examples"].id == outputs["examples"].id
    _, state, _ = run_step(cfg, other, other.start_run(cfg.name, "b"), "ingest", {})
    assert state == "CACHED"
    assert [r["run"] for r in other.runs(cfg.name)] == [f"{cfg.name}.a", f"{cfg.name}.b"]


def test_config_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "ingest": {"input": "a.csv", "splitz": {}},
                "transform": {"module": "m.py"},
                "trainer": {"module": "m.py"},
            }
        )
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "ingest.splitz" in str(err.value) and "trainer.label" in str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="metadata store"):
        MetadataStore("redis://127.0.0.1/0")


def test_a_dead_execution_is_recovered_by_its_own_pipeline_only(tmp_path):
    """Several pipelines share a store: a run of one must not mark (and clean up after) another's dead
    execution, whose outputs live under that pipeline's root."""
    import subprocess
    import sys

    store = MetadataStore(str(tmp_path / "metadata.sqlite"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pipeline in ("a", "b"):
        run = store.start_run(pipeline, "r1")
        started = store.start(
            run,
            "ingest",
            {},
            {"examples": "Examples"},
            {"pipeline": pipeline, "cache_key": "k"},
            lambda name, i, pipeline=pipeline: str(tmp_path / pipeline / name / str(i)),
        )
        [execution] = store.store.get_executions_by_id([started.id])
        execution.custom_properties["pid"].int_value = dead.pid  # its process died without a word
        store.store.put_executions([execution])
    [(recovered, _)] = store.recover_dead("ingest", "a")
    assert recovered.properties.get("pipeline", "") == "a"
    states = {e.properties.get("pipeline", ""): e.state for e in store.executions("ingest")}
    assert states == {"a": "FAILED", "b": "RUNNING"}  # b's next run recovers b's


def test_a_stop_that_lands_while_a_log_record_is_written_still_stops_the_step():
    """SIGTERM arriving inside a log handler: raised there, logging's handleError would swallow the stop
    ("--- Logging error ---") and the step would run on (a Beam analysis of a minute, in one CI run); it is
    delivered again once the record is out, and the step stops."""
    import logging
    import os
    import signal
    import time

    from components.errors import Stopped
    from pipeline import runner

    class Stream:  # a console whose write is under way when the signal comes
        def write(self, text):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the signal handler runs here, inside StreamHandler.emit

        def flush(self):
            pass

    log = logging.getLogger("tfpipe.test_stop_in_logging")
    handler = logging.StreamHandler(Stream())
    log.addHandler(handler)
    try:
        with runner.stop_handlers(), runner._stoppable("transform", False), pytest.raises(Stopped) as stopped:
            log.warning("analyzing")
            time.sleep(5)  # the step's work, which the stop must interrupt
        assert str(stopped.value) == "transform stopped by SIGTERM"
    finally:
        log.removeHandler(handler)
