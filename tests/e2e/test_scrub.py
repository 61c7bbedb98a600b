"""End-to-end storage scrub with the real programs: drift made behind the product's back (a
deleted object, a same-size corruption that keeps its mtime, a grown object, a stray file, an old
temp file) is found, reported (admin API, /metrics, the storage_drift alert) and healed: the
agent's next run stores the bytes again and a second scrub is clean. A file lost from storage
whose source is also gone is reported unhealed; scheduled scrubs; the janitor's temp sweep; input
validation. `--azure` runs the drift scenario on Azure Blob storage (Azurite) instead.

The directory-storage tests follow DATASYNC_E2E_STORAGE (local | samba | bindfs)."""

import argparse
import hashlib
import json
import os
import re
import sys
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, sha256_file, wait_for  # noqa: E402

BIN_DIR = None
RUNNER, JOB = "pc-s", "raw"
TEMP_NAME = ".dstmp-deadbeef-0123456789abcdef"  # the agent's temp name form (dir backend)


def write_source(root, n=20, size=3000):
    """n files under a few folders, mtime an hour ago; returns {rel: bytes}."""
    out = {}
    past = time.time() - 3600
    for i in range(n):
        rel = f"day-{i % 3}/meas_{i:03d}.dat"
        data = hashlib.sha256(str(i).encode()).digest() * (size // 32) + bytes([i])
        full = os.path.join(root, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
        os.utime(full, (past, past))
        out[rel] = data
    return out


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def metric_samples(text, name):
    """{frozenset(label items): value} of the samples of metric `name` in Prometheus text."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^" + re.escape(name) + r"(\{(.*)\})? (\S+)$", line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out[labels] = float(m.group(3))
    return out


class ScrubCase(unittest.TestCase):
    """Helpers over one cluster (self.c) with one runner and job."""

    def start(self, extra=(), n_files=20):
        self.c = Cluster(BIN_DIR, server_extra=("--janitor-interval", "1h", "--alert-interval", "1s",
                                                *extra))
        self.src = os.path.join(self.c.root, "source")
        self.files = write_source(self.src, n_files)
        self.c.enroll(RUNNER)
        self.c.cli("jobs", "add", RUNNER, JOB, "--source", self.src, "--dest", "lab/raw",
                   "--settle", "0s", "--interval", "1h")
        # Changes behind DataSync's back are made, and stored bytes read, in the folder behind the
        # share (the share itself on local storage): as a person on the file server would.
        self.dest = os.path.join(self.c.share_backing, "lab", "raw")

    def tearDown(self):
        if getattr(self, "c", None):
            self.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")

    def sync_ok(self):
        p = self.c.cli("sync", RUNNER, JOB, "--wait", "--json", check=False)
        self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
        return json.loads(p.stdout)

    def index_rows(self):
        return {f["path"]: f for f in self.c.cli_json("files", RUNNER, JOB, "--all")}

    def scrub(self, rehash=None, wait=True):
        body = {} if rehash is None else {"rehash_fraction": rehash}
        st, s, _ = self.c.admin("POST", f"/runners/{RUNNER}/jobs/{JOB}/scrub", body)
        self.assertEqual(st, 202, s)
        self.assertEqual(s["state"], "queued")
        self.assertEqual(s["trigger"], "operator")
        return self.wait_scrub(s["id"]) if wait else s

    def wait_scrub(self, scrub_id, timeout=120):
        def done():
            st, s, _ = self.c.admin("GET", f"/scrubs/{scrub_id}")
            self.assertEqual(st, 200, s)
            return s if s["state"] in ("succeeded", "failed") else None
        return wait_for(f"scrub {scrub_id}", done, timeout)

    def drift_alerts(self):
        st, body, _ = self.c.admin("GET", "/alerts?active=1")
        self.assertEqual(st, 200, body)
        return [a for a in body["items"] if a["kind"] == "storage_drift"]

    def metrics(self):
        with urllib.request.urlopen(self.c.url + "/metrics", timeout=30) as r:
            return r.read().decode()

    def status_of_job(self):
        st, body, _ = self.c.admin("GET", "/scrubs/status")
        self.assertEqual(st, 200, body)
        return next(j for j in body["jobs"] if j["runner"] == RUNNER and j["job"] == JOB), body

    def stored(self, rel):
        return read_file(os.path.join(self.dest, rel))

    def wait_visible_through_share(self, gone, grown, grown_size):
        """Waits until the share (what the server reads) shows a change made behind it: an SMB
        client caches attributes (smbnetfs through FUSE, ~1 s; cifs actimeo likewise), so a
        scrub started at once may still see the old size, as it would on a real share."""
        seen = os.path.join(self.c.share, "lab", "raw")

        def visible():
            try:
                os.stat(os.path.join(seen, gone))
                return None
            except FileNotFoundError:
                return os.stat(os.path.join(seen, grown)).st_size == grown_size or None
        wait_for("the change behind the share visible through it", visible, 30)


class ScrubDirTest(ScrubCase):
    def test_drift_is_found_reported_alerted_and_healed_by_the_next_run(self):
        self.start()
        self.sync_ok()
        noop = self.sync_ok()  # the agent now sends only its manifest digest
        self.assertEqual(noop["files_uploaded"], 0)
        clean = self.scrub(rehash=1.0)
        self.assertEqual(clean["state"], "succeeded", clean)
        self.assertFalse(clean["drift"], clean)
        self.assertEqual(clean["objects_listed"], len(self.files))
        self.assertEqual(clean["objects_rehashed"], len(self.files))

        gone, same, grown = "day-0/meas_000.dat", "day-1/meas_001.dat", "day-2/meas_002.dat"
        os.remove(os.path.join(self.dest, gone))
        path = os.path.join(self.dest, same)
        st = os.stat(path)
        with open(path, "r+b") as f:  # bit rot: same size, other bytes, same mtime
            f.write(b"\xff" * 64)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        path = os.path.join(self.dest, grown)
        st = os.stat(path)
        with open(path, "ab") as f:
            f.write(b"trailing garbage")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.makedirs(os.path.join(self.dest, "stray"), exist_ok=True)
        with open(os.path.join(self.dest, "stray", "extra.dat"), "wb") as f:
            f.write(b"put here by hand\n")
        temp = os.path.join(self.dest, "day-0", TEMP_NAME)
        with open(temp, "wb") as f:
            f.write(b"half an upload")
        old = time.time() - 7200
        os.utime(temp, (old, old))
        self.wait_visible_through_share(gone, grown, len(self.files[grown]) + 16)

        s = self.scrub(rehash=1.0)
        self.assertEqual(s["state"], "succeeded", s)
        counts = {k: s[k] for k in ("missing", "extra", "size_mismatches", "hash_mismatches",
                                    "temp_files", "healed", "unhealed")}
        self.assertEqual(counts, {"missing": 1, "extra": 1, "size_mismatches": 1, "hash_mismatches": 1,
                                  "temp_files": 1, "healed": 5, "unhealed": 0}, s)
        self.assertTrue(s["drift"])
        self.assertEqual(s["objects_listed"], len(self.files))  # one lost, one stray
        self.assertEqual(s["objects_rehashed"], len(self.files) - 2)  # not the stray, not the grown
        r = s["report"]
        self.assertEqual([(m["path"], m["action"]) for m in r["missing"]], [(gone, "replanned")])
        self.assertEqual(r["missing"][0]["sha256"], hashlib.sha256(self.files[gone]).hexdigest())
        self.assertEqual([(e["path"], e["action"]) for e in r["extra"]], [("stray/extra.dat", "indexed")])
        kinds = {m["path"]: (m["kind"], m["action"]) for m in r["mismatches"]}
        self.assertEqual(kinds, {same: ("hash", "replanned"), grown: ("size", "replanned")})
        by_kind = {m["kind"]: m for m in r["mismatches"]}
        self.assertEqual(by_kind["size"]["stored_size"], len(self.files[grown]) + 16)
        self.assertEqual(by_kind["hash"]["stored_sha256"], sha256_file(os.path.join(self.dest, same)))
        self.assertEqual(by_kind["hash"]["index_sha256"], hashlib.sha256(self.files[same]).hexdigest())
        self.assertEqual(len(r["temp_files"]), 1)
        self.assertTrue(r["temp_files"][0]["removed"])
        self.assertGreaterEqual(r["temp_files"][0]["age_s"], 7000)
        self.assertEqual(r["unhealed"], [])
        self.assertFalse(os.path.exists(temp))
        rows = self.index_rows()
        for rel in (gone, same, grown):
            self.assertNotIn(rel, rows)
        self.assertIn("stray/extra.dat", rows)

        # Reported: the alert, /metrics, the status.
        alert = wait_for("storage_drift alert", lambda: self.drift_alerts(), 30)[0]
        self.assertEqual(alert["subject"], f"{RUNNER}/{JOB}")
        self.assertEqual(alert["details"]["scrub_id"], s["id"])
        text = self.metrics()
        drift = metric_samples(text, "datasync_scrub_drift_objects")
        for kind in ("missing", "extra", "size", "hash"):
            self.assertEqual(drift[frozenset({("runner", RUNNER), ("job", JOB), ("kind", kind)})], 1.0, kind)
        self.assertEqual(metric_samples(text, "datasync_scrub_unhealed_objects")[
            frozenset({("runner", RUNNER), ("job", JOB)})], 0.0)
        self.assertEqual(metric_samples(text, "datasync_scrubs_total")[frozenset({("result", "succeeded")})], 2.0)
        self.assertEqual(metric_samples(text, "datasync_scrub_objects_listed_total")[frozenset()],
                         2.0 * len(self.files))
        last_ok = metric_samples(text, "datasync_scrub_last_success_timestamp_seconds")[
            frozenset({("runner", RUNNER), ("job", JOB)})]
        self.assertLess(abs(last_ok - time.time()), 120)
        job, body = self.status_of_job()
        self.assertTrue(job["drift"])
        self.assertEqual(job["unhealed"], 0)
        self.assertEqual(job["last"]["id"], s["id"])
        self.assertEqual(body["interval_s"], 86400)
        self.assertEqual(body["rate_objects_per_s"], 2000)

        # Healed: the next run plans the three files again (the digest no longer matches) and
        # stores the source's bytes; the corrupted copy is kept as a version, never lost.
        run = self.sync_ok()
        self.assertEqual(run["files_uploaded"], 3, run)
        for rel in (gone, same, grown):
            self.assertEqual(self.stored(rel), self.files[rel], rel)
        rows = self.index_rows()
        for rel in (gone, same, grown):
            self.assertEqual(rows[rel]["sha256"], hashlib.sha256(self.files[rel]).hexdigest(), rel)
        versions = os.path.join(self.c.share_backing, ".datasync", "versions")
        kept = [os.path.join(d, f) for d, _, fs in os.walk(versions) for f in fs]
        self.assertTrue(any(read_file(k).startswith(b"\xff" * 64) for k in kept), kept)

        again = self.scrub(rehash=1.0)
        self.assertEqual(again["state"], "succeeded", again)
        self.assertFalse(again["drift"], again)
        self.assertEqual((again["healed"], again["unhealed"], again["temp_files"]), (0, 0, 0), again)
        self.assertEqual(again["objects_listed"], len(self.files) + 1)
        wait_for("the alert resolves", lambda: not self.drift_alerts(), 30)
        self.assertFalse(self.status_of_job()[0]["drift"])

    def test_a_lost_file_whose_source_is_gone_is_reported_unhealed_after_the_next_run(self):
        self.start()
        self.sync_ok()
        lost = "day-1/meas_004.dat"
        os.remove(os.path.join(self.dest, lost))
        os.remove(os.path.join(self.src, lost))  # the runner no longer has it either
        s = self.scrub()
        self.assertEqual((s["missing"], s["healed"], s["unhealed"]), (1, 1, 0), s)
        self.assertEqual(s["report"]["missing"][0]["action"], "replanned")
        run = self.sync_ok()
        self.assertEqual(run["files_uploaded"], 0, run)
        s = self.scrub()
        self.assertEqual(s["state"], "succeeded", s)
        self.assertEqual((s["missing"], s["unhealed"]), (0, 1), s)
        self.assertFalse(s["drift"])
        self.assertEqual(len(s["report"]["unhealed"]), 1, s)
        entry = s["report"]["unhealed"][0]
        self.assertEqual(entry["path"], lost)
        self.assertIn("source no longer on the runner", entry["reason"])
        self.assertIn(run["run_id"], entry["reason"])
        self.assertEqual(self.status_of_job()[0]["unhealed"], 1)
        # Active since the first scrub's drift, held by the unhealed finding.
        time.sleep(2)  # two alert passes
        self.assertEqual(len(self.drift_alerts()), 1)
        text = self.metrics()
        self.assertEqual(metric_samples(text, "datasync_scrub_unhealed_objects")[
            frozenset({("runner", RUNNER), ("job", JOB)})], 1.0)
        # Reported once: the next scrub is clean and the alert resolves.
        s = self.scrub()
        self.assertEqual((s["unhealed"], s["drift"]), (0, False), s)
        wait_for("the alert resolves", lambda: not self.drift_alerts(), 30)

    def test_an_unmounted_share_fails_the_scrub_and_changes_nothing(self):
        self.start(n_files=5)
        self.sync_ok()
        for d, _, fs in os.walk(self.dest):
            for f in fs:
                os.remove(os.path.join(d, f))
        s = self.scrub()
        self.assertEqual(s["state"], "failed", s)
        self.assertIn("is the share mounted", s["error"])
        self.assertEqual(len(self.index_rows()), 5)
        self.assertEqual(self.drift_alerts(), [])

    def test_every_job_is_scrubbed_on_schedule(self):
        self.start(extra=("--scrub-interval", "2s"), n_files=3)
        self.sync_ok()

        def scheduled():
            st, body, _ = self.c.admin("GET", f"/scrubs?runner={RUNNER}&job={JOB}&state=succeeded")
            self.assertEqual(st, 200, body)
            return [s for s in body["scrubs"] if s["trigger"] == "schedule"]
        runs = wait_for("two scheduled scrubs", lambda: len(scheduled()) >= 2 and scheduled(), 60)
        self.assertEqual(runs[0]["rehash_fraction"], 0.0)
        self.assertGreaterEqual(runs[0]["objects_listed"], 0)
        job, status = self.status_of_job()
        self.assertEqual(status["interval_s"], 2)
        self.assertNotEqual(job["next_due_at"], "")

    def test_one_scrub_per_job_runs_at_the_rate_cap_and_bad_input_is_refused(self):
        self.start(extra=("--scrub-interval", "0", "--scrub-rate", "4"), n_files=12)
        self.sync_ok()
        # At 4 objects/s a scrub of 12 objects runs for about 3 s: a second one is refused.
        first = self.scrub(rehash=0.5, wait=False)
        st, body, headers = self.c.admin("POST", f"/runners/{RUNNER}/jobs/{JOB}/scrub", {})
        self.assertEqual(st, 409, body)
        self.assertIn("application/problem+json", headers.get("Content-Type", ""))
        st, body, _ = self.c.admin("POST", "/scrub", {"all": True})
        self.assertEqual((st, body["queued"], body["already_running"]), (202, [], [f"{RUNNER}/{JOB}"]))
        done = self.wait_scrub(first["id"])
        self.assertEqual(done["state"], "succeeded", done)
        self.assertGreater(done["elapsed_s"], 1.5)  # the rate cap held
        self.assertEqual(done["rehash_fraction"], 0.5)
        self.assertLess(done["objects_rehashed"], 12)
        job, status = self.status_of_job()
        self.assertEqual((status["interval_s"], status["rate_objects_per_s"]), (0, 4))
        self.assertEqual(job["next_due_at"], "")  # scheduling is off
        st, body, _ = self.c.admin("POST", "/scrub", {"all": True, "rehash_fraction": 1})
        self.assertEqual((st, len(body["queued"])), (202, 1), body)
        self.assertEqual(body["queued"][0]["rehash_fraction"], 1.0)
        self.wait_scrub(body["queued"][0]["id"])

        for body in ({"rehash_fraction": 1.5}, {"rehash_fraction": -0.1}, {"rehash_fraction": "all"}, [1]):
            st, problem, _ = self.c.admin("POST", f"/runners/{RUNNER}/jobs/{JOB}/scrub", body)
            self.assertEqual(st, 400, (body, problem))
        self.assertEqual(self.c.admin("POST", "/scrub", {"rehash_fraction": 0})[0], 400)  # no "all"
        self.assertEqual(self.c.admin("POST", f"/runners/{RUNNER}/jobs/nope/scrub", {})[0], 404)
        self.assertEqual(self.c.admin("GET", "/scrubs/0f0f0f0f-0000-4000-8000-000000000000")[0], 404)
        self.assertEqual(self.c.admin("GET", "/scrubs?state=bogus")[0], 400)
        self.assertEqual(self.c.admin("GET", "/scrubs?limit=abc")[0], 400)
        self.assertEqual(self.c.admin("GET", "/scrubs?limit=0")[0], 400)
        st, body, _ = self.c.admin("GET", "/scrubs?limit=1")
        self.assertEqual((st, len(body["scrubs"])), (200, 1))
        st, body, _ = self.c.admin("GET", "/scrubs?state=succeeded&limit=5000")
        self.assertEqual(st, 200)
        self.assertTrue(all(s["state"] == "succeeded" for s in body["scrubs"]))
        # Without a token: refused.
        st, _, _ = self.c.http("GET", "/api/v1/admin/scrubs/status")
        self.assertEqual(st, 401)

    def test_an_object_a_run_in_flight_uploaded_is_not_taken_for_a_stray(self):
        self.c = Cluster(BIN_DIR, server_extra=("--janitor-interval", "1h", "--scrub-interval", "0"))
        key, _ = self.c.fake_agent_key("pc-fake")
        self.c.cli("jobs", "add", "pc-fake", "probe", "--source", "/tmp/none", "--dest", "lab/probe")
        data = b"uploaded, not yet reported\n"
        run_id = str(uuid.uuid4())
        manifest = [{"path": "x.dat", "size": len(data), "mtime_ns": 1,
                     "sha256": hashlib.sha256(data).hexdigest()}]
        st, plan, _ = self.c.http("POST", "/api/v1/agent/jobs/probe/compare",
                                  {"run_id": run_id, "files": manifest, "last": True, "total_files": 1},
                                  token=key)
        self.assertEqual(st, 200, plan)
        dest = os.path.join(self.c.share_backing, "lab", "probe")
        os.makedirs(dest, exist_ok=True)
        with open(os.path.join(dest, "x.dat"), "wb") as f:
            f.write(data)

        def scrub():
            st, s, _ = self.c.admin("POST", "/runners/pc-fake/jobs/probe/scrub", {})
            self.assertEqual(st, 202, s)
            return self.wait_scrub(s["id"])
        s = scrub()
        self.assertEqual((s["state"], s["objects_listed"], s["extra"], s["drift"]), ("succeeded", 1, 0, False), s)
        st, done, _ = self.c.http("POST", f"/api/v1/agent/runs/{run_id}/complete",
                                  {"results": [], "final": True, "interrupted": True}, token=key)
        self.assertEqual(st, 200, done)
        s = scrub()  # the run closed without reporting it: now it is a stray
        self.assertEqual((s["extra"], s["report"]["extra"][0]["action"]), (1, "indexed"), s)

    def test_the_janitor_removes_stale_temp_files_of_every_job_on_its_own(self):
        self.start(n_files=3)
        self.c.server_extra = ("--janitor-interval", "1s")
        self.sync_ok()
        old_temp = os.path.join(self.dest, "day-0", TEMP_NAME)
        young_temp = os.path.join(self.dest, "day-1", ".dstmp-cafebabe-fedcba9876543210")
        for path, age in ((old_temp, 7200), (young_temp, 60)):
            with open(path, "wb") as f:
                f.write(b"partial")
            t = time.time() - age
            os.utime(path, (t, t))
        self.c.restart_server()  # the first janitor pass sweeps
        wait_for("the stale temp file to go", lambda: not os.path.exists(old_temp), 30)
        self.assertTrue(os.path.exists(young_temp))  # an upload may still be writing it
        self.assertEqual(self.c.admin("GET", "/scrubs")[1]["scrubs"], [])  # no scrub did it


class ScrubTwoInstancesTest(ScrubCase):
    def test_two_instances_on_one_postgresql_run_each_scrub_once(self):
        self.c = Cluster(BIN_DIR, index="postgresql",
                         server_extra=("--janitor-interval", "1h", "--scrub-interval", "0"))
        self.src = os.path.join(self.c.root, "source")
        self.files = write_source(self.src, 6)
        self.c.add_server()
        self.c.enroll(RUNNER)
        for job in ("a", "b", "c", "d"):
            self.c.cli("jobs", "add", RUNNER, job, "--source", self.src, "--dest", f"lab/{job}",
                       "--settle", "0s", "--interval", "1h")
            p = self.c.cli("sync", RUNNER, job, "--wait", "--json", check=False)
            self.assertEqual(p.returncode, 0, p.stderr)
        for _ in range(3):
            st, body, _ = self.c.admin("POST", "/scrub", {"all": True})
            self.assertEqual((st, len(body["queued"])), (202, 4), body)
            for s in body["queued"]:
                done = self.wait_scrub(s["id"])
                self.assertEqual((done["state"], done["objects_listed"]), ("succeeded", 6), done)
        logs = []
        for name in ("server.log", "server-2.log"):
            with open(os.path.join(self.c.root, name), errors="replace") as f:
                logs.append(f.read())
        st, body, _ = self.c.admin("GET", "/scrubs?limit=100")
        self.assertEqual(len(body["scrubs"]), 12)
        for s in body["scrubs"]:
            runs = [log.count(f"scrub {s['id']} of {RUNNER}/{s['job']} done") for log in logs]
            self.assertEqual(sum(runs), 1, (s["id"], runs))


def azure_suite():
    """The drift scenario on Azure Blob storage (Azurite), reusing test_azure_sync's fixtures."""
    import test_azure_sync as az  # noqa: E402

    class ScrubAzureTest(ScrubCase):
        def test_drift_on_blob_storage_is_found_and_healed(self):
            import shutil
            import tempfile
            tmp = tempfile.mkdtemp(prefix="datasync-e2e-scrub-az-")
            azurite = az.Azurite(tmp)
            try:
                azurite.create_container()
                key_file = os.path.join(tmp, "storage.key")
                with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                    f.write(az.KEY + "\n")
                url = f"azblob://{az.ACCOUNT}/{az.CONTAINER}?endpoint={azurite.endpoint}"
                self.c = az.AzureCluster(BIN_DIR, ["--storage", url, "--storage-key-file", key_file,
                                                   "--janitor-interval", "1h", "--alert-interval", "1s"])
                self.src = os.path.join(self.c.root, "source")
                self.files = write_source(self.src, 12)
                self.c.enroll(RUNNER)
                self.c.cli("jobs", "add", RUNNER, JOB, "--source", self.src, "--dest", "lab/raw",
                           "--settle", "0s", "--interval", "1h")
                self.sync_ok()
                self.drift_on_blobs(azurite)
            finally:
                if self.c is not None:
                    self.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")
                    self.c = None
                azurite.stop()
                azurite.log.close()
                shutil.rmtree(tmp, ignore_errors=True)

        def drift_on_blobs(self, azurite):
            gone, same, grown = "day-0/meas_000.dat", "day-1/meas_001.dat", "day-2/meas_002.dat"
            st, _, _ = azurite.request("DELETE", "lab/raw/" + gone)
            self.assertEqual(st, 202)
            # Same size, other bytes, and the metadata still claims the synced SHA-256 (only a
            # re-hash sees it); the other one rewritten without our metadata.
            _, headers = azurite.get("lab/raw/" + same)
            meta = {k: v for k, v in headers.items() if k.startswith("x-ms-meta-")}
            self.assertIn("x-ms-meta-sha256", meta)
            st, body, _ = azurite.request("PUT", "lab/raw/" + same, body=b"\x00" * len(self.files[same]),
                                          headers={"x-ms-blob-type": "BlockBlob", **meta})
            self.assertEqual(st, 201, body)
            azurite.put("lab/raw/" + grown, self.files[grown] + b"more")
            azurite.put("lab/raw/stray/extra.dat", b"put here by hand\n")
            s = self.scrub(rehash=1.0)
            self.assertEqual(s["state"], "succeeded", s)
            self.assertEqual({k: s[k] for k in ("missing", "extra", "size_mismatches", "hash_mismatches",
                                                "healed", "unhealed")},
                             {"missing": 1, "extra": 1, "size_mismatches": 1, "hash_mismatches": 1,
                              "healed": 4, "unhealed": 0}, s)
            wait_for("storage_drift alert", lambda: self.drift_alerts(), 30)
            run = self.sync_ok()
            self.assertEqual(run["files_uploaded"], 3, run)
            for rel in (gone, same, grown):
                data, _ = azurite.get("lab/raw/" + rel)
                self.assertEqual(data, self.files[rel], rel)
            again = self.scrub(rehash=1.0)
            self.assertFalse(again["drift"], again)
            self.assertEqual(again["unhealed"], 0, again)
            wait_for("the alert resolves", lambda: not self.drift_alerts(), 30)

    return unittest.defaultTestLoader.loadTestsFromTestCase(ScrubAzureTest)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--azure", action="store_true", help="the drift scenario on Azurite")
    args, rest = ap.parse_known_args()
    BIN_DIR = args.bin_dir
    if args.azure:
        result = unittest.TextTestRunner(verbosity=2).run(azure_suite())
        sys.exit(0 if result.wasSuccessful() else 1)
    unittest.main(argv=[sys.argv[0], "-v", *rest])
