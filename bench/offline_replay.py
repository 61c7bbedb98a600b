#!/usr/bin/env python3
"""A run made while the server is down, then its journal replay: time and agent memory (not a
test).

One cluster (server + agent + directory storage + SQLite index). The job's first run is on an
empty folder; then the server is stopped, the generated tree is moved into the source folder,
and the agent syncs it offline (planning from what it knows the index holds, journaling every
result). Then the server is restarted and the script waits until the index holds every file
(the agent replays its journal: compare, then complete). Printed: the offline run's time, the
replay's time (server back to index complete) and the agent's peak RSS (VmHWM) after each.

Usage:
  bench/offline_replay.py --bin-dir build/bin --tree B [--scale 1] [--work DIR]
Put --work and TMPDIR on a journaled filesystem for small-file figures (see performance.md)."""

import argparse
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import gen_tree  # noqa: E402
from compare_tools import count_files, vm_hwm_kib  # noqa: E402
from harness import Cluster, wait_for  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--tree", default="B", choices=["A", "B", "C", "M"])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp folder)")
    args = ap.parse_args()
    bin_dir = os.path.abspath(args.bin_dir)
    work = args.work or os.path.join(os.environ.get("TMPDIR", "/tmp"), "datasync-offline-replay")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    src, tree = os.path.join(work, "src"), os.path.join(work, "tree")
    n, _ = gen_tree.generate(args.tree, tree, args.scale, seed=1)
    os.makedirs(src)
    c = Cluster(bin_dir, heartbeat="60s")
    try:
        c.enroll("pc", extra=[])
        c.cli("jobs", "add", "pc", "raw", "--source", src, "--dest", "b/raw", "--settle", "0s",
              "--interval", "3s")
        dest = os.path.join(c.share, "b", "raw")
        time.sleep(4)  # the first run, on the empty folder
        agent = c.agents["pc"].pid
        c.stop_server()
        os.rmdir(src)
        os.rename(tree, src)
        t = time.monotonic()
        wait_for("offline run", lambda: os.path.isdir(dest) and count_files(dest) == n, 7200)
        print(f"tree {args.tree} x{args.scale}: {n} files; offline run {time.monotonic() - t:.1f} s, "
              f"agent peak {vm_hwm_kib(agent) // 1024} MiB; load {os.getloadavg()[0]:.2f}", flush=True)
        time.sleep(5)  # the run closes (journaled) before the server returns
        t = time.monotonic()
        c.restart_server()

        def indexed():
            st, body, _ = c.admin("GET", "/runners/pc/jobs/raw/files?limit=1")
            return st == 200 and body["total"] == n

        wait_for("replay", indexed, 7200)
        print(f"replay: index complete {time.monotonic() - t:.1f} s after the server returned; "
              f"agent peak {vm_hwm_kib(agent) // 1024} MiB; load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        c.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
