"""End-to-end: enrollment and runner keys against a real datasync-server and a real agent
(docs/security.md, "Enrollment and runner keys").

- A second anonymous registration under a pending runner's name no longer takes the enrollment
  over: the operator sees both (host, address, time), approving without choosing is refused, and
  approving the first hands the key to the first (the real agent comes online) while the second's
  poll is denied. A rejected name is freed by deleting the runner.
- A copy of a runner's key used after a key rotation (the retired key, past the grace) means two
  parties held it: the runner is quarantined, both keys are refused with a clear message, the
  audit log and server.log record it with the key's fingerprint (never the key).

Each test failed against the server before issue 17 (run it with --bin-dir pointing at an older
build to see)."""

import argparse
import hashlib
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_for  # noqa: E402

BIN_DIR = None
THIEF = {"X-Forwarded-For": "203.0.113.66"}


class EnrollmentSecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # --trust-proxy: the "thief" speaks from its own X-Forwarded-For address.
        cls.c = Cluster(BIN_DIR, server_extra=["--trust-proxy", "--retired-key-grace", "0s"])

    @classmethod
    def tearDownClass(cls):
        cls.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")

    def register(self, name, hostname, headers=None):
        st, reg, _ = self.c.http("POST", "/api/v1/agent/register",
                                 {"name": name, "hostname": hostname, "os": "linux"}, headers=headers)
        self.assertEqual(st, 202, reg)
        return reg

    def poll(self, reg, headers=None):
        return self.c.http("GET", "/api/v1/agent/enrollment/" + reg["enrollment_id"],
                           token=reg["enrollment_secret"], headers=headers)

    def audit_details(self, action):
        st, audit, _ = self.c.admin("GET", "/audit")
        self.assertEqual(st, 200, audit)
        return [e["details"] for e in audit["items"] if e["action"] == action]

    def test_second_registration_does_not_take_a_pending_enrollment_over(self):
        self.c.start_agent("lab-pc")
        wait_for("lab-pc pending", lambda: len((self.c.runner("lab-pc") or {})
                                               .get("pending_enrollments", [])) == 1)
        thief = self.register("lab-pc", "evil-laptop", THIEF)

        runner = self.c.runner("lab-pc")
        waiting = runner["pending_enrollments"]
        self.assertEqual(len(waiting), 2, runner)
        legit_id = waiting[0]["id"]
        self.assertNotEqual(legit_id, thief["enrollment_id"])
        self.assertEqual(waiting[1]["id"], thief["enrollment_id"])
        self.assertEqual(waiting[1]["address"], "203.0.113.66")
        self.assertEqual(waiting[1]["hostname"], "evil-laptop")
        self.assertEqual(waiting[0]["address"], "127.0.0.1")
        listed = self.c.cli("runners", "list").stdout
        self.assertIn("203.0.113.66", listed)
        self.assertIn(legit_id, listed)

        # Approving without choosing: 409 naming both, nothing changes.
        st, problem, _ = self.c.admin("POST", "/runners/lab-pc/approve")
        self.assertEqual(st, 409, problem)
        self.assertIn(legit_id, problem["detail"])
        self.assertIn(thief["enrollment_id"], problem["detail"])
        p = self.c.cli("runners", "approve", "lab-pc", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(thief["enrollment_id"], p.stderr)
        self.assertEqual(self.c.runner("lab-pc")["status"], "pending")

        self.c.cli("runners", "approve", "lab-pc", "--enrollment", legit_id)
        wait_for("lab-pc online", lambda: (self.c.runner("lab-pc") or {}).get("online"))
        st, body, _ = self.poll(thief, THIEF)
        self.assertEqual(st, 403, body)
        self.assertNotIn("api_key", body or {})
        self.assertIn(legit_id, [d.get("enrollment") for d in
                                 self.audit_details("POST /runners/lab-pc/approve")])

    def test_deleting_a_rejected_runner_frees_its_name(self):
        self.register("burnt-pc", "a")
        self.c.cli("runners", "reject", "burnt-pc")
        st, body, _ = self.c.http("POST", "/api/v1/agent/register", {"name": "burnt-pc"})
        self.assertEqual(st, 409, body)
        self.c.cli("runners", "delete", "burnt-pc")
        self.assertIsNone(self.c.runner("burnt-pc"))
        self.register("burnt-pc", "b")
        self.assertEqual(self.c.runner("burnt-pc")["status"], "pending")
        self.assertTrue(self.audit_details("DELETE /runners/burnt-pc"))

    def test_copy_of_a_key_used_after_rotation_quarantines_the_runner(self):
        key, _ = self.c.fake_agent_key("rot-pc")
        stolen = key  # the thief's copy
        hb = {"agent_version": "1", "state": "idle"}
        st, body, _ = self.c.admin("POST", "/runners/rot-pc/rotate-key")
        self.assertEqual(st, 202, body)
        st, body, _ = self.c.http("POST", "/api/v1/agent/heartbeat", hb, token=key)
        self.assertEqual(st, 200, body)
        new_key = body["new_api_key"]
        st, body, _ = self.c.http("POST", "/api/v1/agent/heartbeat", hb, token=stolen, headers=THIEF)
        self.assertEqual(st, 200, body)
        self.assertNotIn("new_api_key", body)  # handed out once
        st, body, _ = self.c.http("POST", "/api/v1/agent/heartbeat", hb, token=new_key)
        self.assertEqual(st, 200, body)  # the legitimate agent's first use promotes it
        time.sleep(0.05)

        st, body, _ = self.c.http("POST", "/api/v1/agent/heartbeat", hb, token=stolen, headers=THIEF)
        self.assertEqual(st, 401, body)
        self.assertIn("quarantined", body["detail"])
        st, body, _ = self.c.http("GET", "/api/v1/agent/jobs", token=new_key)
        self.assertEqual(st, 401, body)
        self.assertIn("quarantined", body["detail"])
        self.assertEqual(self.c.runner("rot-pc")["status"], "quarantined")

        # The fingerprint wrong keys are logged with (throttles.h, CredentialFingerprint).
        fingerprint = hashlib.sha256(b"datasync log fingerprint\n" + stolen.encode()).hexdigest()[:8]
        entries = self.audit_details("quarantine runner")
        self.assertTrue(any(d.get("fingerprint") == fingerprint for d in entries), entries)
        with open(os.path.join(self.c.root, "server.log"), errors="replace") as f:
            log = f.read()
        self.assertIn(f"runner 'rot-pc' quarantined", log)
        self.assertIn(fingerprint, log)
        self.assertNotIn(stolen, log)
        st, audit, _ = self.c.admin("GET", "/audit")
        self.assertNotIn(stolen, str(audit))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args, rest = ap.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], "-v", *rest])
