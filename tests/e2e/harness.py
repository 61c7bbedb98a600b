"""Starts and drives the real DataSync programs for end-to-end tests (standard library only)."""

import atexit
import base64
import hashlib
import json
import os
import pwd
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


class Failure(AssertionError):
    pass


def _share_fixtures():
    """tests/fixtures/samba.py (SambaShare, BindfsShare), imported on first use."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "samba.py")
    spec = importlib.util.spec_from_file_location("datasync_share_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def free_port():
    """A TCP port on 127.0.0.1 nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TlsMaterial:
    """A private CA and a server certificate it signed (P-256; SAN localhost and 127.0.0.1), made
    with the openssl CLI in their own temp dir, once per test process (tls_material()):
    ca_file, cert_file, key_file (PEM), pin (libcurl's sha256//BASE64 of the server's public key)
    and spki (the same hash, bare base64, as Chromium's --ignore-certificate-errors-spki-list
    wants it). make_ca() makes another, unrelated CA (a "wrong CA" for refusal tests)."""

    def __init__(self, root):
        self.dir = root
        self.ca_file, ca_key = self.make_ca("ca")
        self.cert_file = os.path.join(root, "server.pem")
        self.key_file = os.path.join(root, "server.key")
        self.issue(self.cert_file, self.key_file, self.ca_file, ca_key)
        der = self._openssl("pkey", "-in", self.key_file, "-pubout", "-outform", "DER")
        self.spki = base64.b64encode(hashlib.sha256(der).digest()).decode()
        self.pin = "sha256//" + self.spki

    def _openssl(self, *args):
        p = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, timeout=60)
        if p.returncode != 0:
            raise Failure(f"openssl {' '.join(args)}: {p.stderr.decode(errors='replace').strip()}")
        return p.stdout

    def make_ca(self, name):
        """A new self-signed CA; returns (certificate file, key file)."""
        cert, key = os.path.join(self.dir, name + ".pem"), os.path.join(self.dir, name + ".key")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", key, "-out", cert, "-days", "3",
                      "-subj", f"/CN=DataSync e2e {name}",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return cert, key

    def issue(self, cert_file, key_file, ca_file, ca_key):
        """A server certificate for localhost and 127.0.0.1 signed by ca_file/ca_key."""
        csr = key_file + ".csr"
        ext = key_file + ".ext"
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                    "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", key_file, "-out", csr, "-subj", "/CN=localhost")
        self._openssl("x509", "-req", "-in", csr, "-CA", ca_file, "-CAkey", ca_key,
                      "-CAcreateserial", "-out", cert_file, "-days", "3", "-extfile", ext)
        os.chmod(key_file, 0o600)


_TLS = None


def tls_material():
    """The process's TlsMaterial, made on first use; urllib (and so Cluster.http and any
    urllib.request.urlopen in the tests) trusts its CA from then on."""
    global _TLS
    if _TLS is None:
        root = tempfile.mkdtemp(prefix="datasync-e2e-tls-")
        atexit.register(shutil.rmtree, root, True)
        _TLS = TlsMaterial(root)
        context = ssl.create_default_context(cafile=_TLS.ca_file)
        urllib.request.install_opener(
            urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)))
    return _TLS


