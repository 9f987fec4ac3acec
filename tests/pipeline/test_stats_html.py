"""`tfpipe stats ... --html FILE`: a self-contained page, a histogram per numeric feature per split (and the
previous drop's), the drifted feature marked, on a drift scenario of tiny Titanic data (Age + 20 years)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.conftest import tfpipe, tiny_titanic
from tests.pipeline.test_data_validation import DRIFT, _shift_age, write_drop

NUMERIC = {"Age", "Fare", "Parch", "PassengerId", "Pclass", "SibSp", "Survived"}


class _Page(HTMLParser):
    """Every element with its attributes, and whether tags close in order (a parse check)."""

    VOID = frozenset({"meta", "br", "img", "input", "link", "hr"})

    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:]}")
        else:
            self.open.pop()


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    assert not page.errors and not page.open, (page.errors, page.open)
    return page


@pytest.fixture(scope="module")
def drift(tmp_path_factory):
    """(previous drop's statistics, this drop's statistics, its anomalies) with Age shifted by 20 years."""
    from components.example_validator import ValidatorConfig, validate
    from components.ingest import IngestConfig, ingest
    from components.statistics import StatisticsConfig, compute
    from schemas.artifacts import Artifact

    tmp = tmp_path_factory.mktemp("drift")
    tiny_titanic(tmp / "src")
    good = (tmp / "src" / "data.csv").read_text()
    out = {}
    for name, edits in (("base", ()), ("age", (_shift_age,))):
        d = tmp / name
        d.mkdir()
        write_drop(d, good, *edits)
        ingest(IngestConfig(input=str(d / "data.csv")), d / "ex", d, d)
        compute(str(d / "ex"), str(d / "stats"), StatisticsConfig())
        out[name] = d
    baseline = Artifact(7, "ExampleStatistics", str(out["base"] / "stats"))
    d = out["age"]
    validate(ValidatorConfig(drift=DRIFT), str(d / "stats"), str(d / "schema.pbtxt"), baseline, str(d / "anomalies"))
    return out["base"] / "stats", d / "stats", d / "anomalies"


def test_the_page_has_a_histogram_per_numeric_feature_per_split_and_marks_the_drifted_feature(drift):
    from components.example_validator import load_anomalies
    from components.statistics import load_statistics
    from pipeline.stats_html import render

    previous, current, anomalies = drift
    text = render(
        [
            {
                "title": "drop",
                "statistics": load_statistics(current),
                "anomalies": load_anomalies(anomalies),
                "previous": load_statistics(previous),
            }
        ],
        "test",
    )
    page = parse(text)
    # self-contained: nothing fetched, nothing run
    assert not [e for e in page.elements if e[0] in ("script", "link", "img", "iframe")]
    assert not [
        e
        for e in page.elements
        if any(str(v).startswith(("http:", "https:", "//")) for k, v in e[1].items() if k in ("src", "href"))
    ]
    histograms = {(a["data-feature"], a["data-split"]) for tag, a in page.elements if a.get("class") == "histogram"}
    for feature in NUMERIC:
        for split in ("train", "eval", "previous drop (train)"):
            assert (feature, split) in histograms, (feature, split, sorted(histograms))
    bars = [a for tag, a in page.elements if tag == "rect"]
    assert len(bars) >= len(NUMERIC) * 3 * 20
    sections = {a["data-feature"]: a["class"].split() for tag, a in page.elements if tag == "section"}
    assert "drifted" in sections["Age"], sections["Age"]
    assert [f for f, classes in sections.items() if "drifted" in classes or "anomalous" in classes] == ["Age"]
    assert "drift (train) 0." in text and "DRIFTED" in text
    # strings: a value table per string feature, with the splits' shares
    tables = {a["data-feature"] for tag, a in page.elements if tag == "table" and a.get("class") == "values"}
    assert {"Sex", "Embarked"} <= tables


def test_tfpipe_stats_html_of_a_statistics_folder(drift, tmp_path):
    _, current, _ = drift
    done = tfpipe("stats", str(current), "--html", "page.html", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "written to page.html" in done.stdout
    page = parse((tmp_path / "page.html").read_text())
    histograms = {(a["data-feature"], a["data-split"]) for tag, a in page.elements if a.get("class") == "histogram"}
    assert histograms == {(f, s) for f in NUMERIC for s in ("train", "eval")}  # no store, so no baseline
    assert "not validated" in (tmp_path / "page.html").read_text()
