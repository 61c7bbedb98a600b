#!/usr/bin/env python3
"""Writes a seeded, measurement-like sample tree: dated folders, instrument parts, CSV and binary
files, a few names with spaces and non-ASCII characters. Usage: make_sample.py DIR [FILES]"""

import os
import random
import sys
import time


def main():
    root = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    rng = random.Random(42)
    past = time.time() - 3600
    for i in range(count):
        day = f"2026-11-{1 + i % 20:02d}"
        part = ["spectrometer", "Kamera µ", "probe A"][i % 3]
        if i % 4 == 0:
            name = f"run_{i:04d}.csv"
            data = "t,value\n" + "".join(f"{t},{rng.gauss(0, 1):.6f}\n" for t in range(rng.randint(10, 400)))
            data = data.encode()
        else:
            name = f"frame_{i:04d}.bin"
            data = rng.randbytes(rng.randint(512, 256 << 10))
        path = os.path.join(root, day, part, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (past, past))
    print(f"sample: {count} files under {root}")


if __name__ == "__main__":
    main()