class PostgresServer:
    """A throwaway PostgreSQL 15 cluster for one test (docs: /work/shared/PITFALLS.md): initdb and
    pg_ctl as the `postgres` user when we are root, in its own temp dir under /tmp (traversable by
    `postgres`), on a free port, fsync off; stop() is `pg_ctl -m immediate` and removes the dir."""

    BIN = "/usr/lib/postgresql/15/bin"
    USER = "test"

    def __init__(self):
        if not os.path.exists(os.path.join(self.BIN, "initdb")):
            raise Failure(self.BIN + "/initdb is missing: install the Debian package `postgresql`")
        self.dir = tempfile.mkdtemp(prefix="datasync-e2e-pg-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.as_postgres = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = None
        t0 = time.monotonic()
        self._run([os.path.join(self.BIN, "initdb"), "-D", self.data, "-U", self.USER, "-A", "trust",
                   "-E", "UTF8", "--no-sync", "--no-instructions"])
        for attempt in range(3):  # a "free" port may be taken before the server binds it
            self.port = free_port()
            opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            p = self._run([os.path.join(self.BIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-w",
                           "-t", "30", "-o", opts, "start"], check=False)
            if p.returncode == 0:
                break
            if attempt == 2:
                raise Failure(f"pg_ctl start failed: {p.stdout}{p.stderr}\n{self._server_log()}")
        self.started_s = time.monotonic() - t0

    def _run(self, args, check=True):
        p = subprocess.run(self.as_postgres + args, cwd=self.dir, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=120)
        if check and p.returncode != 0:
            raise Failure(f"{' '.join(args)} exited {p.returncode}: {p.stdout}{p.stderr}")
        return p

    def _server_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def url(self, db):
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{db}"

    def psql(self, db, sql):
        """Runs `sql` on database `db`; returns the unaligned, tuples-only output."""
        p = subprocess.run([os.path.join(self.BIN, "psql"), "-h", self.dir, "-p", str(self.port),
                            "-U", self.USER, "-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        if p.returncode != 0:
            raise Failure(f"psql on {db}: {p.stderr.strip()}")
        return p.stdout.strip()

    def create_database(self, name):
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name):
        self.psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, keep=False):
        if self.port is not None:
            # Immediate: the data is thrown away, a shutdown checkpoint would only cost time.
            self._run([os.path.join(self.BIN, "pg_ctl"), "-D", self.data, "-m", "immediate", "-w",
                       "stop"], check=False)
            self.port = None
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


NGINX_CONF = """# DataSync behind nginx: generated by tests/e2e/harness.py (docs/scaling.md explains it).
{user}worker_processes 1;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  upstream datasync {{
{servers}
    keepalive 64;                    # idle connections kept open to the servers
  }}
  server {{
    listen 127.0.0.1:{port} ssl;     # TLS ends here; the servers behind run --insecure-http
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    add_header Strict-Transport-Security "max-age=31536000" always;
    client_max_body_size 64m;        # > datasync-server --max-body (32 MiB by default)
    client_body_buffer_size 2m;      # a 5,000-entry compare batch stays in memory
    location / {{
      proxy_pass http://datasync;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_connect_timeout 2s;
      proxy_read_timeout 75s;        # > the agents' 30 s long-poll (GET /agent/commands?wait=30s)
      proxy_send_timeout 75s;
      proxy_buffering off;           # answers are small JSON; long-polls stream nothing
      proxy_next_upstream error timeout http_502 http_503;
    }}
  }}
}}
"""


class Balancer:
    """nginx in front of several datasync-server instances, started with a generated config in
    its own directory: `nginx -p DIR -c DIR/nginx.conf -g 'daemon off; pid DIR/nginx.pid;'`.
    nginx terminates TLS with `tls` (a TlsMaterial) and proxies plain HTTP to the instances."""

    def __init__(self, root, upstreams, tls):
        self.dir = os.path.join(root, "nginx")
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.port = free_port()
        servers = "\n".join(f"    server {u.split('://', 1)[-1]} max_fails=1 fail_timeout=30s;"
                             for u in upstreams)
        conf = NGINX_CONF.format(dir=self.dir, port=self.port, servers=servers,
                                 cert=tls.cert_file, key=tls.key_file,
                                 user="user root root;\n" if os.geteuid() == 0 else "")
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise Failure("nginx is missing: install the Debian package `nginx`")
        self.log = open(os.path.join(self.dir, "nginx.out"), "ab")
        self.proc = subprocess.Popen([nginx, "-p", self.dir, "-c", self.conf, "-e",
                                      os.path.join(self.dir, "error.log"),
                                      "-g", f"daemon off; pid {self.dir}/nginx.pid;"],
                                     stdout=self.log, stderr=self.log)
        self.url = f"https://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise Failure("nginx did not start; see " + os.path.join(self.dir, "error.log"))
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: lets in-flight requests finish
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Cluster:
    """One server, its CLI, and any number of agents, in a fresh temp dir.

    index: "sqlite" (default) or "postgresql" (a throwaway PostgreSQL cluster); the default comes
    from the environment variable DATASYNC_E2E_INDEX. add_server() starts more instances on the
    same index and storage, start_balancer() puts nginx in front of them all and points the CLI,
    raw HTTP and new agents at it.

    TLS: every server speaks HTTPS with the process's certificate (tls_material(), self.tls); the
    CLI, agents (start_agent) and urllib trust its CA. behind_proxy=True models a TLS-terminating
    reverse proxy instead: the servers run `--insecure-http --trust-proxy` (self.url is then a plain
    http:// URL until start_balancer() puts nginx, speaking HTTPS, in front of them).

    storage: where the storage root (self.share) lives: "local" (default, a folder in the temp
    dir), "samba" (a real Samba share mounted through smbnetfs, tests/fixtures/samba.py) or
    "bindfs" (bindfs --xattr-none: a share without xattrs); the default comes from the
    environment variable DATASYNC_E2E_STORAGE. self.share_backing is the folder behind it."""

    def __init__(self, bin_dir, heartbeat="1s", max_body=None, index=None, server_extra=(),
                 storage=None, behind_proxy=False):
        self.bin_dir = os.path.abspath(bin_dir)
        self.tls = tls_material()
        self.behind_proxy = behind_proxy
        self.root = tempfile.mkdtemp(prefix="datasync-e2e-")
        self.storage = storage or os.environ.get("DATASYNC_E2E_STORAGE") or "local"
        self.share_fixture = None
        if self.storage == "local":
            self.share = os.path.join(self.root, "share")
            self.share_backing = self.share
        elif self.storage in ("samba", "bindfs"):
            self.share_fixture = _share_fixtures().open_share(
                self.storage, os.path.join(self.root, "share-backing"))
            self.share_fixture.__enter__()
            self.share = os.path.join(self.share_fixture.path, "share")
            self.share_backing = os.path.join(self.share_fixture.backing, "share")
        else:
            raise Failure(f"unknown storage kind {self.storage!r} (local, samba or bindfs)")
        self.data = os.path.join(self.root, "data")
        self.agents = {}
        self.logs = []
        self.heartbeat = heartbeat
        self.max_body = max_body
        self.server_extra = tuple(server_extra)
        self.index_path = os.path.join(self.root, "state.db")
        self.index = index or os.environ.get("DATASYNC_E2E_INDEX") or "sqlite"
        self.pg = None
        if self.index == "postgresql":
            self.pg = PostgresServer()
            self.index_url = self.pg.create_database("datasync")
        elif self.index == "sqlite":
            self.index_url = "sqlite:" + self.index_path
        else:
            raise Failure(f"unknown index kind {self.index!r} (sqlite or postgresql)")
        self.server = None
        self.url = None
        self.extra_servers = []   # [(process, url)] started by add_server()
        self.balancer = None
        self.server_url = None    # the first server's own URL (self.url once a balancer runs)
        self.start_server()

    def _spawn_server(self, listen, data_dir, log_name, extra=()):
        """Starts one datasync-server on this cluster's index and storage; returns (process, url)."""
        if self.behind_proxy:
            transport = ["--insecure-http", "--trust-proxy"]
        else:
            transport = ["--tls-cert", self.tls.cert_file, "--tls-key", self.tls.key_file]
        args = [self.bin("datasync-server"), "--listen", listen, "--index", self.index_url,
                "--storage", "file://" + self.share, "--data", data_dir, *transport,
                "--heartbeat-interval", self.heartbeat, *self.server_extra, *extra]
        if self.max_body:
            args += ["--max-body", str(self.max_body)]
        log = open(os.path.join(self.root, log_name), "ab")
        self.logs.append(log)
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
        url = None
        for line in proc.stdout:
            line = line.decode().strip()
            if "listening on " in line:
                url = line.split("listening on ")[1]
                break
        if not url:
            raise Failure("server did not start; see " + log.name)
        return proc, url

    def start_server(self, listen="127.0.0.1:0", extra=()):
        self.server, url = self._spawn_server(listen, self.data, "server.log", extra)
        self.server_url = url
        if self.balancer is None:
            self.url = url
        with open(os.path.join(self.data, "admin.token")) as f:
            self.token = f.read().strip()

    # ---- several instances -------------------------------------------------------------------
    def add_server(self, extra=()):
        """Starts one more instance on the same index and storage, with its own data dir (the
        admin token stays the one the first instance created). Returns (process, url)."""
        n = len(self.extra_servers) + 2
        proc, url = self._spawn_server("127.0.0.1:0", os.path.join(self.root, f"data-{n}"),
                                       f"server-{n}.log", extra)
        self.extra_servers.append((proc, url))
        return proc, url

    def server_urls(self):
        return [self.server_url] + [u for _, u in self.extra_servers]

    def start_balancer(self):
        """nginx in front of every instance, terminating TLS; the CLI, raw HTTP and agents started
        from now on go through it. Returns its (https) URL. Needs behind_proxy=True."""
        if not self.behind_proxy:
            raise Failure("start_balancer() needs Cluster(..., behind_proxy=True): nginx terminates "
                          "TLS and the servers behind it speak plain HTTP")
        self.balancer = Balancer(self.root, self.server_urls(), self.tls)
        self.url = self.balancer.url
        return self.url

    def stop_server(self, sig=signal.SIGTERM):
        self.server.send_signal(sig)
        self.server.wait(timeout=30)

    def restart_server(self, wipe_index=False):
        """Stops the server and starts it again on the same port (agents keep their URL)."""
        port = self.server_url.rsplit(":", 1)[1]
        self.stop_server()
        if wipe_index and self.pg:
            self.pg.drop_database("datasync")
            self.pg.create_database("datasync")
        elif wipe_index:
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
    def cli_env(self, url=None):
        """The environment the CLI runs with: server URL, token file, and trust in the harness CA
        (DATASYNC_ALLOW_HTTP=1 only when the URL is a plain http:// one)."""
        url = url or self.url
        env = dict(os.environ, DATASYNC_SERVER=url, DATASYNC_CA_FILE=self.tls.ca_file,
                   DATASYNC_TOKEN_FILE=os.path.join(self.data, "admin.token"))
        for name in ("DATASYNC_TOKEN", "DATASYNC_ALLOW_HTTP", "DATASYNC_PINNED_KEY"):
            env.pop(name, None)
        if url.startswith("http://"):
            env["DATASYNC_ALLOW_HTTP"] = "1"
        return env

    def cli(self, *args, check=True):
        env = self.cli_env()
        p = subprocess.run([self.bin("datasync"), *args], capture_output=True, text=True, env=env,
                           timeout=300)
        if check and p.returncode != 0:
            raise Failure(f"datasync {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
        return p

    def cli_json(self, *args):
        return json.loads(self.cli(*args, "--json").stdout)

    # ---- raw HTTP ------------------------------------------------------------------------------
    def http(self, method, path, body=None, token=None, raw=None, headers=None, base=None,
             timeout=60):
        """Returns (status, parsed JSON or None, headers). `base`: another URL than self.url
        (one instance directly, past the balancer)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request((base or self.url) + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", "Bearer " + token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else None), dict(r.headers)
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = None
            return e.code, parsed, dict(e.headers)

    def admin(self, method, path, body=None, base=None):
        return self.http(method, "/api/v1/admin" + path, body, token=self.token, base=base)

    # ---- agents --------------------------------------------------------------------------------
    def agent_trust(self, url=None):
        """The agent flags that trust this cluster's server: the harness CA, and --allow-http
        only for a plain http:// URL."""
        url = url or self.url
        return ["--allow-http"] if url.startswith("http://") else ["--ca-file", self.tls.ca_file]

    def start_agent(self, name, extra=(), url=None, trust=True):
        """trust=False: no --ca-file/--allow-http (the test passes its own in `extra`). The agent
        may read job sources under the cluster's root (--allow-source), where tests make them."""
        state = os.path.join(self.root, "agent-" + name)
        log = open(os.path.join(self.root, f"agent-{name}.log"), "ab")
        self.logs.append(log)
        url = url or self.url
        p = subprocess.Popen([self.bin("datasync-agent"), "--server", url, "--state-dir", state,
                              "--name", name, "--enroll-poll", "200ms", "--heartbeat-interval", "1s",
                              "--allow-source", self.root,
                              *(self.agent_trust(url) if trust else []), *extra],
                             stdout=log, stderr=log)
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

    def add_user(self, name, role, password):
        """A dashboard account, made as an operator would: `datasync-server users add`."""
        p = subprocess.run([self.bin("datasync-server"), "users", "add", name, "--role", role,
                            "--index", self.index_url], input=password + "\n", capture_output=True,
                           text=True, timeout=60)
        if p.returncode != 0:
            raise Failure(f"users add {name}: {p.stderr.strip()}")

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
        if self.balancer:
            self.balancer.stop()
        for proc in [self.server] + [p for p, _ in self.extra_servers]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [self.server] + [p for p, _ in self.extra_servers]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.pg:
            self.pg.stop(keep=keep)
        if self.share_fixture:
            self.share_fixture.close()
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
