"""Export faults: a publish or an erasure amendment killed (SIGKILL, a real process) at each of its
steps leaves the published export wholly the old version or wholly the new one; the rerun ends
as a run without the fault did, and after an amendment's rerun no file under the exports
(hidden folders included) holds the erased person.

Each case runs ``tests/integration/export_writer.py`` (publish: Spark ``local[1]``, a few
hundred persons and a Meta upload file; amend: pyarrow only) in its own process, from a copy
of the same published export.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import os
import shutil
import signal
import subprocess

import pyarrow.parquet as pq
import pytest

from crmlake.exports import VERSIONS
from crmlake.files import file_sha256
from processes import run_armed

pytestmark = pytest.mark.integration
WRITER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration", "export_writer.py")
_spec = importlib.util.spec_from_file_location("export_writer", WRITER)
export_writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_writer)   # light: Spark and crmlake are imported by its modes only

ROWS = 300
ERASED = 100                                # a person of both versions
PUBLISH = ("publish", str(ROWS), "50")       # the new version: persons 50 .. 349, other scores
AMEND = ("amend", str(ERASED))
PUBLISHED = os.path.join(export_writer.AUDIENCE, export_writer.DAY.isoformat())


def run_writer(exports, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    """Run export_writer.py with ``args`` on ``exports``, ``crash_at`` armed if given; return the finished process."""
    return run_armed([WRITER, args[0], str(exports), *args[1:]], crash_at=crash_at)


def copy_exports(source, target) -> None:
    shutil.copytree(source, target, symlinks=True)   # the links are relative: the copy is whole


def published_state(exports) -> dict:
    """Return what a reader of the published export sees: its manifest (without times) and the rows of each file."""
    folder = os.path.join(exports, PUBLISHED)
    manifest = json.load(open(os.path.join(folder, "manifest.json"), encoding="utf-8"))
    with gzip.open(os.path.join(folder, "audience.csv.gz"), "rt", newline="", encoding="utf-8") as fh:
        audience_csv = list(csv.reader(fh))
    with open(os.path.join(folder, "meta_custom_audience.csv"), newline="", encoding="utf-8") as fh:
        upload_csv = list(csv.reader(fh))
    return {
        "row_count": manifest["row_count"],
        "files": sorted(manifest["files"]),
        "amendments": [(a["request_id"], a["rows_removed"]) for a in manifest.get("amendments", [])],
        "parquet": pq.read_table(os.path.join(folder, "audience.parquet")).to_pylist(),
        "audience_csv": audience_csv,
        "upload_csv": upload_csv,
    }


def assert_whole(exports) -> None:
    """Every file the published manifest names has the checksum it records, and as many rows."""
    folder = os.path.join(exports, PUBLISHED)
    manifest = json.load(open(os.path.join(folder, "manifest.json"), encoding="utf-8"))
    for name, entry in manifest["files"].items():
        assert file_sha256(os.path.join(folder, name)) == entry["sha256"], name
    assert pq.read_metadata(os.path.join(folder, "audience.parquet")).num_rows == manifest["row_count"]


def holds_erased(exports) -> list[str]:
    """Return every file under ``exports`` (hidden folders included) that holds the erased person's
    person_id or email hash (the neutral and Meta's alike)."""
    values = (export_writer.person_id(ERASED), export_writer.email_sha256(ERASED))
    found = []
    for folder, _, files in os.walk(exports):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".parquet"):
                text = json.dumps(pq.read_table(path).to_pylist(), default=str)
            elif name.endswith(".gz"):
                text = gzip.open(path, "rt", encoding="utf-8").read()
            elif name.endswith((".csv", ".json")):
                text = open(path, encoding="utf-8").read()
            else:
                continue   # the score histogram
            if any(value in text for value in values):
                found.append(os.path.relpath(path, exports))
    return found


def assert_only_published_versions(exports) -> None:
    """The audience's folder holds its published link and the one version it names: no leftover."""
    audience_dir = os.path.join(exports, export_writer.AUDIENCE)
    assert sorted(os.listdir(audience_dir)) == sorted([VERSIONS, export_writer.DAY.isoformat()])
    assert os.listdir(os.path.join(audience_dir, VERSIONS)) == [os.path.basename(os.path.realpath(os.path.join(exports, PUBLISHED)))]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    """Exports roots of runs without a fault: ``before`` (the first version published), and from a
    copy of it ``published`` (the new version published over it) and ``amended`` (the erasure)."""
    root = tmp_path_factory.mktemp("clean-exports")
    first = run_writer(root / "before", "publish", str(ROWS))
    assert first.returncode == 0, first.stderr[-3000:]
    roots = {"before": root / "before"}
    for state, args in (("published", PUBLISH), ("amended", AMEND)):
        copy_exports(root / "before", root / state)
        done = run_writer(root / state, *args)
        assert done.returncode == 0, done.stderr[-3000:]
        roots[state] = root / state
    assert holds_erased(roots["before"]) and not holds_erased(roots["amended"])
    return roots


@pytest.mark.parametrize(
    "args, crash_at, shown, after",
    [
        pytest.param(PUBLISH, "export.publish.staged", "before", "published", id="export.publish.staged"),
        pytest.param(PUBLISH, "export.publish.swapped", "published", "published", id="export.publish.swapped"),
        pytest.param(AMEND, "export.amend.staged", "before", "amended", id="export.amend.staged"),
        pytest.param(AMEND, "export.amend.swapped", "amended", "amended", id="export.amend.swapped"),
    ],
)
def test_an_export_killed_at_a_step_shows_one_whole_version_and_the_rerun_ends_as_a_clean_run(clean, tmp_path, args, crash_at, shown, after):
    exports = tmp_path / "exports"
    copy_exports(clean["before"], exports)

    killed = run_writer(exports, *args, crash_at=crash_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # Wholly the old version (killed before the swap) or wholly the new one (after it).
    assert published_state(exports) == published_state(clean[shown])
    assert_whole(exports)
    if crash_at == "export.amend.swapped":
        assert holds_erased(exports)   # the version swapped out, still holding the person, until the next start removes it

    rerun = run_writer(exports, *args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert published_state(exports) == published_state(clean[after])
    assert_whole(exports)
    assert_only_published_versions(exports)
    if after == "amended":
        assert holds_erased(exports) == []
