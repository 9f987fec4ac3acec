"""Property-based tests of the two places user text enters: the CSV reader and the config loader.

Whatever the bytes, they either load faithfully or are refused with tfpipe's own error, never a stray
exception from deep inside.
"""

import csv
import io
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.errors import ConfigError, InputError
from components.ingest import IngestConfig, _read_csv, ingest
from pipeline.config import PipelineConfig, load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# TFPIPE_FUZZ_EXAMPLES=5000 for a longer hunt; the suite's default keeps CI quick.
FUZZ = settings(
    max_examples=int(os.environ.get("TFPIPE_FUZZ_EXAMPLES", 150)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True)
# Any text a spreadsheet could hold, commas, quotes and line breaks included; NUL is not CSV.
cells = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)


def _file(data: bytes, suffix=".csv") -> str:
    f = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
    f.write(data)
    f.close()
    return f.name


@st.composite
def tables(draw):
    header = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    rows = draw(st.lists(st.lists(cells, min_size=len(header), max_size=len(header)), max_size=8))
    return header, rows


@FUZZ
# Python's writer leaves a lone \r unquoted when lines end in \n alone, which no reader can undo.
@given(tables(), st.sampled_from([("\r\n", csv.QUOTE_MINIMAL), ("\n", csv.QUOTE_ALL), ("\r\n", csv.QUOTE_ALL)]))
def test_any_table_written_as_csv_reads_back_exactly(table, dialect):
    header, rows = table
    out = io.StringIO()
    csv.writer(out, lineterminator=dialect[0], quoting=dialect[1]).writerows([header] + rows)
    path = _file(out.getvalue().encode("utf-8"))
    got = [row for _, _, row in _read_csv(path, na_values=())]
    assert got == [dict(zip(header, r)) for r in rows]


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_are_read_or_refused_with_input_error(data):
    path = _file(data)
    try:
        rows = list(_read_csv(path))
    except InputError as e:
        assert path in str(e)
        return
    assert all(isinstance(row, dict) for _, _, row in rows)


@FUZZ
@given(tables())
def test_ingest_of_any_table_writes_every_row_or_refuses_it(table):
    header, rows = table
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([header] + rows)
    path = _file(out.getvalue().encode("utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = ingest(IngestConfig(input=path, splits={"all": 1}), tmp)
        except InputError as e:
            assert path in str(e)
            return
        assert sum(result.counts.values()) == len(rows)


VALID = {
    "name": "fuzz",
    "ingest": {"input": "data.csv"},
    "transform": {"module": str(EXAMPLES / "titanic" / "preprocessing.py")},
    "trainer": {"module": str(EXAMPLES / "titanic" / "model.py"), "label": "survived"},
}
yaml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def configs(draw):
    """The valid config with a few keys set to anything, or dropped, at any depth."""
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from([None, "ingest", "transform", "trainer", "evaluator", "pusher"]))
        target = doc if section is None else doc.setdefault(section, {})
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from(sorted(target) + ["splits", "train_steps", "module", "unknown", "root"]))
        if draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = draw(yaml_values)
    return doc


@FUZZ
@given(configs())
def test_any_config_loads_or_is_refused_with_config_error(doc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.yaml"
        path.write_text(yaml.safe_dump(doc))
        try:
            config = load_config(path)
        except ConfigError as e:
            assert str(e).startswith(str(path))
            return
        assert isinstance(config, PipelineConfig) and Path(config.root).is_absolute()


@FUZZ
@given(st.text(max_size=200))
def test_any_yaml_text_loads_or_is_refused_with_config_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as e:
            assert str(path) in str(e)
