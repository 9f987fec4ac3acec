"""A cache reuse checks what is on disk, not only that a folder exists: damaged outputs are marked in MLMD
and made again, a deleted serving version is pushed again, and an unchanged re-run after a retrain is
fully cached and pushes nothing twice. Through the real CLI, on a small copy of the Titanic pipeline."""

import contextlib
import io
import shutil
from pathlib import Path

import pytest
import yaml
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline import flow  # noqa: F401  Prefect sets up its log handlers now, on the session's streams
from pipeline.cli import main
from pipeline.metadata import MetadataStore

ROOT = Path(__file__).resolve().parents[2]
TITANIC = ROOT / "examples" / "titanic"
pytestmark = pytest.mark.slow
COMPONENTS = ("ingest", "transform", "trainer", "evaluator", "pusher")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The project after its first whole run, and that run's component states and printed summary; a snapshot
    of the folder beside it. Trained once for the module: each test starts from it instead of training again."""
    folder = tmp_path_factory.mktemp("cache_checks") / "project"
    shutil.copytree(TITANIC, folder, ignore=shutil.ignore_patterns("tfpipe_root", "__pycache__", "data"))
    (folder / "data").mkdir()
    lines = (TITANIC / "data" / "train.csv").read_text().splitlines()[:161]
    (folder / "data" / "train.csv").write_text("\n".join(lines) + "\n")
    text = (folder / "pipeline.yaml").read_text()
    # Thresholds a 160-row model passes: these tests are about what is reused, not about accuracy.
    text = (
        text.replace("train_steps: 1000", "train_steps: 40")
        .replace("lower: 0.75", "lower: 0.3")
        .replace("max_decrease: 0.02", "max_decrease: 0.5")
    )
    # ... nor about data validation, whose skew thresholds are set for the whole CSV, not for 160 rows.
    doc = yaml.safe_load(text)
    for section in ("statistics", "example_validator"):
        doc.pop(section, None)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", str(folder / "pipeline.yaml")]) == 0
    snapshot = folder.with_name("trained")
    shutil.copytree(folder, snapshot)
    return folder, snapshot, _states(folder), out.getvalue()


@pytest.fixture
def project(trained):
    """The project as its first whole run left it, restored at the same path (MLMD's URIs are absolute)."""
    folder, snapshot, _, _ = trained
    shutil.rmtree(folder)
    shutil.copytree(snapshot, folder)
    return folder


@pytest.fixture
def first_run(trained, project) -> tuple[dict, str]:
    """The states and summary of the first whole run of `project` (the one `trained` ran)."""
    return trained[2], trained[3]


def _states(folder: Path) -> dict:
    store = MetadataStore(str(folder / "tfpipe_root" / "titanic" / "metadata.sqlite"))
    last = store.run_executions(store.runs("titanic")[-1]["run"])
    return {e["component"]: e["state"] for e in last}


def _run(folder: Path, capsys, *extra) -> tuple[dict, str]:
    capsys.readouterr()
    assert main(["run", str(folder / "pipeline.yaml"), *extra]) == 0
    out = capsys.readouterr().out
    return _states(folder), out


def _pushed(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("pushed model:")).split()[2]


def test_damaged_outputs_are_made_again(project, first_run, capsys):
    """Starts from the module's one trained project (its first run's states and summary) instead of training."""
    states, out = first_run
    assert states == dict.fromkeys(COMPONENTS, "COMPLETE")
    first_push = Path(_pushed(out))
    root = project / "tfpipe_root" / "titanic"

    shutil.rmtree(first_push)  # someone deleted the version in serving
    states, out = _run(project, capsys)
    assert states == {**dict.fromkeys(COMPONENTS[:4], "CACHED"), "pusher": "COMPLETE"}
    again = Path(_pushed(out))
    # Pushed again (a fresh copy, a new MLMD record); within the same second it may take the freed version.
    assert again.is_dir() and (again / "saved_model.pb").is_file()
    assert first_push.is_dir() == (again == first_push)

    [graph] = list((root / "transform" / "transformed_examples").iterdir())
    for split in graph.iterdir():  # emptied, the folders left standing
        for f in split.iterdir():
            f.unlink()
    states, out = _run(project, capsys)
    assert states == {"ingest": "CACHED", **dict.fromkeys(COMPONENTS[1:], "COMPLETE")}
    store = MetadataStore(str(root / "metadata.sqlite"))
    damaged = [a for a in store.store.get_artifacts() if a.state == pb.Artifact.DELETED]
    assert any("is gone" in a.custom_properties["damaged"].string_value for a in damaged)
    assert Path(_pushed(out)).is_dir()

    models = sorted((root / "trainer" / "model").iterdir(), key=lambda p: int(p.name))
    (models[-1] / "saved_model.pb").unlink()
    states, out = _run(project, capsys)
    assert states == {"ingest": "CACHED", "transform": "CACHED", **dict.fromkeys(COMPONENTS[2:], "COMPLETE")}
    assert (Path(_pushed(out)) / "saved_model.pb").is_file()


def test_a_retrain_to_the_same_bits_and_a_repush_add_no_serving_version(project, first_run, capsys):
    """Starts from the module's one trained project instead of training it first. The retrain is seeded and
    deterministic, so its SavedModel holds the same variables, assets, graph and signatures; only the files
    each export writes anew (function names from the process's counters, the fingerprint's uuid) differ."""
    assert first_run[0] == dict.fromkeys(COMPONENTS, "COMPLETE")
    serving = project / "tfpipe_root" / "titanic" / "serving"
    versions = sorted(serving.iterdir())
    assert len(versions) == 1
    states, out = _run(project, capsys, "--no-cache", "trainer")  # a retrain: a new Model artifact, judged
    assert states["trainer"] == "COMPLETE" and states["pusher"] == "COMPLETE"
    assert "(already in serving)" in out and _pushed(out) == str(versions[0])
    models = sorted((project / "tfpipe_root" / "titanic" / "trainer" / "model").iterdir(), key=lambda p: int(p.name))
    assert (models[-1] / "saved_model.pb").read_bytes() != (versions[0] / "saved_model.pb").read_bytes()
    states, out = _run(project, capsys)
    assert states == dict.fromkeys(COMPONENTS, "CACHED")

    states, out = _run(project, capsys, "--no-cache", "pusher")  # push the same model again: nothing copied
    assert states["pusher"] == "COMPLETE" and "(already in serving)" in out
    assert sorted(serving.iterdir()) == versions
