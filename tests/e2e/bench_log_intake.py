"""Measures agent-log intake (POST /agent/logs, 40 batches of 1,000), a grep query over the
stored rows and one /metrics scrape, on SQLite and PostgreSQL. Not a test: run by hand,
`python3 tests/e2e/bench_log_intake.py build/bin`."""
import json, os, sys, time, urllib.request
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster
for index in ("sqlite", "postgresql"):
    c = Cluster(sys.argv[1] if len(sys.argv) > 1 else "build/bin", index=index)
    try:
        key, _ = c.fake_agent_key("bench")
        seq = 0
        batches = 40
        t0 = time.monotonic()
        for b in range(batches):
            recs = []
            for i in range(1000):
                seq += 1
                recs.append({"seq": seq, "time_ms": int(time.time()*1000), "level": "info",
                             "message": f"run=0123abcd-0000-4000-8000-00000000beef uploaded file_{seq}.dat in 12 ms",
                             "correlation_id": "0123abcd-0000-4000-8000-00000000beef", "fields": {"job": "raw"}})
            st, body, _ = c.http("POST", "/api/v1/agent/logs", {"records": recs}, token=key)
            assert st == 200 and body["accepted"] == 1000, (st, body)
        dt = time.monotonic() - t0
        # a repeated batch stores nothing
        st, body, _ = c.http("POST", "/api/v1/agent/logs", {"records": recs}, token=key)
        assert body["accepted"] == 0
        t1 = time.monotonic()
        for _ in range(20):
            st, body, _ = c.admin("GET", "/logs?runner=bench&level=info&grep=file_3999&limit=100")
        q = (time.monotonic() - t1) / 20
        t2 = time.monotonic()
        for _ in range(20):
            with urllib.request.urlopen(c.url + "/metrics") as r:
                r.read()
        m = (time.monotonic() - t2) / 20
        print(f"{index}: {batches*1000} records in {dt:.2f}s = {batches*1000/dt:.0f} records/s; "
              f"grep query over 40k rows {q*1000:.1f} ms; /metrics {m*1000:.1f} ms")
    finally:
        c.close()
