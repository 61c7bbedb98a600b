"""End-to-end: observability (issue 8) with the real server, agent and CLI.

/metrics parses with a strict Prometheus text-format parser and its counters match the runs
performed; modifying an already-synced file raises a "file changed after sync" alert with both
checksums; a killed runner raises the offline alert after a short threshold and resolves it when
it returns, and a webhook receiver gets exactly one notification per transition; log lines the
agent wrote while the server was down arrive after it returns, in order, none duplicated."""

import argparse
import http.server
import json
import math
import os
import re
import signal
import socketserver
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, Failure, free_port, sha256_file, wait_for  # noqa: E402

BIN_DIR = None

# ---- a strict Prometheus text-format (0.0.4) parser ---------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_label_value(text, i):
    """text[i] is the opening quote; returns (value, index after the closing quote)."""
    if text[i] != '"':
        raise Failure(f"label value must be quoted at {text[i:]!r}")
    out = []
    i += 1
    while True:
        if i >= len(text):
            raise Failure("unterminated label value")
        c = text[i]
        if c == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt == "\\":
                out.append("\\")
            elif nxt == '"':
                out.append('"')
            elif nxt == "n":
                out.append("\n")
            else:
                raise Failure(f"bad escape \\{nxt} in label value")
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        elif c == "\n":
            raise Failure("raw newline in label value")
        else:
            out.append(c)
            i += 1


def parse_value(text):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)", text):
        raise Failure(f"bad sample value {text!r}")
    return float(text)


def parse_prometheus(text):
    """Returns {family: {"type", "help", "samples": [(name, {labels}, value)]}}; raises Failure on
    anything the format does not allow."""
    if not text.endswith("\n"):
        raise Failure("exposition must end with a newline")
    families = {}
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (" + NAME + r") (.*)", line)
            if not m:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    raise Failure(f"line {n}: malformed {line!r}")
                continue  # a comment
            kind, name, rest = m.groups()
            fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
            if fam["samples"]:
                raise Failure(f"line {n}: {kind} for {name} after its samples")
            if kind == "HELP":
                if fam["help"] is not None:
                    raise Failure(f"line {n}: second HELP for {name}")
                if re.search(r"\\[^\\n]", rest.replace("\\\\", "")):
                    raise Failure(f"line {n}: bad escape in HELP")
                fam["help"] = rest.replace("\\n", "\n").replace("\\\\", "\\")
            else:
                if fam["type"] is not None:
                    raise Failure(f"line {n}: second TYPE for {name}")
                if rest not in TYPES:
                    raise Failure(f"line {n}: unknown type {rest!r}")
                fam["type"] = rest
            current = name
            continue
        if not line.strip():
            raise Failure(f"line {n}: empty line")
        m = re.match(NAME, line)
        if not m:
            raise Failure(f"line {n}: bad metric name in {line!r}")
        name = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            i += 1
            while line[i] != "}":
                lm = re.match(LABEL, line[i:])
                if not lm or line[i + lm.end()] != "=":
                    raise Failure(f"line {n}: bad label at {line[i:]!r}")
                key = lm.group(0)
                value, i = parse_label_value(line, i + lm.end() + 1)
                if key in labels:
                    raise Failure(f"line {n}: label {key} twice")
                labels[key] = value
                if line[i] == ",":
                    i += 1
                elif line[i] != "}":
                    raise Failure(f"line {n}: expected , or }} at {line[i:]!r}")
            i += 1
        if i >= len(line) or line[i] != " ":
            raise Failure(f"line {n}: expected a space before the value in {line!r}")
        parts = line[i + 1:].split(" ")
        if len(parts) not in (1, 2):
            raise Failure(f"line {n}: trailing junk in {line!r}")
        value = parse_value(parts[0])
        if len(parts) == 2 and not re.fullmatch(r"-?\d+", parts[1]):
            raise Failure(f"line {n}: bad timestamp")
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in families and \
                    families[name[: -len(suffix)]]["type"] == "histogram":
                family = name[: -len(suffix)]
        if family not in families or families[family]["type"] is None:
            raise Failure(f"line {n}: sample {name} without a TYPE line before it")
        if family != current:
            raise Failure(f"line {n}: sample {name} not grouped under its family")
        families[family]["samples"].append((name, labels, value))
    for name, fam in families.items():
        if fam["type"] == "histogram":
            buckets = [(s[1]["le"], s[2]) for s in fam["samples"] if s[0] == name + "_bucket"]
            values = [v for _, v in buckets]
            if values != sorted(values) or not buckets or buckets[-1][0] != "+Inf":
                raise Failure(f"histogram {name}: buckets not cumulative or no +Inf bucket")
            count = [s[2] for s in fam["samples"] if s[0] == name + "_count"]
            if count != [values[-1]]:
                raise Failure(f"histogram {name}: _count differs from the +Inf bucket")
    return families


