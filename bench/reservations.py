"""Reservation throughput: concurrent buyers through Marquee's HTTP API versus pgbench doing the same insert straight
in the same database (the database's own ceiling on this machine), on one hot ticket type and on many types.

Each API request is `POST /api/events/{id}/reservations` (quantity 1, a fresh Idempotency-Key) from a distinct user
(a signed token per user: the per-user cap per ticket type would stop a repeated user), over keep-alive HTTP/1.1
connections from one uvloop process. pgbench runs the API's statement — `insert into tickets (...) values (...,
'reserved', now() + hold)` — whose triggers take the seats, with the same number of clients. After every run the
counts are checked: for every ticket type sold + reserved <= capacity, available = capacity − sold − reserved, and
sold / reserved equal the sums over the tickets rows; for the API runs, the number of 201 answers equals the rows.

Usage: .venv/bin/python bench/reservations.py --concurrency 32 --seconds 15 --types 1 100 --write
"""

import argparse
import asyncio
import os
import re
import sys
import time
import uuid
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import loadgen  # noqa: E402

INVARIANTS = """
    select et.id, et.capacity, et.sold, et.reserved, et.available,
           coalesce(sum(t.quantity) filter (where t.status = 'confirmed'), 0),
           coalesce(sum(t.quantity) filter (where t.status = 'reserved'), 0)
      from event_tickets et left join tickets t on t.event_ticket_id = et.id
     group by et.id
    having et.sold + et.reserved > et.capacity
        or et.sold + et.reserved + et.available <> et.capacity
        or et.sold < 0 or et.reserved < 0 or et.available < 0
        or et.sold <> coalesce(sum(t.quantity) filter (where t.status = 'confirmed'), 0)
        or et.reserved <> coalesce(sum(t.quantity) filter (where t.status = 'reserved'), 0)
"""


def check_counts(conn):
    """Rows of event_tickets whose counts are wrong (an oversell among them): [] when all is well."""
    return conn.execute(INVARIANTS).fetchall()


def make_event(conn, types, capacity, label):
    event_id = conn.execute("insert into events (name, starts_at) values (%s, now() + interval '30 days') returning id",
                            (f"reservations bench {label}",)).fetchone()[0]
    ids = [conn.execute("insert into event_tickets (event_id, name, price_cents, capacity) values (%s, %s, 1000, %s) returning id",
                        (event_id, f"T{i}", capacity)).fetchone()[0] for i in range(types)]
    return str(event_id), [str(i) for i in ids]


async def read_response(reader):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        return status, body
    return status, await reader.readexactly(length) if length else b""


REQUEST_TIMEOUT = 30.0  # an answer slower than this is counted as "timeout" (a server that never answers is a bug)


async def api_load(host, port, event_id, type_ids, concurrency, seconds, label):
    """Buyers on `concurrency` keep-alive connections for `seconds`; returns (status counts, latencies, elapsed).
    Every wait is bounded: a request without an answer within REQUEST_TIMEOUT counts as "timeout" and its connection
    is replaced, so the run ends on time whatever the server does."""
    statuses = Counter()
    latencies = []
    counter = iter(range(10**12))
    deadline = time.monotonic() + seconds

    async def buyer(c):
        writer = None
        try:
            while time.monotonic() < deadline:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), REQUEST_TIMEOUT)
                k = next(counter)
                user = f"{label}-{k}"
                type_id = type_ids[k % len(type_ids)]
                body = ('{"ticket_type_id":"%s","quantity":1}' % type_id).encode()
                head = (f"POST /api/events/{event_id}/reservations HTTP/1.1\r\nHost: {host}\r\n"
                        f"Authorization: Bearer {common.make_token(sub=user)}\r\nIdempotency-Key: {uuid.uuid4().hex}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                t0 = time.monotonic()
                writer.write(head + body)
                try:
                    status, _ = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
                except asyncio.TimeoutError:
                    statuses["timeout"] += 1
                    writer.close()
                    writer = None
                    continue
                latencies.append(time.monotonic() - t0)
                statuses[status] += 1
        finally:
            if writer is not None:
                writer.close()

    start = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(buyer(c) for c in range(concurrency))), seconds + 2 * REQUEST_TIMEOUT + 10)
    return statuses, latencies, time.monotonic() - start


