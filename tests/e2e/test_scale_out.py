"""End-to-end scale-out: two datasync-server instances on one PostgreSQL index behind nginx, agents
and the CLI pointed at nginx. A "sync now" queued through one instance reaches an agent
long-polling the other within ~2 s, and a newer long-poll on one instance supersedes an abandoned
one on the other; exactly one instance holds the janitor lease; one instance is SIGKILLed during a
sync: no run is lost, no file is indexed twice, the janitor lease moves to the survivor, and
`sync --wait` through nginx carries on."""

import argparse
import json
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Failure, make_tree, sha256_file, wait_for  # noqa: E402

BIN_DIR = None
JANITOR_INTERVAL = "1s"   # lease lifetime is 3 intervals: takeover within ~4 s


class LongPoll(threading.Thread):
    """GET /agent/commands?wait=... on one instance, in the background; records the answer and
    when it came."""

    def __init__(self, cluster, base, key, wait="20s"):
        super().__init__(daemon=True)
        self.c, self.base, self.key, self.wait = cluster, base, key, wait
        self.answer = None
        self.answered_at = None

    def run(self):
        st, body, _ = self.c.http("GET", "/api/v1/agent/commands?wait=" + self.wait, token=self.key,
                                  base=self.base, timeout=60)
        self.answer = (st, body)
        self.answered_at = time.monotonic()


class ScaleOutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BIN_DIR, index="postgresql", behind_proxy=True,  # nginx terminates TLS
                        server_extra=("--janitor-interval", JANITOR_INTERVAL))
        cls.c.add_server()
        cls.c.start_balancer()
        cls.a, cls.b = cls.c.server_urls()
        cls.procs = {cls.a: cls.c.server, cls.b: cls.c.extra_servers[0][0]}

    @classmethod
    def tearDownClass(cls):
        cls.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")

    def janitor_holder_url(self):
        """URL of the instance holding the janitor lease (instance ids are host:pid:random)."""
        holder = self.c.pg.psql("datasync", "SELECT holder FROM leases WHERE name = 'janitor'")
        for url, proc in self.procs.items():
            if holder.split(":")[1:2] == [str(proc.pid)]:
                return url
        return None

    def cli_retry(self, *args):
        """The CLI through nginx; one retry covers a request nginx had already sent on a kept-alive
        connection to an instance that was just killed (nginx does not resend POSTs)."""
        p = self.c.cli(*args, check=False)
        if p.returncode != 0 and "502" in p.stderr:
            time.sleep(0.5)
            p = self.c.cli(*args, check=False)
        if p.returncode != 0:
            raise Failure(f"datasync {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
        return p

    def test_1_sync_now_crosses_instances_within_two_seconds(self):
        key, _ = self.c.fake_agent_key("pc-poll")
        self.c.cli("jobs", "add", "pc-poll", "raw", "--source", "/tmp/none", "--dest", "poll/raw")
        for wait_on, queue_on in ((self.b, self.a), (self.a, self.b), (self.b, self.a)):
            poll = LongPoll(self.c, wait_on, key)
            poll.start()
            wait_for("long-poll parked", lambda: self.waiting(wait_on) >= 1, 10, 0.02)
            t0 = time.monotonic()
            st, q, _ = self.c.admin("POST", "/runners/pc-poll/jobs/raw/sync", base=queue_on)
            self.assertEqual(st, 202, q)
            poll.join(10)
            self.assertFalse(poll.is_alive(), "the command never reached the other instance")
            latency = poll.answered_at - t0
            print(f"\ncommand queued on {queue_on}, delivered by {wait_on} after {latency:.2f} s")
            st, body = poll.answer
            self.assertEqual(st, 200, body)
            self.assertEqual([c["run_id"] for c in body["commands"]], [q["run_id"]])
            self.assertLess(latency, 2.5)

    def test_2_newer_long_poll_on_another_instance_supersedes_the_abandoned_one(self):
        key, _ = self.c.fake_agent_key("pc-moved")
        self.c.cli("jobs", "add", "pc-moved", "raw", "--source", "/tmp/none", "--dest", "moved/raw")
        stale = LongPoll(self.c, self.a, key, wait="25s")   # a connection the agent gave up on
        stale.start()
        wait_for("stale long-poll parked", lambda: self.waiting(self.a) >= 1, 10, 0.02)
        fresh = LongPoll(self.c, self.b, key, wait="25s")   # the agent, reconnected via nginx
        fresh.start()
        stale.join(5)
        self.assertFalse(stale.is_alive(), "the abandoned long-poll was not superseded")
        self.assertEqual(stale.answer, (200, {"commands": []}))
        # The command queued through the stale one's instance reaches the live long-poll.
        st, q, _ = self.c.admin("POST", "/runners/pc-moved/jobs/raw/sync", base=self.a)
        self.assertEqual(st, 202, q)
        fresh.join(10)
        self.assertFalse(fresh.is_alive())
        self.assertEqual([c["run_id"] for c in fresh.answer[1]["commands"]], [q["run_id"]])

    def waiting(self, base):
        st, status, _ = self.c.admin("GET", "/status", base=base)
        return status.get("agents_long_polling", 0) if st == 200 else 0

    def test_3_one_instance_holds_the_janitor_lease(self):
        holder = wait_for("janitor lease taken", self.janitor_holder_url, 15)
        self.assertIn(holder, (self.a, self.b))
        count = self.c.pg.psql("datasync", "SELECT COUNT(*) FROM leases WHERE name = 'janitor'")
        self.assertEqual(count, "1")
        time.sleep(2.5)   # a few janitor intervals: the lease does not flap between instances
        self.assertEqual(self.janitor_holder_url(), holder)

    def test_4_sigkill_of_one_instance_mid_sync_loses_nothing(self):
        src = os.path.join(self.c.root, "source")
        paths = make_tree(src, n_small=400, big_mib=6)
        # ~5 s of uploads at 1.5 MB/s, so the kill lands in the middle of the run.
        self.c.enroll("pc-lab", extra=("--bwlimit", "1500000"))
        self.c.cli("jobs", "add", "pc-lab", "raw", "--source", src, "--dest", "lab/raw",
                   "--settle", "0s", "--interval", "1h")
        dest = os.path.join(self.c.share, "lab", "raw")

        # The agent runs a new job once by itself: wait until that run has reported a first batch
        # of uploads (so the run's rows are written through both instances).
        def running_run():
            runs = [r for r in self.c.cli_json("runs", "pc-lab", "raw") if r["state"] == "running"]
            return runs[0] if runs and 0 < runs[0]["files_uploaded"] < len(paths) else None
        run = wait_for("a run half done", running_run, 60, 0.05)
        victim = self.janitor_holder_url() or self.a
        survivor = self.b if victim == self.a else self.a
        self.procs[victim].send_signal(signal.SIGKILL)
        self.procs[victim].wait(10)
        t_kill = time.monotonic()
        print(f"\nkilled {victim} during run {run['run_id']}; {survivor} carries on")

        # No run lost: it completes through the survivor (the agent retries, replaying its journal).
        def finished():
            try:
                r = json.loads(self.c.cli("run", run["run_id"], "--json", check=False).stdout or "{}")
            except ValueError:
                return None
            return r if r.get("state") not in (None, "running") else None
        done = wait_for("the run to finish", finished, 120, 0.25)
        print(f"run {run['run_id']} {done['state']} {time.monotonic() - t_kill:.1f} s after the kill")
        self.assertEqual(done["state"], "succeeded", done)

        # Storage and index hold every file exactly once, with the right hashes.
        rows = self.c.cli_json("files", "pc-lab", "raw", "--all")
        self.assertEqual(sorted(r["path"] for r in rows), paths)
        by_path = {r["path"]: r for r in rows}
        for rel in paths[::20] + ["big/large run 1.bin", "empty/zero-byte.dat"]:
            full = os.path.join(src, rel)
            self.assertEqual(by_path[rel]["sha256"], sha256_file(full), rel)
            self.assertEqual(sha256_file(os.path.join(dest, rel)), sha256_file(full), rel)
        dup = self.c.pg.psql("datasync", """
            SELECT COUNT(*) - COUNT(DISTINCT (f.job_id, f.path)) FROM synced_files f
            JOIN jobs j ON j.id = f.job_id WHERE j.name = 'raw'""")
        self.assertEqual(dup, "0")
        self.assertEqual(self.c.pg.psql("datasync", """
            SELECT COUNT(*) FROM synced_files f JOIN jobs j ON j.id = f.job_id
            JOIN runners r ON r.id = j.runner_id WHERE r.name = 'pc-lab'"""), str(len(paths)))
        runs = self.c.cli_json("runs", "pc-lab", "raw", "--limit", "1000")
        self.assertEqual(sum(r["files_uploaded"] for r in runs), len(paths), runs)
        self.assertEqual([k for k in os.listdir(dest) if k.startswith(".dstmp-")], [])

        # The survivor took over the housekeeping once the dead instance's lease expired.
        wait_for("janitor lease on the survivor", lambda: self.janitor_holder_url() == survivor, 30)

        # And carries on: `sync --wait` through nginx, a no-op, then three new files.
        p = self.cli_retry("sync", "pc-lab", "raw", "--wait", "--json")
        again = json.loads(p.stdout)
        self.assertEqual((again["state"], again["files_uploaded"]), ("succeeded", 0))
        past = time.time() - 60
        for i in range(3):
            new = os.path.join(src, "after-kill", f"new_{i}.dat")
            os.makedirs(os.path.dirname(new), exist_ok=True)
            with open(new, "wb") as f:
                f.write(os.urandom(1000))
            os.utime(new, (past, past))
        p = self.cli_retry("sync", "pc-lab", "raw", "--wait", "--json")
        self.assertEqual(json.loads(p.stdout)["files_uploaded"], 3)
        st, _, _ = self.c.http("GET", "/readyz")
        self.assertEqual(st, 200)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args, rest = ap.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], "-v", *rest])
