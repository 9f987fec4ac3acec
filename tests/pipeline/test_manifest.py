"""Where bit-identity cannot be expected, the manifest says why and reproduce judges by metrics within tolerance."""

from pipeline.manifest import TOLERANCE, exactness
from pipeline.metadata import Artifact
from pipeline.reproduce import DIFFERENT, IDENTICAL, WITHIN, _verdict


def _artifact(type_name, fingerprint, **floats):
    return Artifact(1, type_name, "/x", "LIVE", {"fingerprint": fingerprint, **floats})


def test_accelerators_and_clusters_are_not_exact():
    assert exactness({"devices": ["CPU:0"]}) == {"exact": True}
    gpu = exactness({"devices": ["CPU:0", "GPU:0", "GPU:1"]})
    assert gpu["exact"] is False and "GPU" in gpu["why"]
    cluster = exactness({"devices": ["CPU:0"], "tf_config_cluster": {"chief": 1, "worker": 2}})
    assert cluster["exact"] is False and "multi-worker" in cluster["why"]


def test_weights_that_differ_are_judged_by_the_run_metrics_when_not_exact():
    model_a, model_b = _artifact("Model", "aaa"), _artifact("Model", "bbb")
    close = TOLERANCE["metric_abs"] / 2
    run_a = _artifact("ModelRun", "r1", accuracy=0.80, loss=0.45)
    run_b = _artifact("ModelRun", "r2", accuracy=0.80 + close, loss=0.45 - close)
    far = _artifact("ModelRun", "r3", accuracy=0.70, loss=0.45)
    outs = lambda run: {"model": model_a if run is run_a else model_b, "model_run": run}  # noqa: E731
    assert _verdict(model_a, model_b, outs(run_a), outs(run_b), exact=True) == DIFFERENT
    assert _verdict(model_a, model_b, outs(run_a), outs(run_b), exact=False) == WITHIN
    assert _verdict(model_a, model_b, outs(run_a), outs(far), exact=False) == DIFFERENT
    assert _verdict(model_a, _artifact("Model", "aaa"), {}, {}, exact=True) == IDENTICAL
    evaluation = _artifact("ModelEvaluation", "e", **{"metric:accuracy": 0.8})
    assert (
        _verdict(evaluation, _artifact("ModelEvaluation", "f", **{"metric:accuracy": 0.8}), {}, {}, True) == IDENTICAL
    )


def test_the_import_scan_behind_the_cache_key_misses_no_import_of_any_tfpipe_file():
    # The cache key follows imports found by parsing import lines only (fast); it must find every import the
    # whole file's syntax tree has (function-level ones included), or an edit could be served from cache.
    import ast
    from pathlib import Path

    from pipeline.manifest import PACKAGES, REPO, _import_statements

    def imports(tree):
        return {ast.dump(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))}

    files = [f for package in PACKAGES for f in (REPO / package).rglob("*.py")]
    assert len(files) > 40
    for f in files:
        source = Path(f).read_bytes()
        missed = imports(ast.parse(source)) - imports(_import_statements(source, str(f)))
        assert not missed, f"{f}: {missed}"
    tricky = b"import os\ndef f():\n    from components import (\n        errors,\n        stop)  # why\n"
    assert imports(_import_statements(tricky, "x.py")) == imports(ast.parse(tricky))
