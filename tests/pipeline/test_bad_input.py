"""Bad input through the CLI, as a user hits it: `tfpipe run` fails with a message naming the file, row and
column (or the config field), and the failed step publishes nothing."""

import csv
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.ingest import IngestConfig, ingest
from pipeline import flow  # noqa: F401  Prefect sets up its log handlers now, on the session's streams
from pipeline.cli import main
from pipeline.metadata import MetadataStore

ROOT = Path(__file__).resolve().parents[2]
TITANIC = ROOT / "examples" / "titanic"
LINES = (TITANIC / "data" / "train.csv").read_text().splitlines()[:61]  # header + 60 rows
HEADER = LINES[0]


def _pipeline(tmp_path, data: bytes | str | dict, **sections) -> Path:
    """A pipeline folder like a user's: pipeline.yaml beside its modules and data."""
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    for module in ("preprocessing.py", "model.py"):
        shutil.copy(TITANIC / module, folder / module)
    files = data if isinstance(data, dict) else {"data.csv": data}
    for name, content in files.items():
        (folder / name).write_bytes(content.encode() if isinstance(content, str) else content)
    doc = {
        "name": "bad",
        "root": str(tmp_path / "root"),
        "ingest": {"input": "data.csv" if len(files) == 1 else {n.split(".")[0]: n for n in files}},
        "transform": {"module": "preprocessing.py"},
        "trainer": {"module": "model.py", "label": "survived", "raw_label": "Survived", "train_steps": 10},
    }
    for key, value in sections.items():
        doc.setdefault(key, {}).update(value) if isinstance(value, dict) else doc.__setitem__(key, value)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    return folder / "pipeline.yaml"


def _fails(config: Path, capfd, pattern: str, code: int = 1) -> str:
    """`tfpipe run` fails with `code`: 1 for bad data found by a step, 2 for a pipeline file refused before
    anything runs (as argparse's usage errors)."""
    assert main(["run", str(config)]) == code
    err = capfd.readouterr().err
    assert re.search(pattern, err), err[-2000:]
    assert "Traceback" not in err.split("tfpipe: error:")[-1]
    return err


def _ingest_failed(tmp_path):
    """The failed ingest is FAILED in MLMD, with no LIVE artifact and no folder at any output URI."""
    store = MetadataStore(str(tmp_path / "root" / "metadata.sqlite"))
    [execution] = store.executions("ingest")
    assert execution.state == "FAILED"
    assert not [a for a in store.artifacts() if a.state == "LIVE"]
    assert not any(Path(a.uri).exists() or Path(a.uri + ".staging").exists() for a in store.artifacts())


def _line(values) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    return out.getvalue()


def _row(i: int, **changes) -> str:
    """Row i of the CSV (1-based data row) with some columns changed."""
    names = HEADER.split(",")
    values = next(csv.reader([LINES[i]]))
    for k, v in changes.items():
        values[names.index(k)] = v
    return _line(values)


def _drop(lines, column) -> list:
    rows = list(csv.reader(lines))
    i = rows[0].index(column)
    return [_line(r[:i] + r[i + 1 :]) for r in rows]


def _csv(*rows) -> str:
    return "\n".join(rows) + "\n"


