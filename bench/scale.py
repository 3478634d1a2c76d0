"""Many subscribers at once: N WebSocket subscribers on one event, spread over K `marquee serve` nodes that share one
PostgreSQL (each node reads its own replication slot), while reservations keep committing.

Why several nodes: one process may hold at most RLIMIT_NOFILE descriptors, and the hard limit on this machine is
20000, which an unprivileged container cannot raise; a server keeps a tenth of its descriptors for the pool, files
and the runtime, so about 18k sockets per node. Nodes behind a load balancer is also how Marquee scales out.

Reported: subscribers opened and kept, deliveries (expected = commits × subscribers), lost and duplicated updates,
subscribers not at the database's final state, commit→receive latency, and per node its sockets, RSS per subscriber
and CPU (user/system).

Usage: .venv/bin/python bench/scale.py --subscribers 50000 --nodes 3 --workers 4 --rate 1 --seconds 20 --write
"""

import argparse
import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import loadgen  # noqa: E402


def run(db_url, n, nodes, workers, rate, seconds, final_timeout, open_timeout, log):
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(common.marquee_server(db_url)) for _ in range(nodes)]
        with common.connect(db_url) as conn:
            event_id = conn.execute("insert into events (name, starts_at) values ('scale bench', now()) returning id").fetchone()[0]
            type_id = conn.execute("insert into event_tickets (event_id, name, price_cents, capacity, max_per_user) "
                                   "values (%s, 'GA', 1000, 100000000, 1000000) returning id", (event_id,)).fetchone()[0]
        groups = [loadgen.ProcessGroup(s.process.pid) for s in servers]
        rss0 = [g.rss() for g in groups]
        token = common.make_token(role="anon")
        urls = [f"{s.ws_url}/realtime/v1/websocket?apikey={token}&vsn=1.0.0" for s in servers]
        gen = loadgen.Workers("marquee", urls, n, workers=workers, event_id=str(event_id))
        try:
            t0 = time.monotonic()
            subscribed, failed, errors = gen.open(timeout=open_timeout)
            opened_in = time.monotonic() - t0
            log(f"{subscribed}/{n} subscribed in {opened_in:.1f}s" + (f", {failed} failed: {errors}" if failed else ""))
            dead = [i for i, s in enumerate(servers) if s.process.poll() is not None]
            if dead:
                raise RuntimeError(f"nodes {dead} exited while {n} subscribers connected")
            rss1 = [g.rss() for g in groups]
            gen.start()
            cpu0 = [g.cpu() for g in groups]
            start = time.monotonic()
            commits, version, available = common.commit_reservations(db_url, event_id, type_id, rate, seconds, start)
            final_ok = gen.wait_final(version, final_timeout)
            elapsed = time.monotonic() - start
            cpu1 = [g.cpu() for g in groups]
            alive = all(s.process.poll() is None for s in servers)
            result = gen.stop()
        finally:
            gen.kill()
    lat = loadgen.percentiles(result["latencies"], (50, 90, 99))
    per_node = len(urls) and result["subscribed"] / len(urls)
    row = {"subscribers": n, "nodes": nodes, "subscribed": result["subscribed"], "failed": failed, "errors": errors,
           "opened_in": opened_in, "rate": rate, "commits": commits, "delivered": result["delivered"],
           "expected": commits * result["subscribed"], "duplicates": result["duplicates"], "gaps": result["gaps"],
           "closed": result["closed"], "final_ok": final_ok,
           "wrong_final": sum(c for key, c in result["last"].items() if key != (version, available)),
           "p50": lat[50] * 1000, "p90": lat[90] * 1000, "p99": lat[99] * 1000, "max": lat["max"] * 1000,
           "elapsed": elapsed, "alive": alive,
           "nodes_detail": [{"rss_mb": rss1[i] / 2**20, "kb_per_sub": (rss1[i] - rss0[i]) / max(1, per_node) / 1024,
                             "cpu_user": cpu1[i][0] - cpu0[i][0], "cpu_system": cpu1[i][1] - cpu0[i][1]}
                            for i in range(nodes)]}
    log(f"{row}")
    return row


def fmt(row):
    out = ["| subscribers (kept / asked) | nodes | opened in s | commits | delivered / expected | lost | duplicates "
           "| not at final state | p50 ms | p90 ms | p99 ms | max ms | nodes alive at the end |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    if "error" in row:
        out.append(f"| {row['subscribers']} | {row['nodes']} | failed: {row['error']} |" + " |" * 10)
        return "\n".join(out)
    out.append(f"| {row['subscribed'] - row['closed']} / {row['subscribers']} | {row['nodes']} | {row['opened_in']:.0f} | {row['commits']} | "
               f"{row['delivered']} / {row['expected']} | {row['gaps']} | {row['duplicates']} | {row['wrong_final']} | "
               f"{row['p50']:.1f} | {row['p90']:.1f} | {row['p99']:.1f} | {row['max']:.1f} | {'yes' if row['alive'] else '**no**'} |")
    out += ["", "| node | RSS MB | KB per subscriber | CPU user + system s |", "|---:|---:|---:|---:|"]
    for i, node in enumerate(row["nodes_detail"]):
        out.append(f"| {i + 1} | {node['rss_mb']:.0f} | {node['kb_per_sub']:.1f} | {node['cpu_user']:.2f} + {node['cpu_system']:.2f} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=50000)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4, help="load generator processes (each holds at most ~19k sockets)")
    ap.add_argument("--rate", type=float, default=1.0, help="commits per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--final-timeout", type=float, default=120.0)
    ap.add_argument("--open-timeout", type=float, default=900.0)
    common.add_output_arguments(ap)
    args = ap.parse_args(argv)
    log = common.progress_log(args.quiet)
    nofile = loadgen.raise_nofile()
    binary = common.marquee_binary()
    context = common.RunContext()
    with common.database(args.database_url, binary) as (db_url, _postgres):
        try:
            row = run(db_url, args.subscribers, args.nodes, args.workers, args.rate, args.seconds, args.final_timeout,
                      args.open_timeout, log)
        except Exception as exc:
            log(f"failed: {exc!r}")
            row = {"subscribers": args.subscribers, "nodes": args.nodes,
                   "error": common.error_cell(exc)}
    command = common.command_line("scale.py", argv)
    text = "\n".join([
        f"### Many subscribers on one event, {context.started} UTC", "", f"`{command}`", "",
        f"{context.describe()} Marquee: {args.nodes} `marquee serve` nodes ({common.build_kind(binary)} build) on one "
        f"PostgreSQL on the same machine; subscribers spread evenly over the nodes; {args.rate:g} commits/s for "
        f"{args.seconds:g} s. Load generator: {args.workers} processes, `picows` on uvloop, RLIMIT_NOFILE {nofile}.", "",
        fmt(row), ""])
    common.publish(args, text)
    return row


if __name__ == "__main__":
    main()
