"""What the change feed costs PostgreSQL: the CPU of the feed's own backend, idle and at a steady commit rate, for the
streaming feed (a walsender) and the SQL polling feed (a plain backend peeking and advancing), in one run.

For each mode it starts `marquee serve` with MARQUEE_CHANGE_FEED=<mode> on a database of its own, finds the backend
that serves its feed (streaming: the walsender named `marquee change feed`; polling: the session that runs
`pg_logical_slot_peek_binary_changes`), measures that backend's CPU (from /proc) while nothing is committed for
`--seconds`, then while one-seat holds are committed in SQL at `--rate` a second for `--seconds`. The whole cluster's
CPU during the load is reported too (it includes the backend that commits).

Usage:
  .venv/bin/python bench/feed_cpu.py --rate 50 --seconds 15 --write
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import loadgen  # noqa: E402

FIND_BACKEND = {
    "streaming": "select pid from pg_stat_activity where backend_type = 'walsender' and application_name = 'marquee change feed' "
                 "and datname = current_database()",
    "polling": "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() "
               "and (query ilike '%pg_logical_slot_peek%' or query ilike '%pg_replication_slot_advance%')",
}


def feed_backend(db_url, mode, timeout=30.0):
    deadline = time.monotonic() + timeout
    with common.connect(db_url) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(FIND_BACKEND[mode]).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)  # asking the database again until the server's feed has connected; bounded by the deadline
    raise TimeoutError(f"no {mode} feed backend within {timeout}s")


def run_mode(mode, admin_url, binary, rate, seconds, log):
    with common.database(admin_url, binary) as (db_url, postgres):
        with common.marquee_server(db_url, env={"MARQUEE_CHANGE_FEED": mode}):
            with common.connect(db_url) as conn:
                event_id = conn.execute("insert into events (name, starts_at) values ('feed cpu bench', now()) returning id").fetchone()[0]
                type_id = conn.execute("insert into event_tickets (event_id, name, price_cents, capacity, max_per_user) "
                                       "values (%s, 'GA', 1000, 100000000, 1000000) returning id", (event_id,)).fetchone()[0]
            backend = loadgen.ProcessGroup(feed_backend(db_url, mode))
            b0 = sum(backend.cpu())
            time.sleep(seconds)  # the idle window being measured
            b1 = sum(backend.cpu())
            pg0 = sum(postgres.cpu()) if postgres else 0.0
            start = time.monotonic()
            commits, _, _ = common.commit_reservations(db_url, event_id, type_id, rate, seconds, start)
            elapsed = time.monotonic() - start
            b2 = sum(backend.cpu())
            pg1 = sum(postgres.cpu()) if postgres else 0.0
    row = {"mode": mode, "idle": b1 - b0, "busy": b2 - b1, "cluster": (pg1 - pg0) if postgres else None, "commits": commits,
           "elapsed": elapsed}
    log(f"{mode}: {row}")
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=50.0, help="commits per second during the busy window")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of the idle window and of the busy window")
    ap.add_argument("--modes", nargs="+", choices=["polling", "streaming"], default=["polling", "streaming"])
    common.add_output_arguments(ap)
    args = ap.parse_args(argv)
    log = common.progress_log(args.quiet)
    binary = common.marquee_binary()
    context = common.RunContext()
    rows = []
    for mode in args.modes:
        try:
            rows.append(run_mode(mode, args.database_url, binary, args.rate, args.seconds, log))
        except Exception as exc:  # one failed mode still reports the other
            rows.append({"mode": mode, "error": common.error_cell(exc)})
    lines = [f"### Change feed CPU in PostgreSQL, {common.now_utc()}", "",
             f"`{common.command_line('feed_cpu.py', argv)}` ({common.build_kind(binary)} build)", "",
             f"| feed | its backend, idle {args.seconds:.0f} s (CPU-s) | its backend, {args.rate:.0f} commits/s for {args.seconds:.0f} s (CPU-s) "
             f"| whole cluster under load (CPU-s) | commits |", "|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['mode']} | {r['error']} | | | |")
            continue
        cluster = f"{r['cluster']:.2f}" if r["cluster"] is not None else "—"
        lines.append(f"| {r['mode']} | {r['idle']:.2f} | {r['busy']:.2f} | {cluster} | {r['commits']} |")
    lines += ["", context.describe(), ""]
    common.publish(args, "\n".join(lines))


if __name__ == "__main__":
    main()
