"""Fan-out side by side: Marquee and nginx + Nchan, the same subscribers, rate and payload size, in one run.

For each subscriber count N it starts `marquee serve` (on a database of its own) and opens N subscribers with the
seed's pattern, commits reservations in SQL at the chosen rate (each commit changes the ticket type's row once, so
every subscriber should receive one `postgres_changes` frame per commit), waits until every subscriber has seen the
row's final version (with a deadline), and stops the server. Then it starts nginx with the Nchan module (its own
config in a temporary folder, on a free port), opens N WebSocket subscribers on one channel, publishes messages of
the size Marquee's frames had by HTTP POST at the same rate, and waits the same way.

Reported per server: deliveries/s, commit→receive latency (receive time − `commit_timestamp`; for Nchan the stamp
is taken just before the POST, in the same millisecond format), subscribers whose last state differs from the
truth at the end, duplicates and gaps, server CPU (user/system, nginx master + workers), deliveries per server
CPU-second, RSS per subscriber, PostgreSQL's CPU (Marquee's change feed reads it; Nchan has no database), and the
load generator's own CPU.

Usage:
  .venv/bin/python bench/compare.py --subscribers 1000 10000 --deliveries 50000 --seconds 20 --write
  (--rate R commits/s instead of --deliveries; --database-url ADMIN_URL to use a running cluster; --results FILE)
"""

import argparse
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import loadgen  # noqa: E402

NCHAN_MODULE_PATHS = ["/usr/lib/nginx/modules/ngx_nchan_module.so", "/usr/share/nginx/modules/ngx_nchan_module.so"]


def nchan_module():
    return next((p for p in NCHAN_MODULE_PATHS if os.path.exists(p)), None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)  # polling a socket we cannot be told about; bounded by the deadline
    raise TimeoutError(f"nginx did not listen on {port} within {timeout}s")


