"""What the benchmark scripts share: the Marquee binary, a database (a cluster of their own, or a fresh database on a
given one), `marquee serve`, PostgreSQL's CPU, and a description of the machine and how busy it was."""

import contextlib
import glob
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from conftest import drop_database, make_token, start_server, with_database  # noqa: E402,F401
from loadgen import ProcessGroup  # noqa: E402


def marquee_binary():
    """MARQUEE_BENCH_BIN, else a release build, else MARQUEE_BIN, else the debug build."""
    candidates = [os.environ.get("MARQUEE_BENCH_BIN", ""), os.path.join(ROOT, ".build", "release", "marquee"),
                  os.path.join(ROOT, ".build-release", "release", "marquee"), os.environ.get("MARQUEE_BIN", ""),
                  os.path.join(ROOT, ".build", "debug", "marquee")]
    binary = next(path for path in candidates if path and os.path.exists(path))
    os.environ["MARQUEE_BIN"] = binary  # start_server runs MARQUEE_BIN
    return binary


def build_kind(binary):
    return "release" if "/release/" in binary else "debug"


@contextlib.contextmanager
def database(admin_url=None, binary=None):
    """Yields (database_url, postgres ProcessGroup or None): a new database on `admin_url`, or on a cluster of its own
    (started with `marquee db start` in a temporary folder and stopped afterwards)."""
    work = None
    if not admin_url:
        work = tempfile.mkdtemp(prefix="marquee-bench-db-")
        os.chmod(work, 0o755)
        admin_url = subprocess.check_output([binary, "db", "start", "--data-dir", f"{work}/db", "--log-level", "warning"],
                                            text=True, timeout=120).strip()
    name = "bench_" + uuid.uuid4().hex[:8]
    try:
        with connect(admin_url) as conn:
            conn.execute(f'create database "{name}"')
            postgres = None
            try:
                data_dir = conn.execute("show data_directory").fetchone()[0]
                with open(os.path.join(data_dir, "postmaster.pid")) as f:
                    postgres = ProcessGroup(int(f.readline()), with_children=True)
            except Exception:
                pass
        yield with_database(admin_url, name), postgres
    finally:
        try:
            drop_database(admin_url, name)
        except Exception:
            pass
        if work:
            subprocess.run([binary, "db", "stop", "--data-dir", f"{work}/db"], check=False, capture_output=True, timeout=120)
            shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def marquee_server(db_url, env=None):
    """`marquee serve` on a free port with limits opened up for load; stopped (SIGTERM) afterwards."""
    data_dir = tempfile.mkdtemp(prefix="marquee-bench-srv-")
    settings = {"MARQUEE_LOG_LEVEL": "warning", "MARQUEE_MAX_CONNECTIONS_PER_IP": "1000000",
                "MARQUEE_MAX_CONNECTIONS_PER_USER": "1000000", "MARQUEE_RESERVATIONS_PER_MINUTE": "100000000"}
    settings.update(env or {})
    server = start_server(db_url, env=settings, data_dir=data_dir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def connect(url):
    """A psycopg connection (autocommit) whose connect and statements are bounded in time: a benchmark that cannot
    reach its database fails with an error instead of waiting forever."""
    return psycopg.connect(url, autocommit=True, connect_timeout=10, options="-c statement_timeout=120000")


def command_line(script, argv):
    """The command that reran this benchmark, for its results: a database URL (with its password) becomes ADMIN_URL."""
    args = list(argv if argv is not None else sys.argv[1:])
    for i, arg in enumerate(args):
        if args[i - 1:i] == ["--database-url"]:
            args[i] = "ADMIN_URL"
    return f".venv/bin/python bench/{script} " + " ".join(args)


def pace(start, sent, rate):
    delay = start + sent / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)  # pacing the writer at the chosen rate, not waiting for a result


def commit_reservations(db_url, event_id, type_id, rate, seconds, start):
    """Commits one-seat holds on a ticket type in SQL, `rate` a second from `start` until `seconds` have passed;
    returns (commits, the type's final version, its final available count)."""
    commits = 0
    with connect(db_url) as conn:
        while time.monotonic() - start < seconds:
            pace(start, commits, rate)
            conn.execute("insert into tickets (event_id, event_ticket_id, user_id, quantity, status, hold_expires_at) "
                         "values (%s, %s, %s, 1, 'reserved', now() + interval '1 hour')", (event_id, type_id, f"u{commits}"))
            commits += 1
        version, available = conn.execute("select version, available from event_tickets where id = %s", (type_id,)).fetchone()
    return commits, version, available


def pgbench_binary():
    found = shutil.which("pgbench") or sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))[-1:]
    return found if isinstance(found, str) else (found[0] if found else "pgbench")


