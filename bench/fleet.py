#!/usr/bin/env python3
"""A fleet of simulated agents against one datasync-server, open loop (Python standard library).

Unlike loadgen.py (closed loop: each agent calls again as soon as it is answered), this keeps the
schedule a real fleet keeps, whatever the server's latency:

  - every agent heartbeats once per --interval (default 60 s), at its own phase;
  - every agent holds a commands long-poll open (GET /agent/commands?wait=30s) on its own
    connection, re-issued when it returns, as real agents do (--long-polls to hold fewer);
  - --comparers agents each compare a --files manifest once per --interval (nothing changed);
  - halfway through, one agent compares a --big-files manifest (batches of 5,000, as the agent
    sends it) that the index already holds: heartbeat latency is reported inside that window too.

Heartbeats go over a pool of --pool keep-alive connections (a real agent keeps its own; the
machine's open-file limit, 20,000 here, does not allow 2 per agent for 10,000 agents in one
generator process). It prints the sustained rates, p50/p99/max per call, the heartbeat p99 while
the big compare runs, and the server's CPU, peak RSS and open sockets; then one JSON line.

  python3 bench/fleet.py --bin-dir build/bin --agents 10000 --duration 120
"""

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from harness import Cluster, Failure  # noqa: E402

BATCH = 5000  # the agent's compare batch


class HttpConn:
    """One keep-alive HTTP/1.1 connection (asyncio streams), reopened after an error."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def call(self, method, path, body=b"", token=None, timeout=120):
        for attempt in range(2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}",
                        f"Content-Length: {len(body)}"]
                if body:
                    head.append("Content-Type: application/json")
                if token:
                    head.append("Authorization: Bearer " + token)
                self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
                await self.writer.drain()
                return await asyncio.wait_for(self._response(), timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                self.close()
                if attempt == 1:
                    raise

    async def _response(self):
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        data = await self.reader.readexactly(length) if length else b""
        if status >= 300:
            raise Failure(f"HTTP {status}: {data[:200]!r}")
        return data

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def manifest(agent, files):
    return [{"path": f"day-{i % 30:02d}/meas_{agent}_{i:07d}.dat", "size": 1000 + i,
             "mtime_ns": 1_700_000_000_000_000_000 + i, "sha256": f"{agent:08x}{i:056x}"}
            for i in range(files)]


def compare_bodies(run_id, entries):
    """The agent's compare requests for `entries`: batches of 5,000, the last one marked."""
    out = []
    for i in range(0, len(entries), BATCH):
        last = i + BATCH >= len(entries)
        out.append(json.dumps({"run_id": run_id, "trigger": "schedule", "last": last,
                               "total_files": len(entries), "total_bytes": 0,
                               "files": entries[i:i + BATCH]}, separators=(",", ":")).encode())
    return out


async def compare_run(conn, key, bodies, run_id, job="raw"):
    """One run's compares (`bodies`, built beforehand with compare_bodies(run_id, ...) so that
    JSON encoding does not stall the generator's event loop mid-measurement) and its final
    (empty) complete; returns seconds per compare request."""
    times = []
    planned = 0
    for body in bodies:
        t = time.perf_counter()
        plan = json.loads(await conn.call("POST", f"/api/v1/agent/jobs/{job}/compare", body, key))
        times.append(time.perf_counter() - t)
        planned += len(plan["upload"])
    await conn.call("POST", f"/api/v1/agent/runs/{run_id}/complete",
                    b'{"results":[],"final":true,"interrupted":false,"error":""}', key)
    return planned, times


async def seed_rows(conn, key, entries):
    """First sync of a manifest: compare + complete every file, so the index holds them."""
    run_id = str(uuid.uuid4())
    for body in compare_bodies(run_id, entries):
        await conn.call("POST", "/api/v1/agent/jobs/raw/compare", body, key)
    results = [dict(e, status="uploaded", error="", kept_version="", duration_ms=1) for e in entries]
    for i in range(0, len(results), 1000):
        await conn.call("POST", f"/api/v1/agent/runs/{run_id}/complete",
                        json.dumps({"results": results[i:i + 1000],
                                    "final": i + 1000 >= len(results), "interrupted": False,
                                    "error": ""}).encode(), key)


