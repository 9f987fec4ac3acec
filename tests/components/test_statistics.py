"""statistics on its own: TFDV's format, and the numbers against numpy on the same split.

The examples are read back for numpy by TensorFlow's own reader and tf.train.Example parser, a path
independent of the component's (gzip framing and tfx-bsl's Arrow decoder).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import statistics_pb2

from components.errors import InputError
from components.ingest import IngestConfig, ingest
from components.statistics import (
    _EPSILON,
    STATE_FILE,
    STATS_FILE,
    Accumulator,
    StatisticsConfig,
    by_split,
    compute,
    feature_name,
    load_statistics,
)
from schemas.artifacts import gzip_writer

TITANIC = Path(__file__).resolve().parents[2] / "examples" / "titanic" / "data" / "train.csv"


def _read_split(folder: Path) -> tuple[int, dict[str, list[list]]]:
    """(examples, {feature: [its value list, one per example that has it]}) read by TensorFlow."""
    values: dict[str, list[list]] = {}
    n = 0
    for path in sorted(folder.glob("*.gz")):
        for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP").as_numpy_iterator():
            n += 1
            ex = tf.train.Example.FromString(record)
            for name, feature in ex.features.feature.items():
                kind = feature.WhichOneof("kind")
                values.setdefault(name, []).append(list(getattr(feature, kind).value) if kind else [])
    return n, values


def _rank(sorted_values: np.ndarray, x: float) -> tuple[int, int]:
    """The ranks x may have among the sorted values (ties: a range)."""
    return int(np.searchsorted(sorted_values, x, "left")), int(np.searchsorted(sorted_values, x, "right"))


@pytest.fixture(scope="module", params=["gathered by ingest", "read back"])
def titanic_stats(tmp_path_factory, request):
    """Both ways the component gets its figures: the accumulators ingest saved beside the examples, and (with
    them removed, as for examples from any other component) its own pass over the files."""
    folder = tmp_path_factory.mktemp("stats")
    ingest(IngestConfig(input=str(TITANIC)), folder / "examples", folder, folder)
    states = list((folder / "examples").glob(f"Split-*/{STATE_FILE}"))
    assert len(states) == 2
    if request.param == "read back":
        for state in states:
            state.unlink()
    counts = compute(str(folder / "examples"), str(folder / "stats"), StatisticsConfig())
    return folder, counts


def test_layout_is_tfdvs_and_parses_with_tensorflow_metadata(titanic_stats):
    folder, counts = titanic_stats
    assert set(counts) == {"train", "eval"} and sum(counts.values()) == 891
    for split in counts:
        raw = (folder / "stats" / f"Split-{split}" / STATS_FILE).read_bytes()
        parsed = statistics_pb2.DatasetFeatureStatisticsList.FromString(raw)
        assert [d.name for d in parsed.datasets] == [split]
        assert parsed.datasets[0].num_examples == counts[split]
    both = load_statistics(folder / "stats")
    assert [d.name for d in both.datasets] == ["eval", "train"]


def test_numbers_equal_numpy_on_the_same_split(titanic_stats):
    folder, _ = titanic_stats
    stats = by_split(load_statistics(folder / "stats"))
    for split, dataset in stats.items():
        n, values = _read_split(folder / "examples" / f"Split-{split}")
        assert dataset.num_examples == n
        features = {feature_name(f): f for f in dataset.features}
        assert set(features) == set(values)
        for name, lists in values.items():
            f = features[name]
            flat = [v for vs in lists for v in vs]
            if f.type == statistics_pb2.FeatureNameStatistics.STRING:
                common = f.string_stats.common_stats
                s = f.string_stats
                assert s.unique == len(set(flat)), name  # exact: far fewer distinct values than the sketch holds
                counted: dict[bytes, int] = {}
                for v in flat:
                    counted[v] = counted.get(v, 0) + 1
                top = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
                assert [(t.value.encode(), t.frequency) for t in s.top_values] == top, name
                assert s.avg_length == pytest.approx(np.mean([len(v) for v in flat]), rel=1e-6), name  # a float field
            else:
                common = f.num_stats.common_stats
                s = f.num_stats
                a = np.sort(np.array(flat, dtype=np.float64))
                assert s.min == a.min() and s.max == a.max(), name
                assert s.mean == pytest.approx(a.mean(), rel=1e-6, abs=1e-9), name
                assert s.std_dev == pytest.approx(a.std(), rel=1e-6, abs=1e-9), name
                assert s.num_zeros == int((a == 0).sum()), name
                standard, quantiles = s.histograms
                assert standard.type == statistics_pb2.Histogram.STANDARD
                assert sum(b.sample_count for b in standard.buckets) == pytest.approx(len(a))
                assert standard.buckets[0].low_value == a.min() and standard.buckets[-1].high_value == a.max()
                # Each quantile boundary's rank is within the sketch's documented error, epsilon * n.
                assert quantiles.type == statistics_pb2.Histogram.QUANTILES
                edges = [quantiles.buckets[0].low_value] + [b.high_value for b in quantiles.buckets]
                for i, edge in enumerate(edges):
                    want = i / (len(edges) - 1) * len(a)
                    lo, hi = _rank(a, edge)
                    assert lo - _EPSILON * len(a) - 1 <= want <= hi + _EPSILON * len(a) + 1, (name, i, edge)
                lo, hi = _rank(a, s.median)
                assert lo - _EPSILON * len(a) - 1 <= len(a) / 2 <= hi + _EPSILON * len(a) + 1, name
            assert common.num_non_missing == len(lists), name
            assert common.num_missing == n - len(lists), name
            assert common.tot_num_values == len(flat), name
            assert common.max_num_values == max(len(vs) for vs in lists), name


def _write(folder: Path, examples: list[dict]) -> None:
    folder.mkdir(parents=True)
    with gzip_writer(folder / "data-00000.tfrecord.gz") as w:
        for values in examples:
            ex = tf.train.Example()
            for name, vs in values.items():
                f = ex.features.feature[name]
                if name.startswith("s"):
                    f.bytes_list.value.extend(vs)
                elif name.startswith("i"):
                    f.int64_list.value.extend(vs)
                else:
                    f.float_list.value.extend(vs)
            w.write(ex.SerializeToString())


def test_multivalued_features_missing_values_and_nan(tmp_path):
    rng = np.random.default_rng(0)
    examples = []
    for i in range(5000):
        ex: dict = {"i_id": [i]}
        k = int(rng.integers(0, 4))
        ex["s_tags"] = [b"tag%d" % int(rng.integers(0, 50)) for _ in range(k)]
        if i % 3:
            ex["f_scores"] = [float(x) for x in rng.normal(10, 2, size=int(rng.integers(1, 3)))]
        if i % 100 == 0:
            ex["f_scores"] = [math.nan, 0.0]
        examples.append(ex)
    _write(tmp_path / "ex" / "Split-train", examples)
    compute(str(tmp_path / "ex"), str(tmp_path / "out"), StatisticsConfig(histogram_buckets=20))
    [dataset] = load_statistics(tmp_path / "out").datasets
    f = {feature_name(x): x for x in dataset.features}
    tags = f["s_tags"].string_stats
    lengths = [len(e["s_tags"]) for e in examples]
    assert tags.common_stats.num_non_missing == 5000  # present, with an empty list or not
    assert tags.common_stats.min_num_values == 0 and tags.common_stats.max_num_values == 3
    assert tags.common_stats.avg_num_values == pytest.approx(np.mean(lengths))
    assert tags.common_stats.tot_num_values == sum(lengths)
    assert tags.unique == len({t for e in examples for t in e["s_tags"]})
    scores = f["f_scores"].num_stats
    present = [e["f_scores"] for e in examples if "f_scores" in e]
    flat = np.array([v for vs in present for v in vs], dtype=np.float32).astype(np.float64)
    clean = flat[~np.isnan(flat)]
    assert scores.common_stats.num_missing == 5000 - len(present)
    assert scores.mean == pytest.approx(clean.mean(), rel=1e-6)
    assert scores.num_zeros == int((clean == 0).sum()) == 50
    assert [h.num_nan for h in scores.histograms] == [50, 50]
    assert len(scores.histograms[0].buckets) == 20
    assert f["i_id"].num_stats.max == 4999 and f["i_id"].type == statistics_pb2.FeatureNameStatistics.INT


def test_a_truncated_file_is_named(tmp_path):
    _write(tmp_path / "ex" / "Split-train", [{"i_x": [1]}] * 100)
    path = tmp_path / "ex" / "Split-train" / "data-00000.tfrecord.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(InputError, match=r"data-00000\.tfrecord\.gz"):
        compute(str(tmp_path / "ex"), str(tmp_path / "out"), StatisticsConfig())


def test_ingests_pooled_statistics_are_refused_with_the_fix(tmp_path):
    (tmp_path / "statistics.json").write_text("{}")
    with pytest.raises(InputError, match="wire a statistics component"):
        load_statistics(tmp_path)


def test_tfpipe_stats_prints_a_table_per_split_of_a_statistics_folder(titanic_stats, capsys):
    from pipeline.cli import main

    folder, counts = titanic_stats
    assert main(["stats", str(folder / "stats")]) == 0
    out = capsys.readouterr().out
    for split, n in counts.items():
        assert f"split {split}: {n} examples" in out
    age = next(line for line in out.splitlines() if line.startswith("Age "))
    assert "FLOAT" in age and "%" in age


# ---- ingest's pass and the component's own pass: one accumulator, the same figures --------------------------------


def _mixed_csv(path: Path, rows: int, seed: int = 0) -> None:
    """Titanic-like columns: ints, floats with missing values, categories (some missing), a few hundred tickets."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(1, 80, rows).round(1).astype(str)
    age[rng.random(rows) < 0.2] = ""
    embarked = rng.choice(np.array(["S", "C", "Q", ""]), rows, p=[0.6, 0.2, 0.15, 0.05])
    with open(path, "w", encoding="utf-8") as f:
        f.write("PassengerId,Survived,Pclass,Age,Fare,Embarked,Ticket\n")
        for i in range(rows):
            fare = rng.lognormal(3, 0.8)
            f.write(
                f"{i},{rng.integers(0, 2)},{rng.integers(1, 4)},{age[i]},{fare:.4f},{embarked[i]},T{rng.integers(500)}\n"
            )


