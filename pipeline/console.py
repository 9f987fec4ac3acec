"""The console: one log format for tfpipe, Prefect and the libraries under them; their known noise (TensorFlow's
C++ start-up lines, deprecation warnings, tf.Transform's "cache key varies") silenced unless `-v` or
TFPIPE_LOG_LEVEL=DEBUG; progress as a live line on a terminal; and an expected error (a TfpipeError: bad input,
bad config) without a traceback anywhere, Prefect's task and flow logs included.

`configure()` runs at the CLI's entry, before TensorFlow or Prefect load. `adopt_prefect()` runs once Prefect is
imported (pipeline/flow.py), also in a Prefect worker that never saw the CLI.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
import warnings

LEVEL_ENV = "TFPIPE_LOG_LEVEL"
FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(source)s - %(message)s"
DATEFMT = "%H:%M:%S"

# Lines TensorFlow's C++ runtime writes to stderr as its libraries load (before absl logging starts, so
# TF_CPP_MIN_LOG_LEVEL cannot hide them).
_CPP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} [\d:. ]+\d+ \S+\.cc:\d+\]"
    r"|To enable the following instructions:|oneDNN custom operations are on)"
)


def verbose() -> bool:
    return os.environ.get(LEVEL_ENV, "").upper() == "DEBUG"


def _expected(exc) -> bool:
    from components.errors import TfpipeError, no_space

    if no_space(exc) is not None:
        return True  # a full disk, as a library met it: tfpipe's one line says it (no traceback from Beam or TF)
    while exc is not None:
        if isinstance(exc, TfpipeError):
            return True
        exc = exc.__cause__
    return False


def _noise(record: logging.LogRecord) -> bool:
    """Known noise from the libraries, and Prefect's lines that repeat what tfpipe says."""
    name = record.name
    if getattr(record, "tfpipe_summarized", False):
        return True  # a line the run's closing table repeats (a cached step)
    if name.startswith("tensorflow") or name == "py.warnings":
        text = str(record.msg)
        return "deprecated" in text or "Instructions for updating" in text
    if name == "absl":
        # tf.Transform's analyzer cache; and loading any SavedModel whose graph holds tf.Transform's
        # gradient-free ops (the evaluator loads the candidate and the baseline): nothing here takes gradients.
        text = str(record.msg)
        return "cache key varies" in text or "with ops with unsaved custom gradients" in text
    if name == "prefect" and record.levelno == logging.INFO:
        return True  # the temporary server's start and stop
    if name in ("prefect.task_runs", "prefect.flow_runs") and record.levelno == logging.INFO:
        # "Finished in state Completed()": tfpipe's own step lines and closing table say it
        return name == "prefect.task_runs" or "Finished in state Completed(" in record.getMessage()
    return False


class ExpectedErrorFilter(logging.Filter):
    """On Prefect's run loggers and tfpipe's: a record about an expected error loses its traceback (everywhere,
    the Prefect UI included) and is marked, so the console can leave it to the CLI's one `tfpipe: error:` line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _expected(record.exc_info[1]):
            record.exc_info, record.exc_text, record.tfpipe_expected = None, None, True
        elif (record.levelno >= logging.ERROR and _expected(sys.exc_info()[1])) or _names_expected(record):
            record.tfpipe_expected = True
        return True


def _names_expected(record: logging.LogRecord) -> bool:
    # Prefect's "Finished in state Failed('Task run encountered an exception InputError: ...')" carries no exception.
    from components import errors

    text = record.getMessage()
    return "Failed(" in text and any(
        f"{name}:" in text
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.TfpipeError)
    )


class Formatter(logging.Formatter):
    def __init__(self):
        super().__init__(FORMAT, DATEFMT)

    def format(self, record: logging.LogRecord) -> str:
        # Prefect's run logger adds these names to its records.
        task_run_name, flow_run_name = getattr(record, "task_run_name", None), getattr(record, "flow_run_name", None)
        if task_run_name:
            record.source = f"task {task_run_name}"
        elif flow_run_name:
            record.source = f"flow {flow_run_name}"
        else:
            record.source = record.name
        return super().format(record)


class ConsoleHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time; progress records become one live line on a terminal."""

    def __init__(self):
        super().__init__()
        self.setFormatter(Formatter())
        self.live = False

    def emit(self, record: logging.LogRecord) -> None:
        _expected_filter.filter(record)
        quiet = not verbose()
        if quiet and (getattr(record, "tfpipe_expected", False) or _noise(record)):
            return
        try:
            stream = sys.stderr
            text = self.format(record)
            progress = getattr(record, "tfpipe_progress", None)
            tty = stream.isatty()
            if progress and tty:
                stream.write("\r\x1b[K" + text + ("" if progress == "live" else "\n"))
                self.live = progress == "live"
            else:
                stream.write(("\n" if self.live and tty else "") + text + "\n")  # the last live line stays
                self.live = False
            stream.flush()
        except Exception:
            self.handleError(record)


