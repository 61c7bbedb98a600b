#!/usr/bin/env python3
"""DataSync against cp, rsync and rclone, side by side on one tree and one disk (not a test).

For each repeat: a fresh tree (bench/gen_tree.py, same seed), a fresh DataSync cluster
(server + agent + directory storage, SQLite index, started through tests/e2e/harness.py) and
fresh destinations; then three phases, every tool in turn within a phase (the order rotates by
one tool per repeat):
  initial   empty destination
  noop      nothing changed since
  changed   after --changed-pct % of the files were rewritten (same sizes, new bytes)
With --storage samba (or bindfs), DataSync's storage root and every other tool's destination
are on one mounted share (tests/fixtures/samba.py: smbd on 127.0.0.1, mounted through smbnetfs),
so the tools are compared on what users have: an SMB share.
Tools: datasync, cp (cp -a; cp -au later), cp-sync (the same, then `sync -f` on the
destination: durable, as DataSync's result is), rsync (-a), rsync-fsync (-a --fsync), rclone.
Before each timed command the script runs sync(2) (untimed), so that no tool pays for the
write-back of the previous tool's output (DataSync flushes with syncfs before it reports).
DataSync is timed from the sync request (POST /admin/.../sync, what `datasync sync` sends)
until the server closed the run (its finished_at_ms; found by polling every 10 ms), after the agent's startup run of
the job on an empty folder finished. Its index must then hold a row per file (checked).
Medians over --repeats; ratios DataSync/rsync and DataSync/cp are of those medians. Peak RSS
(VmHWM) of the agent and the server are read from /proc before they stop. `uptime` is recorded
before each phase. The page cache is warm for every tool (the tree was just written; dropping
caches needs privileges we do not have), so these are CPU + metadata + write-back figures.

Two builds side by side (a change's before/after): --bin-dir OLD/build/bin --bin-dir build/bin
makes the second one the tool datasync#2, interleaved with the first in every phase of every
repeat, each with its own cluster, on the same tree; "datasync#2/datasync" gives their ratios.

Usage:
  bench/compare_tools.py --bin-dir build/bin [--bin-dir OTHER/bin] --tree A --scale 0.1 [--repeats 3]
       [--tools datasync,cp,cp-sync,rsync,rsync-fsync,rclone] [--work /tmp/ds-bench] [--json out.json]
       [--storage local|samba|bindfs]"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
sys.path.insert(0, HERE)
import gen_tree  # noqa: E402
from harness import Cluster, wait_for  # noqa: E402

PHASES = ("initial", "noop", "changed")


def uptime():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def count_files(root):
    n = 0
    for d, dirs, names in os.walk(root):
        if d == root and ".datasync" in dirs:
            dirs.remove(".datasync")
        n += sum(1 for x in names if not x.startswith(".dstmp-"))
    return n


def run_cmd(argv):
    t = time.monotonic()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.monotonic() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr[-500:]}")
    return dt


class DataSync:
    """One cluster: server, one enrolled agent, one job whose source is `src`."""

    def __init__(self, bin_dir, src, agent_extra, storage):
        self.src = src
        self.c = Cluster(bin_dir, heartbeat="60s", storage=storage)
        self.c.enroll("bench-pc", extra=["--allow-source", src, *agent_extra])
        self.dest = os.path.join(self.c.share, "bench", "raw")
        # The job runs once at once when the agent learns of it: let that be on an empty folder.
        hidden = src + ".hidden"
        os.rename(src, hidden)
        os.makedirs(src)
        self.c.cli("jobs", "add", "bench-pc", "raw", "--source", src, "--dest", "bench/raw",
                   "--settle", "0s", "--interval", "24h")
        wait_for("startup run", lambda: self._runs_closed() >= 1, timeout=60)
        os.rmdir(src)
        os.rename(hidden, src)

    def _runs_closed(self):
        st, body, _ = self.c.admin("GET", "/runs?runner=bench-pc&limit=5")
        items = body.get("runs", body.get("items", [])) if isinstance(body, dict) else body
        return sum(1 for r in items if r.get("state") not in ("running", "planned", None))

    def sync(self):
        t = time.monotonic()
        t_wall = time.time()
        st, body, _ = self.c.admin("POST", "/runners/bench-pc/jobs/raw/sync")
        if st != 202:
            raise RuntimeError(f"sync: HTTP {st} {body}")
        run_id = body["run_id"]
        while True:
            st, run, _ = self.c.admin("GET", "/runs/" + run_id)
            if st == 200 and run.get("state") not in ("running", "planned", None):
                break
            time.sleep(0.01)
        dt = time.monotonic() - t
        # The run's own close time (server clock = this machine's clock, ms) instead of when the
        # poll noticed it: the 10 ms poll would add up to 10 ms to DataSync's figure only.
        if run.get("finished_at_ms"):
            dt = min(dt, max(0.0, run["finished_at_ms"] / 1000 - t_wall))
        if run["state"] != "succeeded":
            raise RuntimeError(f"DataSync run {run_id} ended {run['state']}: {run}")
        return dt, run

    def indexed(self):
        st, body, _ = self.c.admin("GET", "/runners/bench-pc/jobs/raw/files?limit=1")
        return body["total"]

    def rss(self):
        return {"agent_kib": vm_hwm_kib(self.c.agents["bench-pc"].pid),
                "server_kib": vm_hwm_kib(self.c.server.pid)}

    def tools_root(self, work):
        """Where the other tools write: beside DataSync's storage root on the same share."""
        return self.c.share_fixture.path if self.c.share_fixture else work

    def close(self):
        self.c.close()