async def setup(host, port, token, n_agents, comparers, files, big_files, concurrency):
    """Registers and approves every agent; gives jobs and seeded rows to the comparers and to
    the big agent (the last one). Returns the API keys."""
    keys = [None] * n_agents
    conns = asyncio.Queue()
    for _ in range(concurrency):
        conns.put_nowait(HttpConn(host, port))

    async def one(n):
        conn = await conns.get()
        try:
            name = f"fleet-{n:05d}"
            reg = json.loads(await conn.call("POST", "/api/v1/agent/register", json.dumps(
                {"name": name, "hostname": "fleet"}).encode()))
            await conn.call("POST", f"/api/v1/admin/runners/{name}/approve", b"", token)
            es = json.loads(await conn.call("GET", "/api/v1/agent/enrollment/" + reg["enrollment_id"],
                                            b"", reg["enrollment_secret"]))
            keys[n] = es["api_key"]
            if n < comparers or n == n_agents - 1:
                spec = {"name": "raw", "source": "/data", "dest_prefix": f"fleet/{name}",
                        "includes": [], "excludes": [], "interval_ms": 3_600_000, "settle_ms": 0,
                        "enabled": True}
                await conn.call("POST", f"/api/v1/admin/runners/{name}/jobs/raw",
                                json.dumps(spec).encode(), token)
                await seed_rows(conn, keys[n], manifest(n, big_files if n == n_agents - 1 else files))
        finally:
            conns.put_nowait(conn)

    await asyncio.gather(*(one(n) for n in range(n_agents)))
    while not conns.empty():
        conns.get_nowait().close()
    return keys


