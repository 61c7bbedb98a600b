"""End-to-end disaster recovery with the real programs: index loss rebuilt by reconcile, server
down while the agent keeps syncing (zero drift after), agent killed mid-upload, reconcile
--verify on a corrupted file, online backup/restore, and a replaced PC."""

import argparse
import json
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, make_tree, sha256_file, wait_for  # noqa: E402

BIN_DIR = None


def index_snapshot(c, runner, job):
    return {f["path"]: (f["size"], f["sha256"]) for f in c.cli_json("files", runner, job, "--all")}


def storage_snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            full = os.path.join(dirpath, f)
            if f.startswith(".dstmp-"):
                out[os.path.relpath(full, root)] = ("TEMP", "")
                continue
            out[os.path.relpath(full, root)] = (os.path.getsize(full), sha256_file(full))
    return out


def write_files(root, prefix, n, size=2000):
    past = time.time() - 60
    for i in range(n):
        p = os.path.join(root, prefix, f"late_{i:03d}.dat")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(os.urandom(size))
        os.utime(p, (past, past))


class DisasterRecoveryTest(unittest.TestCase):
    def setUp(self):
        self.c = Cluster(BIN_DIR)
        self.src = os.path.join(self.c.root, "source")

    def tearDown(self):
        self.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")

    def add_job(self, *job_args, agent_extra=()):
        """Enrolls pc-dr and gives it job raw (self.src to lab/raw, no settle time); returns the
        job's folder in storage."""
        self.c.enroll("pc-dr", extra=agent_extra)
        self.c.cli("jobs", "add", "pc-dr", "raw", "--source", self.src, "--dest", "lab/raw", "--settle", "0s",
                   *job_args)
        return os.path.join(self.c.share, "lab", "raw")

    def sync_ok(self, runner="pc-dr", job="raw"):
        p = self.c.cli("sync", runner, job, "--wait", "--json", check=False)
        self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
        return json.loads(p.stdout)

    def test_index_loss_is_rebuilt_file_for_file_by_import_and_reconcile(self):
        make_tree(self.src, n_small=300, big_mib=1)
        self.add_job()
        self.sync_ok()
        before = index_snapshot(self.c, "pc-dr", "raw")
        self.assertEqual(len(before), 303)
        jobs_file = os.path.join(self.c.root, "jobs.json")
        with open(jobs_file, "w") as f:
            f.write(self.c.cli("jobs", "list", "--json").stdout)

        self.c.restart_server(wipe_index=True)          # the index is gone
        self.c.cli("jobs", "import", jobs_file)         # re-seed: runner comes back as pending
        p = self.c.cli("reconcile", "--all", "--wait", "--json")
        report = json.loads(p.stdout)[0]
        self.assertEqual(report["state"], "succeeded")
        self.assertEqual(report["rows_added"], 303)
        self.assertEqual(report["mismatches"], 0)
        self.assertEqual(index_snapshot(self.c, "pc-dr", "raw"), before)   # RPO: nothing lost

        # The agent's key is unknown now: it enrolls again by itself; the operator approves.
        wait_for("agent re-registration", lambda: (self.c.runner("pc-dr") or {}).get("hostname"), 60)
        self.c.cli("runners", "approve", "pc-dr")
        wait_for("agent online", lambda: (self.c.runner("pc-dr") or {}).get("online"), 60)
        write_files(self.src, "after-rebuild", 1)
        run = self.sync_ok()
        self.assertEqual(run["files_uploaded"], 1)
        self.assertEqual(len(index_snapshot(self.c, "pc-dr", "raw")), 304)

    def test_a_runner_pending_approval_registers_again_after_an_index_loss(self):
        self.c.start_agent("pc-new")
        wait_for("pc-new pending", lambda: (self.c.runner("pc-new") or {}).get("status") == "pending")
        self.c.restart_server(wipe_index=True)          # the pending request is gone with the index
        wait_for("pc-new registered again",
                 lambda: (self.c.runner("pc-new") or {}).get("status") == "pending", 60)
        self.c.cli("runners", "approve", "pc-new")
        wait_for("pc-new online", lambda: (self.c.runner("pc-new") or {}).get("online"), 60)

    def test_server_down_agent_keeps_syncing_and_index_has_zero_drift_after(self):
        make_tree(self.src, n_small=50, big_mib=1)
        dest = self.add_job("--interval", "2s")
        wait_for("first sync", lambda: len(index_snapshot(self.c, "pc-dr", "raw")) == 53, 60)

        self.c.stop_server()
        write_files(self.src, "while-down", 20)
        wait_for("offline uploads", lambda: sum(1 for k in storage_snapshot(dest) if k.startswith("while-down")) == 20, 60)
        t0 = time.monotonic()
        self.c.restart_server()
        wait_for("zero drift", lambda: index_snapshot(self.c, "pc-dr", "raw") == storage_snapshot(dest), 120)
        print(f"\nserver-down: index caught up {time.monotonic() - t0:.1f}s after the server returned")
        src = {os.path.relpath(os.path.join(d, f), self.src) for d, _, fs in os.walk(self.src) for f in fs}
        self.assertEqual(set(storage_snapshot(dest)), src)
        # Every file was uploaded exactly once across all runs (online, offline and replayed).
        runs = self.c.cli_json("runs", "pc-dr", "raw", "--limit", "1000")
        self.assertEqual(sum(r["files_uploaded"] for r in runs), len(src))
        self.assertFalse(os.path.exists(os.path.join(self.c.share, ".datasync", "versions")))

    def test_a_long_offline_run_is_replayed_a_batch_at_a_time_with_every_file_once(self):
        # More results than a journal batch (1,000) and a compare request (5,000): the replay
        # streams them from the journal, compares them in groups and reports each group.
        make_tree(self.src, n_small=3, big_mib=0)
        dest = self.add_job("--interval", "2s")
        wait_for("first sync", lambda: len(storage_snapshot(dest)) > 0 and
                 index_snapshot(self.c, "pc-dr", "raw") == storage_snapshot(dest), 60)

        self.c.stop_server()
        staging = os.path.join(self.c.root, "staging")
        write_files(staging, "while-down", 6200, size=100)
        os.rename(os.path.join(staging, "while-down"), os.path.join(self.src, "while-down"))  # one run sees all
        wait_for("offline uploads", lambda: sum(1 for k in storage_snapshot(dest) if k.startswith("while-down")) == 6200,
                 120)
        self.c.restart_server()
        wait_for("zero drift", lambda: index_snapshot(self.c, "pc-dr", "raw") == storage_snapshot(dest), 180)
        src = {os.path.relpath(os.path.join(d, f), self.src) for d, _, fs in os.walk(self.src) for f in fs}
        self.assertEqual(set(storage_snapshot(dest)), src)
        runs = self.c.cli_json("runs", "pc-dr", "raw", "--limit", "1000")
        self.assertEqual(sum(r["files_uploaded"] for r in runs), len(src))
        with open(os.path.join(self.c.root, "agent-pc-dr.log"), encoding="utf-8", errors="replace") as f:
            log = f.read()
        self.assertRegex(log, r"replayed 6200 result\(s\): server closed it as succeeded")

    def test_agent_killed_mid_upload_leaves_no_partial_file_and_next_run_completes(self):
        os.makedirs(self.src)
        big = os.path.join(self.src, "big.bin")
        with open(big, "wb") as f:
            f.write(os.urandom(48 << 20))
        past = time.time() - 60
        os.utime(big, (past, past))
        dest = self.add_job(agent_extra=("--bwlimit", "6000000"))
        agent_pid = self.c.agents["pc-dr"].pid

        def in_flight():
            # On a local filesystem the upload is an unnamed O_TMPFILE file the agent holds open
            # (its /proc fd link reads "DEST/#INODE (deleted)"); elsewhere a .dstmp- temp file.
            if not os.path.isdir(dest):
                return False
            if any(k.startswith(".dstmp-") for k in os.listdir(dest)):
                return True
            fd_dir = f"/proc/{agent_pid}/fd"
            for fd in os.listdir(fd_dir):
                try:
                    target = os.readlink(os.path.join(fd_dir, fd))
                except OSError:
                    continue
                if target.startswith(dest + "/") and target.endswith(" (deleted)"):
                    return True
            return False

        wait_for("upload in flight", in_flight, 30)
        self.c.stop_agent("pc-dr", sig=signal.SIGKILL)
        self.assertFalse(os.path.exists(os.path.join(dest, "big.bin")), "partial file under its final name")
        killed = [r for r in self.c.cli_json("runs", "pc-dr", "raw") if r["state"] == "running"]
        self.assertEqual(len(killed), 1)

        self.c.start_agent("pc-dr")       # replays its journal: removes the temp, closes the run
        wait_for("killed run abandoned",
                 lambda: self.c.cli_json("run", killed[0]["run_id"])["state"] == "abandoned", 60)
        run = self.sync_ok()
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(sha256_file(os.path.join(dest, "big.bin")), sha256_file(big))
        self.assertEqual([k for k in os.listdir(dest) if k.startswith(".dstmp-")], [])

    def test_reconcile_verify_reports_a_corrupted_file_and_plain_reconcile_drops_deleted_rows(self):
        make_tree(self.src, n_small=40, big_mib=1)
        dest = self.add_job()
        self.sync_ok()
        victim = os.path.join(dest, "big", "large run 1.bin")
        st = os.stat(victim)
        with open(victim, "r+b") as f:        # bit rot: same size, same mtime
            f.seek(1000)
            b = f.read(1)
            f.seek(1000)
            f.write(bytes([b[0] ^ 0xFF]))
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        p = self.c.cli("reconcile", "pc-dr", "raw", "--verify", "--wait", "--json", check=False)
        self.assertNotEqual(p.returncode, 0)
        report = json.loads(p.stdout)[0]
        self.assertEqual(report["mismatches"], 1)
        self.assertEqual([m["path"] for m in report["report"]["mismatches"]], ["big/large run 1.bin"])

        os.remove(os.path.join(dest, "empty", "zero-byte.dat"))
        # (Still non-zero: the corrupted file's stored metadata disagrees with its content.)
        p = self.c.cli("reconcile", "pc-dr", "raw", "--wait", "--json", check=False)
        report = json.loads(p.stdout)[0]
        self.assertEqual(report["rows_removed"], 1)
        self.assertNotIn("empty/zero-byte.dat", index_snapshot(self.c, "pc-dr", "raw"))
        status = self.c.cli_json("reconcile", "status")
        self.assertGreaterEqual(len(status), 2)

    def test_online_backup_restores_onto_a_fresh_data_dir(self):
        make_tree(self.src, n_small=30, big_mib=1)
        self.add_job()
        self.sync_ok()
        backup = os.path.join(self.c.root, "backup.db")
        import subprocess
        subprocess.run([self.c.bin("datasync-server"), "backup", "--index", "sqlite:" + self.c.index_path,
                        "--to", backup], check=True, capture_output=True)
        fresh = os.path.join(self.c.root, "fresh")
        subprocess.run([self.c.bin("datasync-server"), "restore", "--from", backup,
                        "--index", "sqlite:" + os.path.join(fresh, "state.db")], check=True, capture_output=True)
        other = subprocess.Popen([self.c.bin("datasync-server"), "--listen", "127.0.0.1:0",
                                  "--index", "sqlite:" + os.path.join(fresh, "state.db"),
                                  "--storage", "file://" + self.c.share, "--data", fresh,
                                  "--tls-cert", self.c.tls.cert_file, "--tls-key", self.c.tls.key_file],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            url = None
            for line in other.stdout:
                if b"listening on" in line:
                    url = line.decode().split("listening on ")[1].strip()
                    break
            env = dict(self.c.cli_env(url), DATASYNC_TOKEN=self.c.token)
            out = subprocess.run([self.c.bin("datasync"), "files", "pc-dr", "raw", "--all", "--json"],
                                 capture_output=True, text=True, env=env, check=True).stdout
            restored = {f["path"]: (f["size"], f["sha256"]) for f in json.loads(out)}
            self.assertEqual(restored, index_snapshot(self.c, "pc-dr", "raw"))
        finally:
            other.send_signal(signal.SIGTERM)
            other.wait(timeout=30)

    def test_replaced_pc_takes_over_runner_jobs_and_rows_and_old_key_dies(self):
        old_key, _ = self.c.fake_agent_key("pc-x")
        self.c.cli("jobs", "add", "pc-x", "raw", "--source", self.src, "--dest", "lab/x", "--settle", "0s")
        run_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
        entry = {"path": "a.dat", "size": 1, "mtime_ns": 1, "sha256": "c" * 64}
        st, _, _ = self.c.http("POST", "/api/v1/agent/jobs/raw/compare",
                               {"run_id": run_id, "files": [entry], "last": True}, token=old_key)
        self.assertEqual(st, 200)
        st, _, _ = self.c.http("POST", f"/api/v1/agent/runs/{run_id}/complete",
                               {"results": [dict(entry, status="uploaded")], "final": True}, token=old_key)
        self.assertEqual(st, 200)
        os.makedirs(self.src)
        self.c.start_agent("pc-x")                   # the new PC, same name
        wait_for("replacement request", lambda: (self.c.runner("pc-x") or {}).get("replacement_pending"))
        p = self.c.cli("runners", "approve", "pc-x", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("runners replace", p.stderr)
        self.c.cli("runners", "replace", "pc-x")
        wait_for("new PC online", lambda: (self.c.runner("pc-x") or {}).get("online"), 30)
        st, _, _ = self.c.http("POST", "/api/v1/agent/heartbeat", {}, token=old_key)
        self.assertEqual(st, 401)
        self.assertEqual(list(index_snapshot(self.c, "pc-x", "raw")), ["a.dat"])
        self.assertEqual([j["name"] for j in self.c.cli_json("jobs", "list", "pc-x")["jobs"]], ["raw"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args, rest = ap.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], "-v", *rest])
