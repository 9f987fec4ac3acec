"""transform on its own: the graph applied file by file here gives Beam's TransformDataset bytes; errors name the file."""

import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from components.ingest import IngestConfig, ingest
from components.transform import TransformConfig, TransformError, transform

TITANIC = Path(__file__).resolve().parents[2] / "examples" / "titanic"


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """Kaggle's Titanic rows, ingested."""
    out = tmp_path_factory.mktemp("ingest")
    result = ingest(IngestConfig(input=str(TITANIC / "data" / "train.csv"), label="Survived"), out)
    return out, result.schema_path


def _run(tmp_path, examples, name, **config):
    graph, data = tmp_path / name / "graph", tmp_path / name / "data"
    graph.mkdir(parents=True)
    data.mkdir()
    module = config.pop("module", str(TITANIC / "preprocessing.py"))
    transform(TransformConfig(module=module, **config), str(examples[0]), str(examples[1]), str(graph), str(data))
    return graph, data


def _records(folder):
    """Each split's serialized Examples, sorted: Beam does not promise an order."""
    return {
        split.name: sorted(
            r for p in split.glob("*.gz") for r in tf.data.TFRecordDataset(str(p), "GZIP").as_numpy_iterator()
        )
        for split in sorted(folder.glob("Split-*"))
    }


def test_local_apply_writes_the_bytes_beam_writes(tmp_path, examples):
    local_graph, local = _run(tmp_path, examples, "local", apply="local")
    beam_graph, beam = _run(tmp_path, examples, "beam", apply="beam")
    assert _records(local) == _records(beam)
    assert set(_records(local)) == {"Split-train", "Split-eval"} and all(_records(local).values())
    vocab = "transform_fn/assets/title"
    assert (local_graph / vocab).read_bytes() == (beam_graph / vocab).read_bytes()
    assert not list(local.glob("tft_*")), "the Beam temp folder must not be left in the output"


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, examples):
    """The same examples as two files per split (two identical halves)."""
    out = tmp_path_factory.mktemp("sharded")
    shutil.copytree(examples[0], out, dirs_exist_ok=True)
    for split in out.glob("Split-*"):
        shutil.copy(split / "data-00000.tfrecord.gz", split / "data-00001.tfrecord.gz")
    return out, examples[1]


# (the worker processes are real processes, ~30 s here to start and fill: the slow tier's, as multi-process tests are)
@pytest.mark.parametrize(
    "pool", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["in-process", "worker-processes"]
)
def test_each_input_file_gets_its_own_output_file_in_order(tmp_path, sharded, monkeypatch, pool):
    import components.transform as transform_module

    if pool:  # big inputs go to a pool of worker processes; force it on this small one
        monkeypatch.setattr(transform_module, "_POOL_BYTES", 0)
    _, out = _run(tmp_path, sharded, "out", apply="local")
    files = sorted((out / "Split-train").glob("*.gz"))
    assert [p.name for p in files] == ["data-00000-of-00002.gz", "data-00001-of-00002.gz"]
    first, second = (list(tf.data.TFRecordDataset(str(p), "GZIP").as_numpy_iterator()) for p in files)
    raw = sum(1 for _ in tf.data.TFRecordDataset(str(sharded[0] / "Split-train" / "data-00000.tfrecord.gz"), "GZIP"))
    assert first == second and len(first) == raw  # the same rows in, the same rows out, in their order
    if pool:
        monkeypatch.setattr(transform_module, "_POOL_BYTES", 1 << 40)
        _, alone = _run(tmp_path, sharded, "alone", apply="local")
        assert _records(alone) == _records(out)


def test_failure_while_applying_names_the_file_and_records(tmp_path, examples):
    module = tmp_path / "strict.py"
    # Traced and analyzed fine; fails only when a batch holds a fare above 500 (Kaggle's data has three).
    module.write_text(
        "import tensorflow as tf\n"
        "def preprocessing_fn(inputs):\n"
        "    fare = tf.sparse.to_dense(inputs['Fare']) if isinstance(inputs['Fare'], tf.SparseTensor) else inputs['Fare']\n"
        "    check = tf.debugging.assert_less(fare, 500.0, message='fare too high')\n"
        "    with tf.control_dependencies([check]):\n"
        "        return {'fare': tf.identity(fare)}\n"
    )
    with pytest.raises(
        TransformError,
        match=r"strict\.py failed on .*Split-\w+/data-00000\.tfrecord\.gz, records "
        r"1-\d+: InvalidArgumentError: .*fare too high",
    ):
        _run(tmp_path, examples, "strict", module=str(module), apply="local")


def test_a_preprocessing_fn_that_returns_a_list_is_named(tmp_path, examples):
    module = tmp_path / "listy.py"
    module.write_text("def preprocessing_fn(inputs):\n    return [inputs['Fare']]\n")
    with pytest.raises(TransformError, match=r"preprocessing_fn in .*listy\.py returned list; it must return a dict"):
        _run(tmp_path, examples, "listy", module=str(module))
