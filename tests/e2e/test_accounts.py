"""End-to-end: operator accounts over the admin API (no browser): session cookie attributes, CSRF,
viewer refusals, lock-out with 429 + Retry-After, sign-out, idle expiry, API tokens made and
revoked by a user, the audit log, file search with q=, and runner key rotation (raw protocol and
a real agent that keeps syncing with its new key)."""

import argparse
import os
import json
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, wait_for  # noqa: E402

BIN_DIR = None


class Browser:
    """A cookie jar of one: the session cookie, as a browser would keep it."""

    def __init__(self, c, headers=None):
        self.c = c
        self.cookie = None
        self.csrf = None
        self.headers = dict(headers or {})

    def login(self, name, password):
        st, body, h = self.c.http("POST", "/api/v1/admin/session", {"name": name, "password": password},
                                  headers=self.headers)
        if st == 200:
            self.set_cookie = h.get("Set-Cookie", "")
            self.cookie = self.set_cookie.split(";")[0]
            self.csrf = body["csrf_token"]
        return st, body, h

    def req(self, method, path, body=None, csrf=True, extra=None):
        headers = dict(self.headers)
        if self.cookie:
            headers["Cookie"] = self.cookie
        if csrf and self.csrf and method != "GET":
            headers["X-CSRF-Token"] = self.csrf
        headers.update(extra or {})
        return self.c.http(method, "/api/v1/admin" + path, body, headers=headers)


class AccountsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BIN_DIR, behind_proxy=True)  # plain HTTP + --trust-proxy: X-Forwarded-* count
        cls.c.add_user("ann", "admin", "ann-secret-pw")
        cls.c.add_user("vic", "viewer", "vic-secret-pw")
        cls.c.add_user("lou", "admin", "lou-secret-pw")

    @classmethod
    def tearDownClass(cls):
        cls.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")

    def test_session_cookie_and_csrf(self):
        b = Browser(self.c)
        st, who, _ = b.login("ann", "ann-secret-pw")
        self.assertEqual(st, 200)
        self.assertEqual(who["role"], "admin")
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/"):
            self.assertIn(attr, b.set_cookie)
        self.assertNotIn("Secure", b.set_cookie)  # plain HTTP, no proxy saying https
        st, me, _ = b.req("GET", "/session")
        self.assertEqual((st, me["actor"], me["csrf_token"]), (200, "user:ann", b.csrf))
        st, body, _ = b.req("POST", "/tokens", {"name": "nocsrf"}, csrf=False)
        self.assertEqual(st, 403, body)
        self.assertIn("CSRF", body["detail"])
        st, body, _ = b.req("POST", "/tokens", {"name": "nocsrf"}, extra={"X-CSRF-Token": "x" * 43})
        self.assertEqual(st, 403)
        st, tok, _ = b.req("POST", "/tokens", {"name": "cli-ann", "role": "viewer"})
        self.assertEqual(st, 201, tok)
        self.assertEqual(tok["created_by"], "user:ann")
        # The new token works, as a viewer; revoked, it does not.
        st, _, _ = self.c.http("GET", "/api/v1/admin/status", token=tok["token"])
        self.assertEqual(st, 200)
        st, _, _ = self.c.http("POST", "/api/v1/admin/reconcile", {}, token=tok["token"])
        self.assertEqual(st, 403)
        st, _, _ = b.req("DELETE", f"/tokens/{tok['id']}")
        self.assertEqual(st, 200)
        st, _, _ = self.c.http("GET", "/api/v1/admin/status", token=tok["token"])
        self.assertEqual(st, 401)
        # Sign out: the cookie is worthless afterwards.
        st, _, h = b.req("DELETE", "/session")
        self.assertEqual(st, 200)
        self.assertIn("Max-Age=0", h.get("Set-Cookie", ""))
        st, _, _ = b.req("GET", "/status")
        self.assertEqual(st, 401)
        # The audit log has the refusals and the changes, with actors.
        st, audit, _ = self.c.admin("GET", "/audit?actor=user:ann&limit=100")
        actions = [(a["action"], a["result"]) for a in audit["items"]]
        self.assertIn(("POST /tokens", "403"), actions)
        self.assertIn(("POST /tokens", "201"), actions)
        self.assertIn((f"DELETE /tokens/{tok['id']}", "200"), actions)
        self.assertIn(("DELETE /session", "200"), actions)
        for a in audit["items"]:
            self.assertNotIn("token", a["details"].get("body", {}))

    def test_secure_cookie_behind_https_proxy(self):
        b = Browser(self.c, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"})
        st, _, _ = b.login("ann", "ann-secret-pw")
        self.assertEqual(st, 200)
        self.assertIn("Secure", b.set_cookie)
        st, audit, _ = self.c.admin("GET", "/audit?q=login&limit=5")
        self.assertEqual(audit["items"][0]["source_ip"], "203.0.113.7")

    def test_viewer_cannot_change_anything(self):
        b = Browser(self.c)
        self.assertEqual(b.login("vic", "vic-secret-pw")[0], 200)
        self.assertEqual(b.req("GET", "/runners")[0], 200)
        st, body, _ = b.req("POST", "/reconcile", {})
        self.assertEqual(st, 403, body)
        self.assertIn("viewer", body["detail"])
        self.assertEqual(b.req("GET", "/users")[0], 403)
        self.assertEqual(b.req("DELETE", "/session")[0], 200)  # but may sign out

    def test_lockout_with_back_off(self):
        b = Browser(self.c, headers={"X-Forwarded-For": "198.51.100.9"})
        for _ in range(5):
            self.assertEqual(b.login("lou", "wrong-password")[0], 401)
        st, body, h = b.login("lou", "wrong-password")
        self.assertIn(st, (401, 429))  # the 6th failure sets the lock
        st, body, h = b.login("lou", "lou-secret-pw")
        self.assertEqual(st, 429, body)  # locked: even the right password waits
        self.assertGreaterEqual(int(h["Retry-After"]), 1)
        # Another user from another address is not affected.
        other = Browser(self.c, headers={"X-Forwarded-For": "198.51.100.10"})
        self.assertEqual(other.login("ann", "ann-secret-pw")[0], 200)
        wait_for("lock to pass", lambda: b.login("lou", "lou-secret-pw")[0] == 200, timeout=30, interval=0.5)
        self.assertEqual(b.login("nobody", "whatever-pw")[0], 401)

    def test_files_search_and_key_rotation(self):
        c = self.c
        src = os.path.join(c.root, "rot-src")
        os.makedirs(os.path.join(src, "a"))
        os.makedirs(os.path.join(src, "b"))
        for i in range(30):
            with open(os.path.join(src, "a" if i % 2 else "b", f"f{i:02d}.dat"), "wb") as f:
                f.write(os.urandom(100 + i))
        c.enroll("pc-rot")
        c.cli("jobs", "add", "pc-rot", "raw", "--source", src, "--dest", "rot/raw", "--settle", "0s",
              "--interval", "1h")
        p = c.cli("sync", "pc-rot", "raw", "--wait", "--json")
        st, files, _ = c.admin("GET", "/runners/pc-rot/jobs/raw/files?q=a/&match=prefix&limit=10")
        self.assertEqual(st, 200)
        self.assertEqual(files["total"], 30)
        self.assertEqual(len(files["files"]), 10)
        self.assertTrue(all(f["path"].startswith("a/") for f in files["files"]))
        st, more, _ = c.admin("GET", f"/runners/pc-rot/jobs/raw/files?q=a/&match=prefix&limit=10&after={files['next_after']}")
        self.assertEqual(len(more["files"]), 5)
        st, sub, _ = c.admin("GET", "/runners/pc-rot/jobs/raw/files?q=f1")
        self.assertEqual(sorted(f["path"] for f in sub["files"]), sorted(
            f"{'a' if i % 2 else 'b'}/f{i:02d}.dat" for i in range(10, 20)))

        # Rotation with a real agent: it picks the new key up from its heartbeat and goes on.
        st, body, _ = c.admin("POST", "/runners/pc-rot/rotate-key")
        self.assertEqual(st, 202, body)
        log = os.path.join(c.root, "server.log")
        def rotated():
            with open(log, errors="replace") as f:
                return "pc-rot' now uses its rotated API key" in f.read()
        wait_for("rotated key in use", rotated, timeout=30)
        with open(os.path.join(src, "a", "new.dat"), "wb") as f:
            f.write(b"after rotation")
        run = json.loads(c.cli("sync", "pc-rot", "raw", "--wait", "--json").stdout)
        self.assertEqual((run["state"], run["files_uploaded"]), ("succeeded", 1))
        self.assertTrue(c.runner("pc-rot")["online"])

        # The protocol, step by step, with a raw client.
        key, _ = c.fake_agent_key("raw-rot")
        hb = {"agent_version": "t", "state": "idle", "current_run": "", "jobs_version": -1}
        st, out, _ = c.http("POST", "/api/v1/agent/heartbeat", hb, token=key)
        self.assertNotIn("new_api_key", out)
        self.assertEqual(c.admin("POST", "/runners/raw-rot/rotate-key")[0], 202)
        st, out, _ = c.http("POST", "/api/v1/agent/heartbeat", hb, token=key)
        new1 = out["new_api_key"]
        st, out, _ = c.http("POST", "/api/v1/agent/heartbeat", hb, token=key)  # handed out once
        self.assertNotIn("new_api_key", out)
        # The answer was "lost": the operator rotates again, which discards the unused key.
        self.assertEqual(c.admin("POST", "/runners/raw-rot/rotate-key")[0], 202)
        st, out, _ = c.http("POST", "/api/v1/agent/heartbeat", hb, token=key)
        new2 = out["new_api_key"]
        self.assertNotEqual(new1, new2)
        self.assertEqual(c.http("POST", "/api/v1/agent/heartbeat", hb, token=new1)[0], 401)  # superseded
        st, out, _ = c.http("POST", "/api/v1/agent/heartbeat", hb, token=new2)
        self.assertEqual(st, 200)
        self.assertNotIn("new_api_key", out)
        # The old key is retired: accepted only for requests in flight (--retired-key-grace, 10s);
        # used later it quarantines the runner (e2e_enrollment_security).
        self.assertEqual(c.http("POST", "/api/v1/agent/heartbeat", hb, token=key)[0], 200)


class SessionExpiryTest(unittest.TestCase):
    def test_idle_session_ends(self):
        c = Cluster(BIN_DIR, server_extra=["--session-idle", "2s"])
        try:
            c.add_user("ann", "admin", "ann-secret-pw")
            b = Browser(c)
            self.assertEqual(b.login("ann", "ann-secret-pw")[0], 200)
            self.assertEqual(b.req("GET", "/status")[0], 200)
            time.sleep(3)
            st, body, _ = b.req("GET", "/status")
            self.assertEqual(st, 401)
            self.assertIn("expired", body["detail"])
        finally:
            c.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args, rest = ap.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], "-v", *rest])