class _ProgressThrottle(logging.Filter):
    """For handlers other than the console's (the Prefect API): a progress record at most every 10 s, and the last."""

    def __init__(self):
        super().__init__()
        self.last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "tfpipe_progress", None) != "live":
            return True
        now = time.monotonic()
        if now - self.last < 10:
            return False
        self.last = now
        return True


_HANDLER: ConsoleHandler | None = None


def _quiet_libraries() -> None:
    """The environment the libraries read as they load, set so that their known noise stays out (unless -v):
    for the CLI, and for a flow run a Prefect worker started."""
    if verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # ML Metadata's C++ client logs each connection and each error it then returns to tfpipe (a parent
    # context that already exists, a dropped connection): tfpipe reports what matters in its own words.
    os.environ.setdefault("GLOG_minloglevel", "3")
    logging.getLogger("absl").setLevel(logging.ERROR)  # its Python side repeats them as warnings
    _quiet_warnings()
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def configure(verbosity: int = 0) -> None:
    """At the CLI's entry: the environment the libraries read as they load, and the one console handler."""
    global _HANDLER
    if verbosity:
        os.environ[LEVEL_ENV] = "DEBUG"  # child processes (Beam workers, cluster tasks) inherit it
    _quiet_libraries()
    logging.captureWarnings(True)
    root = logging.getLogger()
    if _HANDLER is None:
        _HANDLER = ConsoleHandler()
    for handler in list(root.handlers):  # Prefect's console handler, or one basicConfig made; not pytest's
        if handler is not _HANDLER and _console_stream(handler):
            root.removeHandler(handler)
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    root.setLevel(logging.WARNING)
    tfpipe = logging.getLogger("tfpipe")
    named = logging.getLevelName(os.environ.get(LEVEL_ENV, "").upper())  # e.g. WARNING: no progress, errors only
    if verbosity:
        tfpipe.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    else:
        tfpipe.setLevel(named if isinstance(named, int) else logging.INFO)
    tfpipe.propagate = True
    for handler in list(tfpipe.handlers):  # a console handler an earlier configuration gave it
        if _console_stream(handler):
            tfpipe.removeHandler(handler)


def _console_stream(handler: logging.Handler) -> bool:
    return type(handler).__name__ == "PrefectConsoleHandler" or (
        type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.stdout, sys.__stderr__)
    )


def _quiet_warnings() -> None:
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)


_expected_filter = ExpectedErrorFilter()


@contextlib.contextmanager
def _held_stderr():
    """Holds back what is written to file descriptor 2 (C++ code included); passes on all but known noise."""
    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not _CPP_NOISE.match(line):
                    sys.stderr.write(line)


class _QuietTensorFlowImport:
    """A meta-path finder: when (and if) TensorFlow is first imported, its C++ start-up lines are held back,
    so a command that never needs TensorFlow does not load it to be quiet."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = spec.loader if spec is not None else None
        if loader is not None and hasattr(loader, "exec_module"):
            run = loader.exec_module

            def exec_module(module):
                with _held_stderr():
                    run(module)

            loader.exec_module = exec_module  # type: ignore[method-assign]  # wraps the loader's own method
        return spec


def adopt_prefect() -> None:
    """Once Prefect has set up its logging: its console handler gives way to ours (if the CLI configured one),
    else learns to leave out the noise; expected errors lose their tracebacks in Prefect's run logs."""
    quiet = _NoiseFilter()
    for name in ("", "uvicorn", "fastapi"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler).__name__ == "PrefectConsoleHandler":
                if _HANDLER is not None:
                    logger.removeHandler(handler)
                    if _HANDLER not in logger.handlers:
                        logger.addHandler(_HANDLER)
                else:
                    handler.addFilter(quiet)
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_expected_filter)
    tfpipe = logging.getLogger("tfpipe")
    if tfpipe.level == logging.NOTSET:
        tfpipe.setLevel(logging.INFO)
    from prefect.logging.handlers import APILogHandler

    if not any(isinstance(h, APILogHandler) for h in tfpipe.handlers):
        # Prefect set up its logging before tfpipe was imported (a flow run a worker started loads the flow
        # after that), so PREFECT_LOGGING_EXTRA_LOGGERS came too late: without this, a scheduled run's step,
        # progress and error lines never reach the Prefect UI.
        tfpipe.addHandler(APILogHandler())
    if _HANDLER is None:  # not the CLI: a worker's flow run, or a user's own script
        _quiet_libraries()
    for handler in tfpipe.handlers:  # Prefect's API handler (PREFECT_LOGGING_EXTRA_LOGGERS=tfpipe)
        if handler is not _HANDLER and not any(isinstance(f, _ProgressThrottle) for f in handler.filters):
            handler.addFilter(_expected_filter)
            handler.addFilter(_ProgressThrottle())


class _NoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return verbose() or not (_noise(record) or getattr(record, "tfpipe_expected", False))
