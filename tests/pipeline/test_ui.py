"""The metrics artifact's rows: each metric against its bounds, FAIL exactly where the evaluator failed it."""

from pipeline.ui import metrics_rows


def test_failed_metrics_are_marked_from_the_evaluator_not_from_its_wording():
    doc = {"overall": {"accuracy": 0.7, "auc": 0.9, "accuracy_baseline": 0.6},
           "thresholds": {"accuracy": {"lower": 0.75}, "auc": {"lower": 0.8}},
           "change_thresholds": {"accuracy_baseline": {"max_decrease": 0.1}}, "baseline": {"accuracy_baseline": 0.6},
           "reasons": ["accuracy = 0.7 is below the lower bound 0.75"], "failed_metrics": ["accuracy"]}
    rows = {r["metric"]: r for r in metrics_rows(doc)}
    assert rows["accuracy"]["result"] == "FAIL" and rows["accuracy"]["threshold"] == "lower 0.75"
    assert rows["auc"]["result"] == "pass"
    assert rows["accuracy_baseline"]["result"] == "pass" and rows["accuracy_baseline"]["baseline"] == 0.6
