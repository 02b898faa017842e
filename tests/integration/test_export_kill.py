"""An export killed midway (SIGKILL, a real process) leaves nothing visible; the rerun publishes
and removes the killed export's leftovers."""

import datetime as dt
import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from crmlake.exports import VERSIONS, publish_audience
from crmlake.serve import published_exports

pytestmark = pytest.mark.integration
WRITER = os.path.join(os.path.dirname(__file__), "export_writer.py")


def test_export_killed_midway_leaves_nothing_visible_and_a_rerun_publishes(tmp_path, spark):
    exports = tmp_path / "exports"
    writer = subprocess.Popen([sys.executable, WRITER, "publish", str(exports), "3000000"], start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    # Wait until Spark is writing inside the hidden version folder, then kill the whole process group.
    while not glob.glob(str(exports / "big" / VERSIONS / "2026-11-21.*" / "_spark_csv")):
        assert writer.poll() is None, writer.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the export never started"
        time.sleep(0.05)
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait()
    assert not os.path.lexists(exports / "big" / "2026-11-21")
    assert published_exports(str(exports)) == []

    rows = spark.range(1000).selectExpr("CAST(id AS STRING) AS person_id", "rand(1) AS score")
    publish_audience(rows, str(exports), "big", dt.date(2026, 11, 21), {})
    (published,) = published_exports(str(exports))
    assert published["row_count"] == 1000
    # The killed export's version is gone: only the published one is left.
    assert sorted(os.listdir(exports / "big")) == [VERSIONS, "2026-11-21"]
    assert os.listdir(exports / "big" / VERSIONS) == [os.path.basename(os.path.realpath(exports / "big" / "2026-11-21"))]
