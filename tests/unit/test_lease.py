"""The lake's lease: one writer at a time, a dead holder's lease taken over once it expires."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from crmlake.config import ConfigError
from crmlake.lease import LEASE_FILE, LeaseHeldError, _process_namespace, _process_start, lake_lease, lease_path, read_lease


def _fast(conf, wait=0.5, expiry=30, heartbeat=0.5):
    return conf.with_overrides([f"lake.lease.wait_seconds={wait}", f"lake.lease.expiry_seconds={expiry}", f"lake.lease.heartbeat_seconds={heartbeat}"])


def _leave(path: str, record: dict) -> None:
    """Leave the lease ``record`` at ``path`` as its holder would have: written, last renewed at its heartbeat (the file's modification time)."""
    with open(path, "w") as fh:
        json.dump(record, fh)
    os.utime(path, (record["heartbeat"], record["heartbeat"]))


def test_a_second_writer_waits_then_gives_up_naming_the_holder(conf):
    conf = _fast(conf)
    with lake_lease(conf, "run organize") as holder:
        started = time.monotonic()
        with pytest.raises(LeaseHeldError, match=rf"held by run organize \(pid {os.getpid()} on {socket.gethostname()}"):
            with lake_lease(conf, "erase"):
                pass
        assert time.monotonic() - started >= 0.5
        assert json.load(open(lease_path(conf)))["token"] == holder["token"]   # the holder's lease is untouched
    assert not os.path.exists(lease_path(conf))   # released on exit


def test_a_lease_left_by_a_dead_process_is_taken_over_once_it_expires_not_before(conf):
    path = lease_path(conf)
    os.makedirs(os.path.dirname(path))
    dead = {"owner": "run decide", "host": "gone", "pid": 1, "token": "dead", "acquired": time.time() - 60, "heartbeat": time.time() - 5}
    _leave(path, dead)
    with pytest.raises(LeaseHeldError, match="run decide"):   # 5 s old, 30 s expiry: still alive
        with lake_lease(_fast(conf, expiry=30), "erase"):
            pass
    with lake_lease(_fast(conf, expiry=2), "erase") as holder:   # 5 s old, 2 s expiry: dead
        assert json.load(open(path))["token"] == holder["token"]


def _record_of(pid: int, heartbeat_age: float) -> dict:
    """A lease record as the process ``pid`` on this machine wrote it, ``heartbeat_age`` seconds ago."""
    then = time.time() - heartbeat_age
    return {"owner": "run analyze", "host": socket.gethostname(), "pids": _process_namespace(), "pid": pid, "started": _process_start(pid)[1],
            "token": f"held-by-{pid}", "acquired": then, "heartbeat": then}


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="no /proc here: every holder is judged by its heartbeat's age")
def test_a_holder_on_this_machine_is_told_dead_or_alive_by_its_process_not_its_heartbeat(conf):
    path = lease_path(conf)
    os.makedirs(os.path.dirname(path))
    # Alive: its heartbeat stalled far past the expiry (a loaded machine), its lease stays its own,
    # and the writer that waited in vain says which process to stop if it hangs.
    _leave(path, _record_of(os.getpid(), heartbeat_age=60))
    with pytest.raises(LeaseHeldError, match=rf"run analyze .*pid {os.getpid()} runs on this machine: if it hangs, stop it \(kill {os.getpid()}\)"):
        with lake_lease(_fast(conf, expiry=2), "erase"):
            pass
    # Killed a moment ago: its lease is taken once its heartbeat is two renewals old (its JVM
    # outlives it a moment), well before the expiry; not before.
    holder = subprocess.Popen(["sleep", "60"])
    record = _record_of(holder.pid, heartbeat_age=0)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    _leave(path, record)
    with pytest.raises(LeaseHeldError) as held:
        with lake_lease(_fast(conf, expiry=30, heartbeat=10), "erase"):
            pass
    assert "kill" not in str(held.value)
    _leave(path, {**record, "heartbeat": time.time() - 5})
    with lake_lease(_fast(conf, expiry=30), "erase") as taker:
        assert json.load(open(path))["token"] == taker["token"]
    # Its pid now another process's (a different start time): dead too.
    _leave(path, {**_record_of(os.getpid(), heartbeat_age=5), "started": "1"})
    with lake_lease(_fast(conf, expiry=30), "erase") as taker:
        assert json.load(open(path))["token"] == taker["token"]


