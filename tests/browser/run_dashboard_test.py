"""Browser test of the dashboard: starts a real datasync-server (SQLite index, directory storage)
and a real datasync-agent that waits for approval, creates an admin and a viewer account with
`datasync-server users add`, then runs dashboard.test.mjs (Node + playwright-core driving Debian's
headless Chromium) against it, and finally checks what the clicks did on the server side: the
files are in storage byte for byte, the audit log has the approval.

Screenshots of every main page land in --out (build/test-output/browser/ from ctest)."""

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from harness import Cluster, Failure, sha256_file  # noqa: E402

FILE_COUNT = 25
RUNNER = "lab-pc1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--out", required=True, help="folder for screenshots")
    ap.add_argument("--node", default="node")
    args = ap.parse_args()
    if not shutil.which("chromium") and not os.path.exists("/usr/bin/chromium"):
        raise Failure("Debian's chromium is not installed (scripts/install-deps.sh)")
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)

    c = Cluster(args.bin_dir)
    ok = False
    try:
        c.add_user("ann", "admin", "ann-secret-pw")
        c.add_user("vic", "viewer", "vic-secret-pw")
        src = os.path.join(c.root, "source")
        for i in range(FILE_COUNT):
            sub = os.path.join(src, f"day{i % 3}")
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, f"m{i:03d}.csv"), "wb") as f:
                f.write(os.urandom(1000 + i * 37))
        c.start_agent(RUNNER)  # registers and waits for an operator: the test approves it
        env = dict(os.environ,
                   BASE_URL=c.url, SERVER_SPKI=c.tls.spki, SCREENSHOT_DIR=os.path.abspath(args.out),
                   ADMIN_USER="ann", ADMIN_PASSWORD="ann-secret-pw",
                   VIEWER_USER="vic", VIEWER_PASSWORD="vic-secret-pw",
                   RUNNER=RUNNER, SOURCE_DIR=src, DEST_PREFIX="lab1/raw",
                   FILE_COUNT=str(FILE_COUNT), WORK_DIR=c.root,
                   NODE_PATH=os.path.join(HERE, "..", "..", "node_modules"))
        p = subprocess.run([args.node, os.path.join(HERE, "dashboard.test.mjs")], env=env,
                           timeout=540)
        if p.returncode != 0:
            raise Failure(f"dashboard.test.mjs failed (exit {p.returncode}); screenshots in {args.out}")

        # What the browser did, seen from the server and the storage.
        dest = os.path.join(c.share, "lab1", "raw")
        for root, _, files in os.walk(src):
            for name in files:
                rel = os.path.relpath(os.path.join(root, name), src)
                stored = os.path.join(dest, rel)
                if not os.path.exists(stored) or sha256_file(stored) != sha256_file(os.path.join(root, name)):
                    raise Failure(f"{rel} missing or different in storage")
        st, audit, _ = c.admin("GET", "/audit?q=approve")
        if st != 200 or not any(a["actor"] == "user:ann" and a["result"] == "200" for a in audit["items"]):
            raise Failure(f"no audited approval by user:ann: {json.dumps(audit)[:500]}")
        if not any(a["actor"] == "user:vic" and a["result"] == "403" for a in audit["items"]):
            raise Failure("the viewer's refused approval is not in the audit log")
        shots = sorted(f for f in os.listdir(args.out) if f.endswith(".png"))
        print(f"OK: {len(shots)} screenshots in {args.out}: {', '.join(shots)}")
        ok = True
    finally:
        c.close(keep=not ok and os.environ.get("DATASYNC_KEEP_E2E") == "1")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
