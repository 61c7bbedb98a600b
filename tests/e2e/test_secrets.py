"""End-to-end: no secret leaks. One full session on Azure Blob storage (a real Azurite) — users
signing in (and mistyping a password), an API token, a real agent enrolled and syncing with
per-blob SAS, a raw runner whose key is rotated, alerts sent to an SMTP channel with a password
and a webhook whose URL holds a token (and a test sent to one that fails), a reconcile and a scrub — then every log file, every
admin GET route a viewer may read (and the audit an admin reads), /metrics and the probes are
searched for every key, token, password, session id and SAS signature the session used: none may
appear."""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import wait_for  # noqa: E402
from test_accounts import Browser  # noqa: E402
from test_azure_sync import ACCOUNT, CONTAINER, KEY, Azurite, AzureCluster  # noqa: E402
from test_observability import Receiver, SmtpReceiver  # noqa: E402

BIN_DIR = None
SMTP_PASSWORD = "smtp-Pa55-never-shown"
WEBHOOK_TOKEN = "T0kenInTheWebhookPath-never-shown"
WEBHOOK_QUERY_TOKEN = "q-t0ken-never-shown"
ADMIN_PASSWORD = "ann-Secret-Pw-1"
VIEWER_PASSWORD = "vic-Secret-Pw-2"
TYPO_PASSWORD = "ann-Secret-Pw-TYPO"
# A SAS signature in any form: sig=<base64 or its percent-encoding>.
SAS_SIG = re.compile(r"sig=[A-Za-z0-9%+/=]{16,}")


def first(answer):
    """The one item of a listing answer (reconcile and scrub answer a list of what they queued)."""
    return answer[0] if isinstance(answer, list) else answer


class SecretsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="datasync-e2e-secrets-")
        cls.az = Azurite(cls.tmp)
        cls.c = None
        cls.secrets = {"the storage account key": KEY, "the SMTP password": SMTP_PASSWORD,
                       "the webhook path token": WEBHOOK_TOKEN,
                       "the webhook query token": WEBHOOK_QUERY_TOKEN,
                       "an admin's password": ADMIN_PASSWORD, "a viewer's password": VIEWER_PASSWORD,
                       "a mistyped password": TYPO_PASSWORD}
        try:
            cls.az.create_container()
            key_file = os.path.join(cls.tmp, "storage.key")
            with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(KEY + "\n")
            storage = f"azblob://{ACCOUNT}/{CONTAINER}?endpoint={cls.az.endpoint}"
            cls.c = AzureCluster(BIN_DIR, ["--storage", storage, "--storage-key-file", key_file],
                                 server_extra=["--allow-loopback-webhooks", "--alert-interval", "1s"])
            cls.session()
        except BaseException:
            cls.tearDownClass()  # unittest does not call it when setUpClass fails
            raise

    @classmethod
    def tearDownClass(cls):
        keep = os.environ.get("DATASYNC_KEEP_E2E") == "1"
        try:
            if cls.c is not None:
                cls.c.close(keep=keep)
        finally:
            cls.az.stop()
            cls.az.log.close()
            if not keep:
                shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---- the session ---------------------------------------------------------------------------
    @classmethod
    def session(cls):
        c = cls.c
        cls.secrets["the bootstrap admin token"] = c.token
        c.add_user("ann", "admin", ADMIN_PASSWORD)
        c.add_user("vic", "viewer", VIEWER_PASSWORD)
        cls.admin_browser, cls.viewer = Browser(c), Browser(c)
        assert Browser(c).login("ann", TYPO_PASSWORD)[0] == 401
        for b, (name, pw) in ((cls.admin_browser, ("ann", ADMIN_PASSWORD)),
                              (cls.viewer, ("vic", VIEWER_PASSWORD))):
            st, body, _ = b.login(name, pw)
            assert st == 200, (st, body)
            cls.secrets[f"{name}'s session cookie"] = b.cookie.split("=", 1)[1]
            cls.secrets[f"{name}'s CSRF token"] = b.csrf
        st, tok, _ = cls.admin_browser.req("POST", "/tokens", {"name": "ci", "role": "viewer"})
        assert st == 201, (st, tok)
        cls.secrets["a created API token"] = tok["token"]

        # A real agent syncing through per-blob SAS, a reconcile and a scrub.
        src = os.path.join(c.root, "source")
        os.makedirs(src)
        for i in range(12):
            with open(os.path.join(src, f"s{i:02d}.dat"), "wb") as f:
                f.write(os.urandom(2000 + i))
        c.enroll("pc-sec")
        c.cli("jobs", "add", "pc-sec", "raw", "--source", src, "--dest", "sec/raw", "--settle", "0s",
              "--interval", "1h")
        run = json.loads(c.cli("sync", "pc-sec", "raw", "--wait", "--json").stdout)
        assert run["state"] == "succeeded", run
        cls.run_id = run["run_id"]
        cls.reconcile = first(json.loads(c.cli("reconcile", "pc-sec", "raw", "--wait", "--json").stdout))
        cls.scrub = first(json.loads(c.cli("scrub", "pc-sec", "raw", "--wait", "--json").stdout))

        # A raw runner: its enrollment secret, its key, and the key it is rotated to.
        key, reg = c.fake_agent_key("raw-sec")
        cls.secrets["an enrollment secret"] = reg["enrollment_secret"]
        cls.secrets["a runner's API key"] = key
        hb = {"agent_version": "t", "state": "idle", "current_run": "", "jobs_version": -1}
        assert c.admin("POST", "/runners/raw-sec/rotate-key")[0] == 202
        st, out, _ = c.http("POST", "/api/v1/agent/heartbeat", hb, token=key)
        assert st == 200 and out.get("new_api_key"), (st, out)
        cls.secrets["a rotated API key"] = out["new_api_key"]
        st, _, _ = c.http("POST", "/api/v1/agent/heartbeat", hb, token=out["new_api_key"])
        assert st == 200

        # Alerts to an SMTP channel with a password and to a webhook with tokens in its URL.
        cls.smtp, cls.hook = SmtpReceiver(), Receiver()
        try:
            os.environ.update(DATASYNC_SMTP_USER="alerts", DATASYNC_SMTP_PASSWORD=SMTP_PASSWORD)
            c.cli("alerts", "channels", "add", "mail", "--smtp", cls.smtp.url, "--from", "ds@lab.test",
                  "--to", "ops@lab.test")
        finally:
            os.environ.pop("DATASYNC_SMTP_USER", None)
            os.environ.pop("DATASYNC_SMTP_PASSWORD", None)
        hook_url = cls.hook.url.replace("/hook", f"/hooks/{WEBHOOK_TOKEN}?token={WEBHOOK_QUERY_TOKEN}")
        c.cli("alerts", "channels", "add", "hook", "--webhook", hook_url)
        # A failing delivery: its detail (with the URL) goes to the server log, redacted.
        c.cli("alerts", "channels", "add", "dead", "--webhook",
              f"http://127.0.0.1:1/hooks/{WEBHOOK_TOKEN}?token={WEBHOOK_QUERY_TOKEN}")
        failed = c.cli("alerts", "channels", "test", "dead", check=False)
        assert failed.returncode != 0 and "webhook delivery failed" in failed.stderr, failed
        c.cli("alerts", "rules", "add", "always-critical", "--kind", "disk_free_low", "--severity",
              "critical", "--param", "percent=101", "--scope", "job:pc-sec/raw")
        wait_for("a mail sent", lambda: cls.smtp.subjects("always-critical"), timeout=60)
        wait_for("a webhook sent", lambda: cls.hook.received, timeout=60)
        cls.alerts = c.cli_json("alerts")

    # ---- what may be read afterwards -----------------------------------------------------------
    def viewer_routes(self):
        run, job = self.run_id, "/runners/pc-sec/jobs/raw"
        routes = ["/runners", "/runners/pc-sec", "/runners/raw-sec", "/jobs", job + "/files",
                  "/runs", f"/runs/{run}", f"/runs/{run}/files", "/logs", "/logs?runner=pc-sec",
                  "/alerts", "/alert-rules", "/notification-channels", "/reconciles",
                  "/scrubs", "/scrubs/status", "/releases", "/session", "/stats/hourly", "/status",
                  "/tokens", "/users"]
        routes += [f"/alerts/{a['id']}" for a in self.alerts]
        if self.reconcile.get("id") is not None:
            routes.append(f"/reconciles/{self.reconcile['id']}")
        if self.scrub.get("id") is not None:
            routes.append(f"/scrubs/{self.scrub['id']}")
        return routes

    def readable_texts(self):
        """(where, text) of everything the search covers."""
        out = []
        for route in self.viewer_routes():
            st, body, _ = self.viewer.req("GET", route)
            self.assertIn(st, (200, 403), route)  # 403: a viewer may not read it at all
            out.append(("viewer GET " + route, json.dumps(body)))
        st, audit, _ = self.admin_browser.req("GET", "/audit")
        self.assertEqual(st, 200)
        self.assertGreater(len(audit["items"]), 5)  # the session's admin actions are there
        out.append(("admin GET /audit", json.dumps(audit)))
        for path in ("/metrics", "/healthz", "/readyz"):
            with urllib.request.urlopen(self.c.url + path, timeout=30) as r:
                out.append((path, r.read().decode(errors="replace")))
        for log in self.c.logs:
            log.flush()
        for dirpath, _, files in os.walk(self.c.root):
            for name in files:
                if name.endswith(".log"):
                    with open(os.path.join(dirpath, name), errors="replace") as f:
                        out.append((os.path.relpath(os.path.join(dirpath, name), self.c.root), f.read()))
        return out

    def test_the_session_happened(self):
        self.assertTrue(self.smtp.subjects("always-critical"))
        self.assertTrue(self.hook.received)
        self.assertGreaterEqual(len(self.c.cli_json("files", "pc-sec", "raw", "--all")), 12)

    def test_no_secret_appears_in_any_log_or_readable_answer(self):
        texts = self.readable_texts()
        self.assertTrue(any(where == "server.log" for where, _ in texts), [w for w, _ in texts])
        leaks = []
        for where, text in texts:
            for what, secret in self.secrets.items():
                # GET /session hands a session its own CSRF token back (the dashboard sends it).
                if where == "viewer GET /session" and what == "vic's CSRF token":
                    continue
                if secret and secret in text:
                    leaks.append(f"{what} in {where}")
            for m in SAS_SIG.finditer(text):
                leaks.append(f"a SAS signature ({m.group(0)[:12]}…) in {where}")
        self.assertEqual(leaks, [])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    args, rest = parser.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
