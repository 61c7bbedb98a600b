"""End-to-end: agent releases are server-side files kept in the measurement storage under
releases/<version>/<file> (directory storage here; test_azure_sync covers Azure Blob).
Publish with the CLI → byte-identical in storage → listed with SHA-256 → immutable (same bytes
again is a no-op, other bytes are refused) → bad names refused, nothing written → agents download
with their API key and the checksum header, nobody else → jobs cannot write under releases/ →
a lost index loses no release (storage is their record)."""

import argparse
import hashlib
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster  # noqa: E402

BIN_DIR = None


class ReleasesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BIN_DIR)
        cls.payload = os.path.join(cls.c.root, "datasync-agent-linux-x86_64")
        cls.data = os.urandom(300_000) + b"agent build 1.2.3"
        with open(cls.payload, "wb") as f:
            f.write(cls.data)
        cls.notes = os.path.join(cls.c.root, "NOTES.txt")
        with open(cls.notes, "w") as f:
            f.write("release notes\n")

    @classmethod
    def tearDownClass(cls):
        cls.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")

    def stored(self, key):
        with open(os.path.join(self.c.share, key), "rb") as f:
            return f.read()

    def test_1_publish_lands_byte_identical_and_is_listed(self):
        p = self.c.cli("releases", "add", "1.2.3", self.payload, self.notes)
        self.assertIn("published releases/1.2.3/datasync-agent-linux-x86_64", p.stdout)
        self.assertEqual(self.stored("releases/1.2.3/datasync-agent-linux-x86_64"), self.data)
        self.assertEqual(self.stored("releases/1.2.3/NOTES.txt"), b"release notes\n")
        items = self.c.cli_json("releases", "list")["items"]
        self.assertEqual([(i["version"], i["file"]) for i in items],
                         [("1.2.3", "NOTES.txt"), ("1.2.3", "datasync-agent-linux-x86_64")])
        self.assertEqual(items[1]["sha256"], hashlib.sha256(self.data).hexdigest())
        self.assertEqual(items[1]["size"], len(self.data))
        self.assertEqual(self.c.cli_json("releases", "list", "9.9.9")["items"], [])

    def test_2_release_files_are_immutable(self):
        p = self.c.cli("releases", "add", "1.2.3", self.payload)
        self.assertIn("already published", p.stdout)
        other = os.path.join(self.c.root, "other", "datasync-agent-linux-x86_64")
        os.makedirs(os.path.dirname(other))
        with open(other, "wb") as f:
            f.write(b"a different build")
        p = self.c.cli("releases", "add", "1.2.3", other, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("immutable", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertEqual(self.stored("releases/1.2.3/datasync-agent-linux-x86_64"), self.data)
        self.assertFalse(os.path.exists(os.path.join(self.c.share, ".datasync", "versions", "releases")))

    def test_3_bad_input_is_refused_and_writes_nothing(self):
        cases = [
            ("/releases/..%2Fescape/x", b"x", {}),       # traversal in the version
            ("/releases/1.0/.hidden", b"x", {}),          # dot file
            ("/releases/1.0/ok.bin", b"", {}),            # empty body
            ("/releases/1.0/ok.bin", b"abc", {"X-Content-SHA256": "0" * 64}),  # checksum mismatch
        ]
        for path, body, headers in cases:
            st, problem, _ = self.c.http("PUT", "/api/v1/admin" + path, raw=body,
                                         token=self.c.token, headers=headers)
            self.assertIn(st, (400, 404), (path, st, problem))
            if st == 400:
                self.assertEqual(problem["status"], 400, problem)
        self.assertEqual(sorted(os.listdir(os.path.join(self.c.share, "releases"))), ["1.2.3"])
        # Without an admin token: refused.
        st, _, _ = self.c.http("PUT", "/api/v1/admin/releases/2.0/x.bin", raw=b"x")
        self.assertEqual(st, 401)
        self.assertFalse(os.path.exists(os.path.join(self.c.share, "releases", "2.0")))

    def test_4_agents_download_with_their_key_only(self):
        key, _ = self.c.fake_agent_key("pc-rel")
        import urllib.request
        req = urllib.request.Request(
            self.c.url + "/api/v1/agent/releases/1.2.3/datasync-agent-linux-x86_64",
            headers={"Authorization": "Bearer " + key})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers["X-Content-SHA256"], hashlib.sha256(self.data).hexdigest())
            self.assertEqual(r.headers["Content-Type"], "application/octet-stream")
        self.assertEqual(body, self.data)
        st, problem, _ = self.c.http("GET", "/api/v1/agent/releases/1.2.3/datasync-agent-linux-x86_64")
        self.assertEqual(st, 401, problem)
        st, problem, _ = self.c.http("GET", "/api/v1/agent/releases/1.2.3/missing.bin", token=key)
        self.assertEqual(st, 404, problem)
        st, problem, _ = self.c.http("GET", "/api/v1/agent/releases/1.2.3/..", token=key)
        self.assertIn(st, (400, 404), problem)

    def test_5_jobs_cannot_write_under_releases(self):
        self.c.fake_agent_key("pc-jobs")
        for dest in ("releases", "releases/1.2.3"):
            p = self.c.cli("jobs", "add", "pc-jobs", "j", "--source", "/tmp/x", "--dest", dest,
                           check=False)
            self.assertNotEqual(p.returncode, 0, dest)
            self.assertIn("releases/", p.stderr)
        # A neighbour that only shares the first letters is fine.
        self.c.cli("jobs", "add", "pc-jobs", "j", "--source", "/tmp/x", "--dest", "releases-archive")

    def test_6_a_lost_index_loses_no_release(self):
        self.c.restart_server(wipe_index=True)
        items = self.c.cli_json("releases", "list")["items"]
        self.assertEqual(len(items), 2)
        self.assertEqual(items[1]["sha256"], hashlib.sha256(self.data).hexdigest())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args, rest = ap.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], "-v", *rest])
