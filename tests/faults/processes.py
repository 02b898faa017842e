"""The fault suite's one way to run a victim: a crmlake program in a process group of its own,
armed to kill itself at a crash point (:mod:`crmlake.faults`), its Spark JVM reaped after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from crmlake.faults import CRASH_AT, CRASH_HIT

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_armed(arguments: list[str], crash_at: str | None = None, hit: int = 1) -> subprocess.Popen:
    """Start ``python <arguments>`` from the repository root in a new process group, with
    ``crash_at`` armed on its ``hit``-th pass when given; return the running process."""
    env = {k: v for k, v in os.environ.items() if k not in (CRASH_AT, CRASH_HIT)}
    if crash_at:
        env.update({CRASH_AT: crash_at, CRASH_HIT: str(hit)})
    return subprocess.Popen([sys.executable, *arguments], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen, timeout: int = 600) -> subprocess.CompletedProcess:
    """Wait for ``process``, then kill what is left of its group (its Spark JVM, should it
    outlive it); return it finished, with its output as text."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(process.args, process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


def run_armed(arguments: list[str], crash_at: str | None = None, hit: int = 1) -> subprocess.CompletedProcess:
    """Run ``python <arguments>`` to its end (or its crash point): :func:`start_armed` then :func:`finish`."""
    return finish(start_armed(arguments, crash_at, hit))
