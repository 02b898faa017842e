"""The bench's scale model (benchmarks/scale.py): what it reads from a Spark event log and how it
fits T(P) = driver + CPU/P + shuffle/(P * bandwidth), on a hand-written log with known answers."""

import json

import pytest

from benchmarks.scale import application_figures, covered_seconds, fitted_model, modelled_seconds


def _task_end(run_ms: int, remote: int, local: int, written: int, wait_ms: int = 0) -> dict:
    return {"Event": "SparkListenerTaskEnd", "Task Metrics": {
        "Executor Run Time": run_ms, "Shuffle Read Metrics": {"Remote Bytes Read": remote, "Local Bytes Read": local, "Fetch Wait Time": wait_ms},
        "Shuffle Write Metrics": {"Shuffle Bytes Written": written}}}


def test_job_time_counts_overlapping_jobs_once_and_leaves_the_gaps_to_the_driver():
    assert covered_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == pytest.approx(4.0)
    assert covered_seconds([]) == 0.0


def test_an_event_log_gives_jobs_their_covered_time_task_seconds_and_shuffle_bytes(tmp_path):
    events = [
        {"Event": "SparkListenerApplicationStart", "Timestamp": 1_000},
        {"Event": "SparkListenerJobStart", "Job ID": 0, "Submission Time": 2_000},
        _task_end(700, 0, 100, 40),
        {"Event": "SparkListenerJobEnd", "Job ID": 0, "Completion Time": 4_000},
        {"Event": "SparkListenerJobStart", "Job ID": 1, "Submission Time": 3_000},   # overlaps job 0 by a second
        _task_end(1_300, 250, 50, 0, wait_ms=500),
        {"Event": "SparkListenerTaskEnd", "Task Metrics": None},   # a task that failed before reporting metrics
        {"Event": "SparkListenerJobEnd", "Job ID": 1, "Completion Time": 5_500},
        {"Event": "SparkListenerJobStart", "Job ID": 2, "Submission Time": 9_000},   # never ended: counted, not timed
    ]
    log = tmp_path / "app-1"
    log.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert application_figures(str(log)) == {"jobs": 3, "job_seconds": pytest.approx(3.5), "task_seconds": pytest.approx(2.0),
                                              "shuffle_read_bytes": 400, "shuffle_write_bytes": 40, "remote_bytes_read": 250,
                                              "fetch_wait_seconds": pytest.approx(0.5)}


def test_the_model_takes_the_driver_from_the_cluster_cpu_from_one_core_and_the_bandwidth_from_the_fetches():
    local_one = {"wall_seconds": 30.0, "job_seconds": 24.0, "task_seconds": 20.0, "shuffle_read_bytes": 1_000}
    cluster = {"wall_seconds": 26.0, "job_seconds": 16.0, "task_seconds": 21.0, "shuffle_read_bytes": 12_000,
               "remote_bytes_read": 6_000, "fetch_wait_seconds": 3.0}
    model = fitted_model(local_one, cluster)
    # driver 26 - 16; CPU of one core; 6,000 remote bytes fetched in 3 s of waiting.
    assert model == {"driver": 10.0, "cpu": 20.0, "shuffle": 12_000, "bandwidth": pytest.approx(2_000.0)}
    assert modelled_seconds(model, 2) == pytest.approx(10.0 + 10.0 + 3.0)
    assert modelled_seconds(model, 4) == pytest.approx(10.0 + 5.0 + 1.5)
    # The tasks never waited on a fetch: shuffles did not limit the cluster, no network term.
    quick = fitted_model(local_one, {**cluster, "fetch_wait_seconds": 0.0})
    assert quick["bandwidth"] is None and modelled_seconds(quick, 8) == pytest.approx(10.0 + 20.0 / 8)
