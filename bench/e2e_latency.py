"""End-to-end latency of Marquee's realtime path: commit in PostgreSQL -> frame received by N WebSocket subscribers.

Starts its own PostgreSQL cluster (`marquee db start`) and `marquee serve`, opens N subscribers (vsn 1.0.0, the
seed's `event-<id>-tickets` UPDATE pattern, spread over worker processes), then commits reservations at a fixed
rate straight in SQL (one transaction each, as the API does) and records, per delivered message, receive time
minus `commit_timestamp`. Writes a Markdown section to stdout (and appends to bench/RESULTS.md with --write).

Usage: .venv/bin/python bench/e2e_latency.py --subscribers 100 500 1000 --rate 50 --seconds 10 [--write]
Note: commit_timestamp has millisecond resolution, so each sample may read up to 1 ms high.
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

import psycopg
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from conftest import make_token, start_server  # noqa: E402


def parse_ts(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def subscriber_worker(ws_url, event_id, count, ready, stop, results):
    async def one(i, samples, opening):
        url = f"{ws_url}/realtime/v1/websocket?apikey={make_token(role='anon')}&vsn=1.0.0"
        async with opening:  # at most 50 handshakes at a time
            ws = await websockets.connect(url, max_size=None, open_timeout=120)
        async with ws:
            join = {"topic": f"realtime:event-{event_id}-tickets", "event": "phx_join", "ref": "1", "join_ref": "1",
                    "payload": {"config": {"postgres_changes": [{"event": "UPDATE", "schema": "public", "table": "event_tickets",
                                                                 "filter": f"event_id=eq.{event_id}"}]}}}
            await ws.send(json.dumps(join))
            while True:
                msg = json.loads(await ws.recv())
                if msg["event"] == "system":
                    break
            ready.put(1)
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                now = time.time()
                msg = json.loads(raw)
                if msg["event"] == "postgres_changes":
                    samples.append(now - parse_ts(msg["payload"]["data"]["commit_timestamp"]))

    async def main():
        samples = []
        opening = asyncio.Semaphore(50)
        await asyncio.gather(*(one(i, samples, opening) for i in range(count)), return_exceptions=False)
        results.put(samples)

    asyncio.run(main())


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))
    return values[k]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_case(server, db_url, subscribers, rate, seconds, workers):
    with psycopg.connect(db_url, autocommit=True) as conn:
        event_id = conn.execute("insert into events (name, starts_at) values (%s, now()) returning id", (f"bench {uuid.uuid4().hex[:6]}",)).fetchone()[0]
        type_id = conn.execute("insert into event_tickets (event_id, name, price_cents, capacity) values (%s, 'GA', 1000, 10000000) returning id",
                               (event_id,)).fetchone()[0]
    ctx = mp.get_context("spawn")
    ready, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    per = [subscribers // workers + (1 if i < subscribers % workers else 0) for i in range(workers)]
    procs = [ctx.Process(target=subscriber_worker, args=(server.ws_url, str(event_id), n, ready, stop, results)) for n in per if n]
    for p in procs:
        p.start()
    for _ in range(subscribers):
        ready.get(timeout=120)
    cpu_before = cpu_seconds(server.process.pid)
    sent = 0
    start = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() - start < seconds:
            due = start + sent / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the writer, not waiting for a result
            conn.execute("insert into tickets (event_id, event_ticket_id, user_id, quantity, status, hold_expires_at) "
                         "values (%s, %s, %s, 1, 'reserved', now() + interval '10 minutes')", (event_id, type_id, f"u{sent}"))
            sent += 1
    elapsed = time.monotonic() - start
    time.sleep(3.0)  # a grace period for the last frames before the subscribers stop counting
    cpu = cpu_seconds(server.process.pid) - cpu_before
    stop.set()
    samples = []
    for _ in procs:
        samples += results.get(timeout=60)
    for p in procs:
        p.join(timeout=30)
    expected = sent * subscribers
    return {"subscribers": subscribers, "rate": rate, "commits": sent, "delivered": len(samples), "expected": expected,
            "deliveries_per_s": len(samples) / elapsed, "p50_ms": percentile(samples, 50) * 1000, "p99_ms": percentile(samples, 99) * 1000,
            "max_ms": max(samples) * 1000 if samples else float("nan"), "server_cpu_s": cpu,
            "deliveries_per_cpu_s": len(samples) / cpu if cpu > 0 else float("nan")}


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "?")
    return f"{os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB, {platform.platform()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, nargs="+", default=[100, 500, 1000])
    ap.add_argument("--rate", type=float, default=50.0, help="commits per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2, help="subscriber processes")
    ap.add_argument("--write", action="store_true", help="append the result to bench/RESULTS.md")
    args = ap.parse_args()

    # a release build (`swift build -c release --product marquee`, or with --scratch-path .build-release), else debug
    candidates = [os.environ.get("MARQUEE_BENCH_BIN", ""), os.path.join(ROOT, ".build", "release", "marquee"),
                  os.path.join(ROOT, ".build-release", "release", "marquee"), os.path.join(ROOT, ".build", "debug", "marquee")]
    binary = next(path for path in candidates if path and os.path.exists(path))
    os.environ["MARQUEE_BIN"] = binary
    work = tempfile.mkdtemp(prefix="marquee-bench-")
    os.chmod(work, 0o755)
    admin = subprocess.check_output([binary, "db", "start", "--data-dir", f"{work}/db", "--log-level", "warning"], text=True).strip()
    server = None
    try:
        db_name = "bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'create database "{db_name}"')
        db_url = re.sub(r"/[^/]*$", f"/{db_name}", admin)
        server = start_server(db_url, env={"MARQUEE_LOG_LEVEL": "warning", "MARQUEE_MAX_CONNECTIONS_PER_IP": "100000"}, data_dir=f"{work}/srv")
        rows = [run_case(server, db_url, n, args.rate, args.seconds, args.workers) for n in args.subscribers]
    finally:
        if server:
            server.stop()
        subprocess.run([binary, "db", "stop", "--data-dir", f"{work}/db"], check=False)
        shutil.rmtree(work, ignore_errors=True)

    build = "release" if "/release/" in binary else "debug"
    out = [f"### End-to-end latency, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
           f"Machine: {machine()}. Server: `marquee serve` ({build} build), PostgreSQL 15, change feed polling a pgoutput slot.",
           f"Writer: {args.rate:g} reservations/s committed in SQL for {args.seconds:g} s; subscribers: Python `websockets`, "
           f"{args.workers} processes on the same machine. Latency = receive time − commit_timestamp (ms resolution).", "",
           "| subscribers | commits | delivered / expected | deliveries/s | p50 ms | p99 ms | max ms | server CPU s | deliveries per server CPU-s |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['subscribers']} | {r['commits']} | {r['delivered']} / {r['expected']} | {r['deliveries_per_s']:.0f} | "
                   f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['server_cpu_s']:.2f} | {r['deliveries_per_cpu_s']:.0f} |")
    text = "\n".join(out) + "\n"
    print(text)
    if args.write:
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
