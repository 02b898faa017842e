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
    log.info("%s: done in %.1fs %s", what, time.monotonic() - started, details)
