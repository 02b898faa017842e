"""One bad piece never blocks the rest: a file, a model, an audience, an erasure.

A stage is made of pieces that do not depend on each other: each model analyze trains, each
audience decide publishes, each erasure organize applies. :func:`isolated` runs one such
piece; when it fails, the reason is logged and recorded under the piece's name in the
stage's ``failed`` (which ``gold.job_runs`` records with the outcome ``partial`` and the
command turns into exit code 4), and the stage goes on with the others. Nothing a failed
piece began is taken as done, so the next run simply tries it again. Pieces that need nothing
of each other run side by side (:func:`side_by_side`): the small ones' Spark jobs fill the
cores a large one leaves idle between its stages.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Mapping, TypeVar

from pyspark.sql import SparkSession

from crmlake.lease import LeaseLostError
from crmlake.log import timed

T = TypeVar("T")
SCHEDULER_POOL = "spark.scheduler.pool"
_STOP: ContextVar[threading.Event | None] = ContextVar("crmlake_side_by_side_stop", default=None)   # set in each piece's thread


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
    goes on, except in a piece of a :func:`side_by_side` call being stopped, or when the lake's
    lease was lost (no piece's fault: every write after it would be refused): then the error
    goes through.
    """
    with timed(log, label or piece) as facts:
        try:
            yield facts
        except Exception as error:  # noqa: BLE001 - one piece's fault must not stop the others
            if _stopping() or isinstance(error, LeaseLostError):
                raise   # the stage is being stopped (its Spark jobs cancelled): nothing goes on
            if isinstance(error, expected):
                facts["failed"] = str(error)
                log.warning("%s: not done today, the rest goes on: %s", label or piece, error)
            else:
                facts["failed"] = reason_of(error)
                log.exception("%s failed, the rest goes on", label or piece)
    if "failed" in facts:
        failed[piece] = facts["failed"]


def _stopping() -> bool:
    """True in a piece of a :func:`side_by_side` call that is being stopped."""
    stop = _STOP.get()
    return stop is not None and stop.is_set()


def side_by_side(spark: SparkSession, pieces: Mapping[str, Callable[[], T]], at_once: int) -> dict[str, T]:
    """Run ``pieces`` (name -> a callable taking nothing) on up to ``at_once`` driver threads and
    return name -> its result, in the order given; ``at_once`` 1 runs them one after another.

    Each piece submits its Spark jobs in a scheduler pool of its own, named after it: under
    ``spark.scheduler.mode=FAIR`` (conf/base.yaml) the pools share the cores, so a small
    piece's short jobs are not queued behind a large piece's stages. Every piece runs to its
    end; then the first failed piece's error, in the order given, is raised. When the waiting
    thread is interrupted (a lost lease interrupts it), the pieces not started never start,
    and every Spark job is cancelled, again and again until each running piece has ended: its
    action fails, and :func:`isolated` lets that failure through rather than go on with the
    piece's next step; then the interruption is raised.
    """
    if at_once <= 1 or len(pieces) <= 1:
        return {name: piece() for name, piece in pieces.items()}
    context = spark.sparkContext
    stop = threading.Event()

    def in_pool(name: str, piece: Callable[[], T]) -> T:
        _STOP.set(stop)
        context.setLocalProperty(SCHEDULER_POOL, name)
        try:
            return piece()
        finally:
            context.setLocalProperty(SCHEDULER_POOL, None)

    with ThreadPoolExecutor(max_workers=min(at_once, len(pieces)), thread_name_prefix="crmlake-piece") as pool:
        futures = {name: pool.submit(in_pool, name, piece) for name, piece in pieces.items()}
        try:
            # In steps: an interruption is seen between two, not only once every piece is done.
            while wait(futures.values(), timeout=1).not_done:
                pass
        except BaseException:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            while wait(futures.values(), timeout=0.2).not_done:
                context.cancelAllJobs()
            raise
    return {name: future.result() for name, future in futures.items()}
