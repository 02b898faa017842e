"""Run the decide stage on a test lake in its own process (the fault suite kills it at a crash point).

Usage: decide_driver.py ROOT YYYY-MM-DD

ROOT holds the lake, the exports and an MLflow store (:func:`conf_for`). The crash point is
chosen by the environment, ``CRMLAKE_CRASH_AT`` (:mod:`crmlake.faults`).
"""

from __future__ import annotations

import datetime as dt
import sys

from crmlake.config import Conf, load_conf


def conf_for(root: str, extra: tuple[str, ...] = ()) -> Conf:
    """Return the conf of a test lake under ``root``: lake, landing, exports and MLflow inside it,
    two local cores, two shuffle partitions; ``extra`` overrides added last."""
    return load_conf(
        "conf/local.yaml",
        overrides=[
            f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
            f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/mlartifacts",
            "spark.master=local[2]", "spark.conf.spark.sql.shuffle.partitions=2", *extra,
        ],
        environ={},
    )


def main(root: str, run_date: dt.date) -> None:
    """Run decide for ``run_date`` on the lake under ``root`` in a session of its own."""
    from crmlake.log import setup_logging
    from crmlake.runs import run_stage
    from crmlake.session import build_session

    setup_logging("INFO")
    conf = conf_for(root)
    spark = build_session(conf, "decide-fault")
    run_stage(spark, conf, "decide", run_date)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], dt.date.fromisoformat(sys.argv[2]))
