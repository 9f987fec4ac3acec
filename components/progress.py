"""Progress of long work (rows read, files applied, training steps) as log records of a `tfpipe` logger, so it
reaches the console and the Prefect UI alike. The console shows it as a live line on a terminal and as plain
periodic lines elsewhere (pipeline/console.py); any other handler sees ordinary INFO records."""

from __future__ import annotations

import logging
import os
import sys
import time

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
        self.done = 0
        live = os.environ.get("TFPIPE_PROGRESS") == "live" or (
            os.environ.get("TFPIPE_PROGRESS") != "plain" and sys.stderr.isatty()
        )
        self.period = LIVE_SECONDS if live else PLAIN_SECONDS

    def line(self, extra: str = "", final: bool = False) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        shown = rate * self.per_item
        text = f"{self.what} {self.done:,}" + (f"/{self.total:,}" if self.total else "")
        if extra:
            text += f", {extra}"
        text += f", {shown:,.0f} {self.unit}/s"
        if final:
            text += f", done in {_duration(elapsed)}"
        elif self.total and rate > 0:
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
