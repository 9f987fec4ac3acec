"""The console of a real `tfpipe run` (stderr piped, as in CI or a log file): one log format, no TensorFlow
start-up lines, no deprecation or tf.Transform noise, plain progress lines, each step announced once, a summary
within 100 columns; an input error is one `tfpipe: error:` line and no traceback."""

import itertools
import re
import time

import pytest

from tests.conftest import tfpipe, tiny_titanic

pytestmark = pytest.mark.slow
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (DEBUG|INFO|WARNING|ERROR|CRITICAL) *\| \S.* - ")


def test_a_run_prints_one_format_without_library_noise(tiny_run):
    done = tiny_run.done
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert lines and [line for line in lines if not LOG_LINE.match(line)] == []
    for noise in (
        "absl::InitializeLog",
        "cpu_feature_guard",
        "cuInit",
        "cudart_stub",
        "deprecated",
        "Instructions for updating",
        "cache key varies",
        "with ops with unsaved custom gradients",  # absl's, as the evaluator loads the model
        "Traceback",
    ):
        assert noise not in done.stderr, noise
    # Progress as plain lines (no carriage returns off a terminal), for each long step.
    assert "\r" not in done.stderr
    for progress in (
        r"ingest: rows read 60, ",
        r"transform: applying the graph to 2 files, rows 60, ",
        r"trainer: step 10/10, loss [\d.]+, [\d,]+ examples/s, done in",
        r"evaluator: examples scored \d+",
    ):
        assert re.search(progress, done.stderr), progress
    for step in ("ingest", "transform", "trainer", "evaluator", "pusher"):
        assert len(re.findall(rf"- {step}: running", done.stderr)) == 1  # announced once
    assert "Beginning flow run 'tiny/" in done.stderr  # the flow run's name, as the UI shows it
    assert "Finished in state Completed()" not in done.stderr  # the closing table says so


def test_the_summary_fits_100_columns_with_relative_paths_times_and_thresholds(tiny_run):
    out = tiny_run.done.stdout
    assert max(len(line) for line in out.splitlines()) <= 100
    assert re.search(r"^  trainer +COMPLETE +[\d.]+ s$", out, re.M)
    assert re.search(r"^  accuracy +[\d.]+  lower 0.1: pass$", out, re.M)
    assert re.search(r"^ +n +accuracy +", out, re.M)  # the slices' column heads, then a row per slice
    assert re.search(r"^    Sex=female +\d+ +[\d.]+ ", out, re.M)
    assert out.startswith("run tiny/")  # as the Prefect UI names the run, and as diff and reproduce take it
    assert re.search(r"^metrics: +root/evaluator/evaluation/\d+/metrics.json$", out, re.M)
    assert re.search(r"^MLMD store: +root/metadata.sqlite$", out, re.M)


def test_an_input_error_is_one_line_without_traceback(tmp_path):
    tiny_titanic(tmp_path, name="nolabel", drop_label=True)
    done = tfpipe("run", "pipeline.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [error] = [line for line in done.stderr.splitlines() if "label column 'Survived' is missing" in line]
    assert error.startswith("tfpipe: error: ")
    # -v brings the libraries' messages back, still without a traceback for the user's error.
    verbose = tfpipe("-v", "run", "pipeline.yaml", cwd=tmp_path)
    assert verbose.returncode == 1 and "Traceback" not in verbose.stderr
    assert len(verbose.stderr.splitlines()) > len(done.stderr.splitlines())


def _seconds(line: str) -> float:
    h, m, rest = line[:12].split(":")
    return int(h) * 3600 + int(m) * 60 + float(rest)


def test_no_wait_over_5_seconds_passes_without_a_line(tiny_run):
    """From the command's start to its end, stderr's timestamps (the wall clock of the machine that ran it, off
    a terminal) show a line at least every 5 s: imports, Prefect's temporary server, Beam's analysis, tracing,
    checkpoint, evaluation and export each say what they are doing while they take long."""
    assert tiny_run.done.returncode == 0, tiny_run.done.stderr[-3000:]
    day = time.mktime(time.localtime(tiny_run.started)[:3] + (0, 0, 0, 0, 0, -1))
    stamps = [tiny_run.started - day] + [_seconds(line) for line in tiny_run.done.stderr.splitlines()]
    stamps.append(tiny_run.ended - day)
    gaps = [(b - a, i) for i, (a, b) in enumerate(itertools.pairwise(stamps))]
    lines = ["(start)", *tiny_run.done.stderr.splitlines(), "(end)"]
    worst, at = max(gaps)
    assert worst <= 5.0, f"{worst:.1f} s of silence after: {lines[at]}"
