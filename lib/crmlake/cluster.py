"""A standalone Spark cluster on loopback from the installed pyspark, and the --py-files zip.

``python -m crmlake.cluster up --state DIR`` starts a master and one worker (``--workers N``
for more, ``--cores`` each) bound to 127.0.0.1 and waits until they have registered; ``down`` stops them; ``zip OUT``
writes the crmlake package as a zip for ``spark-submit --py-files``. Tests and
``make cluster-up`` use the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import asdict, dataclass

import pyspark

SPARK_HOME = os.path.dirname(os.path.abspath(pyspark.__file__))
SPARK_CLASS = os.path.join(SPARK_HOME, "bin", "spark-class")
SPARK_SUBMIT = os.path.join(SPARK_HOME, "bin", "spark-submit")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    """A running standalone cluster: its master URL, web UI port and process ids."""

    master_url: str
    master_ui_port: int
    pids: list

    def alive_workers(self) -> int:
        """Return how many workers the master reports alive."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.master_ui_port}/json/", timeout=5) as reply:
            return int(json.load(reply).get("aliveworkers", 0))


def _spawn(args: list, log_path: str) -> int:
    env = {**os.environ, "SPARK_HOME": SPARK_HOME, "SPARK_LOCAL_IP": "127.0.0.1"}
    log = open(log_path, "ab")
    return subprocess.Popen([SPARK_CLASS, *args], stdout=log, stderr=log, env=env, start_new_session=True).pid


def start(state_dir: str, cores: int = 2, memory: str = "3g", timeout: float = 120, workers: int = 1) -> Cluster:
    """Start a master and ``workers`` workers on 127.0.0.1, each with ``cores`` cores and
    ``memory``; wait until every worker has registered; save the state; return it."""
    os.makedirs(state_dir, exist_ok=True)
    port, ui = free_port(), free_port()
    master = _spawn(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)], os.path.join(state_dir, "master.log"))
    url = f"spark://127.0.0.1:{port}"
    started = [
        _spawn(
            ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
             "--webui-port", str(free_port()), "--work-dir", os.path.join(state_dir, "work")],
            os.path.join(state_dir, f"worker-{n}.log"),
        )
        for n in range(workers)
    ]
    cluster = Cluster(url, ui, [master, *started])
    with open(os.path.join(state_dir, "cluster.json"), "w") as fh:
        json.dump(asdict(cluster), fh)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cluster.alive_workers() >= workers:
                return cluster
        except OSError:
            pass  # the master's UI is not up yet
        time.sleep(1)
    stop(state_dir)
    raise RuntimeError(f"the standalone cluster did not come up within {timeout:.0f}s; see {state_dir}/master.log and worker*.log")


def stop(state_dir: str) -> None:
    """Stop the cluster whose state is saved in ``state_dir`` (no error if none runs)."""
    path = os.path.join(state_dir, "cluster.json")
    if not os.path.exists(path):
        return
    with open(path) as fh:
        cluster = Cluster(**json.load(fh))
    for pid in cluster.pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    os.remove(path)


def package_zip(out: str) -> str:
    """Write the crmlake package (code and default configuration) into ``out`` (a zip whose root
    holds ``crmlake/``); return the path."""
    root = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith((".py", ".yaml")):  # the code and its package data: defaults (conf/base.yaml), the table catalog
                    full = os.path.join(folder, name)
                    archive.write(full, os.path.join("crmlake", os.path.relpath(full, root)))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: up / down / zip."""
    parser = argparse.ArgumentParser(prog="python -m crmlake.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a master and its workers on 127.0.0.1")
    up.add_argument("--state", default="data/cluster", help="folder for logs and the cluster's state")
    up.add_argument("--workers", type=int, default=1, help="workers to start (default 1)")
    up.add_argument("--cores", type=int, default=2, help="cores of each worker (default 2)")
    down = sub.add_parser("down", help="stop the cluster started with up")
    down.add_argument("--state", default="data/cluster")
    zipped = sub.add_parser("zip", help="write the package zip for --py-files")
    zipped.add_argument("out")
    args = parser.parse_args(argv)
    if args.command == "up":
        cluster = start(args.state, cores=args.cores, workers=args.workers)
        print(f"master {cluster.master_url}, UI http://127.0.0.1:{cluster.master_ui_port}")
        print(f"submit: {SPARK_SUBMIT} --master {cluster.master_url} --py-files dist/crmlake.zip --driver-java-options -XX:-DontCompileHugeMethods jobs/acquire.py --conf conf/local.yaml")
    elif args.command == "down":
        stop(args.state)
    else:
        print(package_zip(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
