"""Pieces run side by side (crmlake.isolation.side_by_side) on the real session: at once, each
in a Spark scheduler pool of its own, every piece to its end before the first error is raised,
and, when the waiting thread is interrupted (as a lost lease does), every Spark job cancelled
and every piece stopped."""

import _thread
import logging
import threading
import time

import pytest

from crmlake.isolation import isolated, side_by_side
from crmlake.lease import LeaseLostError


def test_pieces_run_at_once_each_in_a_scheduler_pool_of_its_own_and_give_their_results_in_order(spark):
    # Each piece waits for the other: run one after another, the first would time out.
    both = threading.Barrier(2, timeout=60)

    def piece(rows):
        both.wait()
        return spark.range(rows).count(), spark.sparkContext.getLocalProperty("spark.scheduler.pool")

    results = side_by_side(spark, {"orders": lambda: piece(7), "customers": lambda: piece(3)}, at_once=2)
    assert list(results.items()) == [("orders", (7, "orders")), ("customers", (3, "customers"))]
    assert spark.sparkContext.getConf().get("spark.scheduler.mode") == "FAIR"
    assert all(spark.sparkContext._jsc.sc().getPoolForName(name).isDefined() for name in ("orders", "customers"))
    assert spark.sparkContext.getLocalProperty("spark.scheduler.pool") is None   # the caller's own jobs: the default pool


def test_one_at_a_time_runs_the_pieces_in_the_callers_thread_in_order():
    ran = []
    results = side_by_side(None, {name: (lambda name=name: ran.append((name, threading.current_thread())) or name) for name in "abc"}, at_once=1)
    assert results == {"a": "a", "b": "b", "c": "c"} and ran == [(name, threading.main_thread()) for name in "abc"]


def test_every_piece_runs_to_its_end_then_the_first_failed_piece_in_order_raises(spark):
    finished = []

    def slow():
        time.sleep(1)
        finished.append("slow")

    def failing(error):
        raise error

    with pytest.raises(ValueError, match="first"):
        side_by_side(spark, {"a": lambda: failing(ValueError("first")), "b": slow, "c": lambda: failing(KeyError("second"))}, at_once=3)
    assert finished == ["slow"]


def test_an_interrupted_wait_cancels_the_pieces_spark_jobs_and_an_isolated_piece_does_not_go_on(spark):
    went_on, failed = [], {}

    def long_piece():
        spark.sparkContext.setJobGroup("long piece", "minutes of work on two cores, unless cancelled")
        with isolated("long piece", failed, logging.getLogger("test")):   # would log a failure and go on
            spark.range(0, 5_000_000_000, numPartitions=2).selectExpr("sum(id * id % 7)").collect()
        went_on.append(True)

    threading.Timer(3, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        side_by_side(spark, {"long": long_piece, "short": lambda: None}, at_once=2)
    tracker = spark.sparkContext.statusTracker()
    (job,) = tracker.getJobIdsForGroup("long piece")
    assert tracker.getJobInfo(job).status == "FAILED"   # cancelled, not run to its end
    assert went_on == [] and failed == {}


def test_a_lost_lease_is_no_piece_s_fault_it_goes_through_unrecorded():
    failed = {}
    with pytest.raises(LeaseLostError):
        with isolated("audience lapsed_buyers", failed, logging.getLogger("test")):
            raise LeaseLostError("lake lease lost (erase (pid 2 on h, ...) holds it now)")
    assert failed == {}   # not recorded as one piece's failure for the next run to retry: the whole command stops
