#!/usr/bin/env python3
"""DataSync load generator: N simulated agents heartbeating and comparing against 1..K
datasync-server instances (Python standard library only).

It starts everything itself with tests/e2e/harness.py (the e2e harness): the servers on a SQLite
or a throwaway PostgreSQL index, and nginx in front of them (also for one instance, so that both
configurations pay the same proxy hop). Then:

  setup     each simulated agent registers, is approved, gets a job, and syncs a manifest of
            --files files once (compare + complete), so the index holds N x --files rows;
  measure   for --duration seconds every agent loops, back to back (closed loop):
            heartbeat; compare of its whole manifest (nothing changed: nothing to upload);
            complete (final, empty) to close that run.

It prints requests/s and latency p50/p99 per call, and one JSON line for docs/scaling.md.
Agents are spread over --procs processes (threads inside), so the generator itself can use more
than one core; it shares the machine with the servers, nginx and PostgreSQL.

  python3 bench/loadgen.py --bin-dir build/bin --index postgresql --servers 2 --agents 32
"""

import argparse
import http.client
import ssl
import json
import multiprocessing
import os
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from harness import Cluster, Failure, tls_material  # noqa: E402

TLS_CONTEXT = ssl.create_default_context(cafile=tls_material().ca_file)


class Conn:
    """One keep-alive HTTP connection, reopened after an error."""

    def __init__(self, url, key):
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.host, self.port, self.key = host, int(port), key
        self.https = url.startswith("https://")
        self.conn = None

    def call(self, method, path, body=None):
        for attempt in range(2):
            if self.conn is None:
                if self.https:  # the harness's private CA (tls_material())
                    self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=120,
                                                            context=TLS_CONTEXT)
                else:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                headers = {"Authorization": "Bearer " + self.key}
                if body is not None:
                    headers["Content-Type"] = "application/json"
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                if r.status >= 300:
                    raise Failure(f"{method} {path}: HTTP {r.status} {data[:200]!r}")
                return data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        return None


def manifest(agent, files):
    return [{"path": f"day-{i % 30:02d}/meas_{agent}_{i:06d}.dat", "size": 1000 + i,
             "mtime_ns": 1_700_000_000_000_000_000 + i, "sha256": f"{agent:08x}{i:056x}"}
            for i in range(files)]


def compare_body(run_id, files_json, n):
    # The manifest is encoded once; only the run id changes between compares.
    return (f'{{"run_id":"{run_id}","trigger":"schedule","last":true,"total_files":{n},'
            f'"total_bytes":0,"files":{files_json}}}').encode()


def agent_loop(url, key, job, agent, files, stop_at, start_at, out, mode):
    """One simulated agent; appends (kind, seconds) to `out`."""
    c = Conn(url, key)
    entries = manifest(agent, files)
    files_json = json.dumps(entries, separators=(",", ":"))
    beat = json.dumps({"agent_version": "bench", "state": "idle", "current_run": "",
                       "jobs_version": 1}).encode()
    while time.time() < start_at:
        time.sleep(0.01)
    while time.time() < stop_at:
        t = time.perf_counter()
        c.call("POST", "/api/v1/agent/heartbeat", beat)
        out.append(("heartbeat", time.perf_counter() - t))
        if mode == "heartbeat":
            continue
        run_id = str(uuid.uuid4())
        t = time.perf_counter()
        plan = json.loads(c.call("POST", f"/api/v1/agent/jobs/{job}/compare",
                                 compare_body(run_id, files_json, files)))
        out.append(("compare", time.perf_counter() - t))
        if plan["upload"]:
            raise Failure(f"agent {agent}: {len(plan['upload'])} files to upload in the steady state")
        t = time.perf_counter()
        c.call("POST", f"/api/v1/agent/runs/{run_id}/complete",
               b'{"results":[],"final":true,"interrupted":false,"error":""}')
        out.append(("complete", time.perf_counter() - t))