class Nchan:
    """nginx + Nchan with its own config on a free port, in a temporary folder; stop() ends it and removes the folder."""

    def __init__(self, workers=2, connections=70000):
        module = nchan_module()
        if not module or not shutil.which("nginx"):
            raise RuntimeError("nginx with the Nchan module is not installed (apt-get install nginx libnginx-mod-nchan)")
        self.dir = tempfile.mkdtemp(prefix="marquee-bench-nchan-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        user = "user root;" if os.geteuid() == 0 else ""
        d = self.dir
        conf = f"""load_module {module};
{user}
worker_processes {workers};
worker_rlimit_nofile {connections + 1000};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
daemon off;
events {{ worker_connections {connections}; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    nchan_shared_memory_size 256m;
    server {{
        listen 127.0.0.1:{self.port} backlog=4096 reuseport;
        location ~ ^/pub/(\\w+)$ {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 16;
            nchan_message_timeout 120s;
        }}
        location ~ ^/sub/(\\w+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id $1;
        }}
    }}
}}
"""
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(conf)
        self.process = subprocess.Popen(["nginx", "-p", d, "-e", f"{d}/error.log", "-c", f"{d}/nginx.conf"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, self.process)
        except Exception:
            self.stop()
            raise
        self.group = loadgen.ProcessGroup(self.process.pid, with_children=True)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def stamp(t):
    """The commit_timestamp format Marquee sends (milliseconds, truncated)."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def nchan_body(seq, available, size):
    body = '{"commit_timestamp":"%s","record":{"available":%d,"version":%d},"pad":"' % (stamp(time.time()), available, seq)
    return (body + "x" * max(0, size - len(body) - 2) + '"}').encode()


def summarize(server, n, rate, seconds, commits, elapsed, result, final_ok, expected_last, cpu, rss0, rss1, extra):
    lat = loadgen.percentiles(result["latencies"], (50, 90, 99))
    delivered = result["delivered"]
    cpu_total = cpu[0] + cpu[1]
    wrong = sum(count for key, count in result["last"].items() if key != expected_last)
    return {"server": server, "subscribers": n, "subscribed": result["subscribed"], "rate": rate, "commits": commits,
            "delivered": delivered, "expected": commits * result["subscribed"], "wrong_final": wrong + (n - result["subscribed"]),
            "final_ok": final_ok, "duplicates": result["duplicates"], "gaps": result["gaps"],
            "deliveries_per_s": delivered / elapsed if elapsed > 0 else 0.0,
            "p50": lat[50] * 1000, "p90": lat[90] * 1000, "p99": lat[99] * 1000, "max": lat["max"] * 1000,
            "cpu_user": cpu[0], "cpu_system": cpu[1], "per_cpu_s": delivered / cpu_total if cpu_total else float("nan"),
            "rss_mb": rss1 / 2**20, "rss_per_sub_kb": (rss1 - rss0) / max(1, result["subscribed"]) / 1024,
            "frame_bytes": result["frame_bytes"] / delivered if delivered else 0,
            "gen_cpu": result["cpu_user"] + result["cpu_system"], "elapsed": elapsed,
            "per_subscriber_per_s": delivered / max(1, result["subscribed"]) / seconds if seconds else 0.0, **extra}


# the server's own view of the lag: commit → frames queued on the sockets (once per change), and commit → the write
# pass that writes a frame to its socket (once per delivery; the pass's writes and flushes come after)
SERVER_HISTOGRAMS = ("marquee_commit_to_queue_seconds", "marquee_commit_to_send_seconds")


def server_side_text(rows):
    parts = []
    for r in rows:
        side = r.get("server_side") or {}
        queue, send = side.get(SERVER_HISTOGRAMS[0]), side.get(SERVER_HISTOGRAMS[1])
        if r["server"] != "Marquee" or "error" in r or not queue or not send:
            continue
        parts.append(f"at {r['subscribers']}: commit→queued p50 {queue[50]:.1f} / p99 {queue[99]:.1f} ms, "
                     f"commit→write pass p50 {send[50]:.1f} / p99 {send[99]:.1f} ms")
    return (" Marquee's own histograms (`/metrics`, interpolated within buckets of 1-2-5-10-20-50-100-200-500 ms), "
            + "; ".join(parts) + ".") if parts else ""


def run_marquee(db_url, postgres, n, rate, seconds, workers, client, final_timeout, log, perf_file=None, coalesce_ms=0, feed="streaming"):
    env = {"MARQUEE_COALESCE_MS": str(coalesce_ms), "MARQUEE_CHANGE_FEED": feed}
    with common.marquee_server(db_url, env=env) as server:  # it applies the migrations
        with common.connect(db_url) as conn:
            event_id = conn.execute("insert into events (name, starts_at) values ('fan-out bench', now()) returning id").fetchone()[0]
            type_id = conn.execute("insert into event_tickets (event_id, name, price_cents, capacity, max_per_user) "
                                   "values (%s, 'GA', 1000, 100000000, 1000000) returning id", (event_id,)).fetchone()[0]
        group = loadgen.ProcessGroup(server.process.pid)
        rss0 = group.rss()
        gen = loadgen.Workers("marquee", f"{server.ws_url}/realtime/v1/websocket?apikey={common.make_token(role='anon')}&vsn=1.0.0",
                              n, workers=workers, client=client, event_id=str(event_id))
        try:
            t0 = time.monotonic()
            subscribed, failed, errors = gen.open()
            log(f"marquee: {subscribed}/{n} subscribed in {time.monotonic() - t0:.1f}s" + (f", {failed} failed: {errors}" if failed else ""))
            if server.process.poll() is not None:
                tail = " / ".join(line.strip() for line in server.output[-3:])[-300:]
                raise RuntimeError(f"marquee serve exited with status {server.process.returncode} while {n} subscribers "
                                   f"connected ({subscribed} had subscribed); its last output: {tail}")
            rss1 = group.rss()
            gen.start()
            perf = None
            if perf_file:  # samples the server's stacks while the load runs
                perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-p", str(server.process.pid), "-o", perf_file],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            hist0 = common.scrape_histograms(server.base_url, SERVER_HISTOGRAMS)
            cpu0, pg0 = group.cpu(), postgres.cpu() if postgres else (0.0, 0.0)
            start = time.monotonic()
            commits, version, available = common.commit_reservations(db_url, event_id, type_id, rate, seconds, start)
            final_ok = gen.wait_final(version, final_timeout)
            elapsed = time.monotonic() - start
            cpu1, pg1 = group.cpu(), postgres.cpu() if postgres else (0.0, 0.0)
            hist1 = common.scrape_histograms(server.base_url, SERVER_HISTOGRAMS)
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=120)
            rss_end = group.rss()
            result = gen.stop()
        finally:
            gen.kill()
    cpu = (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])
    pg = (pg1[0] - pg0[0]) + (pg1[1] - pg0[1])
    row = summarize("Marquee", n, rate, seconds, commits, elapsed, result, final_ok, (version, available), cpu, rss0,
                    max(rss1, rss_end), {"pg_cpu": pg if postgres else None, "failed": failed, "coalesce_ms": coalesce_ms,
                                         "server_side": {name: common.histogram_quantiles(hist0, hist1, name)
                                                         for name in SERVER_HISTOGRAMS}})
    log(f"marquee: {row}")
    return row


def run_nchan(n, rate, seconds, workers, client, size, final_timeout, nginx_workers, log):
    nchan = Nchan(workers=nginx_workers, connections=n + 1000)
    gen = None
    try:
        rss0 = nchan.group.rss()
        gen = loadgen.Workers("nchan", f"ws://127.0.0.1:{nchan.port}/sub/bench", n, workers=workers, client=client)
        t0 = time.monotonic()
        subscribed, failed, errors = gen.open()
        log(f"nchan: {subscribed}/{n} subscribed in {time.monotonic() - t0:.1f}s" + (f", {failed} failed: {errors}" if failed else ""))
        rss1 = nchan.group.rss()
        gen.start()
        cpu0 = nchan.group.cpu()
        start = time.monotonic()
        seq = 0
        capacity = 100000000
        pub = http.client.HTTPConnection("127.0.0.1", nchan.port, timeout=30)
        while time.monotonic() - start < seconds:
            common.pace(start, seq, rate)
            seq += 1
            pub.request("POST", "/pub/bench", body=nchan_body(seq, capacity - seq, size),
                         headers={"Content-Type": "application/json", "Accept": "text/json"})
            response = pub.getresponse()
            response.read()
            if response.status not in (200, 201, 202):
                raise RuntimeError(f"nchan publish answered {response.status}")
        pub.close()
        final_ok = gen.wait_final(seq, final_timeout)
        elapsed = time.monotonic() - start
        cpu1 = nchan.group.cpu()
        rss_end = nchan.group.rss()
        result = gen.stop()
    finally:
        if gen:
            gen.kill()
        nchan.stop()
    cpu = (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])
    row = summarize("Nchan", n, rate, seconds, seq, elapsed, result, final_ok, (seq, capacity - seq), cpu, rss0,
                    max(rss1, rss_end), {"pg_cpu": None, "failed": failed})
    log(f"nchan: {row}")
    return row


def fmt_table(rows):
    out = ["| server | subscribers | commits/s | payload B | delivered / expected | subscribers not at final state | dup / gap "
           "| deliveries/s | p50 ms | p90 ms | p99 ms | max ms | server CPU user+sys s | **deliveries per server CPU-s** "
           "| RSS MB (KB/subscriber) | PostgreSQL CPU s | generator CPU s (deliveries per generator CPU-s) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['server']} | {r['subscribers']} | {r['rate']:g} | — | failed: {r['error']} |" + " |" * 12)
            continue
        pg = f"{r['pg_cpu']:.2f}" if r["pg_cpu"] is not None else "—"
        gen_rate = r["delivered"] / r["gen_cpu"] if r["gen_cpu"] else float("nan")
        out.append(
            f"| {r['server']} | {r['subscribed']}" + (f" of {r['subscribers']}" if r["subscribed"] != r["subscribers"] else "")
            + f" | {r['rate']:g} | {r['frame_bytes']:.0f} | {r['delivered']} / {r['expected']} | {r['wrong_final']} | "
            f"{r['duplicates']} / {r['gaps']} | {r['deliveries_per_s']:.0f} | {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | "
            f"{r['max']:.1f} | {r['cpu_user']:.2f} + {r['cpu_system']:.2f} | **{r['per_cpu_s']:.0f}** | "
            f"{r['rss_mb']:.0f} ({r['rss_per_sub_kb']:.1f}) | {pg} | {r['gen_cpu']:.2f} ({gen_rate:.0f}) |")
    return "\n".join(out)


def fmt_ratios(rows):
    out = ["| subscribers | Nchan ÷ Marquee deliveries per CPU-s | Marquee ÷ Nchan RSS per subscriber | Marquee ÷ Nchan p99 |",
           "|---:|---:|---:|---:|"]
    for n in sorted({r["subscribers"] for r in rows}):
        m = next((r for r in rows if r["subscribers"] == n and r["server"] == "Marquee" and "error" not in r), None)
        c = next((r for r in rows if r["subscribers"] == n and r["server"] == "Nchan" and "error" not in r), None)
        if not m or not c:
            continue
        ratio = lambda a, b: f"{a / b:.2f}" if b else "—"  # noqa: E731
        out.append(f"| {n} | {ratio(c['per_cpu_s'], m['per_cpu_s'])} | {ratio(m['rss_per_sub_kb'], c['rss_per_sub_kb'])} | "
                   f"{ratio(m['p99'], c['p99'])} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, nargs="+", default=[1000, 10000])
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--rate", type=float, help="commits (messages) per second, the same for every N")
    group.add_argument("--deliveries", type=float, default=50000, help="target deliveries per second: rate = this / N")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=2, help="load generator processes")
    ap.add_argument("--client", choices=["picows", "websockets"], default="picows")
    ap.add_argument("--servers", nargs="+", choices=["marquee", "nchan"], default=["marquee", "nchan"])
    ap.add_argument("--nginx-workers", type=int, default=os.cpu_count())
    ap.add_argument("--payload", type=int, help="Nchan payload bytes (default: the size of Marquee's frames)")
    ap.add_argument("--final-timeout", type=float, default=60.0, help="how long to wait for every subscriber to catch up")
    common.add_output_arguments(ap)
    ap.add_argument("--perf", metavar="FILE", help="record the Marquee server with `perf record -g` during the load (last N wins)")
    ap.add_argument("--coalesce-ms", type=int, default=0,
                    help="Marquee's MARQUEE_COALESCE_MS (default 0: every update is delivered, as Nchan does; 100 is the "
                         "server's default, latest wins per ticket type)")
    ap.add_argument("--feed", choices=["streaming", "polling"], default="streaming",
                    help="Marquee's MARQUEE_CHANGE_FEED: stream the slot over the replication protocol (the default) or poll it over SQL")
    args = ap.parse_args(argv)

    log = common.progress_log(args.quiet)
    nofile = loadgen.raise_nofile()
    binary = common.marquee_binary()
    run = common.RunContext()
    rows = []
    size = args.payload
    with common.database(args.database_url, binary) as (db_url, postgres):
        for n in args.subscribers:
            rate = args.rate or args.deliveries / n
            if "marquee" in args.servers:
                try:
                    row = run_marquee(db_url, postgres, n, rate, args.seconds, args.workers, args.client, args.final_timeout, log,
                                      args.perf, args.coalesce_ms, args.feed)
                    size = size or round(row["frame_bytes"])
                except Exception as exc:
                    log(f"marquee at {n}: {exc!r}")
                    row = {"server": "Marquee", "subscribers": n, "rate": rate, "error": common.error_cell(exc)}
                rows.append(row)
            if "nchan" in args.servers:
                try:
                    row = run_nchan(n, rate, args.seconds, args.workers, args.client, size or 600, args.final_timeout,
                                    args.nginx_workers, log)
                except Exception as exc:
                    log(f"nchan at {n}: {exc!r}")
                    row = {"server": "Nchan", "subscribers": n, "rate": rate, "error": common.error_cell(exc)}
                rows.append(row)
    context = run.describe()

    command = common.command_line("compare.py", argv)
    rate_text = f"{args.rate:g} commits/s" if args.rate else f"{args.deliveries:g} deliveries/s (commits/s = that ÷ N)"
    rates = [r["delivered"] / r["gen_cpu"] for r in rows if "error" not in r and r.get("gen_cpu")]
    ceiling = (f" Load generator ceiling: about {args.workers * min(rates) / 1000:.0f}k deliveries/s "
               f"({args.workers} processes × the lowest deliveries per generator CPU-second of this run), "
               f"if it had a core per process." if rates else "")
    text = "\n".join([
        f"### Fan-out, Marquee vs Nchan, {run.started} UTC", "",
        f"`{command}`", "",
        f"{context} "
        f"Marquee: `marquee serve` ({common.build_kind(binary)} build, change feed {args.feed}), PostgreSQL on the same machine. "
        + (f"Nchan: Debian nginx + libnginx-mod-nchan, {args.nginx_workers} worker processes. " if "nchan" in args.servers else "")
        + f"Rate: {rate_text} for {args.seconds:g} s. "
        f"Load generator: {args.workers} processes, `{args.client}` on uvloop, RLIMIT_NOFILE {nofile}.{ceiling} "
        + (f"Marquee coalesces availability rows every {args.coalesce_ms} ms (latest wins), so it delivers fewer frames "
           f"than were committed: its gaps are skipped intermediate versions; deliveries per subscriber per second: "
           + ", ".join(f"{r['per_subscriber_per_s']:.1f} at {r['subscribers']}" for r in rows if r["server"] == "Marquee" and "error" not in r)
           + "." if args.coalesce_ms else "Coalescing off (MARQUEE_COALESCE_MS=0): every update is delivered by both servers.")
        + server_side_text(rows), "",
        fmt_table(rows), ""] + ([fmt_ratios(rows), ""] if set(args.servers) == {"marquee", "nchan"} else []))
    common.publish(args, text)
    return rows


if __name__ == "__main__":
    main()
