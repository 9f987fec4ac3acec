"""A stop asked for from outside the process (SIGTERM from Kubernetes or a Prefect worker, Ctrl-C).

Whoever catches the signal calls `request`; long work checks `requested()` where stopping is clean
(the Estimator's training loop, between chunks of steps, after a checkpoint) and raises errors.Stopped.
"""

from __future__ import annotations

_asked: list = []  # the signal's name once a stop was asked for


def request(why: str) -> bool:
    """Notes a stop; True the first time it is asked for."""
    first = not _asked
    if first:
        _asked.append(why)
    return first


def requested() -> str | None:
    return _asked[0] if _asked else None


def clear() -> None:
    _asked.clear()