async def measure(host, port, keys, a, samples, window, server_pid, stats):
    n = len(keys)
    pool = asyncio.Queue()
    for _ in range(a.pool):
        pool.put_nowait(HttpConn(host, port))
    # Like a real agent, each sends the jobs_version its last heartbeat answer carried (so the
    # server lists its jobs only when they changed).
    jobs_version = [0] * n

    def beat(i):
        return json.dumps({"agent_version": "fleet", "state": "idle", "current_run": "",
                           "jobs_version": jobs_version[i]}).encode()
    late = [0]
    # Every compare body the schedule needs, encoded before the clock starts.
    runs_per_comparer = int(a.duration / a.interval) + 2
    prebuilt = {}
    for i in range(a.comparers):
        entries = manifest(i, a.files)
        prebuilt[i] = [(rid, compare_bodies(rid, entries))
                       for rid in (str(uuid.uuid4()) for _ in range(runs_per_comparer))]
    big_run = str(uuid.uuid4())
    big_bodies = (big_run, compare_bodies(big_run, manifest(n - 1, a.big_files))) if a.big_files else None
    start = time.monotonic() + 2.0
    stop = start + a.duration

    async def heartbeats(i):
        due = start + a.interval * i / n
        while due < stop:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            conn = await pool.get()
            t = time.perf_counter()
            sent_at = time.monotonic()
            try:
                answer = await conn.call("POST", "/api/v1/agent/heartbeat", beat(i), keys[i])
                samples.append(("heartbeat", sent_at, time.perf_counter() - t))
                jobs_version[i] = json.loads(answer)["jobs_version"]
            except Exception as e:  # noqa: BLE001 — counted, the fleet goes on
                samples.append(("heartbeat_error", sent_at, repr(e)))
            finally:
                pool.put_nowait(conn)
            if time.monotonic() - due > 1.0:
                late[0] += 1
            due += a.interval

    async def long_poll(i):
        conn = HttpConn(host, port)
        await asyncio.sleep(random.uniform(0, 30))  # real agents' long-polls are out of phase
        try:
            while time.monotonic() < stop:
                try:
                    await conn.call("GET", "/api/v1/agent/commands?wait=30s", b"", keys[i], timeout=60)
                except Exception:  # noqa: BLE001
                    samples.append(("long_poll_error", time.monotonic(), ""))
                    await asyncio.sleep(1)
        finally:
            conn.close()

    async def comparer(i):
        conn = HttpConn(host, port)
        due = start + a.interval * (i + 0.5) / max(1, a.comparers)
        while due < stop:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            run_id, bodies = prebuilt[i].pop()
            t = time.perf_counter()
            sent_at = time.monotonic()
            planned, _ = await compare_run(conn, keys[i], bodies, run_id)
            samples.append(("compare_run", sent_at, time.perf_counter() - t))
            if planned:
                raise Failure(f"comparer {i}: {planned} files planned in the steady state")
            due += a.interval
        conn.close()

    async def big():
        await asyncio.sleep(max(0.0, start + a.duration / 2 - time.monotonic()))
        conn = HttpConn(host, port)
        run_id, bodies = big_bodies
        window[0] = time.monotonic()
        planned, times = await compare_run(conn, keys[n - 1], bodies, run_id)
        window[1] = time.monotonic()
        conn.close()
        for t in times:
            samples.append(("big_compare_batch", window[0], t))
        samples.append(("big_compare", window[0], window[1] - window[0]))
        if planned:
            raise Failure(f"big compare planned {planned} files")

    async def sample_sockets():
        await asyncio.sleep(max(0.0, start + a.duration * 0.75 - time.monotonic()))
        stats["sockets"] = sum(1 for fd in os.listdir(f"/proc/{server_pid}/fd")
                               if os.readlink(f"/proc/{server_pid}/fd/{fd}").startswith("socket:"))

    polls = [asyncio.create_task(long_poll(i)) for i in range(min(a.long_polls, n))]
    tasks = [asyncio.create_task(heartbeats(i)) for i in range(n)]
    tasks += [asyncio.create_task(comparer(i)) for i in range(a.comparers)]
    tasks.append(asyncio.create_task(sample_sockets()))
    if a.big_files:
        tasks.append(asyncio.create_task(big()))
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    stats["start"] = start
    stats["cpu0"], gen0 = cpu_seconds(server_pid), time.process_time()
    await asyncio.gather(*tasks)
    stats["cpu1"], stats["gen_cpu"] = cpu_seconds(server_pid), time.process_time() - gen0
    for t in polls:  # the schedule is over: drop the held long-polls
        t.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
    while not pool.empty():
        pool.get_nowait().close()
    stats["late"] = late[0]


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--index", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--agents", type=int, default=10000)
    ap.add_argument("--interval", type=float, default=60, help="heartbeat interval, seconds")
    ap.add_argument("--duration", type=float, default=120, help="seconds of measurement")
    ap.add_argument("--long-polls", type=int, default=None, help="agents holding a long-poll (default: all)")
    ap.add_argument("--comparers", type=int, default=100, help="agents comparing once per interval")
    ap.add_argument("--files", type=int, default=1000, help="files per comparer's manifest")
    ap.add_argument("--big-files", type=int, default=100000, help="the one big compare (0: none)")
    ap.add_argument("--pool", type=int, default=64, help="connections carrying heartbeats")
    ap.add_argument("--workers", type=int, default=8, help="datasync-server --workers")
    ap.add_argument("--setup-concurrency", type=int, default=32)
    a = ap.parse_args()
    if a.long_polls is None:
        a.long_polls = a.agents
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    # Plain HTTP (--insecure-http, as behind a TLS-terminating proxy): the simulated agents speak
    # raw HTTP/1.1 over asyncio streams, and the figures measure the server, not TLS.
    c = Cluster(a.bin_dir, heartbeat=f"{int(a.interval)}s", index=a.index, behind_proxy=True,
                server_extra=("--log-level", "warn", "--workers", str(a.workers)))
    try:
        host, port = c.url.split("://", 1)[1].rsplit(":", 1)
        port = int(port)
        pid = c.server.pid
        t0 = time.monotonic()
        keys = asyncio.run(setup(host, port, c.token, a.agents, a.comparers, a.files, a.big_files,
                                 a.setup_concurrency))
        setup_s = time.monotonic() - t0
        print(f"setup: {a.agents} agents enrolled, {a.comparers} x {a.files} + {a.big_files} rows "
              f"seeded in {setup_s:.1f} s", flush=True)
        samples, window, stats = [], [0.0, 0.0], {}
        # The generator's own pauses would count as server latency: no cyclic GC while measuring
        # (everything it allocates is freed by reference counting anyway).
        gc.collect()
        gc.freeze()
        gc.disable()
        asyncio.run(measure(host, port, keys, a, samples, window, pid, stats))
        gc.enable()
        elapsed = a.duration
        cpu = (stats["cpu1"] - stats["cpu0"]) / elapsed
        rss_mib = proc_status(pid, "VmHWM") / 1024
        sockets, late = stats.get("sockets", 0), stats["late"]

        result = {"index": a.index, "agents": a.agents, "interval_s": a.interval,
                  "long_polls": a.long_polls, "comparers": a.comparers, "files": a.files,
                  "big_files": a.big_files, "duration_s": round(elapsed, 1),
                  "setup_s": round(setup_s, 1), "loadavg": open("/proc/loadavg").read().split()[:3]}
        print(f"{a.agents} agents, heartbeat every {a.interval:.0f} s, {a.long_polls} long-polls held, "
              f"{a.comparers} x {a.files}-file compares per interval, {elapsed:.0f} s measured")
        for kind in ("heartbeat", "compare_run", "big_compare_batch", "big_compare"):
            lat = [s for k, _, s in samples if k == kind]
            if not lat:
                continue
            rate = len(lat) / elapsed
            r = {"count": len(lat), "per_s": round(rate, 1), "p50_ms": round(pct(lat, 50) * 1000, 1),
                 "p99_ms": round(pct(lat, 99) * 1000, 1), "max_ms": round(max(lat) * 1000, 1)}
            result[kind] = r
            print(f"  {kind:18s} {r['count']:7d} ({r['per_s']:7.1f}/s)  p50 {r['p50_ms']:8.1f} ms"
                  f"  p99 {r['p99_ms']:8.1f} ms  max {r['max_ms']:8.1f} ms")
        if window[1] > window[0]:
            during = [s for k, at, s in samples if k == "heartbeat" and window[0] <= at <= window[1]]
            r = {"count": len(during), "p50_ms": round(pct(during, 50) * 1000, 1),
                 "p99_ms": round(pct(during, 99) * 1000, 1),
                 "max_ms": round(max(during or [0]) * 1000, 1)}
            result["heartbeat_during_big_compare"] = r
            print(f"  heartbeats during the {a.big_files}-file compare ({window[1] - window[0]:.1f} s): "
                  f"{r['count']}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
        # When the slow heartbeats happened (seconds into the run): stalls that recur on a beat
        # point at periodic work (index checkpoints, the command bus's cross-instance check).
        slow = sorted(int(at - stats["start"]) for k, at, s in samples if k == "heartbeat" and s > 0.1)
        if slow:
            from collections import Counter
            worst = Counter(slow).most_common(8)
            result["slow_heartbeat_seconds"] = sorted(worst)
            print("  heartbeats over 100 ms, by second of the run: " +
                  ", ".join(f"{sec}s:{cnt}" for sec, cnt in sorted(worst)))
        errors = {k: sum(1 for kk, _, _ in samples if kk == k)
                  for k in ("heartbeat_error", "long_poll_error")}
        gen = stats["gen_cpu"] / elapsed
        result.update(errors, heartbeats_late_over_1s=late, server_cpu_cores=round(cpu, 2),
                      generator_cpu_cores=round(gen, 2),
                      server_peak_rss_mib=round(rss_mib, 1), server_sockets=sockets)
        print(f"  errors: {errors}, heartbeats sent >1 s late: {late}, generator {gen:.2f} cores busy")
        print(f"  server: {cpu:.2f} cores busy, peak RSS {rss_mib:.0f} MiB, {sockets} sockets open (at 3/4 of the run)")
        print(json.dumps(result))
    finally:
        c.close()


if __name__ == "__main__":
    main()