def run_pgbench(db_url, script, clients, seconds, postgres):
    """Runs a pgbench script (its text) with `clients` for `seconds`; returns (pgbench's output, PostgreSQL's CPU
    seconds meanwhile or None). A failed run raises with pgbench's error."""
    work = tempfile.mkdtemp(prefix="marquee-bench-pgbench-")
    path = os.path.join(work, "script.sql")
    with open(path, "w") as f:
        f.write(script)
    pg0 = postgres.cpu() if postgres else (0.0, 0.0)
    try:
        out = subprocess.run([pgbench_binary(), "-n", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 2)),
                              "-T", str(int(seconds)), "-f", path, db_url], capture_output=True, text=True, timeout=seconds + 120)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pg1 = postgres.cpu() if postgres else (0.0, 0.0)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed: {out.stderr[-500:]}")
    return out.stdout, ((pg1[0] - pg0[0]) + (pg1[1] - pg0[1]) if postgres else None)


def tps(output):
    return float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", output).group(1))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def busy_processes(exclude=()):
    """Other processes using CPU right now (e.g. a compiler), as `name (pcpu%)`."""
    out = subprocess.run(["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu", "--no-headers"], capture_output=True, text=True).stdout
    busy = []
    for line in out.splitlines()[:12]:
        pid, pcpu, comm = line.split(None, 2)
        if int(pid) in exclude or float(pcpu) < 5:
            continue
        busy.append(f"{comm} ({float(pcpu):.0f}%)")
    return busy


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    mem = next((line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")), "0")
    return f"{os.cpu_count()} cores ({cpu}), {int(mem) / 1024 / 1024:.0f} GiB RAM, Linux {platform.release()}"


class RunContext:
    """How busy the machine was when a benchmark started and ended, for the sentence under its results table."""

    def __init__(self):
        self.started = now_utc()
        self.load_start = loadavg()
        self.busy_start = busy_processes(exclude={os.getpid()})

    def describe(self):
        load_end, busy_end = loadavg(), busy_processes(exclude={os.getpid()})
        busy = ""
        if self.busy_start or busy_end:
            busy = (f" **The machine was busy**: at the start {', '.join(self.busy_start) or 'nothing else'}; "
                    f"at the end {', '.join(busy_end) or 'nothing else'}.")
        return f"Machine: {machine()}; load average (1/5/15 min) {self.load_start} at the start, {load_end} at the end.{busy}"


def now_utc():
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")


def append_results(path, text):
    with open(path, "a") as f:
        f.write("\n" + text)


def add_output_arguments(ap):
    """The options every benchmark takes: where its database is, and where and whether its section is written."""
    ap.add_argument("--database-url", help="a running PostgreSQL to create the bench database on (default: a cluster of its own)")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    ap.add_argument("--write", action="store_true", help="append the section to --results")
    ap.add_argument("--quiet", action="store_true")


def progress_log(quiet):
    """Progress lines on standard error, or nothing with --quiet."""
    return (lambda *_: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))


def error_cell(exc):
    """A failed run's error as one table cell: short, on one line, without column separators."""
    return f"{type(exc).__name__}: {exc}"[:200].replace("\n", " ").replace("|", "/")


def publish(args, text):
    """Prints a benchmark's section, and appends it to --results with --write."""
    print(text)
    if args.write:
        append_results(args.results, text)


def scrape_histograms(base_url, names):
    """The cumulative buckets of Prometheus histograms from the server's /metrics: {name: [(upper bound, count), …]}
    (the +Inf bucket last); empty when the server cannot be read."""
    import urllib.request

    found = {name: [] for name in names}
    try:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    for line in text.splitlines():
        for name in names:
            if line.startswith(name + "_bucket{"):
                bound = re.search(r'le="([^"]+)"', line).group(1)
                found[name].append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(None, 1)[1])))
    return {name: sorted(buckets) for name, buckets in found.items() if buckets}


def histogram_quantiles(before, after, name, qs=(50, 99)):
    """Quantiles (in ms) of what a histogram recorded between two scrapes, interpolated linearly within a bucket as
    Prometheus' histogram_quantile does; None when nothing was recorded."""
    start = dict(before.get(name, []))
    buckets = [(bound, count - start.get(bound, 0.0)) for bound, count in after.get(name, [])]
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    out = {}
    for q in qs:
        rank = q / 100 * total
        lower, below = 0.0, 0.0
        for bound, count in buckets:
            if count >= rank:
                if bound == float("inf"):
                    out[q] = lower * 1000  # beyond the last finite bound: report that bound
                else:
                    share = (rank - below) / (count - below) if count > below else 1.0
                    out[q] = (lower + (bound - lower) * share) * 1000
                break
            lower, below = bound, count
    out["count"] = total
    return out