def tool_argv(tool, src, dst):
    if tool == "cp":  # initial: cp -a; later phases: cp -au (copies what is newer)
        return None
    if tool == "rsync":
        return ["rsync", "-a", src + "/", dst + "/"]
    if tool == "rsync-fsync":
        return ["rsync", "-a", "--fsync", src + "/", dst + "/"]
    if tool == "rclone":
        return ["rclone", "sync", "--config", "/dev/null", src, dst]
    raise ValueError(tool)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", action="append", required=True,
                    help="DataSync's binaries; given again, each further build is one more tool "
                         "(datasync#2, ...) in the same repeats, interleaved: before/after figures")
    ap.add_argument("--tree", default="A", choices=sorted(gen_tree.TREES))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--changed-pct", type=float, default=1.0)
    ap.add_argument("--tools", default="datasync,cp,cp-sync,rsync,rsync-fsync,rclone")
    ap.add_argument("--agent-arg", action="append", default=[], help="extra datasync-agent argument")
    ap.add_argument("--work", default="/tmp/ds-bench")
    ap.add_argument("--json", help="write all samples here")
    ap.add_argument("--storage", default="local", choices=("local", "samba", "bindfs"),
                    help="where every destination is: a local folder or a mounted share")
    a = ap.parse_args()
    tools = a.tools.split(",")
    builds = {"datasync": a.bin_dir[0]}
    builds.update({f"datasync#{i + 1}": d for i, d in enumerate(a.bin_dir) if i > 0})
    if "datasync" in tools:
        at = tools.index("datasync")
        tools[at:at + 1] = list(builds)
    if a.storage != "local" and "datasync" not in tools:
        ap.error("--storage other than local needs datasync among --tools (its cluster mounts the share)")
    samples = {t: {p: [] for p in PHASES} for t in tools}
    loads = []
    rss = []
    agent_hwm = []  # the agent's VmHWM (KiB) after each of its phases: where a peak was reached
    tree_info = None
    for rep in range(a.repeats):
        work = os.path.join(a.work, f"rep{rep}")
        src, files, total = gen_tree.fresh_tree(work, a.tree, a.scale)
        tree_info = {"tree": a.tree, "scale": a.scale, "files": files, "bytes": total}
        clusters = {}  # started one by one: a failed start still closes the ones before it
        try:
            for t, d in builds.items():
                if t in tools:
                    clusters[t] = DataSync(d, src, a.agent_arg, a.storage)
            ds = clusters.get("datasync")
            dst_root = ds.tools_root(work) if ds else work
            for phase in PHASES:
                if phase == "changed":
                    gen_tree.touch(src, a.changed_pct, seed=rep)
                loads.append({"repeat": rep, "phase": phase, "loadavg": uptime()})
                # The order rotates between repeats: the first tool after a tree was deleted pays
                # for ext4's search past recently freed inodes.
                for tool in tools[rep % len(tools):] + tools[:rep % len(tools)]:
                    dst = os.path.join(dst_root, "dst-" + tool)
                    os.sync()  # no tool pays for writing back what the one before left dirty
                    if tool in clusters:
                        dt, run = clusters[tool].sync()
                        if phase == "initial" and clusters[tool].indexed() != files:
                            raise RuntimeError(f"{tool}: index holds {clusters[tool].indexed()} rows, "
                                               f"expected {files}")
                    elif tool in ("cp", "cp-sync"):
                        dt = run_cmd(["cp", "-a", src, dst] if phase == "initial" else
                                     ["cp", "-au", src + "/.", dst])
                        if tool == "cp-sync":  # durable, as DataSync's result is
                            dt += run_cmd(["sync", "-f", dst])
                    else:
                        dt = run_cmd(tool_argv(tool, src, dst))
                    samples[tool][phase].append(dt)
                    extra = ""
                    if tool in clusters:
                        hwm = clusters[tool].rss()["agent_kib"]
                        agent_hwm.append({"repeat": rep, "phase": phase, "agent_kib": hwm})
                        extra = f"  agent peak so far {hwm / 1024:.0f} MiB"
                    print(f"rep {rep} {phase:8s} {tool:12s} {dt:8.3f}s  load {loads[-1]['loadavg']}{extra}",
                          flush=True)
            for tool in tools:
                dst = clusters[tool].dest if tool in clusters else os.path.join(dst_root, "dst-" + tool)
                if count_files(dst) != files:
                    raise RuntimeError(f"{tool}: {count_files(dst)} files in {dst}, expected {files}")
            if ds:
                rss.append(ds.rss())
        finally:
            for c in clusters.values():
                c.close()
            shutil.rmtree(work, ignore_errors=True)

    med = {t: {p: statistics.median(v) for p, v in ph.items() if v} for t, ph in samples.items()}
    print(f"\nstorage {a.storage}; tree {a.tree} x{a.scale}: {tree_info['files']} files, {tree_info['bytes'] / 2**20:.0f} MiB; "
          f"medians of {a.repeats} run(s), seconds (warm page cache)")
    print(f"{'tool':14s}" + "".join(f"{p:>10s}" for p in PHASES))
    for t in tools:
        print(f"{t:14s}" + "".join(f"{med[t].get(p, float('nan')):10.3f}" for p in PHASES))
    ratios = {}
    if "datasync" in tools:
        for other in ("rsync", "cp", "rclone", "rsync-fsync", "cp-sync"):
            if other in tools:
                ratios[other] = {p: med["datasync"][p] / med[other][p] for p in PHASES}
                print(f"DataSync/{other:12s}" + "".join(f"{ratios[other][p]:10.2f}" for p in PHASES))
        for other in builds:
            if other != "datasync" and other in tools:  # a later build against the first
                ratios[other] = {p: med[other][p] / med["datasync"][p] for p in PHASES}
                print(f"{other}/datasync" + "".join(f"{ratios[other][p]:10.2f}" for p in PHASES))
        if rss:
            print("peak RSS: agent {} MiB, server {} MiB".format(
                max(r["agent_kib"] or 0 for r in rss) // 1024, max(r["server_kib"] or 0 for r in rss) // 1024))
    print("load averages:", "; ".join(f"{l['phase']}@{l['repeat']} {l['loadavg']}" for l in loads))
    out = {"builds": builds, "storage": a.storage, "tree": tree_info, "repeats": a.repeats, "samples": samples, "medians": med, "ratios": ratios,
           "rss": rss, "agent_hwm_by_phase": agent_hwm, "loads": loads, "agent_args": a.agent_arg}
    print(json.dumps(out))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
