"""End-to-end: `datasync drill`, the recovery rehearsals (src/cli/drill.cc), against a real cluster.
index-loss starts a scratch server with a fresh index on the live storage, imports the live jobs,
reconciles, enrolls a scratch agent and syncs a round trip: every index row of the live cluster
must come back (RPO 0). server-down stops a scratch server for 3 s while its agent keeps writing,
restarts it and waits for the agent to reconnect and the index to catch up (drift 0). Both run
with TMPDIR inside the cluster's temp dir, so the test also sees that they leave no scratch
directory behind. Bad input: an unknown drill kind, and a CLI without a server binary beside it."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster  # noqa: E402

BIN_DIR = None
FILES = 30  # synced by the live cluster before the drills


class DrillTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BIN_DIR)
        try:
            cls.src = os.path.join(cls.c.root, "src")
            past = time.time() - 3600
            for i in range(FILES):
                p = os.path.join(cls.src, f"run{i % 3}", f"m_{i:03d}.dat")
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "wb") as f:
                    f.write(os.urandom(1024 + i))
                os.utime(p, (past, past))
            cls.c.enroll("pc-drill")
            cls.c.cli("jobs", "add", "pc-drill", "raw", "--source", cls.src, "--dest", "drill/raw",
                      "--settle", "0s")
            cls.c.cli("sync", "pc-drill", "raw", "--wait")
            cls.tmp = os.path.join(cls.c.root, "drill-tmp")
            os.makedirs(cls.tmp)
        except BaseException:
            cls.c.close(keep=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def drill(self, *args, cli=None):
        """Runs `datasync drill ARGS` (`cli`: another copy of the binary) with TMPDIR in the
        cluster; returns the CompletedProcess."""
        env = dict(self.c.cli_env(), TMPDIR=self.tmp)
        return subprocess.run([cli or self.c.bin("datasync"), "drill", *args], capture_output=True,
                              text=True, env=env, timeout=120)

    def live_rows(self):
        return self.c.admin("GET", "/runners/pc-drill/jobs/raw/files?limit=10000")[1]["files"]

    def assert_no_scratch_left(self):
        self.assertEqual(os.listdir(self.tmp), [], "a drill left its scratch directory behind")

    def test_index_loss_recovers_every_row(self):
        self.assertEqual(len(self.live_rows()), FILES)
        p = self.drill("index-loss", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual(out["drill"], "index-loss")
        self.assertEqual(out["rows_before"], FILES)
        self.assertEqual(out["rpo_files"], 0)
        self.assertTrue(out["round_trip_ok"])
        self.assertGreater(out["rto_s"], 0)
        steps = {s["step"]: s for s in out["steps"]}
        self.assertEqual(list(steps), ["fresh index + start-up migrations", "job import",
                                       "reconcile all jobs", "agent reconnect (enroll + approve)",
                                       "sync round trip"])
        self.assertEqual(steps["job import"]["note"], "1 job(s)")
        self.assertRegex(steps["reconcile all jobs"]["note"],
                         rf"^{FILES} files, \d+ files/s, 0 mismatches$")
        self.assertEqual(steps["sync round trip"]["note"], "succeeded, 5 files")
        self.assertTrue(steps["fresh index + start-up migrations"]["note"].startswith("http://127.0.0.1:"))
        self.assertTrue(steps["agent reconnect (enroll + approve)"]["note"].startswith("drill-"))
        for s in out["steps"]:
            self.assertGreaterEqual(s["seconds"], 0)
        # The live cluster is untouched; the round trip's files are gone from its storage.
        self.assertEqual(len(self.live_rows()), FILES)
        self.assertFalse(os.path.exists(os.path.join(self.c.share, "datasync-drill")))
        self.assert_no_scratch_left()

    def test_server_down_reconnects_without_drift(self):
        p = self.drill("server-down", "--seconds", "3")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = p.stdout
        self.assertRegex(out, r"drill server-down: scratch server http://127\.0\.0\.1:\d+, agent "
                              r"drill-[0-9a-f]{6}, job every 2s\n")
        self.assertIn("  stopping the server for 3 s while new measurements arrive\n", out)
        written = re.search(r"  server down +[\d.]+ s  (\d+) files written, \d+ already in storage "
                            r"\(offline sync\)\n", out)
        self.assertIsNotNone(written, out)
        self.assertGreaterEqual(int(written.group(1)), 5)  # one every 0.5 s for 3 s
        self.assertRegex(out, r"  server restart \(index migrations\) +[\d.]+ s  \n")
        self.assertRegex(out, r"  agent reconnect +[\d.]+ s  first heartbeat after the server "
                              r"returned\n")
        self.assertRegex(out, r"  index catch-up \(journal replay\) +[\d.]+ s  drift 0 file\(s\)\n")
        final = re.search(r"reconnect ([\d.]+) s after the server returned \(bound: 120 s\); drift "
                          r"after recovery: 0 file\(s\) \(must be 0\)\n$", out)
        self.assertIsNotNone(final, out)
        self.assertLessEqual(float(final.group(1)), 120)
        self.assert_no_scratch_left()

    def test_an_unknown_drill_is_refused(self):
        p = self.drill("no-such-drill")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stdout, "")
        self.assertEqual(p.stderr.splitlines()[0], "A subcommand is required")
        self.assert_no_scratch_left()

    def test_a_missing_server_binary_is_named(self):
        # The drills start the datasync-server beside the CLI binary: a lone copy has none.
        lone = os.path.join(self.c.root, "lone")
        os.makedirs(lone)
        cli = shutil.copy(self.c.bin("datasync"), lone)
        p = self.drill("server-down", "--seconds", "1", cli=cli)
        self.assertEqual(p.returncode, 1)
        server = os.path.join(lone, "datasync-server")
        self.assertEqual(p.stderr.splitlines()[0],
                         f"datasync drill server-down: start {server}: No such file or directory")
        self.assert_no_scratch_left()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    args, rest = parser.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
