"""One bad piece never blocks the rest: a file, a model, an audience, an erasure.

A stage is made of pieces that do not depend on each other: each model analyze trains, each
audience decide publishes, each erasure organize applies. :func:`isolated` runs one such
piece; when it fails, the reason is logged and recorded under the piece's name in the
stage's ``failed`` (which ``gold.job_runs`` records with the outcome ``partial`` and the
command turns into exit code 4), and the stage goes on with the others. Nothing a failed
piece began is taken as done, so the next run simply tries it again.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from crmlake.log import timed


def reason_of(error: BaseException) -> str:
    """Return an error as one line: its type and its message's first line."""
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


@contextmanager
def isolated(piece: str, failed: dict, log: logging.Logger, label: str | None = None,
             expected: tuple[type[Exception], ...] = ()) -> Iterator[dict]:
    """Run the block as the piece ``piece``, timed and logged as ``label`` (default: the piece).

    Yields the dict of the step's facts. When the block raises one of ``expected`` (the data
    cannot do it today: its message is the reason) or any other error (logged with its
    trace), the reason is set as the facts' ``failed`` and ``failed[piece]``, and the caller
    goes on.
    """
    with timed(log, label or piece) as facts:
        try:
            yield facts
        except expected as reason:
            facts["failed"] = str(reason)
            log.warning("%s: not done today, the rest goes on: %s", label or piece, reason)
        except Exception as error:  # noqa: BLE001 - one piece's fault must not stop the others
            facts["failed"] = reason_of(error)
            log.exception("%s failed, the rest goes on", label or piece)
    if "failed" in facts:
        failed[piece] = facts["failed"]
