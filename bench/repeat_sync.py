#!/usr/bin/env python3
"""One DataSync cluster, one generated tree: times the initial sync, then N syncs with nothing new,
and rsync's no-op on the same tree for comparison (not a test).

Used to measure small changes to the scan or the run's fixed cost, where compare_tools.py's one
sample per phase is too noisy: the no-op figure here is a median of --repeats cycles.

Usage:
  bench/repeat_sync.py --bin-dir build/bin --tree A --scale 0.5 [--repeats 40]
       [--agent-arg=--upload-threads=1 ...] [--work DIR]
Put --work and TMPDIR on a journaled filesystem for small-file figures (see performance.md)."""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import gen_tree  # noqa: E402
from compare_tools import DataSync  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--tree", default="A", choices=["A", "B", "C", "M"])
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--agent-arg", action="append", default=[])
    ap.add_argument("--work", default="/tmp/ds-repeat-sync")
    a = ap.parse_args()
    src, files, _ = gen_tree.fresh_tree(a.work, a.tree, a.scale)
    ds = DataSync(a.bin_dir, src, a.agent_arg)
    try:
        os.sync()
        initial, _ = ds.sync()
        noop = []
        for _ in range(a.repeats):
            os.sync()
            noop.append(ds.sync()[0])
        dst = os.path.join(a.work, "dst")
        subprocess.run(["rsync", "-a", src + "/", dst + "/"], check=True)
        rsync = []
        for _ in range(max(3, a.repeats // 5)):
            os.sync()
            t = time.monotonic()
            subprocess.run(["rsync", "-a", src + "/", dst + "/"], check=True)
            rsync.append(time.monotonic() - t)
    finally:
        ds.close()
        shutil.rmtree(a.work, ignore_errors=True)
    print(f"tree {a.tree} x{a.scale}: {files} files; agent args {a.agent_arg or 'none'}; "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"DataSync initial {initial:.3f} s; no-op median {statistics.median(noop) * 1000:.1f} ms "
          f"of {len(noop)}; rsync no-op median {statistics.median(rsync) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
