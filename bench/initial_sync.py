#!/usr/bin/env python3
"""The initial sync alone, with CPU times: cp -a (and cp -a + sync) against DataSync, for one or
more builds interleaved, on one generated tree (not a test).

compare_tools.py gives the side-by-side ratios of all phases; this script is for measuring a
change to the initial sync: each repeat times `cp -a` of the tree, then `sync -f`, then, for each
--bin-dir in turn, a fresh DataSync cluster (server + agent + directory storage) syncing the tree,
with the CPU (user + system) the agent and the server spent on it, read from /proc.

Usage:
  bench/initial_sync.py --bin-dir OLD/build/bin --bin-dir build/bin --tree B --scale 0.3 \\
       [--repeats 2] [--work DIR] [--agent-arg=--log-level=debug]
Put --work and TMPDIR on a journaled filesystem for small-file figures (see performance.md)."""

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import gen_tree  # noqa: E402
from compare_tools import DataSync  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """(user, system) seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", action="append", required=True)
    ap.add_argument("--tree", default="B", choices=sorted(gen_tree.TREES))
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--agent-arg", action="append", default=[])
    ap.add_argument("--work", default="/tmp/ds-initial-sync")
    a = ap.parse_args()
    src, files, total = gen_tree.fresh_tree(a.work, a.tree, a.scale)
    print(f"tree {a.tree} x{a.scale}: {files} files, {total / 2**20:.0f} MiB", flush=True)
    try:
        for rep in range(a.repeats):
            dst = os.path.join(a.work, "cp")
            os.sync()
            t = time.monotonic()
            subprocess.run(["cp", "-a", src, dst], check=True)
            cp = time.monotonic() - t
            subprocess.run(["sync", "-f", dst], check=True)
            cp_sync = time.monotonic() - t
            print(f"rep {rep}  cp -a {cp:6.2f}s  cp -a + sync {cp_sync:6.2f}s", flush=True)
            shutil.rmtree(dst)
            for bin_dir in a.bin_dir:
                ds = DataSync(bin_dir, src, a.agent_arg, "local")
                try:
                    os.sync()
                    agent, server = ds.c.agents["bench-pc"].pid, ds.c.server.pid
                    a0, s0 = cpu_seconds(agent), cpu_seconds(server)
                    dt, run = ds.sync()
                    a1, s1 = cpu_seconds(agent), cpu_seconds(server)
                    if ds.indexed() != files:
                        raise RuntimeError(f"index holds {ds.indexed()} rows, expected {files}")
                finally:
                    ds.close()
                print(f"rep {rep}  DataSync {dt:6.2f}s  agent user {a1[0] - a0[0]:.2f}s sys "
                      f"{a1[1] - a0[1]:.2f}s  server {sum(s1) - sum(s0):.2f}s  ({bin_dir})", flush=True)
    finally:
        shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
