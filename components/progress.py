"""Progress of long work (rows read, files applied, training steps) as log records of a `tfpipe` logger, so it
reaches the console and the Prefect UI alike. The console shows it as a live line on a terminal and as plain
periodic lines elsewhere (pipeline/console.py); any other handler sees ordinary INFO records."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator

# How often a record is emitted: often enough for a live line on a terminal, rarely in a log file or the UI.
LIVE_SECONDS, PLAIN_SECONDS = 0.5, 10.0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """`update(done)` as work advances, `finish()` at the end. `what` names the work ("ingest: rows read"),
    `total` (optional) gives a fraction and an ETA, `unit` names the rate's unit."""

    def __init__(
        self, logger: logging.Logger, what: str, total: int | None = None, unit: str = "rows", per_item: float = 1.0
    ):
        self.log, self.what, self.total, self.unit, self.per_item = logger, what, total, unit, per_item
        self.started = self.last = time.perf_counter()
        self.done = self.offset = 0  # offset: work done before `started` (the rate leaves it out)
        live = os.environ.get("TFPIPE_PROGRESS") == "live" or (
            os.environ.get("TFPIPE_PROGRESS") != "plain" and sys.stderr.isatty()
        )
        self.period = LIVE_SECONDS if live else PLAIN_SECONDS

    def line(self, extra: str = "", final: bool = False) -> str:
        elapsed = time.perf_counter() - self.started
        rate = (self.done - self.offset) / elapsed if elapsed > 0 else 0.0
        shown = rate * self.per_item
        text = f"{self.what} {self.done:,}" + (f"/{self.total:,}" if self.total else "")
        if extra:
            text += f", {extra}"
        text += f", {shown:,.0f} {self.unit}/s"
        if final:
            text += f", done in {_duration(elapsed)}"
        elif self.total and rate > 0 and self.done > self.offset:
            text += f", ETA {_duration((self.total - self.done) / rate)}"
        return text

    def update(self, done: int, extra: str = "") -> None:
        self.done = done
        now = time.perf_counter()
        if now - self.last >= self.period:
            self.last = now
            self.log.info("%s", self.line(extra), extra={"tfpipe_progress": "live"})

    def finish(self, extra: str = "") -> None:
        self.log.info("%s", self.line(extra, final=True), extra={"tfpipe_progress": "final"})


# A wait longer than this without a tfpipe line is not left silent (see `doing`). The promise is a line at
# least every 5 s; 3 s leaves 2 s for the heartbeat thread to get the GIL on a loaded machine (a CI run saw it
# come 2.7 s late, inside Beam's analysis, with 4 s).
QUIET_SECONDS = 3.0
_activities: dict[int, Activity] = {}
_lock = threading.Lock()
_last_line = [time.monotonic()]
_watcher: threading.Thread | None = None


class _Clock(logging.Handler):
    """On the `tfpipe` logger: notes when tfpipe last said anything (its own records and its children's)."""

    def emit(self, record: logging.LogRecord) -> None:
        _last_line[0] = time.monotonic()


class Activity:
    """What a `doing` block is doing now; `what` may change as it goes (training, then evaluating)."""

    def __init__(self, logger: logging.Logger, what: str):
        self.logger, self.what, self.since = logger, what, time.monotonic()


@contextlib.contextmanager
def doing(logger: logging.Logger, what: str) -> Iterator[Activity]:
    """While the block runs, `what` and the time it has taken are logged whenever tfpipe has been quiet for
    QUIET_SECONDS: a long tracing, a Beam analysis or a server start shows what it is doing. Nested blocks
    (in any thread) speak for their part; the latest one started is the one said."""
    global _watcher
    activity = Activity(logger, what)
    with _lock:
        root = logging.getLogger("tfpipe")
        if not any(isinstance(h, _Clock) for h in root.handlers):
            root.addHandler(_Clock())
        if _watcher is None or not _watcher.is_alive():
            _watcher = threading.Thread(target=_watch, name="tfpipe-heartbeat", daemon=True)
            _watcher.start()
        _activities[id(activity)] = activity
    try:
        yield activity
    finally:
        with _lock:
            _activities.pop(id(activity), None)


def _watch() -> None:
    while True:
        time.sleep(0.25)
        now = time.monotonic()
        with _lock:
            latest = max(_activities.values(), key=lambda a: a.since, default=None)
        if latest is None or now - _last_line[0] < QUIET_SECONDS:
            continue
        _last_line[0] = now  # said once per quiet stretch, even by a logger whose records go nowhere
        latest.logger.info(
            "%s, %s so far", latest.what, _duration(now - latest.since), extra={"tfpipe_progress": "live"}
        )
