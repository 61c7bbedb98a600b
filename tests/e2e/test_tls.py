"""End-to-end: TLS and trust. The real server speaks HTTPS with a certificate from a private CA
(the harness makes one): HSTS on its answers, a Secure session cookie at sign-in, a small body
limit for callers without credentials; an agent enrolls and syncs over TLS; an agent given
another CA, or a plain http:// URL without --allow-http, does not talk to the server; the CLI
checks a public-key pin; SIGHUP swaps the certificate for new connections while an open
keep-alive connection goes on; the server refuses to start without a certificate unless told
--insecure-http, and refuses a nonsense --max-body."""

import argparse
import http.client
import os
import shutil
import signal
import ssl
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Failure, sha256_file, wait_for  # noqa: E402

BIN_DIR = None


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BIN_DIR)
        cls.c.add_user("ann", "admin", "ann-secret-pw")

    @classmethod
    def tearDownClass(cls):
        cls.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")

    def test_https_answers_carry_hsts_and_the_session_cookie_is_secure(self):
        self.assertTrue(self.c.url.startswith("https://"), self.c.url)
        st, _, headers = self.c.http("GET", "/healthz")
        self.assertEqual(st, 200)
        self.assertEqual(headers.get("Strict-Transport-Security"), "max-age=31536000")
        st, who, headers = self.c.http("POST", "/api/v1/admin/session",
                                       {"name": "ann", "password": "ann-secret-pw"})
        self.assertEqual(st, 200, who)
        cookie = headers.get("Set-Cookie", "")
        self.assertIn("ds_session=", cookie)
        self.assertIn("; Secure", cookie)  # no proxy, no --cookie-secure: the server's own TLS

    def test_anonymous_callers_get_a_small_body_limit(self):
        big = b'{"name": "x", "pad": "' + b"x" * (100 << 10) + b'"}'  # 100 KiB > 64 KiB
        for path in ("/api/v1/agent/register", "/api/v1/admin/session", "/api/v1/admin/jobs"):
            st, problem, _ = self.c.http("POST", path, raw=big)
            self.assertEqual(st, 413, (path, problem))
        # The same body with credentials reaches its handler (which judges it on its merits).
        st, problem, _ = self.c.http("POST", "/api/v1/admin/reconcile", raw=big, token=self.c.token)
        self.assertNotEqual(st, 413, problem)
        # ... but not on an anonymous route, whatever credentials come along.
        st, _, _ = self.c.http("POST", "/api/v1/agent/register", raw=big, token=self.c.token)
        self.assertEqual(st, 413)

    def test_agent_syncs_over_tls(self):
        src = os.path.join(self.c.root, "src-tls")
        os.makedirs(os.path.join(src, "d"))
        for i in range(5):
            with open(os.path.join(src, "d", f"f{i}.dat"), "wb") as f:
                f.write(os.urandom(2000 + i))
        self.c.enroll("pc-tls")
        self.c.cli("jobs", "add", "pc-tls", "raw", "--source", src, "--dest", "tls/raw",
                   "--settle", "0s", "--interval", "1h")
        self.c.cli("sync", "pc-tls", "raw", "--wait")
        for i in range(5):
            rel = os.path.join("d", f"f{i}.dat")
            self.assertEqual(sha256_file(os.path.join(self.c.share, "tls", "raw", rel)),
                             sha256_file(os.path.join(src, rel)))

    def test_agent_with_another_ca_does_not_talk_to_the_server(self):
        other_ca, _ = self.c.tls.make_ca("other-ca")
        # Another CA; and no --ca-file at all (the system CAs do not know the private one).
        for name, extra in (("pc-wrong-ca", ["--ca-file", other_ca]), ("pc-system-cas", [])):
            self.c.start_agent(name, trust=False, extra=extra)
            log = os.path.join(self.c.root, f"agent-{name}.log")
            wait_for(f"the certificate refusal in {name}'s log",
                     lambda: "certificate" in read(log), timeout=30)
            self.assertIsNone(self.c.agents[name].poll())  # it keeps trying, it did not crash
            self.c.stop_agent(name)
            self.assertIsNone(self.c.runner(name))  # it never registered

    def test_agent_and_cli_refuse_plain_http_unless_allowed(self):
        plain = self.c.url.replace("https://", "http://")
        p = subprocess.run([self.c.bin("datasync-agent"), "--server", plain, "--state-dir",
                            os.path.join(self.c.root, "agent-plain"), "--name", "pc-plain"],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--allow-http", p.stderr)
        self.assertIsNone(self.c.runner("pc-plain"))
        env = self.c.cli_env(self.c.url)
        env["DATASYNC_SERVER"] = plain
        p = subprocess.run([self.c.bin("datasync"), "status"], capture_output=True, text=True,
                           env=env, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("DATASYNC_ALLOW_HTTP", p.stderr)

    def test_cli_checks_the_public_key_pin(self):
        env = self.c.cli_env()
        run = lambda *extra: subprocess.run([self.c.bin("datasync"), *extra, "status"],  # noqa: E731
                                            capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(run("--pinned-key", self.c.tls.pin).returncode, 0)
        wrong = "sha256//" + "A" * 43 + "="
        p = run("--pinned-key", wrong)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("public key", p.stderr)
        p = run("--pinned-key", "not-a-pin")
        self.assertEqual(p.returncode, 2, p.stderr)

    def test_server_needs_a_certificate_or_insecure_http_and_a_sane_max_body(self):
        base = [self.c.bin("datasync-server"), "--listen", "127.0.0.1:0",
                "--index", "sqlite:" + os.path.join(self.c.root, "never.db"),
                "--data", os.path.join(self.c.root, "never")]
        p = subprocess.run(base, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("--insecure-http", p.stderr)
        tls = ["--tls-cert", self.c.tls.cert_file, "--tls-key", self.c.tls.key_file]
        for bad in ("-5", "0", "100", "99TiB", "lots"):
            p = subprocess.run(base + tls + ["--max-body=" + bad], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))
            self.assertIn("--max-body", p.stderr)
        p = subprocess.run(base + ["--tls-cert", self.c.tls.cert_file], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)

    def test_sighup_reloads_the_certificate_for_new_connections_only(self):
        # A server of its own (own index and data), on copies of the certificate files that the
        # test then replaces.
        tls_dir = os.path.join(self.c.root, "reload")
        os.makedirs(tls_dir)
        cert, key = os.path.join(tls_dir, "server.pem"), os.path.join(tls_dir, "server.key")
        shutil.copy(self.c.tls.cert_file, cert)
        shutil.copy(self.c.tls.key_file, key)
        log = os.path.join(tls_dir, "server.log")
        with open(log, "ab") as log_file:
            proc = subprocess.Popen(
                [self.c.bin("datasync-server"), "--listen", "127.0.0.1:0",
                 "--index", "sqlite:" + os.path.join(tls_dir, "state.db"),
                 "--storage", "file://" + os.path.join(tls_dir, "share"),
                 "--data", os.path.join(tls_dir, "data"), "--tls-cert", cert, "--tls-key", key],
                stdout=subprocess.PIPE, stderr=log_file)
        try:
            self.reload_scenario(proc, cert, key, log)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    def reload_scenario(self, proc, cert, key, log):
        url = None
        for line in proc.stdout:
            if b"listening on " in line:
                url = line.decode().split("listening on ")[1].strip()
                break
        if not url:
            raise Failure("the reload server did not start; see " + log)
        port = int(url.rsplit(":", 1)[1])
        old_ca = ssl.create_default_context(cafile=self.c.tls.ca_file)

        def get(conn):
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            return r.status

        kept = http.client.HTTPSConnection("127.0.0.1", port, context=old_ca, timeout=10)
        self.assertEqual(get(kept), 200)
        new_ca, new_ca_key = self.c.tls.make_ca("reload-ca")
        self.c.tls.issue(cert + ".new", key + ".new", new_ca, new_ca_key)
        os.replace(key + ".new", key)
        os.replace(cert + ".new", cert)
        proc.send_signal(signal.SIGHUP)
        wait_for("the reload in the server log", lambda: "reloaded the TLS certificate" in read(log))
        self.assertIsNone(proc.poll())
        self.assertEqual(get(kept), 200)  # the open connection keeps its certificate
        fresh_new = http.client.HTTPSConnection(
            "127.0.0.1", port, context=ssl.create_default_context(cafile=new_ca), timeout=10)
        self.assertEqual(get(fresh_new), 200)
        with self.assertRaises(ssl.SSLError):
            get(http.client.HTTPSConnection("127.0.0.1", port, context=old_ca, timeout=10))
        # A broken key on the next SIGHUP: logged, the current certificate stays.
        with open(key, "w") as f:
            f.write("garbage\n")
        proc.send_signal(signal.SIGHUP)
        wait_for("the failed reload in the server log", lambda: "not reloaded" in read(log))
        self.assertEqual(get(http.client.HTTPSConnection(
            "127.0.0.1", port, context=ssl.create_default_context(cafile=new_ca), timeout=10)), 200)
        kept.close()
        fresh_new.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args, rest = ap.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], "-v", *rest])
