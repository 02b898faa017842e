"""One writer at a time: the lake's lease.

Every command that writes the lake (each stage run, ``backfill``, ``erase``, ``maintain``)
holds the lease, ``<lake>/_lease.json``, for as long as it runs; readers (``serve``,
``subject-access``) take none. The lease names its holder (command, host, pid, token) and
carries a heartbeat that a thread of the holder renews every ``lake.lease.heartbeat_seconds``:
the lease file's modification time, set on the holder's own file (an open descriptor of the
file it created), never by writing the lease's name. So a holder that stalled mid-renewal while
another writer took its lease over cannot overwrite the new holder's lease when it wakes.

* It is **created atomically**: the holder's record is written whole to a file of its own,
  then hard-linked to the lease's name, which fails if a lease is already there, so two
  writers starting together cannot both win, and no reader ever sees half a record.
* A second writer **waits** up to ``lake.lease.wait_seconds`` for the holder to finish,
  then gives up with :class:`LeaseHeldError` (the command exits 3), naming the holder.
* A lease left by a process that died is **taken over** by the next writer. A holder on the
  waiting writer's own machine (same host name, boot and pid namespace) is looked up by its
  pid and start time in ``/proc``: dead (gone, a zombie, or its pid reused by another
  process), its lease is taken once its heartbeat is two renewals old (its Spark JVM
  outlives it a moment); alive, it is never taken, however late its heartbeat (a loaded
  machine can stall a heartbeat thread for seconds), and a writer that waited in vain says
  which pid to stop if it hangs. A holder elsewhere (another machine, container or pid
  namespace), or where ``/proc`` cannot tell (``hidepid``), is dead when its heartbeat is
  older than ``lake.lease.expiry_seconds`` (SIGKILL on another node, a lost machine).
  Takeovers are serialised by a short-lived mutex (a directory: ``mkdir`` is atomic), so two
  waiting writers cannot both remove the dead lease and each create their own.
* A holder whose lease was taken over (on another machine, it stalled longer than the
  expiry), or that cannot renew it, interrupts its main thread (at its next Python step: a
  Spark action under way ends first) rather than write beside the new holder; the command exits 1.
  And it commits nothing more: both lake engines call :func:`fence` before each commit and
  each deletion of files, which raises :class:`LeaseLostError` once the lease is another's, so
  a holder waking from a stall never commits files the new holder removed as a dead run's.

The lake root must be a local or mounted path (``file:`` URIs included).
"""

from __future__ import annotations

import _thread
import json
import os
import shutil
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

from crmlake.config import Conf, ConfigError
from crmlake.config_schema import Lease
from crmlake.files import local_path
from crmlake.log import get_logger

log = get_logger("lease")
LEASE_FILE = "_lease.json"
TAKEOVER_MUTEX = "_lease.takeover"
POLL_SECONDS = 0.5


class LeaseHeldError(RuntimeError):
    """Another writer holds the lake's lease and kept it longer than this writer would wait."""


class LeaseLostError(RuntimeError):
    """This writer's lease was taken over (it stalled past the expiry) or can no longer be renewed."""


def lease_path(conf: Conf) -> str:
    """Return the local path of the lake's lease file."""
    root = local_path(conf.lake_root)
    if root is None:
        raise ConfigError(f"paths.lake={conf.lake_root}: writing needs a local or mounted lake root (the lake's lease and the "
                          "erasures' plans are files beside the tables); mount the file system, e.g. paths.lake=/mnt/crm/lake")
    return os.path.join(root, LEASE_FILE)


def read_lease(path: str) -> dict | None:
    """Return the lease record at ``path``, or None when there is none; its ``heartbeat`` is the
    later of the record's and the file's modification time (the holder's renewals). A record
    that does not parse (a file damaged outside crmlake) reads as a holder whose heartbeat is
    the file's modification time, so that it expires like any other; so does JSON that is not a
    lease record (a list, a record without a number for its heartbeat)."""
    for _ in range(5):
        try:
            with open(path, encoding="utf-8") as fh:
                record = json.load(fh)
                modified = os.fstat(fh.fileno()).st_mtime
                if not _is_lease_record(record):
                    return _unreadable(modified)
                record["heartbeat"] = max(record["heartbeat"], modified)
                return record
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:   # not a whole record: read again
            time.sleep(0.05)
    try:
        return _unreadable(os.stat(path).st_mtime)
    except FileNotFoundError:
        return None


