"""With no DATABASE_URL, `marquee serve` runs its own PostgreSQL under --data-dir, keeps the data across restarts and
leaves no process behind when it stops; so does `marquee db start/stop` (issue item 8)."""

import os
import shutil
import signal
import subprocess
import tempfile
import uuid

import httpx
import psycopg
import pytest

from conftest import ROOT, make_token, marquee_bin, start_server
from apihelpers import auth

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def data_dir():
    """A data directory the embedded cluster's system user can reach (tests run as root in CI)."""
    path = tempfile.mkdtemp(prefix="marquee-embedded-")
    os.chmod(path, 0o755)
    yield path
    if processes_mentioning(path):  # a failed test must not leave a cluster running
        subprocess.run([marquee_bin(), "db", "stop", "--data-dir", path], cwd=ROOT, capture_output=True, timeout=120)
    shutil.rmtree(path, ignore_errors=True)


def processes_mentioning(path):
    """(pid, command line) of every process whose command line contains `path`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if path in command:
            found.append((int(entry), command))
    return found


def postgres_processes(path):
    return [(pid, cmd) for pid, cmd in processes_mentioning(path) if "postgres" in cmd.split(" ")[0]]


def assert_cluster_inside(path):
    """The cluster lives in <data dir>/postgres (not a fallback elsewhere), so the process checks can find it."""
    assert not os.path.exists(os.path.join(path, "postgres.location")), "the cluster was put outside the data directory"
    assert os.path.exists(os.path.join(path, "postgres", "PG_VERSION"))


def assert_stopped(path):
    assert processes_mentioning(path) == [], "processes left behind after stop"
    assert not os.path.exists(os.path.join(path, "postgres", "postmaster.pid")), "PostgreSQL did not shut down cleanly"


def test_serve_runs_the_embedded_cluster_and_stops_it(data_dir):
    first = start_server(None, args=["--demo"], data_dir=data_dir, timeout=180)
    try:
        assert_cluster_inside(data_dir)
        assert postgres_processes(data_dir), "no PostgreSQL process runs on the data directory"
        events = httpx.get(first.base_url + "/api/events", timeout=30).json()["events"]
        assert len(events) == 3, events
        assert {e["name"] for e in events} >= {"Midnight Jazz Quartet", "City Marathon After-Party"}
        ids = sorted(e["id"] for e in events)
        event = events[0]
        ticket_type = event["ticket_types"][0]
        held = httpx.post(f"{first.base_url}/api/events/{event['id']}/reservations",
                          json={"ticket_type_id": ticket_type["id"], "quantity": 1},
                          headers={**auth(make_token(sub="persistent-user")), "Idempotency-Key": uuid.uuid4().hex}, timeout=30)
        assert held.status_code == 201, held.text
    finally:
        first_code = first.stop(timeout=90)
    assert_stopped(data_dir)

    second = start_server(None, args=["--demo"], data_dir=data_dir, timeout=180)
    try:
        events_again = httpx.get(second.base_url + "/api/events", timeout=30).json()["events"]
        assert sorted(e["id"] for e in events_again) == ids  # same events, not seeded a second time
        again = next(e for e in events_again if e["id"] == event["id"])
        type_again = next(t for t in again["ticket_types"] if t["id"] == ticket_type["id"])
        assert type_again["reserved"] == ticket_type["reserved"] + 1
        assert type_again["available"] == ticket_type["available"] - 1
    finally:
        second.process.send_signal(signal.SIGINT)  # Ctrl-C shuts down as cleanly as SIGTERM
        try:
            second_code = second.process.wait(timeout=90)
        finally:
            second.stop()
    assert_stopped(data_dir)
    # checked last, so that a bad exit code does not hide whether the data and the processes were right
    assert first_code == 0, "exit code after SIGTERM:\n" + "".join(first.output[-15:])
    assert second_code == 0, "exit code after SIGINT:\n" + "".join(second.output[-15:])


def test_db_start_and_stop(data_dir):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    def db(*args):
        return subprocess.run([marquee_bin(), "db", *args, "--data-dir", data_dir, "--log-level", "warning"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=180)

    started = db("start")
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url.startswith("postgres://") and "127.0.0.1" in url, started.stdout
    assert_cluster_inside(data_dir)
    assert postgres_processes(data_dir)
    with psycopg.connect(url) as conn:
        assert conn.execute("select current_setting('wal_level')").fetchone()[0] == "logical"

    again = db("start")  # already running: the same cluster, the same URL
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == url
    assert len([p for p in postgres_processes(data_dir)]) == 1

    stopped = db("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert_stopped(data_dir)

    assert db("stop").returncode == 0  # stopping a stopped cluster is fine

    restarted = db("start")  # a restart keeps the port while it is free: clients and servers keep their URL
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip() == url
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone()[0] == 1
    assert db("stop").returncode == 0
    assert_stopped(data_dir)
