"""The metrics artifact's rows: each metric against its bounds, FAIL exactly where the evaluator failed it."""

from pipeline.ui import metrics_rows


def test_failed_metrics_are_marked_from_the_evaluator_not_from_its_wording():
    doc = {
        "overall": {"accuracy": 0.7, "auc": 0.9, "accuracy_baseline": 0.6},
        "thresholds": {"accuracy": {"lower": 0.75}, "auc": {"lower": 0.8}},
        "change_thresholds": {"accuracy_baseline": {"max_decrease": 0.1}},
        "baseline": {"accuracy_baseline": 0.6},
        "reasons": ["accuracy = 0.7 is below the lower bound 0.75"],
        "failed_metrics": ["accuracy"],
    }
    rows = {r["metric"]: r for r in metrics_rows(doc)}
    assert rows["accuracy"]["result"] == "FAIL" and rows["accuracy"]["threshold"] == "lower 0.75"
    assert rows["auc"]["result"] == "pass"
    assert rows["accuracy_baseline"]["result"] == "pass" and rows["accuracy_baseline"]["baseline"] == 0.6


def _summary_of(tmp_path, capsys, doc: dict) -> list[str]:
    import json

    from pipeline.cli import _summary

    (tmp_path / "metrics.json").write_text(json.dumps(doc))
    _summary(
        {
            "pipeline": "p",
            "run_id": "r",
            "metadata": "m",
            "components": {
                "evaluator": {
                    "state": "COMPLETE",
                    "uris": {"evaluation": str(tmp_path)},
                    "types": {"evaluation": "ModelEvaluation"},
                }
            },
        }
    )
    return capsys.readouterr().out.splitlines()


_DOC = {
    "overall": {"accuracy": 0.8, "auc": 0.84},
    "thresholds": {"accuracy": {"lower": 0.75}},
    "change_thresholds": {"accuracy": {"max_decrease": 0.02}},
    "blessed": True,
    "reasons": [],
    "failed_metrics": [],
    "slices": {
        "Sex=female": {"example_count": 90, "accuracy": 0.83, "auc": 0.87},
        "Pclass=1": {"example_count": 71, "accuracy": 0.69, "auc": 0.78, "prediction/mean": 0.7},
    },
}


def test_the_summary_says_when_there_is_no_baseline_and_shows_it_when_there_is(tmp_path, capsys):
    first = _summary_of(tmp_path, capsys, {**_DOC, "baseline": None})
    accuracy = next(line for line in first if line.split()[:1] == ["accuracy"])
    assert accuracy.endswith("lower 0.75: pass; max_decrease 0.02: no baseline"), accuracy
    later = _summary_of(tmp_path, capsys, {**_DOC, "baseline": {"accuracy": 0.81, "auc": 0.85}})
    assert "baseline" in next(line for line in later if line.split()[:1] == ["metric"])
    accuracy = next(line for line in later if line.split()[:1] == ["accuracy"])
    assert accuracy.split()[1:3] == ["0.8", "0.81"] and accuracy.endswith("max_decrease 0.02: pass"), accuracy


def test_slices_are_aligned_and_one_below_a_threshold_is_flagged(tmp_path, capsys):
    lines = _summary_of(tmp_path, capsys, {**_DOC, "baseline": None})
    at = lines.index("  per slice:")
    header, female, first_class = lines[at + 1 : at + 4]
    assert header.split() == ["n", "accuracy", "auc", "prediction/mean"]
    assert female.index("90") + 2 == first_class.index("71") + 2 == header.index("n") + 1  # right-aligned columns
    assert first_class.endswith("below accuracy lower 0.75") and "below" not in female