def test_the_holder_renews_its_heartbeat(conf):
    with lake_lease(_fast(conf, heartbeat=0.1), "maintain") as holder:
        first = holder["heartbeat"]
        time.sleep(0.6)
        assert read_lease(lease_path(conf))["heartbeat"] > first + 0.3   # as a waiting writer reads it


def test_a_holder_whose_lease_was_taken_stops_rather_than_write_beside_the_new_one(conf):
    path = lease_path(conf)
    with pytest.raises(KeyboardInterrupt):
        with lake_lease(_fast(conf, heartbeat=0.1), "run analyze"):
            os.remove(path)   # another writer took the lease over: the dead-looking lease removed, its own created
            _leave(path, {"owner": "erase", "host": "h", "pid": 2, "token": "other", "acquired": time.time() - 60, "heartbeat": time.time() - 60})
            taken = os.stat(path)
            time.sleep(5)
    # The new holder's lease is left alone: not written, not even touched by the old holder's renewals.
    assert json.load(open(path))["token"] == "other" and os.stat(path).st_mtime_ns == taken.st_mtime_ns


def _contend(conf, journal: str) -> None:
    with lake_lease(conf, f"writer {os.getpid()}"):
        with open(journal, "a") as fh:
            fh.write(f"in {os.getpid()}\n")
        time.sleep(0.2)
        with open(journal, "a") as fh:
            fh.write(f"out {os.getpid()}\n")


def test_writers_racing_for_an_expired_lease_hold_it_one_at_a_time(conf, tmp_path):
    path = lease_path(conf)
    os.makedirs(os.path.dirname(path))
    _leave(path, {"owner": "dead", "host": "h", "pid": 1, "token": "dead", "acquired": 0, "heartbeat": time.time() - 10})
    journal = str(tmp_path / "journal")
    contenders = [multiprocessing.get_context("fork").Process(target=_contend, args=(_fast(conf, wait=60, expiry=1), journal)) for _ in range(4)]
    for process in contenders:
        process.start()
    for process in contenders:
        process.join(120)
        assert process.exitcode == 0
    lines = open(journal).read().split()
    events = list(zip(lines[::2], lines[1::2]))
    assert len(events) == 8
    # Every "in" is followed by the same writer's "out": no two writers held the lease at once.
    assert all(events[i][0] == "in" and events[i + 1] == ("out", events[i][1]) for i in range(0, 8, 2)), events
    assert not os.path.exists(os.path.join(os.path.dirname(path), LEASE_FILE))


def test_a_writing_command_exits_3_naming_the_holder(spark, conf, capsys):
    from crmlake.cli import main

    conf = _fast(conf)
    paths = ["--conf", "conf/local.yaml", "--set", f"paths.lake={conf.lake_root}", "--set", "lake.lease.wait_seconds=0.5"]
    with lake_lease(conf, "run acquire"):
        assert main(["maintain", *paths]) == 3
    err = capsys.readouterr().err
    assert "crmlake: busy: the lake" in err and f"held by run acquire (pid {os.getpid()}" in err


def test_a_heartbeat_slower_than_the_expiry_and_a_lake_not_on_a_mounted_file_system_are_refused(conf):
    with pytest.raises(ConfigError, match="heartbeat_seconds .* must be below expiry_seconds"):
        _fast(conf, expiry=2, heartbeat=10)
    with pytest.raises(ConfigError, match="paths.lake=hdfs:///crm/lake: writing needs a local or mounted lake root"):
        lease_path(conf.with_overrides(["paths.lake=hdfs:///crm/lake"]))


@pytest.mark.parametrize("damaged", [
    '{"owner": "run org',                                                          # cut short by something outside crmlake
    '{"owner": "run organize", "host": "h", "pid": 1, "token": "t", "acquired": 1}',  # no heartbeat
    '{"owner": "run organize", "host": "h", "pid": 1, "token": "t", "acquired": 1, "heartbeat": "soon"}',
    '{"owner": "run organize", "host": "h", "pid": "one", "token": "t", "acquired": 1, "heartbeat": 1}',
    '["not", "a", "record"]',
], ids=["cut-short", "no-heartbeat", "heartbeat-not-a-number", "pid-not-a-number", "a-list"])
def test_a_damaged_lease_file_expires_by_its_age_like_any_other(conf, damaged):
    path = lease_path(conf)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as fh:
        fh.write(damaged)
    with pytest.raises(LeaseHeldError, match="an unreadable lease file"):   # fresh: it may be a live holder's
        with lake_lease(_fast(conf, expiry=30), "erase"):
            pass
    old = time.time() - 60
    os.utime(path, (old, old))
    with lake_lease(_fast(conf, expiry=30), "erase") as holder:
        assert json.load(open(path))["token"] == holder["token"]


