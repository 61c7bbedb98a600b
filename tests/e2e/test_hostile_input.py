"""End-to-end: hostile input against a real datasync-server (docs/security.md, "Hostile input:
size, depth and rate"). Deeply nested JSON from an approved agent is a 400 and the server stays
up; anonymous registration, wrong keys and sign-ins are limited per source address with 429 +
Retry-After; login CSRF is refused; an anonymous caller cannot lock the admin out; a job cannot
write into Releases/. Each test failed against the server before issue 17 (run it with
--bin-dir pointing at an older build to see)."""

import argparse
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster  # noqa: E402

BIN_DIR = None


class HostileInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # --trust-proxy: each test speaks from its own X-Forwarded-For address.
        cls.c = Cluster(BIN_DIR, server_extra=["--trust-proxy"])
        cls.c.add_user("ann", "admin", "ann-secret-pw")
        cls.key, _ = cls.c.fake_agent_key("pc-hostile")

    @classmethod
    def tearDownClass(cls):
        cls.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")

    def alive(self):
        st, body, _ = self.c.http("GET", "/healthz")
        self.assertEqual(st, 200, body)

    def test_deeply_nested_log_fields_are_refused_and_the_server_stays_up(self):
        deep = '{"a":' * 100000 + "1" + "}" * 100000
        raw = ('{"records":[{"seq":1,"time_ms":1,"level":"info","message":"m","fields":' + deep
               + "}]}").encode()
        st, body, _ = self.c.http("POST", "/api/v1/agent/logs", raw=raw, token=self.key)
        self.assertEqual(st, 400, body)
        self.assertIn("nested deeper than 32", body["detail"])
        self.alive()
        st, body, _ = self.c.http("POST", "/api/v1/agent/logs", token=self.key, body={
            "records": [{"seq": 2, "time_ms": 1, "level": "info", "message": "fine",
                         "fields": {"file": "a.dat"}}]})
        self.assertEqual(st, 200, body)
        # Admin JSON that is stored (an alert rule's params) is bounded the same way.
        raw = ('{"name":"deep","kind":"runner_offline","params":' + "[" * 100000 + "]" * 100000
               + "}").encode()
        st, body, _ = self.c.http("POST", "/api/v1/admin/alert-rules", raw=raw, token=self.c.token)
        self.assertEqual(st, 400, body)
        self.alive()

    def test_registrations_are_rate_limited_per_address(self):
        xff = {"X-Forwarded-For": "203.0.113.7"}
        codes = [self.c.http("POST", "/api/v1/agent/register", {"name": f"flood-{i}"}, headers=xff)[0]
                 for i in range(12)]
        self.assertEqual(codes[:10], [202] * 10)
        st, body, h = self.c.http("POST", "/api/v1/agent/register", {"name": "flood-x"}, headers=xff)
        self.assertEqual(st, 429, body)
        self.assertGreaterEqual(int(h["Retry-After"]), 1)
        self.assertEqual(self.c.http("POST", "/api/v1/agent/register", {"name": "other"},
                                     headers={"X-Forwarded-For": "203.0.113.8"})[0], 202)

    def test_wrong_agent_keys_are_throttled(self):
        xff = {"X-Forwarded-For": "198.51.100.44"}
        for i in range(30):
            st, _, _ = self.c.http("GET", "/api/v1/agent/jobs", token=f"dsk_guess{i}", headers=xff)
            self.assertEqual(st, 401)
        st, body, h = self.c.http("GET", "/api/v1/agent/jobs", token="dsk_guess", headers=xff)
        self.assertEqual(st, 429, body)
        self.assertIn("Retry-After", h)
        self.assertEqual(self.c.http("GET", "/api/v1/agent/jobs", token=self.key)[0], 200)
        with open(os.path.join(self.c.root, "server.log"), errors="replace") as f:
            log = f.read()
        self.assertIn("auth: wrong agent key from 198.51.100.44", log)
        self.assertNotIn("dsk_guess", log)

    def test_login_csrf_is_refused(self):
        body = b'{"name":"ann","password":"ann-secret-pw"}'
        xff = {"X-Forwarded-For": "192.0.2.50"}
        st, _, _ = self.c.http("POST", "/api/v1/admin/session", raw=body,
                               headers={**xff, "Content-Type": "text/plain"})
        self.assertEqual(st, 403)
        st, _, _ = self.c.http("POST", "/api/v1/admin/session", raw=body,
                               headers={**xff, "Origin": "https://evil.example"})
        self.assertEqual(st, 403)
        st, _, _ = self.c.http("POST", "/api/v1/admin/session", raw=body, headers=xff)
        self.assertEqual(st, 200)

    def test_an_anonymous_caller_cannot_lock_the_admin_out(self):
        evil = {"X-Forwarded-For": "192.0.2.66"}
        for _ in range(8):
            self.c.http("POST", "/api/v1/admin/session", {"name": "ann", "password": "guess-guess"},
                        headers=evil)
        st, _, _ = self.c.http("POST", "/api/v1/admin/session",
                               {"name": "ann", "password": "ann-secret-pw"},
                               headers={"X-Forwarded-For": "192.0.2.67"})
        self.assertEqual(st, 200)

    def test_releases_in_any_case_is_reserved(self):
        for dest in ("Releases/x", "RELEASES", "releases./y"):
            st, body, _ = self.c.admin("POST", "/runners/pc-hostile/jobs/j-" + str(abs(hash(dest))),
                                       {"source": "/tmp", "dest_prefix": dest, "interval_ms": 60000})
            self.assertEqual(st, 400, (dest, body))


    def test_control_characters_reach_neither_the_log_nor_a_terminal_raw(self):
        # A host name and a log line that would clear the operator's screen, retitle the window,
        # ring the bell and forge a log line if printed as they are.
        hostile = "lab\x1b[2J\x1b]0;owned\x07\r\n2026-01-01 info forged line\x9b31m"
        st, reg, _ = self.c.http("POST", "/api/v1/agent/register",
                                 {"name": "pc-esc", "hostname": hostile},
                                 headers={"X-Forwarded-For": "203.0.113.60"})
        self.assertEqual(st, 202, reg)
        self.c.cli("runners", "approve", "pc-esc")
        st, es, _ = self.c.http("GET", "/api/v1/agent/enrollment/" + reg["enrollment_id"],
                                token=reg["enrollment_secret"])
        self.assertEqual(st, 200, es)
        st, body, _ = self.c.http("POST", "/api/v1/agent/logs", token=es["api_key"], body={
            "records": [{"seq": 1, "time_ms": 1, "level": "warn", "message": "done " + hostile,
                         "fields": {"file": hostile}}]})
        self.assertEqual(st, 200, body)
        outputs = {"runners list": self.c.cli("runners", "list").stdout,
                   "runners show": self.c.cli("runners", "show", "pc-esc").stdout,
                   "logs": self.c.cli("logs", "pc-esc").stdout}
        self.assertIn("forged line", outputs["logs"])  # the record is there, escaped
        with open(os.path.join(self.c.root, "server.log"), encoding="utf-8", errors="replace") as f:
            outputs["server.log"] = f.read()
        self.assertIn("forged line", outputs["server.log"])
        for where, text in outputs.items():
            for raw in ("\x1b", "\x07", "\r", "\x9b"):
                self.assertNotIn(raw, text, f"{raw!r} raw in {where}")
        self.assertNotIn("\n2026-01-01 info forged line", outputs["server.log"])

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args, rest = ap.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], "-v", *rest])