def _is_lease_record(record) -> bool:
    """Whether parsed JSON ``record`` has every field of a lease record, its pid a whole number and its times numbers."""
    return (isinstance(record, dict) and {"owner", "host", "pid", "token", "acquired", "heartbeat"} <= record.keys()
            and isinstance(record["pid"], int) and all(isinstance(record[time_field], (int, float)) for time_field in ("acquired", "heartbeat")))


def _unreadable(modified: float) -> dict:
    """The record read for a lease file that holds no lease record: a holder last heard of at the file's modification time."""
    return {"owner": "an unreadable lease file", "host": "?", "pid": "?", "token": None, "acquired": modified, "heartbeat": modified}


def describe(record: dict) -> str:
    """Return one line naming a lease's holder (for logs and the exit-3 message)."""
    age = time.time() - record["heartbeat"]
    return f"{record['owner']} (pid {record['pid']} on {record['host']}, since {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(record['acquired']))} UTC, heartbeat {age:.0f}s ago)"


def _process_namespace() -> str | None:
    """Return where this process's pids mean something: the machine's boot id and the pid
    namespace (two containers on one kernel share the boot, not the pids), or None where
    ``/proc`` does not tell (none, or one mounted from another pid namespace: its
    ``/proc/self`` is then another process than this one)."""
    try:
        with open("/proc/self/stat", encoding="ascii", errors="replace") as fh:
            if int(fh.read().split(" ", 1)[0]) != os.getpid():
                return None
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return f"{fh.read().strip()} {os.readlink('/proc/self/ns/pid')}"
    except (OSError, ValueError):
        return None


