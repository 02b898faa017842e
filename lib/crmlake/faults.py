"""Named crash points, so the fault suite can kill a real process exactly between two steps.

SQLite tests its crash safety by simulating a power loss at every write; crmlake's fault suite
(``tests/faults/``) does the same with SIGKILL. Code that moves from one durable state to the
next calls :func:`crash_point` with the name of the place it is at (``decide.published``,
``erase.tables_done``, ...). Nothing happens unless the environment variable
``CRMLAKE_CRASH_AT`` names that place: then the process kills itself with SIGKILL (no
``finally``, no ``atexit``, no flush: what a power cut or the OOM killer does) on the
``CRMLAKE_CRASH_HIT``-th time it gets there (default: the first).
"""

from __future__ import annotations

import os
import signal
import threading

CRASH_AT = "CRMLAKE_CRASH_AT"
CRASH_HIT = "CRMLAKE_CRASH_HIT"
_hits: dict[str, int] = {}
_counting = threading.Lock()   # pieces of a stage run side by side reach their points from several threads


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL when ``CRMLAKE_CRASH_AT`` names ``name`` (a no-op otherwise)."""
    if os.environ.get(CRASH_AT) != name:
        return
    with _counting:
        _hits[name] = hit = _hits.get(name, 0) + 1
    if hit >= int(os.environ.get(CRASH_HIT, "1")):
        os.kill(os.getpid(), signal.SIGKILL)