def run_api(server, db_url, postgres, types, capacity, concurrency, seconds, log):
    with common.connect(db_url) as conn:
        event_id, type_ids = make_event(conn, types, capacity, f"api {types}")
    group = loadgen.ProcessGroup(server.process.pid)
    cpu0, pg0, own0 = group.cpu(), postgres.cpu() if postgres else (0, 0), os.times()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    statuses, latencies, elapsed = runner(api_load("127.0.0.1", server.port, event_id, type_ids, concurrency, seconds,
                                                   f"b{uuid.uuid4().hex[:6]}"))
    cpu1, pg1, own1 = group.cpu(), postgres.cpu() if postgres else (0, 0), os.times()
    with common.connect(db_url) as conn:
        rows = conn.execute("select count(*), coalesce(sum(quantity), 0) from tickets t join event_tickets et on et.id = t.event_ticket_id "
                            "where et.event_id = %s", (event_id,)).fetchone()
        sold_reserved = conn.execute("select coalesce(sum(sold + reserved), 0), coalesce(sum(capacity), 0) from event_tickets "
                                     "where event_id = %s", (event_id,)).fetchone()
        bad = check_counts(conn)
    lat = loadgen.percentiles(latencies, (50, 99))
    row = {"path": "HTTP API", "types": types, "concurrency": concurrency, "seconds": elapsed,
           "ok": statuses.get(201, 0), "rejected": statuses.get(409, 0),
           "other": sum(v for k, v in statuses.items() if k not in (201, 409)), "statuses": dict(statuses),
           "per_s": statuses.get(201, 0) / elapsed, "p50": lat[50] * 1000, "p99": lat[99] * 1000,
           "server_cpu": (cpu1[0] - cpu0[0]) + (cpu1[1] - cpu0[1]), "pg_cpu": (pg1[0] - pg0[0]) + (pg1[1] - pg0[1]) if postgres else None,
           "client_cpu": (own1.user - own0.user) + (own1.system - own0.system),
           "rows_match": rows[0] == statuses.get(201, 0), "held": int(sold_reserved[0]), "capacity": int(sold_reserved[1]),
           "bad_counts": bad}
    log(f"api: {row}")
    return row


