"""Logging a data engineer can read at 3 a.m.: one format, stage timings, row counts."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterator

FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"


def setup_logging(level: str = "INFO") -> None:
    """Send crmlake's logs to stderr in one readable format (idempotent)."""
    root = logging.getLogger("crmlake")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    """Return the crmlake logger for a module (``crmlake.<name>``)."""
    return logging.getLogger(name if name.startswith("crmlake") else f"crmlake.{name}")


@contextmanager
def timed(log: logging.Logger, what: str) -> Iterator[dict]:
    """Log the start and duration of a step; the yielded dict's items are logged at the end."""
    facts: dict = {}
    started = time.monotonic()
    log.info("%s: started", what)
    try:
        yield facts
    except BaseException:
        log.error("%s: failed after %.1fs", what, time.monotonic() - started)
        raise
    details = " ".join(f"{k}={v}" for k, v in facts.items())
    took = time.monotonic() - started
    # Tagged, so that a caller can collect the steps' times (the bench does) whatever level is shown.
    log.info("%s: done in %.1fs %s", what, took, details, extra={"step": what, "step_seconds": took})


@contextmanager
def step_times() -> Iterator[list[tuple[str, float]]]:
    """Collect ``(step, seconds)`` of every :func:`timed` step that ends inside the block, in
    order, whatever log level is shown (the handlers keep showing what they showed)."""
    steps: list[tuple[str, float]] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if hasattr(record, "step_seconds"):
                steps.append((record.step, record.step_seconds))

    root = logging.getLogger("crmlake")
    level, shown = root.getEffectiveLevel(), [(h, h.level) for h in root.handlers]
    for handler, handler_level in shown:
        handler.setLevel(max(handler_level, level))
    collector = Collector(logging.INFO)
    root.addHandler(collector)
    root.setLevel(min(level, logging.INFO))
    try:
        yield steps
    finally:
        root.removeHandler(collector)
        root.setLevel(level)
        for handler, handler_level in shown:
            handler.setLevel(handler_level)
