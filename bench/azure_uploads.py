"""Upload throughput to Azure Blob (Azurite) through the full DataSync path, and whether
--bwlimit holds the agent as a whole: the same files synced with --block-parallelism 1 and 4,
unlimited and under a cap. Prints one line per configuration and a JSON summary.

    python3 bench/azure_uploads.py --bin-dir build/bin [--files 2 --mib 32 --cap 8MB]

Azurite is a single Node.js process on loopback: absolute rates say little about a real
account (where parallel blocks hide per-request latency); the cap column is the point."""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import test_azure_sync as az  # noqa: E402
from harness import wait_for  # noqa: E402


def run_config(bin_dir, files, mib, parallelism, cap):
    tmp = tempfile.mkdtemp(prefix="datasync-bench-az-")
    azurite = az.Azurite(tmp)
    cluster = None
    try:
        azurite.create_container()
        key_file = os.path.join(tmp, "storage.key")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(az.KEY + "\n")
        url = f"azblob://{az.ACCOUNT}/{az.CONTAINER}?endpoint={azurite.endpoint}"
        cluster = az.AzureCluster(bin_dir, ["--storage", url, "--storage-key-file", key_file])
        src = os.path.join(cluster.root, "src")
        os.makedirs(src)
        for i in range(files):
            with open(os.path.join(src, f"run-{i}.bin"), "wb") as f:
                f.write(os.urandom(mib << 20))
            past = time.time() - 60
            os.utime(os.path.join(src, f"run-{i}.bin"), (past, past))
        flags = ["--block-size", "4MiB", "--block-parallelism", str(parallelism),
                 "--upload-threads", "2", "--bwlimit", cap]
        cluster.enroll("pc-bench", extra=flags)
        cluster.cli("jobs", "add", "pc-bench", "raw", "--source", src, "--dest", "bench",
                    "--settle", "1s", "--interval", "1h")
        t0 = time.monotonic()
        p = cluster.cli("sync", "pc-bench", "raw", "--wait", "--json")
        took = time.monotonic() - t0
        run = json.loads(p.stdout)
        assert run["state"] == "succeeded", run
        assert len(azurite.list("bench/")) == files
        return took
    finally:
        if cluster:
            cluster.close()
        azurite.stop()
        azurite.log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--cap", default="8MB", help="the --bwlimit of the capped runs")
    a = ap.parse_args()
    total = a.files * (a.mib << 20)
    cap_bytes = int(a.cap[:-2]) * 1_000_000 if a.cap.endswith("MB") else int(a.cap)
    results = []
    for cap in ("0", a.cap):
        for parallelism in (1, 4):
            took = run_config(a.bin_dir, a.files, a.mib, parallelism, cap)
            rate = total / took
            line = {"bwlimit": cap, "block_parallelism": parallelism, "seconds": round(took, 2),
                    "MB_per_s": round(rate / 1e6, 1)}
            if cap != "0":
                line["rate_vs_cap"] = round(rate / cap_bytes, 2)
            results.append(line)
            print(f"--bwlimit {cap:>5}  --block-parallelism {parallelism}: {took:6.2f} s "
                  f"({rate / 1e6:6.1f} MB/s for {a.files} x {a.mib} MiB incl. scan/compare/complete)",
                  flush=True)
    print(json.dumps({"uptime": open("/proc/loadavg").read().split()[:3], "results": results}))


if __name__ == "__main__":
    main()