def _flat(message, path: str = "") -> dict:
    """{field path: value} of every leaf of a proto, for a comparison that names what differs."""
    from google.protobuf.json_format import MessageToDict

    out: dict = {}

    def walk(x, at):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{at}.{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, f"{at}[{i}]")
        else:
            out[at] = x

    walk(MessageToDict(message), path)
    return out


@pytest.mark.parametrize("pre_split", [False, True])
def test_ingests_pass_and_the_components_own_pass_give_the_same_statistics(tmp_path, caplog, pre_split):
    """12,000 rows: one Arrow block for ingest, three 4096-record batches a split for the component's reader, so the
    two paths feed the same accumulator differently cut batches. Everything is equal (the sketches are exact
    below their capacity), means and deviations to the last bits that a different batching rounds."""
    if pre_split:
        _mixed_csv(tmp_path / "train.csv", 12_000, seed=1)
        _mixed_csv(tmp_path / "eval.csv", 5_000, seed=2)
        config = IngestConfig(input={"train": str(tmp_path / "train.csv"), "eval": str(tmp_path / "eval.csv")})
    else:
        _mixed_csv(tmp_path / "data.csv", 17_000)
        config = IngestConfig(input=str(tmp_path / "data.csv"), label="Survived")
    examples = tmp_path / "examples"
    ingest(config, examples, tmp_path, tmp_path)
    with caplog.at_level("INFO", logger="tfpipe.statistics"):
        gathered = compute(str(examples), str(tmp_path / "gathered"), StatisticsConfig())
    assert sum("gathered by ingest" in r.getMessage() for r in caplog.records) == 2
    for state in examples.glob(f"Split-*/{STATE_FILE}"):
        state.unlink()
    caplog.clear()
    with caplog.at_level("INFO", logger="tfpipe.statistics"):
        read = compute(str(examples), str(tmp_path / "read"), StatisticsConfig())
    assert not any("gathered by ingest" in r.getMessage() for r in caplog.records)
    assert gathered == read and read["train"] > 8192
    a, b = _flat(load_statistics(tmp_path / "gathered")), _flat(load_statistics(tmp_path / "read"))
    assert a.keys() == b.keys() and len(a) > 500
    for key, value in a.items():
        if isinstance(value, float) and key.rsplit(".", 1)[-1] in ("mean", "stdDev"):
            assert value == pytest.approx(b[key], rel=1e-12), key
        else:
            assert value == b[key], key


def test_a_state_that_no_longer_matches_its_files_is_not_used(tmp_path):
    examples = tmp_path / "examples"
    ingest(IngestConfig(input=str(TITANIC)), examples, tmp_path, tmp_path)
    train = examples / "Split-train"
    files = sorted(str(p) for p in train.glob("*.gz"))
    assert Accumulator.load(train, files) is not None
    # the train split rewritten with its first 100 examples (as a user's component might): read it again
    kept = list(tf.data.TFRecordDataset(files, compression_type="GZIP").take(100).as_numpy_iterator())
    with gzip_writer(files[0]) as w:
        for record in kept:
            w.write(record)
    assert Accumulator.load(train, files) is None
    counts = compute(str(examples), str(tmp_path / "stats"), StatisticsConfig())
    assert counts["train"] == 100