def worker(url, agents, files, stop_at, start_at, queue, mode):
    """One process: a thread per agent; sends its samples back through `queue`."""
    samples = []
    threads = [threading.Thread(target=agent_loop,
                                args=(url, key, job, n, files, stop_at, start_at, samples, mode))
               for n, key, job in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(samples)


def setup_agent(c, n, files):
    """Registers agent n, approves it, gives it a job and syncs its manifest once."""
    name = f"bench-{n:04d}"
    st, reg, _ = c.http("POST", "/api/v1/agent/register", {"name": name, "hostname": "bench"})
    if st != 202:
        raise Failure(f"register {name}: HTTP {st} {reg}")
    st, body, _ = c.admin("POST", f"/runners/{name}/approve")
    if st != 200:
        raise Failure(f"approve {name}: HTTP {st} {body}")
    st, es, _ = c.http("GET", "/api/v1/agent/enrollment/" + reg["enrollment_id"],
                       token=reg["enrollment_secret"])
    key = es["api_key"]
    spec = {"name": "raw", "source": "/data", "dest_prefix": f"bench/{name}", "includes": [],
            "excludes": [], "interval_ms": 3_600_000, "settle_ms": 0, "enabled": True}
    st, body, _ = c.admin("POST", f"/runners/{name}/jobs/raw", spec)
    if st != 201:
        raise Failure(f"job of {name}: HTTP {st} {body}")
    conn = Conn(c.url, key)
    entries = manifest(n, files)
    run_id = str(uuid.uuid4())
    plan = json.loads(conn.call("POST", "/api/v1/agent/jobs/raw/compare",
                                compare_body(run_id, json.dumps(entries), files)))
    results = [dict(e, status="uploaded", error="", kept_version="", duration_ms=1) for e in entries]
    for i in range(0, len(results), 1000):
        conn.call("POST", f"/api/v1/agent/runs/{run_id}/complete",
                  json.dumps({"results": results[i:i + 1000], "final": i + 1000 >= len(results),
                              "interrupted": False, "error": ""}).encode())
    if len(plan["upload"]) != files:
        raise Failure(f"{name}: first compare planned {len(plan['upload'])} of {files}")
    return n, key, "raw"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """CPU time (user + system) the processes `pids` have used so far."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def children(pid):
    """Direct children of `pid` (PostgreSQL backends, nginx workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def machine_busy_seconds():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / CLK_TCK  # all but idle and iowait


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--index", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--servers", type=int, default=1, help="datasync-server instances")
    ap.add_argument("--agents", type=int, default=32, help="simulated agents")
    ap.add_argument("--files", type=int, default=1000, help="files in each agent's manifest")
    ap.add_argument("--duration", type=float, default=20, help="seconds of measurement")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--workers", type=int, default=8, help="datasync-server --workers")
    ap.add_argument("--no-balancer", action="store_true", help="one server, no nginx")
    ap.add_argument("--mode", choices=("cycle", "heartbeat"), default="cycle",
                    help="cycle: heartbeat + compare + complete; heartbeat: heartbeats only")
    args = ap.parse_args()

    # With nginx in front, TLS ends there and the servers speak plain HTTP behind it.
    c = Cluster(args.bin_dir, heartbeat="60s", index=args.index, behind_proxy=not args.no_balancer,
                server_extra=("--log-level", "warn", "--workers", str(args.workers)))
    try:
        for _ in range(args.servers - 1):
            c.add_server()
        if not args.no_balancer:
            c.start_balancer()
        t0 = time.monotonic()
        agents = [setup_agent(c, n, args.files) for n in range(args.agents)]
        setup_s = time.monotonic() - t0

        start_at = time.time() + 1.0
        stop_at = start_at + args.duration
        queue = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=worker,
                                         args=(c.url, agents[i::args.procs], args.files, stop_at,
                                               start_at, queue, args.mode))
                 for i in range(args.procs)]
        for p in procs:
            p.start()
        # CPU used during the measurement, by part.
        servers = [c.server.pid] + [p.pid for p, _ in c.extra_servers]
        parts = {"servers": lambda: servers,
                 "generator": lambda: [p.pid for p in procs]}
        if c.pg:
            with open(os.path.join(c.pg.data, "postmaster.pid")) as f:
                postmaster = int(f.readline())
            parts["postgresql"] = lambda: [postmaster] + children(postmaster)
        if c.balancer:
            parts["nginx"] = lambda: [c.balancer.proc.pid] + children(c.balancer.proc.pid)
        while time.time() < start_at:
            time.sleep(0.005)
        cpu0 = {k: cpu_seconds(f()) for k, f in parts.items()}
        busy0 = machine_busy_seconds()
        time.sleep(max(0.0, stop_at - time.time()))
        cpu1 = {k: cpu_seconds(f()) for k, f in parts.items()}
        busy1 = machine_busy_seconds()
        samples = []
        for _ in procs:
            samples += queue.get()
        for p in procs:
            p.join()

        result = {"mode": args.mode, "index": args.index, "servers": args.servers,
                  "agents": args.agents,
                  "files": args.files, "duration_s": args.duration, "setup_s": round(setup_s, 1),
                  "balancer": not args.no_balancer}
        print(f"{args.servers} instance(s), {args.index} index, {args.agents} agents x "
              f"{args.files} files, {args.duration:.0f} s (setup {setup_s:.1f} s)")
        for kind in ("heartbeat", "compare", "complete"):
            lat = sorted(s for k, s in samples if k == kind)
            if not lat:
                continue
            rate = len(lat) / args.duration
            p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
            print(f"  {kind:9s} {rate:8.1f}/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
            result[kind] = {"per_s": round(rate, 1), "p50_ms": round(p50, 1), "p99_ms": round(p99, 1)}
        cpu = {k: round((cpu1[k] - cpu0[k]) / args.duration, 2) for k in parts}
        cpu["machine"] = round((busy1 - busy0) / args.duration, 2)
        # Anything else running on the machine at the same time (it skews the figures).
        cpu["other"] = round(max(0.0, cpu["machine"] - sum(cpu[k] for k in parts)), 2)
        result["cpu_cores"] = cpu
        print("  CPU cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()) +
              f" (of {os.cpu_count()})")
        # CPU the service (instances + PostgreSQL + nginx) spends per agent loop: a cost that other
        # load on the machine does not skew, unlike the rates and latencies above.
        loops = sum(1 for k, _ in samples if k == "heartbeat")
        service = sum(cpu[k] for k in ("servers", "postgresql", "nginx") if k in cpu)
        if loops:
            per_loop = service * args.duration / loops * 1000
            what = "cycle" if args.mode == "cycle" else "heartbeat"
            result["service_cpu_ms_per_" + what] = round(per_loop, 2)
            print(f"  service CPU per {what}: {per_loop:.2f} ms "
                  f"(=> ~{1000 / per_loop:.0f} {what}s/s per core)")
        print(json.dumps(result))
    finally:
        c.close()


if __name__ == "__main__":
    main()
