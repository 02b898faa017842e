"""The generated pipeline that several integration modules read (built once per test run)."""

import datetime as dt

import pytest

from crmlake.acquire import job as acquire
from crmlake.analyze import job as analyze
from crmlake.decide import job as decide
from crmlake.generate.landing import write_landing
from crmlake.organize import job as organize

END = dt.date(2026, 11, 21)
MIDWAY = END - dt.timedelta(days=12)


@pytest.fixture(scope="session")
def pipeline(spark, tmp_path_factory, model_overrides):
    from crmlake.config import load_conf
    from crmlake.lake import Lake

    root = tmp_path_factory.mktemp("e2e")
    conf = load_conf(
        "conf/local.yaml",
        overrides=[f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                   f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/artifacts", *model_overrides],
        environ={},
    )
    truth = write_landing(spark, conf.landing_root, customers=300, days=45, end=END, seed=3, timezone="Asia/Taipei")
    # Two runs, so that organize's second run is incremental (late files, status changes, erase).
    acquire.run(spark, conf, MIDWAY)
    organized_first = organize.run(spark, conf, MIDWAY)
    first = acquire.run(spark, conf, END)
    organized = organize.run(spark, conf, END)
    analyzed = analyze.run(spark, conf, END)
    decided = decide.run(spark, conf, END)
    return {
        "conf": conf, "lake": Lake(spark, conf), "truth": truth, "acquire": first, "analyze": analyzed, "decide": decided, "root": root,
        "organize": [organized_first, organized],
    }