OTHER_NODE = "crmlake-other-node"
EXPIRY, BEAT = 3.0, 0.5   # the lease's expiry and heartbeat, on both machines
# A writer on another machine: its own host name and pid namespace (Linux namespaces, as a container on
# another node has them), holding the lease over the same lake folder (a shared mount).
HOLDER_ELSEWHERE = """
import socket, subprocess, sys, time
from crmlake.config import load_conf
from crmlake.lease import lake_lease
root, host, lake, expiry, beat = sys.argv[1:]
subprocess.run(["hostname", host], check=True)
conf = load_conf(root + "/conf/local.yaml", environ={}, overrides=[
    f"paths.lake={lake}", f"lake.lease.expiry_seconds={expiry}", f"lake.lease.heartbeat_seconds={beat}", "lake.lease.wait_seconds=30"])
try:
    with lake_lease(conf, "run organize") as held:
        print("held", socket.gethostname(), held["pid"], flush=True)
        while True:
            time.sleep(0.1)
except KeyboardInterrupt:
    print("stopped", flush=True)
    sys.exit(1)
"""
ISOLATE = ["unshare", "--uts", "--pid", "--fork", "--mount-proc"]


def _can_isolate() -> bool:
    try:
        return subprocess.run([*ISOLATE, "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _holder_elsewhere(conf) -> tuple[subprocess.Popen, str]:
    """Start the writer of :data:`HOLDER_ELSEWHERE`; return it once it holds the lease, with its pid (in its namespace)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    holder = subprocess.Popen([*ISOLATE, sys.executable, "-c", HOLDER_ELSEWHERE, root, OTHER_NODE, conf.lake_root, str(EXPIRY), str(BEAT)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    first = holder.stdout.readline().split()
    assert first[:2] == ["held", OTHER_NODE], (first, holder.stderr.read() if holder.poll() is not None else "")
    return holder, first[2]


def _just_renewed(path: str) -> None:
    """Return once the lease at ``path`` was renewed: its holder then sleeps a whole heartbeat, not in mid-write."""
    before = os.stat(path).st_mtime_ns
    while os.stat(path).st_mtime_ns == before:
        time.sleep(0.01)


@pytest.mark.skipif(not _can_isolate(), reason="needs unshare of the UTS and pid namespaces (root, or user namespaces) to run a holder as another machine")
def test_a_holder_on_another_machine_keeps_the_lease_by_its_heartbeat_and_loses_it_when_its_heartbeat_stops(conf):
    path = lease_path(conf)
    holder, its_pid = _holder_elsewhere(conf)
    try:
        # Alive elsewhere: renewed faster than it expires, it is kept for the whole wait, though its pid
        # means nothing here (and no "kill" advice: this machine cannot tell its process).
        with pytest.raises(LeaseHeldError, match=rf"run organize \(pid {its_pid} on {OTHER_NODE}, since .*\); waited 5") as held:
            with lake_lease(_fast(conf, wait=5, expiry=EXPIRY, heartbeat=BEAT), "erase"):
                pass
        assert "kill" not in str(held.value)
        # It stalls (stopped, as a machine that hangs): once its heartbeat is older than the expiry the
        # lease is taken over, not before; when it wakes, it finds the lease another's and stops itself
        # rather than write beside the new holder, whose lease it leaves alone.
        _just_renewed(path)
        os.killpg(holder.pid, signal.SIGSTOP)
        stalled = time.monotonic()
        with lake_lease(_fast(conf, wait=30, expiry=EXPIRY, heartbeat=BEAT), "erase") as taker:
            assert time.monotonic() - stalled > EXPIRY - BEAT
            os.killpg(holder.pid, signal.SIGCONT)
            out, err = holder.communicate(timeout=60)
            assert holder.returncode == 1 and out.split() == ["stopped"], (out, err)
            assert f"lake lease lost (erase (pid {os.getpid()} on {socket.gethostname()}" in err
            assert json.load(open(path))["token"] == taker["token"]
        # Killed outright (SIGKILL on another node): the lease it leaves behind expires the same way.
        holder, _ = _holder_elsewhere(conf)
        os.killpg(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        holder.wait()
        with lake_lease(_fast(conf, wait=30, expiry=EXPIRY, heartbeat=BEAT), "erase") as taker:
            assert time.monotonic() - killed > EXPIRY - BEAT
            assert json.load(open(path))["token"] == taker["token"]
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
