"""Starts and drives the real DataSync programs for end-to-end tests (standard library only)."""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


class Failure(AssertionError):
    pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wait_for(what, predicate, timeout=30.0, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise Failure(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Cluster:
    """One server, its CLI, and any number of agents, in a fresh temp dir."""

    def __init__(self, bin_dir, heartbeat="1s", max_body=None):
        self.bin_dir = os.path.abspath(bin_dir)
        self.root = tempfile.mkdtemp(prefix="datasync-e2e-")
        self.share = os.path.join(self.root, "share")
        self.data = os.path.join(self.root, "data")
        self.agents = {}
        self.logs = []
        self.heartbeat = heartbeat
        self.max_body = max_body
        self.index_path = os.path.join(self.root, "state.db")
        self.server = None
        self.url = None
        self.start_server()

    def start_server(self, listen="127.0.0.1:0", extra=()):
        args = [self.bin("datasync-server"), "--listen", listen,
                "--index", "sqlite:" + self.index_path,
                "--storage", "file://" + self.share, "--data", self.data,
                "--heartbeat-interval", self.heartbeat, *extra]
        if self.max_body:
            args += ["--max-body", str(self.max_body)]
        log = open(os.path.join(self.root, "server.log"), "ab")
        self.logs.append(log)
        self.server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
        url = None
        for line in self.server.stdout:
            line = line.decode().strip()
            if "listening on " in line:
                url = line.split("listening on ")[1]
                break
        if not url:
            raise Failure("server did not start; see " + log.name)
        self.url = url
        with open(os.path.join(self.data, "admin.token")) as f:
            self.token = f.read().strip()

    def stop_server(self, sig=signal.SIGTERM):
        self.server.send_signal(sig)
        self.server.wait(timeout=30)

    def restart_server(self, wipe_index=False):
        """Stops the server and starts it again on the same port (agents keep their URL)."""
        port = self.url.rsplit(":", 1)[1]
        self.stop_server()
        if wipe_index:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.index_path + suffix):
                    os.remove(self.index_path + suffix)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.start_server(listen="127.0.0.1:" + port)
                return
            except Failure:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def bin(self, name):
        return os.path.join(self.bin_dir, name)

    # ---- CLI -------------------------------------------------------------------------------
    def cli(self, *args, check=True):
        env = dict(os.environ, DATASYNC_SERVER=self.url,
                   DATASYNC_TOKEN_FILE=os.path.join(self.data, "admin.token"))
        env.pop("DATASYNC_TOKEN", None)
        p = subprocess.run([self.bin("datasync"), *args], capture_output=True, text=True, env=env,
                           timeout=300)
        if check and p.returncode != 0:
            raise Failure(f"datasync {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
        return p

    def cli_json(self, *args):
        return json.loads(self.cli(*args, "--json").stdout)

    # ---- raw HTTP ------------------------------------------------------------------------------
    def http(self, method, path, body=None, token=None, raw=None, headers=None):
        """Returns (status, parsed JSON or None, headers)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", "Bearer " + token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None), dict(r.headers)
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = None
            return e.code, parsed, dict(e.headers)

    def admin(self, method, path, body=None):
        return self.http(method, "/api/v1/admin" + path, body, token=self.token)

    # ---- agents --------------------------------------------------------------------------------
    def start_agent(self, name, extra=(), url=None):
        state = os.path.join(self.root, "agent-" + name)
        log = open(os.path.join(self.root, f"agent-{name}.log"), "ab")
        self.logs.append(log)
        p = subprocess.Popen([self.bin("datasync-agent"), "--server", url or self.url, "--state-dir", state,
                              "--name", name, "--enroll-poll", "200ms", "--heartbeat-interval", "1s",
                              *extra], stdout=log, stderr=log)
        self.agents[name] = p
        return p

    def stop_agent(self, name, sig=signal.SIGTERM, timeout=30):
        p = self.agents.pop(name)
        p.send_signal(sig)
        return p.wait(timeout=timeout)

    def runner(self, name):
        for r in self.cli_json("runners", "list"):
            if r["name"] == name:
                return r
        return None

    def enroll(self, name, extra=()):
        """Starts an agent, approves it through the CLI, waits until it heartbeats."""
        self.start_agent(name, extra)
        wait_for(f"{name} pending", lambda: (self.runner(name) or {}).get("status") == "pending")
        self.cli("runners", "approve", name)
        wait_for(f"{name} online", lambda: (self.runner(name) or {}).get("online"))

    def fake_agent_key(self, name):
        """Registers over raw HTTP, approves through the CLI, returns the API key."""
        st, reg, _ = self.http("POST", "/api/v1/agent/register", {"name": name, "hostname": "fake"})
        if st != 202:
            raise Failure(f"register {name}: HTTP {st} {reg}")
        self.cli("runners", "approve", name)
        st, es, _ = self.http("GET", "/api/v1/agent/enrollment/" + reg["enrollment_id"],
                              token=reg["enrollment_secret"])
        if st != 200 or not es.get("api_key"):
            raise Failure(f"enrollment poll for {name}: HTTP {st} {es}")
        return es["api_key"], reg

    def close(self, keep=False):
        for name in list(self.agents):
            try:
                self.stop_agent(name)
            except Exception:
                self.agents.get(name) and self.agents[name].kill()
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
        for log in self.logs:
            log.close()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


def make_tree(root, n_small=1200, seed=1234, big_mib=20):
    """A measurement-like tree: nested date/part folders, spaces and non-ASCII names, a zero-byte
    file and a large file. Returns the sorted list of relative paths."""
    rng = random.Random(seed)
    paths = []

    def write(rel, data):
        full = os.path.join(root, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
        past = time.time() - 3600
        os.utime(full, (past, past))
        paths.append(rel)

    for i in range(n_small):
        day = f"2026-11-{1 + i % 28:02d}"
        part = f"part {i % 7}" if i % 3 else f"Teil-ü{i % 5}"
        name = f"meas_{i:05d}.dat" if i % 11 else f"Messung µ {i}.csv"
        write(f"{day}/{part}/{name}", rng.randbytes(rng.randint(1, 8192)))
    write("empty/zero-byte.dat", b"")
    write("big/large run 1.bin", rng.randbytes(big_mib << 20))
    write("Übersicht/Ωmega – notes.txt", "Grüße aus dem Labor\n".encode())
    return sorted(paths)