def _process_start(pid: int) -> tuple[str, str] | None:
    """Return the state and start time (clock ticks after boot) of process ``pid`` from
    ``/proc/<pid>/stat``, or None when ``/proc`` lists no such process (any other error,
    such as a ``/proc`` hiding other users' processes, is raised)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()   # after the command name, which may hold spaces
    except FileNotFoundError:
        return None
    return fields[0], fields[19]


def _holder_alive(record: dict) -> bool | None:
    """Tell whether the holder named by a lease record runs: True or False when it ran on
    this machine since its last boot (looked up in ``/proc`` by pid and start time, a zombie
    being dead), None when this process cannot tell (another host, boot or pid namespace, no
    ``/proc``, or one that hides the holder: ``hidepid``, another user's process)."""
    namespace = _process_namespace()
    if namespace is None or record.get("host") != socket.gethostname() or record.get("pids") != namespace or record.get("started") is None:
        return None
    try:
        process = _process_start(record["pid"])
        if process is None:
            os.kill(record["pid"], 0)   # not in /proc: gone (ProcessLookupError), or hidden from this user
            return None
    except ProcessLookupError:
        return False
    except OSError:
        return None
    return process[0] not in ("Z", "X") and process[1] == record["started"]


def _write_record(path: str, record: dict) -> str:
    """Write ``record`` to a temporary file beside ``path``, synced to disk, and return its name."""
    temporary = f"{path}.{record['token']}.{time.monotonic_ns()}.tmp"
    with open(temporary, "w", encoding="utf-8") as fh:
        json.dump(record, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return temporary


def _try_create(path: str, record: dict) -> int | None:
    """Create the lease with ``record`` unless one exists; return a descriptor of the file
    created (the holder's own, which its renewals touch), or None when a lease was there."""
    temporary = _write_record(path, record)
    try:
        os.link(temporary, path)   # atomic, and fails when the lease exists
    except FileExistsError:
        return None
    else:
        return os.open(temporary, os.O_RDONLY)   # the file just linked, opened before its temporary name goes
    finally:
        os.remove(temporary)


def _holds(path: str, own: int, token: str) -> bool:
    """Return True when the lease at ``path`` is still the file ``own`` (a descriptor) with ``token``."""
    try:
        if not os.path.samestat(os.stat(path), os.fstat(own)):
            return False
    except FileNotFoundError:
        return False
    return (read_lease(path) or {}).get("token") == token


def _lost(path: str) -> LeaseLostError:
    """Return the error of a holder whose lease at ``path`` is no longer its own, naming who holds it now."""
    current = read_lease(path)
    return LeaseLostError(f"lake lease lost ({describe(current) if current else 'nobody'} holds it now)")


# This process's leases: the lake's lease file -> (descriptor of the holder's file, token).
_HELD: dict[str, tuple[int, str]] = {}


def fence(location: str) -> None:
    """Raise :class:`LeaseLostError` when this process held the lease of the lake holding
    ``location`` (a table's path or URI) and holds it no more; return when it still does, or
    holds none there (a caller of the library writing without a lease). Called before each
    commit and each deletion of files."""
    path = local_path(location)
    if path is None:
        return
    for lease, (own, token) in list(_HELD.items()):
        if (path + os.sep).startswith(os.path.dirname(lease) + os.sep) and not _holds(lease, own, token):
            raise LeaseLostError(f"{_lost(lease)}: {location} not written")


def _take_over_if_dead(path: str, settings: Lease) -> bool:
    """Remove the lease if its holder is dead (the module's docstring: by ``/proc`` on this
    machine, once its heartbeat is two renewals old, as its Spark JVM outlives it a moment;
    else by a heartbeat older than ``expiry_seconds``), under the takeover mutex; return True
    when it did. Takes ``lake.lease``'s settings."""
    mutex = os.path.join(os.path.dirname(path), TAKEOVER_MUTEX)
    try:
        os.mkdir(mutex)
    except FileExistsError:
        # A takeover in progress, or one whose process died inside it (seconds at most).
        try:
            if time.time() - os.stat(mutex).st_mtime > settings.expiry_seconds:
                shutil.rmtree(mutex, ignore_errors=True)
        except FileNotFoundError:   # the other takeover has just ended
            pass
        return False
    try:
        record = read_lease(path)
        if record is None:
            return False
        alive, age = _holder_alive(record), time.time() - record["heartbeat"]
        if alive is False and age > 2 * settings.heartbeat_seconds:
            log.warning("lease of %s: its process has ended: taking it over", describe(record))
        elif alive is None and age > settings.expiry_seconds:
            log.warning("lease of %s expired: taking it over", describe(record))
        else:
            return False
        os.remove(path)
        return True
    finally:
        os.rmdir(mutex)


class _Heartbeat(threading.Thread):
    """Renews the holder's heartbeat; interrupts the main thread when the lease was lost."""

    def __init__(self, path: str, own: int, record: dict, every: float):
        super().__init__(name="crmlake-lease-heartbeat", daemon=True)
        self.path, self.own, self.record, self.every = path, own, record, every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                now = time.time()
                os.utime(self.own, (now, now))   # its own file: a lease taken over meanwhile is another file, left alone
                if not _holds(self.path, self.own, self.record["token"]):
                    raise _lost(self.path)
                self.record["heartbeat"] = now
            except Exception as error:  # noqa: BLE001 - a holder that cannot renew must stop before its lease expires under it
                log.critical("%s: stopping this writer", error)
                _thread.interrupt_main()
                return


@contextmanager
def lake_lease(conf: Conf, owner: str) -> Iterator[dict]:
    """Hold the lake's lease while the block runs; yield the holder's record.

    ``owner`` names the command (``run acquire,organize``, ``erase``). Waits for another
    holder up to ``lake.lease.wait_seconds``, taking over a lease that expired; raises
    :class:`LeaseHeldError` naming the holder when the wait runs out.
    """
    settings = conf.lake.lease
    path = lease_path(conf)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    now = time.time()
    namespace = _process_namespace()
    started = _process_start(os.getpid())[1] if namespace else None
    record = {"owner": owner, "host": socket.gethostname(), "pids": namespace, "pid": os.getpid(), "started": started,
              "token": uuid.uuid4().hex, "acquired": now, "heartbeat": now}
    deadline, announced = time.monotonic() + settings.wait_seconds, False
    while (own := _try_create(path, record)) is None:
        holder = read_lease(path)
        if holder is not None and not announced:
            log.info("lake lease held by %s: waiting up to %ss", describe(holder), settings.wait_seconds)
            announced = True
        if _take_over_if_dead(path, settings):
            continue   # the dead holder's lease is gone: try to create ours at once
        if time.monotonic() > deadline:
            holder = read_lease(path)
            hung = f"; pid {holder['pid']} runs on this machine: if it hangs, stop it (kill {holder['pid']}) and the next writer takes its lease at once" \
                if holder is not None and _holder_alive(holder) else ""
            raise LeaseHeldError(f"the lake {conf.lake_root} is held by {describe(holder) if holder else 'another writer'}; "
                                 f"waited {settings.wait_seconds}s (lake.lease.wait_seconds){hung}")
        time.sleep(POLL_SECONDS)
        record["acquired"] = record["heartbeat"] = time.time()
    _HELD[path] = (own, record["token"])
    heartbeat = _Heartbeat(path, own, record, settings.heartbeat_seconds)
    heartbeat.start()
    log.info("lake lease taken by %s", owner)
    try:
        yield record
    finally:
        heartbeat.stopped.set()
        heartbeat.join()
        del _HELD[path]
        if _holds(path, own, record["token"]):
            os.remove(path)
        os.close(own)
