"""End-to-end: real datasync-server + datasync-agent + datasync CLI on SQLite and directory
storage. Enroll → approve → add job → sync → byte-identical storage and index rows → no-op sync →
3 changed files → bad input refused."""

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Failure, make_tree, sha256_file, wait_for  # noqa: E402

BIN_DIR = None


class CoreSyncTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BIN_DIR, max_body=8 << 20)
        cls.src = os.path.join(cls.c.root, "source")
        cls.paths = make_tree(cls.src)
        cls.c.enroll("pc-e2e")
        cls.c.cli("jobs", "add", "pc-e2e", "raw", "--source", cls.src, "--dest", "lab1/raw",
                  "--settle", "1s", "--interval", "1h")
        cls.dest = os.path.join(cls.c.share, "lab1", "raw")

    @classmethod
    def tearDownClass(cls):
        cls.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")

    def sync(self):
        p = self.c.cli("sync", "pc-e2e", "raw", "--wait", "--json", check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        import json
        return json.loads(p.stdout)

    def assert_storage_matches_source(self):
        stored = []
        for dirpath, dirnames, filenames in os.walk(self.dest):
            for f in filenames:
                self.assertFalse(f.startswith(".dstmp-"), f"temp file left behind: {f}")
                stored.append(os.path.relpath(os.path.join(dirpath, f), self.dest))
        self.assertEqual(sorted(stored), self.paths)
        for rel in self.paths:
            with open(os.path.join(self.src, rel), "rb") as a, open(os.path.join(self.dest, rel), "rb") as b:
                self.assertEqual(a.read(), b.read(), f"{rel} differs in storage")

    def index_rows(self):
        return {f["path"]: f for f in self.c.cli_json("files", "pc-e2e", "raw", "--all")}

    def test_1_initial_sync_lands_everything_byte_identical_with_index_rows(self):
        self.assertGreater(len(self.paths), 1000)
        run = self.sync()
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(run["files_seen"], len(self.paths))
        self.assertEqual(run["files_failed"], 0)
        # The agent also runs a new job once on its own ("startup"); that run may win the race
        # with the command. Together they upload every file exactly once.
        runs = self.c.cli_json("runs", "pc-e2e", "raw")
        self.assertTrue(all(r["state"] == "succeeded" for r in runs), runs)
        self.assertEqual(sum(r["files_uploaded"] for r in runs), len(self.paths))
        self.assert_storage_matches_source()
        rows = self.index_rows()
        self.assertEqual(sorted(rows), self.paths)
        run_ids = {r["run_id"] for r in runs}
        for rel in self.paths:
            full = os.path.join(self.src, rel)
            self.assertEqual(rows[rel]["sha256"], sha256_file(full), rel)
            self.assertEqual(rows[rel]["size"], os.path.getsize(full), rel)
            self.assertIn(rows[rel]["run_id"], run_ids)
        self.assertEqual(rows["empty/zero-byte.dat"]["size"], 0)
        # A first sync into an empty index copies each file while the scan hashes it (each byte
        # read once) and compares the copies in batches while the scan goes on.
        top = max(runs, key=lambda r: r["files_uploaded"])
        self.assertRegex(self.agent_log(),
                         rf"run={top['run_id']} copied \d+ file\(s\) while scanning; "
                         rf"{top['files_uploaded']} of them planned and committed")

    def agent_log(self):
        with open(os.path.join(self.c.root, "agent-pc-e2e.log"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def test_2_second_sync_uploads_nothing(self):
        run = self.sync()
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(run["files_seen"], len(self.paths))
        self.assertEqual(run["files_planned"], 0)
        self.assertEqual(run["files_uploaded"], 0)
        # The no-op cycle sent the manifest digest alone: the server matched it, no file list.
        with open(os.path.join(self.c.root, "server.log"), encoding="utf-8", errors="replace") as f:
            log = f.read()
        self.assertIn(f"run={run['run_id']}: manifest unchanged ({len(self.paths)} files)", log)
        self.assertNotIn(f"run={run['run_id']}: {len(self.paths)} entries", log)

    def test_2a_agent_without_its_cache_compares_first_and_copies_nothing(self):
        # agent.db (hash cache, journal) lost, as on a reinstalled PC, while the index holds the
        # job: the agent hashes and compares before it copies anything, so nothing is copied.
        before = {r["run_id"] for r in self.c.cli_json("runs", "pc-e2e", "raw")}
        self.assertEqual(self.c.stop_agent("pc-e2e"), 0)
        state = os.path.join(self.c.root, "agent-pc-e2e")
        lost = [f for f in os.listdir(state) if f.startswith("agent.db")]
        self.assertIn("agent.db", lost)
        for f in lost:
            os.remove(os.path.join(state, f))
        self.c.start_agent("pc-e2e")

        # The agent runs its jobs once when it starts: that run is the one without a cache.
        def new_runs():
            return [r for r in self.c.cli_json("runs", "pc-e2e", "raw")
                    if r["run_id"] not in before and r["state"] not in ("running", "planned")]
        wait_for("startup run after the restart", lambda: new_runs(), 60)
        new_runs = new_runs()
        self.assertTrue(all(r["state"] == "succeeded" for r in new_runs), new_runs)
        log = self.agent_log()
        for r in new_runs:
            self.assertEqual(r["files_uploaded"], 0, r)
            self.assertNotIn(f"run={r['run_id']} copied ", log)
        self.assertFalse(os.path.exists(os.path.join(self.c.share, ".datasync", "versions")))
        self.assert_storage_matches_source()

    def test_2b_a_command_queued_while_the_agent_restarts_is_not_lost(self):
        # The agent dies while its commands long-poll waits on the server; a command queued
        # before the restarted agent polls again must wait for it, not go to the dead poll.
        self.assertEqual(self.c.stop_agent("pc-e2e", sig=signal.SIGKILL), -signal.SIGKILL)
        run_id = json.loads(self.c.cli("sync", "pc-e2e", "raw", "--json").stdout)["run_id"]
        self.c.start_agent("pc-e2e")

        def closed():
            p = self.c.cli("run", run_id, "--json", check=False)
            return p.returncode == 0 and json.loads(p.stdout)["state"] not in ("running", "planned")
        wait_for(f"run {run_id} of the command queued during the restart", closed, 60)
        self.assertEqual(self.c.cli_json("run", run_id)["state"], "succeeded")

    def test_3_three_changed_files_upload_exactly_those_and_keep_old_versions(self):
        changed = [self.paths[5], self.paths[500], "Übersicht/Ωmega – notes.txt"]
        old = self.change_files(changed, b"\nrecalibrated")
        run = self.sync()
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(run["files_uploaded"], 3)
        detail = self.c.cli_json("run", run["run_id"], "--files")
        self.assertEqual(sorted(f["path"] for f in detail["files"]), sorted(changed))
        self.assertTrue(all(f["planned_reason"] == "changed" for f in detail["files"]))
        # The delta compare: the index held the previous manifest, so only the 3 changed entries
        # were sent (not the whole list), while the run still counts every file seen. They were
        # copied while the scan read them, and compared as delta batches during the scan.
        self.assertEqual(run["files_seen"], len(self.paths))
        self.assertEqual(self.delta_entries_sent(run["run_id"]), 3)
        self.assertNotIn(f"run={run['run_id']}: {len(self.paths)} entries", self.server_log())
        self.assertIn(f"run={run['run_id']} copied 3 file(s) while scanning; 3 of them planned and committed",
                      self.agent_log())
        self.assert_storage_matches_source()
        rows = self.index_rows()
        versions = os.path.join(self.c.share, ".datasync", "versions", "lab1", "raw")
        for rel in changed:
            self.assertEqual(rows[rel]["sha256"], sha256_file(os.path.join(self.src, rel)))
            kept = os.listdir(os.path.join(versions, rel))
            self.assertEqual(len(kept), 1, f"previous version of {rel} not kept")
            self.assertEqual(sha256_file(os.path.join(versions, rel, kept[0])), old[rel])

    def change_files(self, rels, suffix):
        """Appends `suffix` to each file (settled: mtime 10 s back); returns their old SHA-256."""
        old = {}
        for rel in rels:
            full = os.path.join(self.src, rel)
            old[rel] = sha256_file(full)
            with open(full, "ab") as f:
                f.write(suffix)
            past = os.path.getmtime(full) - 10
            os.utime(full, (past, past))
        return old

    def server_log(self):
        with open(os.path.join(self.c.root, "server.log"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def delta_entries_sent(self, run_id):
        """Entries the run's delta compares carried, summed; fails unless its last batch was one."""
        batches = re.findall(rf"run={run_id}: (\d+) changed entries, \d+ to upload( \(last batch\))?",
                             self.server_log())
        self.assertTrue(batches and batches[-1][1], f"run {run_id}: no delta compare ended the plan")
        return sum(int(n) for n, _ in batches)

    def test_3a_a_new_file_then_its_removal_send_only_the_difference(self):
        extra = "late-arrivals-e2e/late-arrival.dat"
        full = os.path.join(self.src, extra)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(os.urandom(3000))
        past = os.path.getmtime(full) - 10
        os.utime(full, (past, past))
        run = self.sync()
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(run["files_uploaded"], 1)
        self.assertEqual(run["files_seen"], len(self.paths) + 1)
        self.assertEqual(self.delta_entries_sent(run["run_id"]), 1)
        with open(full, "rb") as a, open(os.path.join(self.dest, extra), "rb") as b:
            self.assertEqual(a.read(), b.read())
        self.assertEqual(self.index_rows()[extra]["sha256"], sha256_file(full))
        # Removed at the source: the base still matches, the delta is empty, storage keeps it.
        os.remove(full)
        os.rmdir(os.path.dirname(full))
        run = self.sync()
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(run["files_planned"], 0)
        self.assertEqual(run["files_seen"], len(self.paths))
        self.assertEqual(self.delta_entries_sent(run["run_id"]), 0)
        self.assertTrue(os.path.exists(os.path.join(self.dest, extra)))
        os.remove(os.path.join(self.dest, extra))  # the later tests compare storage with the tree
        os.rmdir(os.path.dirname(os.path.join(self.dest, extra)))
        # And the cycle after that is the no-op again.
        run = self.sync()
        self.assertIn(f"run={run['run_id']}: manifest unchanged ({len(self.paths)} files)", self.server_log())

    def test_3b_a_delta_whose_base_moved_stops_copying_and_sends_the_whole_manifest(self):
        # A reconcile rewrites the job's index: the agent's previous manifest is no longer the
        # index's, the server refuses the delta batch of the copy made while scanning, and the
        # run falls back to the whole manifest and an ordinary upload.
        rel = self.paths[42]
        full = os.path.join(self.src, rel)
        old = self.change_files([rel], b"\nre-exported")[rel]
        self.c.cli("reconcile", "pc-e2e", "raw", "--wait")
        run = self.sync()
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(run["files_uploaded"], 1)
        self.assertIn(f"run={run['run_id']} copying while scanning stopped: the job's index changed",
                      self.agent_log())
        self.assertIn(f"run={run['run_id']}: {len(self.paths)} entries", self.server_log())
        self.assert_storage_matches_source()
        self.assertEqual(self.index_rows()[rel]["sha256"], sha256_file(full))
        versions = os.path.join(self.c.share, ".datasync", "versions", "lab1", "raw", rel)
        self.assertEqual([sha256_file(os.path.join(versions, v)) for v in os.listdir(versions)], [old])

    def test_3c_a_delta_copies_at_most_its_bound_while_scanning_and_uploads_the_rest_after(self):
        # A delta run holds the results of its copies until its last compare, so it copies a
        # bounded number while scanning (here 2, by a hidden flag); the rest is hashed by the scan
        # and uploaded after it, and every change lands with its old version kept.
        self.restart_agent(("--delta-copies-held", "2"))
        try:
            changed = [self.paths[i] for i in (7, 300, 600, 900, 1100)]
            old = self.change_files(changed, b"\nre-processed")
            run = self.sync()
            self.assertEqual(run["state"], "succeeded")
            self.assertEqual(run["files_uploaded"], 5)
            log = self.agent_log()
            self.assertIn(f"run={run['run_id']} copied 2 file(s) while scanning, as many as a delta run holds", log)
            self.assertIn(f"run={run['run_id']} copied 2 file(s) while scanning; 2 of them planned and committed", log)
            self.assertEqual(self.delta_entries_sent(run["run_id"]), 5)
            self.assert_storage_matches_source()
            rows = self.index_rows()
            versions = os.path.join(self.c.share, ".datasync", "versions", "lab1", "raw")
            for rel in changed:
                self.assertEqual(rows[rel]["sha256"], sha256_file(os.path.join(self.src, rel)))
                self.assertIn(old[rel], [sha256_file(os.path.join(versions, rel, v))
                                         for v in os.listdir(os.path.join(versions, rel))])
        finally:
            self.restart_agent()

    def restart_agent(self, extra=()):
        """Restarts the agent with `extra` flags and waits for the run it makes at start."""
        before = {r["run_id"] for r in self.c.cli_json("runs", "pc-e2e", "raw")}
        self.assertEqual(self.c.stop_agent("pc-e2e"), 0)
        self.c.start_agent("pc-e2e", extra=extra)
        wait_for("the agent's run at start", lambda: any(
            r["run_id"] not in before and r["state"] not in ("running", "planned")
            for r in self.c.cli_json("runs", "pc-e2e", "raw")), 60)

    def test_4_bad_manifests_are_refused_and_change_nothing(self):
        key, _ = self.c.fake_agent_key("evil")
        self.c.cli("jobs", "add", "evil", "loot", "--source", "/tmp/none", "--dest", "evil/loot")
        before_files = sorted(os.listdir(self.c.share))
        run_id = "11111111-2222-4333-8444-555555555555"
        good = {"path": "ok.dat", "size": 1, "mtime_ns": 1, "sha256": "a" * 64}
        for bad_path in ["../../etc/passwd", "/etc/passwd", "a/../../b", "a\\..\\b", "a\u0000b",
                         "C:/windows", "x" * 5000, "a//b", "./a",
                         "cafe\u0301.dat"]:  # NFD: one name must be one row (agents send NFC)
            entry = dict(good, path=bad_path)
            st, body, hdrs = self.c.http("POST", "/api/v1/agent/jobs/loot/compare",
                                         {"run_id": run_id, "files": [good, entry]}, token=key)
            self.assertEqual(st, 400, f"{bad_path!r}: {body}")
            self.assertEqual(hdrs.get("Content-Type"), "application/problem+json")
        st, _, _ = self.c.http("POST", "/api/v1/agent/jobs/loot/compare", raw=b"{not json", token=key)
        self.assertEqual(st, 400)
        for digest in ["A" * 64, "a" * 63, "z" * 64, 7]:
            st, body, _ = self.c.http("POST", "/api/v1/agent/jobs/loot/compare",
                                      {"run_id": run_id, "files": [], "last": False,
                                       "manifest_digest": digest}, token=key)
            self.assertEqual(st, 400, f"{digest!r}: {body}")
            st, body, _ = self.c.http("POST", "/api/v1/agent/jobs/loot/compare",
                                      {"run_id": run_id, "files": [], "last": False,
                                       "manifest_digest": "a" * 64, "base_digest": digest}, token=key)
            self.assertEqual(st, 400, f"base {digest!r}: {body}")
        # A delta batch against a base the index does not hold: 409 "base moved" (its own
        # reason in the problem+json), and nothing recorded.
        st, body, hdrs = self.c.http("POST", "/api/v1/agent/jobs/loot/compare",
                                     {"run_id": run_id, "files": [good], "last": True,
                                      "base_digest": "b" * 64}, token=key)
        self.assertEqual(st, 409, body)
        self.assertEqual(hdrs.get("Content-Type"), "application/problem+json")
        self.assertEqual(body.get("reason"), "base_moved", body)
        st, _, _ = self.c.http("POST", "/api/v1/agent/jobs/loot/compare", {"run_id": run_id, "files": []},
                               token="dsk_not-a-key")
        self.assertEqual(st, 401)
        st, _, _ = self.c.http("POST", "/api/v1/agent/jobs/loot/compare", raw=b"x" * (9 << 20), token=key)
        self.assertEqual(st, 413)
        # Nothing was recorded: the run never began, no rows exist.
        st, _, _ = self.c.admin("GET", "/runs/" + run_id)
        self.assertEqual(st, 404)
        self.assertEqual(self.c.cli_json("files", "evil", "loot"), [])
        self.assertEqual(sorted(os.listdir(self.c.share)), before_files)

        # A real run: `complete` for a path that was not planned is rejected and changes nothing.
        st, plan, _ = self.c.http("POST", "/api/v1/agent/jobs/loot/compare",
                                  {"run_id": run_id, "files": [good], "last": True, "total_files": 1},
                                  token=key)
        self.assertEqual(st, 200, plan)
        self.assertEqual([u["key"] for u in plan["upload"]], ["evil/loot/ok.dat"])
        sneaky = {"path": "not-planned.dat", "status": "uploaded", "size": 1, "mtime_ns": 1,
                  "sha256": "b" * 64}
        ok = {"path": "ok.dat", "status": "uploaded", "size": 1, "mtime_ns": 1, "sha256": "a" * 64}
        st, body, _ = self.c.http("POST", f"/api/v1/agent/runs/{run_id}/complete",
                                  {"results": [ok, sneaky], "final": True}, token=key)
        self.assertEqual(st, 400, body)
        self.assertEqual(self.c.cli_json("files", "evil", "loot"), [])
        # The planned one is accepted, and a repeated batch changes nothing.
        for _ in range(2):
            st, body, _ = self.c.http("POST", f"/api/v1/agent/runs/{run_id}/complete",
                                      {"results": [ok], "final": True}, token=key)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["run_state"], "succeeded")
        self.assertEqual([f["path"] for f in self.c.cli_json("files", "evil", "loot")], ["ok.dat"])
        self.assertEqual(self.c.cli_json("run", run_id)["files_uploaded"], 1)

        # Revoked → 401 on every agent call.
        self.c.cli("runners", "revoke", "evil")
        st, _, _ = self.c.http("POST", "/api/v1/agent/heartbeat", {}, token=key)
        self.assertEqual(st, 401)

    def test_5_pending_runner_is_refused_and_cli_errors_are_one_line(self):
        st, reg, _ = self.c.http("POST", "/api/v1/agent/register", {"name": "waiting-pc"})
        self.assertEqual(st, 202)
        st, _, _ = self.c.http("POST", "/api/v1/agent/heartbeat", {}, token=reg["enrollment_secret"])
        self.assertEqual(st, 401)
        st, es, _ = self.c.http("GET", "/api/v1/agent/enrollment/" + reg["enrollment_id"],
                                token=reg["enrollment_secret"])
        self.assertEqual((st, es["status"]), (200, "pending"))
        st, _, _ = self.c.http("GET", "/api/v1/agent/enrollment/" + reg["enrollment_id"], token="wrong")
        self.assertEqual(st, 401)
        p = self.c.cli("runners", "approve", "no-such-runner", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        p = self.c.cli("jobs", "add", "pc-e2e", "bad", "--source", "/x", "--dest", "../escape", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("dest prefix", p.stderr)

    def test_5a_runner_groups(self):
        self.c.cli("runners", "group", "pc-e2e", "lab-2")
        self.assertEqual(self.c.runner("pc-e2e")["group"], "lab-2")
        self.assertIn("lab-2", self.c.cli("runners", "list").stdout)
        p = self.c.cli("runners", "group", "pc-e2e", "../bad", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertEqual(self.c.runner("pc-e2e")["group"], "lab-2")  # bad input changed nothing
        self.c.cli("runners", "group", "pc-e2e")
        self.assertEqual(self.c.runner("pc-e2e")["group"], "")

    def test_3d_a_name_spelled_in_nfd_on_disk_lands_once_under_its_nfc_name(self):
        nfd, nfc = "cafe\u0301-spectrum.dat", "caf\u00e9-spectrum.dat"
        with open(os.path.join(self.src, nfd), "wb") as f:
            f.write(b"one name, two spellings")
        os.utime(os.path.join(self.src, nfd), (1_700_000_000, 1_700_000_000))  # settled
        try:
            for _ in range(2):  # the second run finds it indexed: nothing uploaded again
                run = self.sync()
                self.assertEqual(run["state"], "succeeded", run)
            self.assertEqual(run["files_uploaded"], 0, run)
            self.assertTrue(os.path.exists(os.path.join(self.dest, nfc)))
            self.assertFalse(os.path.exists(os.path.join(self.dest, nfd)))
            rows = self.index_rows()
            self.assertIn(nfc, rows)
            self.assertNotIn(nfd, rows)
            self.assertEqual(rows[nfc]["sha256"], sha256_file(os.path.join(self.src, nfd)))
        finally:
            os.remove(os.path.join(self.src, nfd))
            self.sync()

    def test_5b_a_source_outside_the_agents_allowed_folders_is_never_read(self):
        # The server (an admin, or whoever took it over) names folders the PC did not allow: one
        # outside the agent's --allow-source root, and one inside it that is a symlink out.
        outside = tempfile.mkdtemp(prefix="datasync-e2e-outside-")
        try:
            with open(os.path.join(outside, "secret.txt"), "w") as f:
                f.write("not for the server\n")
            link = os.path.join(self.c.root, "link-out")
            os.symlink(outside, link)
            for job, source in (("loot", outside), ("loot-link", link)):
                self.c.cli("jobs", "add", "pc-e2e", job, "--source", source, "--dest", f"lab1/{job}",
                           "--settle", "0s", "--interval", "1h")
                p = self.c.cli("sync", "pc-e2e", job, "--wait", "--json", check=False)
                self.assertNotEqual(p.returncode, 0, p.stdout)
                run = json.loads(p.stdout)
                self.assertEqual(run["state"], "failed", run)
                self.assertIn("--allow-source", run["error"])
                self.assertEqual(run["files_seen"], 0)
                self.assertFalse(os.path.exists(os.path.join(self.c.share, "lab1", job)), job)
                self.assertEqual(self.c.cli_json("files", "pc-e2e", job, "--all"), [])
                self.c.cli("jobs", "rm", "pc-e2e", job)
        finally:
            shutil.rmtree(outside, ignore_errors=True)

    def test_5c_deleting_a_job_stops_its_running_run(self):
        src = os.path.join(self.c.root, "slow-source")
        os.makedirs(src)
        for i in range(16):
            with open(os.path.join(src, f"block-{i:02d}.dat"), "wb") as f:
                f.write(os.urandom(512 << 10))
        self.c.enroll("pc-slow", extra=["--bwlimit", "256KB"])  # 8 MiB: half a minute of uploads
        self.c.cli("jobs", "add", "pc-slow", "slow", "--source", src, "--dest", "lab1/slow",
                   "--settle", "0s", "--interval", "1h")
        wait_for("the slow run to start uploading",
                 lambda: any(r["state"] == "running" for r in self.c.cli_json("runs", "pc-slow", "slow")))
        run_id = self.c.cli_json("runs", "pc-slow", "slow")[0]["run_id"]
        self.c.cli("jobs", "rm", "pc-slow", "slow")
        def agent_log():
            with open(os.path.join(self.c.root, "agent-pc-slow.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        wait_for("the deleted job's scan to end", lambda: f"run={run_id} scanned " in agent_log(), timeout=90)
        log = agent_log()
        dest = os.path.join(self.c.share, "lab1", "slow")
        landed = [f for f in os.listdir(dest) if not f.startswith(".")] if os.path.isdir(dest) else []
        self.assertLess(len(landed), 16, "the run went on after its job was deleted")
        self.assertIn(f"run={run_id} job=slow: the job was deleted; stopping its run", log)
        # What the agent read of the folder: not all of it (the scan stopped, not just the uploads).
        hashed = re.search(rf"run={run_id} scanned \d+ files \(\d+ bytes\), hashed (\d+)", log)
        self.assertIsNotNone(hashed, log)
        self.assertLess(int(hashed.group(1)), 16, log)
        self.c.stop_agent("pc-slow")

    def test_6_agent_stops_cleanly_on_sigterm(self):
        self.assertEqual(self.c.stop_agent("pc-e2e"), 0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args, rest = ap.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], "-v", *rest])
