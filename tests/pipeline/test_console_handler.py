"""The console handler as a terminal and a pipe see it: a live progress line rewritten in place on a terminal,
plain lines elsewhere; an expected error's record loses its traceback and stays off the console."""

import io
import logging
import sys

from components.errors import InputError
from components.progress import Progress
from pipeline import console


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _logger(name):
    logger = logging.getLogger(f"tfpipe.test.{name}")
    logger.handlers[:] = [console.ConsoleHandler()]
    logger.propagate, logger.level = False, logging.INFO
    return logger


def _progress(stream, monkeypatch, name) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.delenv("TFPIPE_PROGRESS", raising=False)
    log = _logger(name)
    progress = Progress(log, "trainer: step", total=3, unit="examples", per_item=32)
    progress.period = 0  # every update shows
    for step in (1, 2, 3):
        progress.update(step, "loss 0.5")
    progress.finish("loss 0.4")
    log.info("trainer: COMPLETE")
    return stream.getvalue()


def test_a_terminal_gets_one_live_line_a_pipe_gets_plain_lines(monkeypatch):
    live = _progress(_Terminal(), monkeypatch, "tty")
    assert live.count("\r\x1b[K") == 4 and live.count("\n") == 2  # rewritten in place, then the final line
    assert "trainer: step 3/3, loss 0.4, " in live and "examples/s, done in" in live
    plain = _progress(io.StringIO(), monkeypatch, "pipe")
    assert "\r" not in plain and plain.count("\n") == 5
    assert "trainer: step 1/3, loss 0.5, " in plain and ", ETA " in plain


def test_an_expected_error_loses_its_traceback_and_a_bug_keeps_it(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.delenv(console.LEVEL_ENV, raising=False)
    log = _logger("errors")
    for error in (InputError("data.csv row 3: bad"), KeyError("bug")):
        try:
            raise error
        except Exception:
            log.exception("Task run failed with exception")
    out = stream.getvalue()
    assert out.count("Traceback") == 1 and "KeyError: 'bug'" in out and "data.csv row 3" not in out
