"""End-to-end on Azure Blob storage: a real Azurite, datasync-server holding the account key
(from a key file), an agent that holds none and uploads with per-blob write SAS.
Sync → byte-identical blobs and index rows → no-op sync → changed files keep their previous
versions → SAS scope and expiry → the grant endpoint → `complete` checked against storage →
content already stored → no secret on the agent → server down: the run fails, the next one syncs."""

import argparse
import base64
import email.utils
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Failure, make_tree, sha256_file, wait_for  # noqa: E402

BIN_DIR = None
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "datasync-e2e"
API_VERSION = "2021-08-06"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=60):
    """Returns (status, body bytes, headers with lowercase names)."""
    req = urllib.request.Request(url, data=body, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


class Azurite:
    """Azurite's blob service on a free port, plus a tiny Shared Key client (standard library
    only) for what the tests check behind DataSync's back."""

    def __init__(self, root):
        binary = os.path.join(REPO, "node_modules", ".bin", "azurite-blob")
        if not os.path.exists(binary):
            raise Failure(f"Azurite is not installed ({binary}): run `npm ci` in the repo root")
        self.dir = os.path.join(root, "azurite")
        os.makedirs(self.dir, exist_ok=True)
        self.log = open(os.path.join(self.dir, "azurite.log"), "ab")
        for attempt in range(3):  # a "free" port may be taken before Azurite binds it
            self.port = free_port()
            self.proc = subprocess.Popen(
                [binary, "--location", os.path.join(self.dir, "data"), "--blobHost", "127.0.0.1",
                 "--blobPort", str(self.port), "--disableTelemetry", "--silent"],
                stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        break
                except OSError:
                    time.sleep(0.05)
            if self.proc.poll() is None and time.monotonic() < deadline:
                break
            self.stop()
            if attempt == 2:
                raise Failure("Azurite did not start; see " + self.log.name)
        self.origin = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"{self.origin}/{ACCOUNT}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def blob_url(self, name):
        return f"{self.endpoint}/{CONTAINER}/{urllib.parse.quote(name, safe='/')}"

    def request(self, method, name, query=None, body=b"", headers=None):
        """A Shared Key request on CONTAINER (name "") or one of its blobs (path-style: the
        canonical resource holds the account twice)."""
        path = f"/{ACCOUNT}/{CONTAINER}" + ("/" + urllib.parse.quote(name, safe="/") if name else "")
        query = query or {}
        headers = dict(headers or {})
        headers["x-ms-date"] = email.utils.formatdate(usegmt=True)
        headers["x-ms-version"] = API_VERSION
        if method in ("PUT", "POST"):
            headers.setdefault("Content-Type", "application/octet-stream")  # urllib adds one else
        lower = {k.lower(): v.strip() for k, v in headers.items()}
        fields = [method, lower.get("content-encoding", ""), lower.get("content-language", ""),
                  str(len(body)) if body else "", lower.get("content-md5", ""),
                  lower.get("content-type", ""), "", "", "", "", "", lower.get("range", "")]
        to_sign = "\n".join(fields) + "\n"
        to_sign += "".join(f"{k}:{v}\n" for k, v in sorted(lower.items()) if k.startswith("x-ms-"))
        to_sign += f"/{ACCOUNT}{path}"
        to_sign += "".join(f"\n{k.lower()}:{v}" for k, v in sorted(query.items()))
        sig = base64.b64encode(hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest())
        headers["Authorization"] = f"SharedKey {ACCOUNT}:{sig.decode()}"
        url = self.origin + path + ("?" + urllib.parse.urlencode(query) if query else "")
        return http(method, url, body if method in ("PUT", "POST") else None, headers)

    def create_container(self):
        st, body, _ = self.request("PUT", "", {"restype": "container"})
        if st != 201:
            raise Failure(f"create container: HTTP {st} {body[:300]!r}")

    def list(self, prefix):
        names, marker = [], ""
        while True:
            q = {"restype": "container", "comp": "list", "prefix": prefix}
            if marker:
                q["marker"] = marker
            st, body, _ = self.request("GET", "", q)
            if st != 200:
                raise Failure(f"list {prefix}: HTTP {st} {body[:300]!r}")
            root = ET.fromstring(body)
            names += [b.findtext("Name") for b in root.iter("Blob")]
            marker = root.findtext("NextMarker") or ""
            if not marker:
                return sorted(names)

    def get(self, name):
        st, body, headers = self.request("GET", name)
        if st != 200:
            raise Failure(f"get {name}: HTTP {st} {body[:300]!r}")
        return body, headers

    def put(self, name, data):
        st, body, _ = self.request("PUT", name, body=data, headers={"x-ms-blob-type": "BlockBlob"})
        if st != 201:
            raise Failure(f"put {name}: HTTP {st} {body[:300]!r}")

    def uncommitted_blocks(self, name):
        st, body, _ = self.request("GET", name, {"comp": "blocklist", "blocklisttype": "uncommitted"})
        if st == 404:
            return 0
        if st != 200:
            raise Failure(f"block list {name}: HTTP {st} {body[:300]!r}")
        return len(list(ET.fromstring(body).iter("Block")))

    def committed_blocks(self, name):
        st, body, _ = self.request("GET", name, {"comp": "blocklist", "blocklisttype": "committed"})
        if st != 200:
            raise Failure(f"block list {name}: HTTP {st} {body[:300]!r}")
        return len(list(ET.fromstring(body).iter("Block")))


class AzureCluster(Cluster):
    """The harness's cluster with the server on Azure Blob storage (every start, restarts too)."""

    def __init__(self, bin_dir, storage_args, **kwargs):
        self.storage_args = list(storage_args)
        super().__init__(bin_dir, **kwargs)

    def start_server(self, listen="127.0.0.1:0", extra=()):
        super().start_server(listen, (*self.storage_args, *extra))


def sas_put(url, data):
    """Put Blob with nothing but the SAS in `url`."""
    return http("PUT", url, data, {"x-ms-blob-type": "BlockBlob", "x-ms-version": API_VERSION})


class AzureSyncTest(unittest.TestCase):
    AGENT = "pc-az"
    AGENT_FLAGS = ["--block-size", "1MiB", "--bwlimit", "1000000"]

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="datasync-e2e-az-")
        cls.az = Azurite(cls.tmp)
        cls.c = None
        try:
            cls.az.create_container()
            cls.key_file = os.path.join(cls.tmp, "storage.key")
            with open(os.open(cls.key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(KEY + "\n")
            cls.storage_url = f"azblob://{ACCOUNT}/{CONTAINER}?endpoint={cls.az.endpoint}"
            # A 2 s SAS: grants expire while files wait their turn and during the 4 MiB upload
            # (1 MB/s), so the agent must renew them through the grant endpoint.
            cls.c = AzureCluster(BIN_DIR, ["--storage", cls.storage_url, "--storage-key-file", cls.key_file,
                                           "--sas-ttl", "2s"], max_body=8 << 20)
            cls.src = os.path.join(cls.c.root, "source")
            cls.paths = make_tree(cls.src, n_small=150, big_mib=4)
            cls.c.enroll(cls.AGENT, extra=cls.AGENT_FLAGS)
            cls.c.cli("jobs", "add", cls.AGENT, "raw", "--source", cls.src, "--dest", "lab1/raw",
                      "--settle", "1s", "--interval", "1h")
            cls.agent_log = os.path.join(cls.c.root, f"agent-{cls.AGENT}.log")
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

    # ---- helpers -----------------------------------------------------------------------------
    def sync(self):
        p = self.c.cli("sync", self.AGENT, "raw", "--wait", "--json", check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def index_rows(self, runner=AGENT, job="raw"):
        return {f["path"]: f for f in self.c.cli_json("files", runner, job, "--all")}

    def read_agent_log(self):
        with open(self.agent_log, "rb") as f:
            return f.read().decode(errors="replace")

    def assert_storage_matches_source(self):
        names = self.az.list("lab1/raw/")
        self.assertEqual(names, sorted("lab1/raw/" + p for p in self.paths))
        for rel in self.paths:
            data, headers = self.az.get("lab1/raw/" + rel)
            with open(os.path.join(self.src, rel), "rb") as f:
                self.assertEqual(data, f.read(), f"{rel} differs in storage")
            self.assertEqual(headers.get("x-ms-meta-sha256"), hashlib.sha256(data).hexdigest(), rel)

    def fake_agent_job(self, name, dest):
        key, _ = self.c.fake_agent_key(name)
        self.c.cli("jobs", "add", name, "probe", "--source", "/tmp/none", "--dest", dest)
        return key

    def compare(self, key, run_id, files, job="probe"):
        manifest = [{"path": p, "size": len(d), "mtime_ns": 1, "sha256": hashlib.sha256(d).hexdigest()}
                    for p, d in files.items()]
        st, plan, _ = self.c.http("POST", f"/api/v1/agent/jobs/{job}/compare",
                                  {"run_id": run_id, "files": manifest, "last": True,
                                   "total_files": len(manifest)}, token=key)
        self.assertEqual(st, 200, plan)
        return {u["path"]: u for u in plan["upload"]}

    # ---- the tests -----------------------------------------------------------------------------
    def test_1_initial_sync_lands_every_blob_byte_identical_with_index_rows(self):
        run = self.sync()
        self.assertEqual(run["state"], "succeeded", run)
        self.assertEqual(run["files_seen"], len(self.paths))
        self.assertEqual(run["files_failed"], 0)
        # The agent also runs a new job once on its own at start; together the runs upload
        # every file exactly once.
        runs = self.c.cli_json("runs", self.AGENT, "raw")
        self.assertTrue(all(r["state"] == "succeeded" for r in runs), runs)
        self.assertEqual(sum(r["files_uploaded"] for r in runs), len(self.paths))
        self.assert_storage_matches_source()
        self.assertEqual(self.az.list(".datasync/"), [])
        # 4 MiB in 1 MiB blocks: staged, then committed as one blob.
        self.assertEqual(self.az.committed_blocks("lab1/raw/big/large run 1.bin"), 4)
        rows = self.index_rows()
        self.assertEqual(sorted(rows), self.paths)
        for rel in self.paths:
            full = os.path.join(self.src, rel)
            self.assertEqual(rows[rel]["sha256"], sha256_file(full), rel)
            self.assertEqual(rows[rel]["size"], os.path.getsize(full), rel)
        self.assertEqual(rows["empty/zero-byte.dat"]["size"], 0)
        # Grants expired while files waited, and during the big upload (403 → renewed → resumed).
        with open(os.path.join(self.c.root, "server.log"), "rb") as f:
            self.assertIn(b"write grant renewed for lab1/raw/", f.read())
        self.assertIn("SAS refused", self.read_agent_log())

    def test_2_second_sync_uploads_nothing(self):
        run = self.sync()
        self.assertEqual(run["state"], "succeeded")
        self.assertEqual(run["files_seen"], len(self.paths))
        self.assertEqual(run["files_planned"], 0)
        self.assertEqual(run["files_uploaded"], 0)

    def test_3_changed_files_are_uploaded_and_previous_versions_kept(self):
        changed = [self.paths[3], "big/large run 1.bin", "Übersicht/Ωmega – notes.txt"]
        old = {}
        for rel in changed:
            full = os.path.join(self.src, rel)
            old[rel] = sha256_file(full)
            with open(full, "ab") as f:
                f.write(b"\nrecalibrated")
            past = os.path.getmtime(full) - 10
            os.utime(full, (past, past))
        run = self.sync()
        self.assertEqual(run["state"], "succeeded", run)
        self.assertEqual(run["files_uploaded"], 3)
        detail = self.c.cli_json("run", run["run_id"], "--files")
        files = {f["path"]: f for f in detail["files"]}
        self.assertEqual(sorted(files), sorted(changed))
        self.assert_storage_matches_source()
        rows = self.index_rows()
        for rel in changed:
            self.assertEqual(files[rel]["planned_reason"], "changed")
            self.assertEqual(rows[rel]["sha256"], sha256_file(os.path.join(self.src, rel)))
            kept = self.az.list(f".datasync/versions/lab1/raw/{rel}/")
            self.assertEqual(len(kept), 1, f"previous version of {rel} not kept: {kept}")
            self.assertEqual(files[rel]["kept_version"], kept[0])
            data, _ = self.az.get(kept[0])
            self.assertEqual(hashlib.sha256(data).hexdigest(), old[rel])

    def test_4_a_sas_writes_one_blob_only_and_expires_and_grants_are_confined(self):
        key = self.fake_agent_job("probe-az", "probe/x")
        other_key = self.fake_agent_job("probe-other", "probe/y")
        run_id = "21111111-2222-4333-8444-555555555555"
        a, b, c = b"alpha " * 100, b"bravo " * 100, b"charlie"
        # Names ending in a multi-byte character and in the first one after the surrogates: the
        # grant endpoint finds planned paths by byte order.
        omega, pua = "grüß/Ω", "p/\ue000"
        plan = self.compare(key, run_id, {"a.dat": a, "b.dat": b, "c.dat": c, omega: b"o", pua: b"p"})
        self.assertEqual(sorted(plan), sorted(["a.dat", "b.dat", "c.dat", omega, pua]))
        for p, u in plan.items():
            self.assertTrue(u["url"].startswith(self.az.blob_url("probe/x/" + p) + "?"), u["url"])
            self.assertIn("sp=cw", u["url"])
            self.assertGreater(u["expires_at_ms"], time.time() * 1000)
            self.assertNotIn(KEY, u["url"])
        url_a, url_b = plan["a.dat"]["url"], plan["b.dat"]["url"]
        sas_a = url_a.split("?", 1)[1]

        # A's SAS names A's blob: B's blob (or any other) refuses it.
        st, _, _ = sas_put(self.az.blob_url("probe/x/b.dat") + "?" + sas_a, b"intruder")
        self.assertEqual(st, 403)
        st, _, _ = sas_put(self.az.blob_url("probe/y/a.dat") + "?" + sas_a, b"intruder")
        self.assertEqual(st, 403)
        self.assertEqual(self.az.list("probe/"), [])
        # It writes A, but cannot read it back (write-only).
        st, body, _ = sas_put(url_a, a)
        self.assertEqual(st, 201, body[:300])
        st, _, _ = http("GET", url_a)
        self.assertEqual(st, 403)
        st, body, _ = sas_put(url_b, b"not what the manifest says")
        self.assertEqual(st, 201, body[:300])
        # After expiry it writes nothing.
        time.sleep(max(0.0, plan["a.dat"]["expires_at_ms"] / 1000 - time.time()) + 1.5)
        st, _, _ = sas_put(url_a, b"too late")
        self.assertEqual(st, 403)
        self.assertEqual(self.az.get("probe/x/a.dat")[0], a)

        # Renewal: only for a file planned in a running run of the caller's own.
        grant = f"/api/v1/agent/runs/{run_id}/grant"
        st, g, _ = self.c.http("POST", grant, {"path": "a.dat"}, token=key)
        self.assertEqual(st, 200, g)
        self.assertTrue(g["url"].startswith(self.az.blob_url("probe/x/a.dat") + "?"))
        st, body, _ = sas_put(g["url"], a)
        self.assertEqual(st, 201, body[:300])
        for path in [omega, pua]:
            st, g, _ = self.c.http("POST", grant, {"path": path}, token=key)
            self.assertEqual(st, 200, f"{path}: {g}")
            self.assertTrue(g["url"].startswith(self.az.blob_url("probe/x/" + path) + "?"), g["url"])
        for path in ["d.dat", "a.dat/x", "A.dat", "a.da", "grüß/Ψ", "grüß/ΩΩ", "p/\ud7ff", "p/\ue001"]:
            st, body, _ = self.c.http("POST", grant, {"path": path}, token=key)
            self.assertEqual(st, 404, f"{path}: {body}")
        for path in ["../x/a.dat", "/etc/passwd", ""]:
            st, body, _ = self.c.http("POST", grant, {"path": path}, token=key)
            self.assertEqual(st, 400, f"{path!r}: {body}")
        st, _, _ = self.c.http("POST", grant, {"path": "a.dat"}, token=other_key)
        self.assertEqual(st, 404)
        st, _, _ = self.c.http("POST", grant, {"path": "a.dat"}, token="dsk_not-a-key")
        self.assertEqual(st, 401)
        st, _, _ = self.c.http("POST", "/api/v1/agent/runs/31111111-2222-4333-8444-555555555555/grant",
                               {"path": "a.dat"}, token=key)
        self.assertEqual(st, 404)

        # `complete` believes storage, not the agent: B holds other bytes, C nothing.
        def result(path, data):
            return {"path": path, "status": "uploaded", "size": len(data), "mtime_ns": 1,
                    "sha256": hashlib.sha256(data).hexdigest()}
        st, body, _ = self.c.http("POST", f"/api/v1/agent/runs/{run_id}/complete",
                                  {"results": [result("a.dat", a), result("b.dat", b), result("c.dat", c)],
                                   "final": True}, token=key)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["run_state"], "partial")
        files = {f["path"]: f for f in self.c.cli_json("run", run_id, "--files")["files"]}
        self.assertEqual(files["a.dat"]["result"], "uploaded")
        for p in ("b.dat", "c.dat"):
            self.assertEqual(files[p]["result"], "failed")
            self.assertIn("landed content does not match", files[p]["error"])
        self.assertEqual(sorted(self.index_rows("probe-az", "probe")), ["a.dat"])
        # A closed run grants nothing more.
        st, _, _ = self.c.http("POST", grant, {"path": "b.dat"}, token=key)
        self.assertEqual(st, 409)

    def test_5_content_already_in_storage_is_not_uploaded_again(self):
        key = self.fake_agent_job("probe-present", "probe/present")
        d = b"already there\n" * 50
        self.az.put("probe/present/d.dat", d)  # e.g. by an earlier life of the index
        run_id = "41111111-2222-4333-8444-555555555555"
        plan = self.compare(key, run_id, {"d.dat": d, "e.dat": b"new"})
        self.assertTrue(plan["d.dat"].get("already_present"), plan)
        self.assertNotIn("url", plan["d.dat"])
        self.assertIn("url", plan["e.dat"])
        result = {"path": "d.dat", "status": "uploaded", "size": len(d), "mtime_ns": 1,
                  "sha256": hashlib.sha256(d).hexdigest()}
        st, body, _ = self.c.http("POST", f"/api/v1/agent/runs/{run_id}/complete",
                                  {"results": [result], "final": True}, token=key)
        self.assertEqual(st, 200, body)
        self.assertEqual(self.index_rows("probe-present", "probe")["d.dat"]["sha256"], result["sha256"])

    def test_6_no_secret_reaches_the_agent_or_a_log(self):
        key = self.fake_agent_job("probe-url", "probe/url")
        st, jobs, _ = self.c.http("GET", "/api/v1/agent/jobs", token=key)
        self.assertEqual(st, 200)
        self.assertEqual(jobs["storage_url"], f"azblob://{ACCOUNT}/{CONTAINER}?endpoint={self.az.endpoint}")
        raw_key = base64.b64decode(KEY)
        for dirpath, _, filenames in os.walk(self.c.root):
            for f in filenames:
                path = os.path.join(dirpath, f)
                if not (f.endswith(".log") or os.path.basename(dirpath).startswith("agent-")
                        or "/agent-" in path):
                    continue
                with open(path, "rb") as fh:
                    data = fh.read()
                self.assertNotIn(KEY.encode(), data, path)
                self.assertNotIn(raw_key, data, path)
                self.assertNotIn(b"sig=", data, f"a SAS is in {path}")

    def test_7_without_the_server_the_run_fails_and_the_next_one_syncs(self):
        self.assertEqual(self.c.stop_agent(self.AGENT), 0)
        rel = self.paths[7]
        full = os.path.join(self.src, rel)
        before = self.az.get("lab1/raw/" + rel)[0]
        with open(full, "ab") as f:
            f.write(b"\nwhile the server was down")
        past = os.path.getmtime(full) - 10
        os.utime(full, (past, past))
        failures = self.read_agent_log().count("could not complete")
        self.c.stop_server()
        # Restarted, the agent runs its cached job at once; without a grant there is no upload.
        self.c.start_agent(self.AGENT, extra=self.AGENT_FLAGS)
        wait_for("the offline run to fail", lambda: self.read_agent_log().count("could not complete") > failures,
                 timeout=60)
        self.assertEqual(self.az.get("lab1/raw/" + rel)[0], before)
        self.assertNotIn("syncing offline", self.read_agent_log())
        self.c.restart_server()
        wait_for(f"{self.AGENT} online", lambda: (self.c.runner(self.AGENT) or {}).get("online"), timeout=60)
        run = self.sync()
        self.assertEqual(run["state"], "succeeded", run)
        self.assertEqual(run["files_uploaded"], 1)
        with open(full, "rb") as f:
            self.assertEqual(self.az.get("lab1/raw/" + rel)[0], f.read())
        self.assertEqual(len(self.az.list(f".datasync/versions/lab1/raw/{rel}/")), 1)

    def test_7a_an_agent_killed_mid_file_resumes_from_its_journaled_blocks(self):
        # The SAS is write-only: a restarted agent cannot ask which blocks are staged. It
        # journaled them, so it sends only the rest, and the blob is still byte-identical.
        rel = "big/resume.bin"
        full = os.path.join(self.src, rel)
        data = os.urandom(6 << 20)  # 6 blocks of 1 MiB at --bwlimit 1 MB/s
        with open(full, "wb") as f:
            f.write(data)
        past = time.time() - 10
        os.utime(full, (past, past))
        self.c.cli("sync", self.AGENT, "raw")
        wait_for("two blocks staged", lambda: self.az.uncommitted_blocks("lab1/raw/" + rel) >= 2,
                 timeout=60, interval=0.05)
        self.c.stop_agent(self.AGENT, sig=signal.SIGKILL)
        self.assertEqual(self.az.list("lab1/raw/" + rel), [])  # nothing under the final name
        self.c.start_agent(self.AGENT, extra=self.AGENT_FLAGS)
        wait_for(f"{self.AGENT} online", lambda: (self.c.runner(self.AGENT) or {}).get("online"), timeout=60)
        run = self.sync()
        self.assertEqual(run["state"], "succeeded", run)
        self.assertEqual(self.az.get("lab1/raw/" + rel)[0], data)
        self.assertEqual(self.index_rows()[rel]["sha256"], hashlib.sha256(data).hexdigest())
        self.assertRegex(self.read_agent_log(), r"lab1/raw/big/resume\.bin resumed: [2-6] of 6 block\(s\) were staged before")

    def test_8_agent_stops_cleanly_on_sigterm(self):
        self.assertEqual(self.c.stop_agent(self.AGENT), 0)

    def test_9_releases_live_in_the_same_container_under_releases(self):
        data = os.urandom(3 << 20)  # under the server's --max-body of 8 MiB
        payload = os.path.join(self.c.root, "datasync-agent")
        with open(payload, "wb") as f:
            f.write(data)
        self.c.cli("releases", "add", "2.0.0", payload)
        blob, headers = self.az.get("releases/2.0.0/datasync-agent")
        self.assertEqual(blob, data)
        self.assertEqual(headers.get("x-ms-meta-sha256"), hashlib.sha256(data).hexdigest())
        items = self.c.cli_json("releases", "list")["items"]
        self.assertEqual([(i["version"], i["file"], i["sha256"]) for i in items],
                         [("2.0.0", "datasync-agent", hashlib.sha256(data).hexdigest())])
        key, _ = self.c.fake_agent_key("pc-az-release")
        req = urllib.request.Request(self.c.url + "/api/v1/agent/releases/2.0.0/datasync-agent",
                                     headers={"Authorization": "Bearer " + key})
        with urllib.request.urlopen(req, timeout=60) as r:
            self.assertEqual(r.read(), data)
            self.assertEqual(r.headers["X-Content-SHA256"], hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args, rest = ap.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], "-v", *rest])
