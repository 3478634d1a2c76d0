"""Beyond the single-row ceiling: how many holds per second one hot ticket type can take when its seat counter is
one row (Marquee's schema: every hold updates `event_tickets` under its row lock until commit), split into K rows
(each with its own share of the capacity; a hold takes a seat from a random row, or from any other when that one
is sold out), or taken in
batches (one transaction takes seats for B buyers at once, as a server that groups concurrent requests would).

Every variant runs as a pgbench script on a scratch table pair in a database of its own, with the same clients and
duration, and ends with an oversell check: no counter above its capacity, and the seats taken equal the hold rows.
Each variant runs twice: with seats enough for the whole run (its rate), and with a small capacity that it sells
out within the run (the check at the limit: exactly the capacity taken, never more).

Usage: .venv/bin/python bench/hot_row.py --clients 32 --seconds 10 --shards 4 16 --batches 8 32 --write
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SCHEMA = """
    drop table if exists hot_holds, hot_counters;
    create table hot_counters (shard int primary key, capacity int not null, taken int not null default 0,
                               check (taken between 0 and capacity));
    create table hot_holds (id bigserial primary key, shard int not null references hot_counters, buyer text not null,
                            at timestamptz not null default now());
"""

# One hold: take a seat on the one counter row (the conditional update is the check), then write the hold row.
SINGLE = """\\set buyer random(1, 1000000000)
begin;
with took as (update hot_counters set taken = taken + 1 where shard = 1 and taken < capacity returning shard)
insert into hot_holds (shard, buyer) select shard, 'b' || :buyer from took;
commit;
"""

# One hold on K counters: a random row first (buyers spread over K locks); when that row is sold out, any other with
# a seat left. FOR UPDATE re-checks the row after waiting for its lock, so a row another buyer just filled is passed.
SHARDED = """\\set buyer random(1, 1000000000)
\\set k random(1, {k})
begin;
with pick as (select shard from hot_counters where taken < capacity order by shard = :k desc, shard limit 1 for update),
     took as (update hot_counters c set taken = taken + 1 from pick where c.shard = pick.shard returning c.shard)
insert into hot_holds (shard, buyer) select shard, 'b' || :buyer from took;
commit;
"""

# B holds in one transaction on the one counter row: the lock is taken once for the batch (all or nothing).
BATCHED = """\\set buyer random(1, 1000000000)
begin;
with took as (update hot_counters set taken = taken + {b} where shard = 1 and taken + {b} <= capacity returning shard)
insert into hot_holds (shard, buyer) select took.shard, 'b' || :buyer || '-' || g from took, generate_series(1, {b}) g;
commit;
"""


def prepare(conn, shards, capacity):
    conn.execute(SCHEMA)
    per, extra = divmod(capacity, shards)
    for k in range(1, shards + 1):
        conn.execute("insert into hot_counters (shard, capacity) values (%s, %s)", (k, per + (1 if k <= extra else 0)))


def check(conn):
    """(seats taken, hold rows, counters over capacity, counters whose taken differs from their hold rows)."""
    taken, holds = conn.execute("select (select coalesce(sum(taken), 0) from hot_counters), (select count(*) from hot_holds)").fetchone()
    over = conn.execute("select count(*) from hot_counters where taken > capacity").fetchone()[0]
    mismatched = conn.execute(
        "select count(*) from hot_counters c where taken <> (select count(*) from hot_holds h where h.shard = c.shard)").fetchone()[0]
    return int(taken), int(holds), int(over), int(mismatched)


def run(db_url, name, script, shards, capacity, clients, seconds, postgres, log):
    with common.connect(db_url) as conn:
        prepare(conn, shards, capacity)
    output, pg_cpu = common.run_pgbench(db_url, script, clients, seconds, postgres)
    tps = common.tps(output)
    with common.connect(db_url) as conn:
        taken, holds, over, mismatched = check(conn)
        conn.execute("drop table hot_holds, hot_counters")
    row = {"variant": name, "shards": shards, "clients": clients, "seconds": seconds, "capacity": capacity, "tps": tps,
           "taken": taken, "holds": holds, "over": over, "mismatched": mismatched,
           "holds_per_s": holds / seconds, "pg_cpu": pg_cpu}
    log(f"{name}: {row}")
    return row


def sound(r):
    return r["over"] == 0 and r["mismatched"] == 0 and r["taken"] == r["holds"] <= r["capacity"]


def fmt_table(rows):
    out = ["| variant | counter rows | clients | transactions/s | holds/s | × one row | PostgreSQL CPU s | counts check "
           "| sell-out run: holds / capacity, check |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    base = next((r["holds_per_s"] for r in rows if r["variant"] == "one row" and "error" not in r), None)
    for r in rows:
        if "error" in r:
            out.append(f"| {r['variant']} | | | failed: {r['error']} |" + " |" * 5)
            continue
        ratio = f"{r['holds_per_s'] / base:.2f}" if base else "—"
        pg = f"{r['pg_cpu']:.1f}" if r["pg_cpu"] is not None else "—"
        limit = r["sell_out"]
        out.append(f"| {r['variant']} | {r['shards']} | {r['clients']} | {r['tps']:.0f} | {r['holds_per_s']:.0f} | {ratio} | {pg} | "
                   f"{'ok' if sound(r) else '**wrong**'} | {limit['holds']} / {limit['capacity']}, "
                   f"{'ok' if sound(limit) else '**oversold or mismatched**'} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sell-out", type=int, default=500, help="the small capacity of the second run of each variant")
    ap.add_argument("--shards", type=int, nargs="*", default=[4, 16])
    ap.add_argument("--batches", type=int, nargs="*", default=[8, 32])
    common.add_output_arguments(ap)
    args = ap.parse_args(argv)
    log = common.progress_log(args.quiet)
    binary = common.marquee_binary()
    context = common.RunContext()
    variants = [("one row", SINGLE, 1)] + [(f"{k} rows", SHARDED.format(k=k), k) for k in args.shards] + \
        [(f"one row, batches of {b}", BATCHED.format(b=b), 1) for b in args.batches]
    rows = []
    with common.database(args.database_url, binary) as (db_url, postgres):
        for name, script, shards in variants:
            try:
                row = run(db_url, name, script, shards, 100_000_000, args.clients, args.seconds, postgres, log)
                limit = run(db_url, name, script, shards, args.sell_out, args.clients, args.seconds, postgres, log)
                row["sell_out"] = limit
                rows.append(row)
            except Exception as exc:
                rows.append({"variant": name, "error": common.error_cell(exc)})
    command = common.command_line("hot_row.py", argv)
    text = "\n".join([
        f"### One hot ticket type: one counter row, split rows, batched holds (pgbench), {context.started} UTC", "",
        f"`{command}`", "",
        f"{context.describe()} PostgreSQL 15 on the same machine (`synchronous_commit = on`); pgbench with {args.clients} "
        f"clients for {args.seconds:g} s per variant; every transaction takes one seat (a batch takes B) and writes its hold "
        f"rows.", "", fmt_table(rows), ""])
    common.publish(args, text)
    return rows


if __name__ == "__main__":
    main()