DATA_CASES = {
    "empty file": ("", r"no rows in .*project/data.csv \(an empty file, or a header alone\)"),
    "header only": (_csv(HEADER), r"no rows in .*project/data.csv"),
    "non-UTF-8 bytes": (
        _csv(*LINES[:3]).encode() + _row(3, Name="Andr\xe9").encode("latin-1") + b"\n",
        r"data.csv, row 4, column 'Name': not UTF-8 text \(byte 0xe9\); save the file as UTF-8",
    ),
    "wrong delimiter": (
        _csv(*(line.replace(",", ";") for line in LINES)),
        r"data.csv: .* looks delimited by "
        r"something other than commas",
    ),
    "NaN in a number": (
        _csv(*LINES[:5], _row(5, Fare="NaN"), *LINES[6:]),
        r"data.csv, row 6, column 'Fare': 'NaN' is not a finite number",
    ),
    "inf in a number": (
        _csv(*LINES[:7], _row(7, Age="inf"), *LINES[8:]),
        r"data.csv, row 8, column 'Age': 'inf' is not a finite number",
    ),
    "an extra field in a row": (
        _csv(*LINES[:9], _row(9) + ",extra", *LINES[10:]),
        r"data.csv, row 10: 13 fields where the header has 12",
    ),
    "the label column missing": (_csv(*_drop(LINES, "Survived")), r"data.csv: the label column 'Survived' is missing"),
    "a missing label": (
        _csv(*LINES[:4], _row(4, Survived=""), *LINES[5:]),
        r"data.csv, row 5, column 'Survived': the label is missing",
    ),
    "a very long field": (
        _csv(*LINES[:6], _row(6, Name="x" * 2_000_000), *LINES[7:]),
        r"data.csv, row 7, column 'Name': the field is 2,000,000 characters long",
    ),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_refused_with_file_row_and_column(tmp_path, capfd, case):
    data, pattern = DATA_CASES[case]
    _fails(_pipeline(tmp_path, data), capfd, pattern)
    _ingest_failed(tmp_path)


def test_a_label_never_seen_in_training_is_refused(tmp_path, capfd):
    files = {"train.csv": _csv(*LINES[:40]), "eval.csv": _csv(HEADER, *LINES[40:45], _row(45, Survived="2"))}
    _fails(
        _pipeline(tmp_path, files),
        capfd,
        r"eval.csv, row 7, column 'Survived': the label 2 \(split 'eval'\) never occurs in the 'train' split",
    )
    _ingest_failed(tmp_path)


def test_columns_against_a_given_schema(tmp_path, capfd):
    schema = tmp_path / "project" / "schema.pbtxt"
    schema.parent.mkdir()
    inferred = ingest(IngestConfig(input=str(TITANIC / "data" / "train.csv")), tmp_path / "inferred").schema_path
    shutil.copy(inferred, schema)
    extra = _csv(HEADER + ",Cabin2", *(line + ",x" for line in LINES[1:]))
    _fails(
        _pipeline(tmp_path, extra, ingest={"schema": "schema.pbtxt"}),
        capfd,
        r"data.csv: column\(s\) \['Cabin2'\] are not in the schema",
    )
    shutil.rmtree(tmp_path / "root")
    missing = _csv(*_drop(LINES, "Pclass"))
    _fails(
        _pipeline(tmp_path, missing, ingest={"schema": "schema.pbtxt"}),
        capfd,
        r"data.csv: column\(s\) \['Pclass'\] that the schema requires are missing",
    )


CONFIG_CASES = {
    "a path outside the pipeline's folder": (
        {"ingest": {"input": "../data.csv"}},
        r"ingest.input: '../data.csv' points outside the pipeline's folder .*; write it as an absolute path",
    ),
    "a missing user module": (
        {"transform": {"module": "prep.py"}},
        r"transform.module: user module .*prep.py does not exist",
    ),
    "a module without the function": (
        {"trainer": {"module": "preprocessing.py"}},
        r"trainer.module: user module .*preprocessing.py has no function "
        r"build_estimator\(\); it defines \['preprocessing_fn'\]",
    ),
    "an unknown key": (
        {"trainer": {"learning_rate": 0.1, "train_step": 5}},
        r"2 problem\(s\):\n  trainer.learning_rate: unknown key; the keys here are module, label.*\n"
        r"  trainer.train_step: unknown key \(did you mean 'train_steps'\?\)",
    ),
    "a wrong type": (
        {"trainer": {"train_steps": "many"}, "ingest": {"splits": [7, 3]}},
        r"ingest.splits: Input should be a valid dictionary \(got \[7, 3\]\)\n"
        r"  trainer.train_steps: Input should be a valid integer.* \(got 'many'\)",
    ),
    "a missing section": ({"trainer": None}, r"trainer: Input should be a valid dictionary"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_is_refused_before_anything_runs(tmp_path, capfd, case):
    sections, pattern = CONFIG_CASES[case]
    config = _pipeline(tmp_path, _csv(*LINES))
    doc = yaml.safe_load(config.read_text())
    for key, value in sections.items():
        doc[key] = dict(doc[key], **value) if isinstance(value, dict) else value
    config.write_text(yaml.safe_dump(doc))
    assert str(config) in _fails(config, capfd, pattern, code=2)
    assert not (tmp_path / "root").exists()  # refused before any step ran


def test_the_process_exits_non_zero_with_the_message(tmp_path):
    config = _pipeline(tmp_path, _csv(*LINES), trainer={"train_step": 5})
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"tfpipe: error: {config}: trainer.train_step: unknown key (did you mean 'train_steps'?); the keys here are "
        "module, label, raw_label, train_steps, checkpoint_steps, eval_steps, batch_size, seed, deterministic, "
        "params, train_split, eval_split, cluster"
    ]


def test_an_unreadable_input_file_is_a_failed_ingest_recorded_in_mlmd(tmp_path, capfd):
    """The input files are hashed for the cache key before ingest runs; one that cannot be read must still
    fail inside the registered execution (recorded FAILED), with the file named, not before it."""
    import gzip

    whole = gzip.compress(_csv(*LINES).encode())
    config = _pipeline(tmp_path, {"data.csv.gz": whole[: len(whole) // 2]}, ingest={"input": "data.csv.gz"})
    _fails(config, capfd, r"data.csv.gz: cannot be read \(EOFError: .*\); is the file whole\?")
    _ingest_failed(tmp_path)
