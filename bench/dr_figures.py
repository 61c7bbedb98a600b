#!/usr/bin/env python3
"""Disaster-recovery figures for docs/disaster-recovery.md (a benchmark, not a test).

Builds a job of N small files (default 20,000) on directory storage with the real programs,
then runs `datasync drill index-loss` and `datasync drill server-down` against it and a plain
`datasync reconcile --verify`, printing the drills' own measurements.

Usage: bench/dr_figures.py --bin-dir build/bin [--files 20000]"""

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from harness import Cluster  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--files", type=int, default=20000)
    a = ap.parse_args()
    c = Cluster(a.bin_dir)
    try:
        src = os.path.join(c.root, "src")
        rng = random.Random(7)
        past = time.time() - 3600
        for i in range(a.files):
            p = os.path.join(src, f"2026-11-{1 + i % 28:02d}", f"part{i % 10}", f"m_{i:06d}.dat")
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(rng.randbytes(rng.randint(1024, 4096)))
            os.utime(p, (past, past))
        c.enroll("bench-pc")
        c.cli("jobs", "add", "bench-pc", "raw", "--source", src, "--dest", "bench/raw", "--settle", "0s")
        t = time.monotonic()
        c.cli("sync", "bench-pc", "raw", "--wait")
        print(f"initial sync of {a.files} files: {time.monotonic() - t:.2f}s (includes the startup run)")
        for args in (["reconcile", "bench-pc", "raw", "--wait", "--json"],
                     ["reconcile", "bench-pc", "raw", "--verify", "--wait", "--json"]):
            r = json.loads(c.cli(*args).stdout)[0]
            print(f"datasync {' '.join(args[:-2])}: {r['files_seen']} files in {r['elapsed_s']:.2f}s "
                  f"({r['files_per_s']:.0f} files/s), +{r['rows_added']} -{r['rows_removed']} "
                  f"~{r['rows_updated']} ={r['rows_unchanged']}, {r['mismatches']} mismatches")
        print("$ datasync drill index-loss")
        print(c.cli("drill", "index-loss").stdout)
        print("$ datasync drill server-down --seconds 20")
        print(c.cli("drill", "server-down", "--seconds", "20").stdout)
    finally:
        c.close()


if __name__ == "__main__":
    main()