def run_pgbench(db_url, postgres, types, capacity, concurrency, seconds, log):
    # a sold-out insert raises, and pgbench aborts a client on an error: its types have seats enough for the run
    capacity = max(capacity, 10000000)
    with common.connect(db_url) as conn:
        event_id, type_ids = make_event(conn, types, capacity, f"pgbench {types}")
        table = "bench_targets_" + uuid.uuid4().hex[:8]
        conn.execute(f"create table {table} (k int primary key, event_id uuid, type_id uuid)")
        for k, type_id in enumerate(type_ids, 1):
            conn.execute(f"insert into {table} values (%s, %s, %s)", (k, event_id, type_id))
    script = (f"\\set k random(1, {types})\n"
              f"insert into tickets (event_id, event_ticket_id, user_id, quantity, status, hold_expires_at, idempotency_key)\n"
              f"select event_id, type_id, 'pg-' || :client_id || '-' || gen_random_uuid(), 1, 'reserved', "
              f"now() + make_interval(secs => 600), gen_random_uuid()::text from {table} where k = :k;\n")
    output, pg_cpu = common.run_pgbench(db_url, script, concurrency, seconds, postgres)
    tps = common.tps(output)
    done = int(re.search(r"number of transactions actually processed: (\d+)", output).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", output)
    lat = re.search(r"latency average = ([\d.]+) ms", output)
    with common.connect(db_url) as conn:
        rows = conn.execute("select count(*) from tickets t join event_tickets et on et.id = t.event_ticket_id where et.event_id = %s",
                            (event_id,)).fetchone()[0]
        sold_reserved = conn.execute("select coalesce(sum(sold + reserved), 0), coalesce(sum(capacity), 0) from event_tickets "
                                     "where event_id = %s", (event_id,)).fetchone()
        bad = check_counts(conn)
        conn.execute(f"drop table {table}")
    row = {"path": "pgbench (SQL)", "types": types, "concurrency": concurrency, "seconds": seconds, "ok": done,
           "rejected": int(failed.group(1)) if failed else 0, "other": 0, "per_s": tps,
           "p50": float(lat.group(1)) if lat else float("nan"), "p99": float("nan"), "server_cpu": None,
           "pg_cpu": pg_cpu, "client_cpu": None,
           "rows_match": rows == done, "held": int(sold_reserved[0]), "capacity": int(sold_reserved[1]), "bad_counts": bad}
    log(f"pgbench: {row}")
    return row


def fmt_table(rows):
    out = ["| path | ticket types | clients | reservations/s | 201 / 409 / other | p50 ms | p99 ms | Marquee CPU s | PostgreSQL CPU s "
           "| held / capacity | rows = successes | count check (sold+reserved <= capacity, sums) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['path']} | {r['types']} | | failed: {r['error']} |" + " |" * 8)
            continue
        f = lambda v: "—" if v is None or v != v else f"{v:.1f}"  # noqa: E731
        p50_label = f"{r['p50']:.1f}" + (" (mean)" if r["path"].startswith("pgbench") else "")
        out.append(f"| {r['path']} | {r['types']} | {r['concurrency']} | {r['per_s']:.0f} | {r['ok']} / {r['rejected']} / {r['other']} | "
                   f"{p50_label} | {f(r['p99'])} | {f(r['server_cpu'])} | {f(r['pg_cpu'])} | {r['held']} / {r['capacity']} | "
                   f"{'yes' if r['rows_match'] else '**no**'} | {'ok' if not r['bad_counts'] else '**' + str(r['bad_counts'][:3]) + '**'} |")
    return "\n".join(out)


def fmt_ratios(rows):
    out = ["| ticket types | HTTP API ÷ pgbench reservations/s |", "|---:|---:|"]
    for types in sorted({r["types"] for r in rows}):
        api = next((r for r in rows if r["types"] == types and r["path"] == "HTTP API" and "error" not in r), None)
        pgb = next((r for r in rows if r["types"] == types and r["path"].startswith("pgbench") and "error" not in r), None)
        if api and pgb and pgb["per_s"]:
            out.append(f"| {types} | {api['per_s'] / pgb['per_s']:.2f} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", type=int, nargs="+", default=[1, 100], help="ticket types the buyers spread over (1 = one hot type)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--capacity", type=int, default=10000000, help="seats per ticket type (small to sell out during the run)")
    ap.add_argument("--paths", nargs="+", choices=["api", "pgbench"], default=["api", "pgbench"])
    common.add_output_arguments(ap)
    args = ap.parse_args(argv)
    log = common.progress_log(args.quiet)
    binary = common.marquee_binary()
    run = common.RunContext()
    rows = []
    with common.database(args.database_url, binary) as (db_url, postgres):
        with common.marquee_server(db_url) as server:
            for types in args.types:
                for path in args.paths:
                    try:
                        if path == "api":
                            rows.append(run_api(server, db_url, postgres, types, args.capacity, args.concurrency, args.seconds, log))
                        else:
                            rows.append(run_pgbench(db_url, postgres, types, args.capacity, args.concurrency, args.seconds, log))
                    except Exception as exc:
                        log(f"{path} with {types} types: {exc!r}")
                        rows.append({"path": "HTTP API" if path == "api" else "pgbench (SQL)", "types": types,
                                     "error": common.error_cell(exc)})
    context = run.describe()
    command = common.command_line("reservations.py", argv)
    text = "\n".join([
        f"### Reservation throughput, HTTP API vs pgbench, {run.started} UTC", "",
        f"`{command}`", "",
        f"{context} "
        f"Marquee: `marquee serve` ({common.build_kind(binary)} build); PostgreSQL on the same machine; buyers: one uvloop "
        f"process with {args.concurrency} keep-alive connections, a distinct user per request; pgbench: "
        f"{args.concurrency} clients, the API's insert. Capacity {args.capacity} per type for the API runs (pgbench's "
        f"types have at least 10 million seats: it aborts a client on the sold-out error), {args.seconds:g} s per run.", "",
        fmt_table(rows), "", fmt_ratios(rows), ""])
    common.publish(args, text)
    return rows


if __name__ == "__main__":
    main()
