#!/usr/bin/env python3
"""Seeded generator of measurement-like trees for the benchmarks (not a test).

Trees (nested date/part folders, files named like an instrument writes them):
  A     20,000 files, sizes log-uniform 1 KiB .. 1 MiB (~2.8 GiB at scale 1)
  B    100,000 files of 1..8 KiB (uniform)
  C         20 files of 256 MiB
  M  1,000,000 files of 64..512 bytes (scale and memory)

--scale multiplies the file count (A, B, M) or the file size (C). The same seed and scale give
the same tree, byte for byte, with every mtime set one hour in the past (older than any settle
time). `--touch PCT` rewrites PCT % of an existing tree's files (chosen by a seeded draw, same
size, new content, mtime moved forward one second) to make a "1 % changed" cycle.

Usage:
  bench/gen_tree.py --tree A --out /tmp/treeA [--scale 0.1] [--seed 1]
  bench/gen_tree.py --touch 1 --out /tmp/treeA [--seed 2]
Prints one JSON line: {"tree", "files", "bytes", "seconds"}."""

import argparse
import json
import math
import os
import random
import shutil
import sys
import time

TREES = {
    # name: (files, size function(rng) -> bytes)
    "A": (20_000, lambda r: int(math.exp(r.uniform(math.log(1024), math.log(1 << 20))))),
    "B": (100_000, lambda r: r.randint(1024, 8192)),
    "C": (20, lambda r: 256 << 20),
    "M": (1_000_000, lambda r: r.randint(64, 512)),
}
FILES_PER_DIR = 200


def rel_path(i):
    """File i of a tree: <date>/<part>/<file>; about FILES_PER_DIR files per folder."""
    folder = i // FILES_PER_DIR
    day = folder // 10
    return os.path.join(f"2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}" + (f"-{day // 336}" if day >= 336 else ""),
                        f"part{folder % 10:02d}", f"meas_{i:07d}.dat")


def fill(rng, size):
    """Incompressible bytes, fast: a random 1 MiB block repeated with a per-file random prefix."""
    head = rng.randbytes(min(size, 4096))
    if size <= 4096:
        return head
    block = fill.block
    out = bytearray(head)
    while len(out) < size:
        out += block[: size - len(out)]
    return bytes(out)


fill.block = random.Random(99).randbytes(1 << 20)


def generate(tree, out, scale, seed):
    n_files, size_of = TREES[tree]
    rng = random.Random(f"{tree}-{seed}")
    if tree == "C":
        count = n_files
        sizes = [max(1, int(size_of(rng) * scale)) for _ in range(count)]
    else:
        count = max(1, int(n_files * scale))
        sizes = [size_of(rng) for _ in range(count)]
    past = time.time() - 3600
    total = 0
    made = set()
    for i, size in enumerate(sizes):
        p = os.path.join(out, rel_path(i))
        d = os.path.dirname(p)
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        with open(p, "wb") as f:
            if tree == "C":  # stream: never the whole file in memory
                head = rng.randbytes(min(size, 4096))
                f.write(head)
                left = size - len(head)
                while left > 0:
                    f.write(fill.block[: min(left, len(fill.block))])
                    left -= min(left, len(fill.block))
            else:
                f.write(fill(rng, size))
        os.utime(p, (past, past))
        total += size
    return count, total


def fresh_tree(work, tree, scale, seed=1):
    """Empties the folder `work` and generates `tree` in work/src: (src, files, bytes)."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    src = os.path.join(work, "src")
    files, total = generate(tree, src, scale, seed)
    return src, files, total


def touch(out, pct, seed):
    """Rewrites pct % of the files under `out` (same size, new bytes, mtime + 1 s)."""
    files = []
    for d, _, names in os.walk(out):
        files.extend(os.path.join(d, n) for n in names)
    files.sort()
    rng = random.Random(f"touch-{seed}")
    k = max(1, int(len(files) * pct / 100))
    total = 0
    for p in rng.sample(files, k):
        st = os.stat(p)
        with open(p, "r+b") as f:
            f.write(rng.randbytes(min(st.st_size, 4096)) if st.st_size else b"")
        os.utime(p, (st.st_atime, st.st_mtime + 1))
        total += st.st_size
    return k, total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", choices=sorted(TREES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--touch", type=float, help="rewrite this percentage of an existing tree's files")
    a = ap.parse_args()
    t = time.monotonic()
    if a.touch is not None:
        files, total = touch(a.out, a.touch, a.seed)
    elif a.tree:
        if os.path.exists(a.out) and os.listdir(a.out):
            sys.exit(f"{a.out} exists and is not empty")
        files, total = generate(a.tree, a.out, a.scale, a.seed)
    else:
        sys.exit("--tree or --touch is required")
    print(json.dumps({"tree": a.tree or "touch", "files": files, "bytes": total,
                      "seconds": round(time.monotonic() - t, 2)}))


if __name__ == "__main__":
    main()