def sample(families, name, **labels):
    family = name
    if family not in families:
        family = re.sub(r"_(bucket|sum|count)$", "", name)
    for s_name, s_labels, value in families[family]["samples"]:
        if s_name == name and s_labels == labels:
            return value
    return 0.0


# ---- a webhook receiver ----------------------------------------------------------------------------

class Receiver:
    def __init__(self):
        self.received = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def for_alert(self, alert_id):
        with self.lock:
            return [r["transition"] for r in self.received if r["alert"]["id"] == alert_id]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A minimal SMTP server (enough for libcurl): keeps each message's envelope and text."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                def say(line):
                    self.wfile.write((line + "\r\n").encode())
                say("220 test ESMTP")
                mail = {"from": None, "to": [], "data": ""}
                while True:
                    line = self.rfile.readline().decode(errors="replace").rstrip("\r\n")
                    if not line:
                        return
                    verb = line.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        say("250 test")
                    elif verb == "MAIL":
                        mail["from"] = line.split(":", 1)[1].strip()
                        say("250 ok")
                    elif verb == "RCPT":
                        mail["to"].append(line.split(":", 1)[1].strip())
                        say("250 ok")
                    elif verb == "DATA":
                        say("354 go on")
                        lines = []
                        while True:
                            d = self.rfile.readline().decode(errors="replace")
                            if d in (".\r\n", ".\n", ""):
                                break
                            lines.append(d)
                        mail["data"] = "".join(lines)
                        with outer.lock:
                            outer.messages.append(dict(mail))
                        mail = {"from": None, "to": [], "data": ""}
                        say("250 queued")
                    elif verb == "QUIT":
                        say("221 bye")
                        return
                    else:
                        say("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"smtp://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def subjects(self, needle):
        with self.lock:
            return [m for m in self.messages if needle in m["data"].split("\r\n\r\n", 1)[0]]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class ObservabilityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(BIN_DIR, server_extra=("--alert-interval", "300ms", "--allow-loopback-webhooks"))
        cls.hook = Receiver()
        cls.src = os.path.join(cls.c.root, "source")
        os.makedirs(cls.src)
        for i in range(20):
            with open(os.path.join(cls.src, f"m{i:02d}.dat"), "wb") as f:
                f.write(os.urandom(1000 + i))
        old = time.time() - 60
        for name in os.listdir(cls.src):
            os.utime(os.path.join(cls.src, name), (old, old))
        cls.c.cli("alerts", "channels", "add", "hook", "--webhook", cls.hook.url)
        cls.c.cli("alerts", "rules", "set", "runner-offline", "--param", "seconds=3")
        cls.c.enroll("pc-obs")
        cls.c.cli("jobs", "add", "pc-obs", "raw", "--source", cls.src, "--dest", "obs/raw",
                  "--settle", "1s", "--interval", "1h")

    @classmethod
    def tearDownClass(cls):
        cls.hook.stop()
        cls.c.close(keep=os.environ.get("DATASYNC_KEEP_E2E") == "1")

    def sync(self):
        p = self.c.cli("sync", "pc-obs", "raw", "--wait", "--json", check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def metrics(self):
        st, _, _ = self.c.http("GET", "/healthz")
        self.assertEqual(st, 200)
        import urllib.request
        with urllib.request.urlopen(self.c.url + "/metrics", timeout=30) as r:
            self.assertTrue(r.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
            return parse_prometheus(r.read().decode())

    def closed_runs(self):
        runs = self.c.cli_json("runs", "pc-obs", "raw", "--limit", "100")
        return runs if all(r["state"] != "running" for r in runs) else None

    def test_1_metrics_parse_and_match_the_runs(self):
        self.sync()
        self.sync()
        runs = wait_for("runs closed", self.closed_runs)
        fams = self.metrics()
        for name in ("datasync_runners", "datasync_runs_total", "datasync_files_synced_total",
                     "datasync_bytes_synced_total", "datasync_compare_duration_seconds",
                     "datasync_index_size_bytes", "datasync_alerts"):
            self.assertIn(name, fams)
        self.assertEqual(fams["datasync_runs_total"]["type"], "counter")
        self.assertEqual(fams["datasync_compare_duration_seconds"]["type"], "histogram")
        by_state = {}
        for r in runs:
            by_state[r["state"]] = by_state.get(r["state"], 0) + 1
        for state, n in by_state.items():
            self.assertEqual(sample(fams, "datasync_runs_total", result=state), n, state)
        self.assertEqual(sum(s[2] for s in fams["datasync_runs_total"]["samples"]), len(runs))
        self.assertEqual(sample(fams, "datasync_files_synced_total"), sum(r["files_uploaded"] for r in runs))
        self.assertEqual(sample(fams, "datasync_files_synced_total"), 20)
        self.assertEqual(sample(fams, "datasync_bytes_synced_total"), sum(r["bytes_uploaded"] for r in runs))
        self.assertGreaterEqual(sample(fams, "datasync_compare_duration_seconds_count"), len(runs))
        self.assertEqual(sample(fams, "datasync_runners", state="approved"), 1)
        self.assertGreater(sample(fams, "datasync_index_size_bytes"), 0)
        # Health from heartbeats, next to last_heartbeat_at.
        r = self.c.runner("pc-obs")
        self.assertGreater(r["last_activity_at_ms"], 0)
        wait_for("disk free reported",
                 lambda: ((self.c.runner("pc-obs") or {}).get("health") or {}).get("disk_free"))
        health = self.c.runner("pc-obs")["health"]
        self.assertEqual([d["job"] for d in health["disk_free"]], ["raw"])
        self.assertGreater(health["disk_free"][0]["total_bytes"], 0)
        self.assertLess(abs(health["clock_offset_ms"]), 60_000)

    def test_2_file_changed_after_sync_alert_has_both_checksums(self):
        path = os.path.join(self.src, "m03.dat")
        before = sha256_file(path)
        with open(path, "wb") as f:
            f.write(b"rewritten by the instrument")
        old = time.time() - 30
        os.utime(path, (old, old))
        after = sha256_file(path)
        self.sync()

        def changed_alert():
            items = self.c.admin("GET", "/alerts?active=1")[1]["items"]
            return [a for a in items if a["kind"] == "file_changed_after_sync"]
        alerts = wait_for("file-changed alert", changed_alert)
        self.assertEqual(len(alerts), 1, alerts)
        a = alerts[0]
        self.assertEqual(a["subject"], "pc-obs/raw:m03.dat")
        self.assertEqual(a["details"]["path"], "m03.dat")
        self.assertEqual(a["details"]["synced_sha256"], before)
        self.assertEqual(a["details"]["current_sha256"], after)
        self.assertEqual(a["severity"], "critical")
        wait_for("fired notification", lambda: self.hook.for_alert(a["id"]) == ["fired"])
        # Acknowledging an event closes it.
        self.c.cli("alerts", "ack", str(a["id"]))
        st, got, _ = self.c.admin("GET", f"/alerts/{a['id']}")
        self.assertEqual(st, 200)
        self.assertIsNotNone(got["resolved_at_ms"])
        self.assertIsNotNone(got["acknowledged_by"])

    def test_3_killed_runner_fires_offline_once_and_resolves_when_back(self):
        self.c.stop_agent("pc-obs", sig=signal.SIGKILL)

        def offline_alert():
            items = self.c.admin("GET", "/alerts?active=1")[1]["items"]
            return [a for a in items if a["kind"] == "runner_offline" and a["subject"] == "pc-obs"]
        alert = wait_for("offline alert", offline_alert, timeout=60)[0]
        self.assertEqual(alert["rule_name"], "runner-offline")
        wait_for("one fired notification", lambda: self.hook.for_alert(alert["id"]) == ["fired"])
        time.sleep(1.5)  # several evaluations while the condition holds: still one alert, one send
        self.assertEqual(len(offline_alert()), 1)
        self.assertEqual(self.hook.for_alert(alert["id"]), ["fired"])
        out = self.c.cli("alerts", "--active").stdout
        self.assertIn("runner-offline", out)

        metrics_port = free_port()
        self.c.start_agent("pc-obs", extra=("--metrics-listen", f"127.0.0.1:{metrics_port}"))
        wait_for("offline alert resolved", lambda: not offline_alert(), timeout=60)
        # The agent's own metrics, on its local port.
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as r:
            fams = parse_prometheus(r.read().decode())
        self.assertEqual(fams["datasync_agent_server_reachable"]["type"], "gauge")
        self.assertIn("datasync_agent_log_buffer_records", fams)
        self.assertIn("datasync_agent_runs_total", fams)
        wait_for("one resolved notification",
                 lambda: self.hook.for_alert(alert["id"]) == ["fired", "resolved"])
        time.sleep(1.5)
        self.assertEqual(self.hook.for_alert(alert["id"]), ["fired", "resolved"])
        st, got, _ = self.c.admin("GET", f"/alerts/{alert['id']}")
        self.assertIsNotNone(got["resolved_at_ms"])
        chans = self.c.cli_json("alerts", "channels", "list")
        self.assertIsNone(chans[0]["last_error"])
        self.assertIsNotNone(chans[0]["last_success_at_ms"])

    def test_4_logs_written_while_the_server_was_down_arrive_in_order_once(self):
        wait_for("pc-obs online", lambda: (self.c.runner("pc-obs") or {}).get("online"), timeout=60)
        down_at = int(time.time() * 1000)
        self.c.stop_server()
        time.sleep(4)  # the agent logs its failed heartbeats meanwhile
        up_at = int(time.time() * 1000)
        self.c.restart_server()

        def logs():
            st, body, _ = self.c.admin("GET", "/logs?runner=pc-obs&limit=1000")
            return body["items"] if st == 200 else []

        def outage_lines():
            return [r for r in logs() if "heartbeat failed" in r["message"] and down_at <= r["time_ms"] <= up_at]
        wait_for("log lines of the outage", outage_lines, timeout=60)
        wait_for("reconnect line", lambda: any("reachable again" in r["message"] for r in logs()), timeout=60)
        items = list(reversed(logs()))  # oldest first
        seqs = [r["seq"] for r in items]
        self.assertEqual(seqs, sorted(set(seqs)), "records duplicated or out of order")
        times = [r["time_ms"] for r in items]
        self.assertEqual(times, sorted(times))
        # CLI view, with a level filter.
        out = self.c.cli("logs", "pc-obs", "--level", "warn").stdout
        self.assertIn("heartbeat failed", out)
        self.assertNotIn(" info ", out)

    def test_5_a_failing_channel_is_visible_and_raises_its_own_alert(self):
        self.c.cli("alerts", "channels", "add", "broken", "--webhook", "http://127.0.0.1:1/nobody")
        # A rule that holds at once (free space is always below 101 %) gives a transition to send.
        self.c.cli("alerts", "rules", "add", "always", "--kind", "disk_free_low", "--severity", "info",
                   "--param", "percent=101", "--scope", "job:pc-obs/raw")

        def broken():
            chans = {c["name"]: c for c in self.c.cli_json("alerts", "channels", "list")}
            return chans["broken"] if chans["broken"]["failing"] else None
        ch = wait_for("broken channel failing", broken, timeout=60)
        # Every failure reads the same (no port oracle); the detail is in the server log only.
        self.assertEqual(ch["last_error"], "webhook delivery failed")
        for log in self.c.logs:
            log.flush()
        with open(os.path.join(self.c.root, "server.log"), errors="replace") as f:
            self.assertIn("notify: channel broken (webhook) not delivered", f.read())
        self.assertIn("FAILING", self.c.cli("alerts", "channels", "list").stdout)
        self.assertIn("FAILING notification channels: [\"broken\"]", self.c.cli("status").stdout)

        def channel_alert():
            items = self.c.admin("GET", "/alerts?active=1")[1]["items"]
            return [a for a in items if a["kind"] == "channel_failing" and a["subject"] == "channel:broken"]
        wait_for("channel-failing alert", channel_alert, timeout=60)
        self.c.cli("alerts", "rules", "rm", "always")
        self.c.cli("alerts", "channels", "rm", "broken")
        wait_for("channel-failing alert resolved", lambda: not channel_alert(), timeout=60)

    def test_6_email_channel_sends_one_mail_per_transition(self):
        smtp = SmtpReceiver()
        try:
            self.c.cli("alerts", "channels", "add", "mail", "--smtp", smtp.url, "--from", "datasync@lab.test",
                       "--to", "ops@lab.test", "--min-severity", "critical")
            self.c.cli("alerts", "rules", "add", "always-critical", "--kind", "disk_free_low", "--severity",
                       "critical", "--param", "percent=101", "--scope", "job:pc-obs/raw")
            wait_for("fired mail", lambda: smtp.subjects("[FIRED critical] always-critical"), timeout=60)
            self.c.cli("alerts", "rules", "disable", "always-critical")
            wait_for("resolved mail", lambda: smtp.subjects("[RESOLVED critical] always-critical"), timeout=60)
            time.sleep(1)
            self.assertEqual(len(smtp.subjects("always-critical")), 2)
            m = smtp.subjects("[FIRED critical] always-critical")[0]
            self.assertEqual(m["from"], "<datasync@lab.test>")
            self.assertEqual(m["to"], ["<ops@lab.test>"])
            self.assertIn("Subject: DataSync: [FIRED critical] always-critical pc-obs/raw", m["data"])
            self.assertIn('"kind": "disk_free_low"', m["data"])
        finally:
            smtp.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    args, rest = parser.parse_known_args()
    BIN_DIR = args.bin_dir
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)
