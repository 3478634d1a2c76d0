"""Shared fixtures: a fresh database per test module on the cluster scripts/test.sh starts, a real
`marquee serve` process on a free port, and tokens signed with the test secret."""

import os
import resource
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlparse, urlunparse

import httpx
import jwt
import psycopg
import pytest

TEST_SECRET = "marquee-test-secret-0123456789abcdef0123456789"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def marquee_bin() -> str:
    return os.environ.get("MARQUEE_BIN", os.path.join(ROOT, ".build", "debug", "marquee"))


def admin_url() -> str:
    url = os.environ.get("MARQUEE_TEST_DATABASE_URL")
    if not url:
        pytest.fail("MARQUEE_TEST_DATABASE_URL is not set: run the tests with `make test` (scripts/test.sh)")
    return url


def with_database(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path="/" + name))


def make_token(sub=None, role="authenticated", expires_in=3600, secret=TEST_SECRET, **extra) -> str:
    now = int(time.time())
    claims = {"role": role, "iat": now, **extra}
    if sub is not None:
        claims["sub"] = sub
    if expires_in is not None:
        claims["exp"] = now + expires_in
    return jwt.encode(claims, secret, algorithm="HS256")


def create_event(base_url, capacities=(50,), name=None, label="Test", starts_at="2030-01-01T20:00:00Z",
                 price=lambda i, n: 1000 * (i + 1)) -> dict:
    """Creates an event through the API (service role) with one ticket type per capacity; `price(i, n)` gives type
    i of n its price in cents."""
    body = {
        "name": name or f"{label} {uuid.uuid4().hex[:6]}",
        "starts_at": starts_at,
        "venue": "Test Hall",
        "ticket_types": [{"name": f"Type {i}", "price_cents": price(i, len(capacities)), "capacity": c}
                         for i, c in enumerate(capacities)],
    }
    r = httpx.post(f"{base_url}/api/events", json=body, headers={"Authorization": "Bearer " + make_token(role="service_role")})
    assert r.status_code == 201, r.text
    return r.json()


@dataclass
class Database:
    name: str
    url: str

    def connect(self, autocommit=True):
        return psycopg.connect(self.url, autocommit=autocommit)


@pytest.fixture(scope="module")
def database():
    """A new, empty database for one test module, dropped afterwards."""
    name = "mq_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    db = Database(name, with_database(admin_url(), name))
    yield db
    drop_database(admin_url(), name)


def drop_database(admin: str, name: str, timeout_ms: int = 30000):
    """Drops a test database and the replication slots on it. A server that has just stopped may leave its slot
    active for a moment (the backend reading it ends after the client has gone), and an active slot makes DROP
    DATABASE fail: that backend is ended first, waiting (up to `timeout_ms`) until it has exited."""
    with psycopg.connect(admin, autocommit=True) as conn:
        for (pid,) in conn.execute("select active_pid from pg_replication_slots where database = %s and active", (name,)).fetchall():
            conn.execute("select pg_terminate_backend(%s, %s)", (pid, timeout_ms))
        conn.execute("select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = %s", (name,))
        conn.execute(f'drop database if exists "{name}" with (force)')


@dataclass
class ServerProcess:
    """A running `marquee serve`."""

    process: subprocess.Popen
    base_url: str
    data_dir: str
    lines: "queue.Queue[str]" = field(default_factory=queue.Queue)
    output: list = field(default_factory=list)

    @property
    def port(self) -> int:
        return urlparse(self.base_url).port

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://")

    def wait_for_output(self, pattern: str, timeout: float = 10.0) -> str:
        """Waits for a line of the server's output that matches `pattern`."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        for line in list(self.output):
            if regex.search(line):
                return line
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if regex.search(line):
                return line
        raise AssertionError(f"no output matching {pattern!r} within {timeout}s; got:\n" + "".join(self.output[-40:]))

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


SERVER_FOLDERS: list = []  # data folders start_server made; removed when the test session ends


@pytest.fixture(scope="session", autouse=True)
def remove_server_folders():
    yield
    for path in SERVER_FOLDERS:
        shutil.rmtree(path, ignore_errors=True)


def start_server(database_url: str | None, env: dict | None = None, args: list | None = None, data_dir: str | None = None,
                 timeout: float = 60.0, max_open_files: int | None = None) -> ServerProcess:
    """Starts `marquee serve` on a free port and waits until it says it is listening (with `max_open_files` as its
    hard and soft open-file limit when given)."""
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="marquee-server-")
        SERVER_FOLDERS.append(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    os.chmod(data_dir, 0o755)
    full_env = dict(os.environ)
    full_env.pop("DATABASE_URL", None)
    # each server reads its own replication slot, even when several share a database
    full_env.update({"MARQUEE_JWT_SECRET": TEST_SECRET, "MARQUEE_LOG_LEVEL": "info", "MARQUEE_NODE": "n" + uuid.uuid4().hex[:8],
                     # tests reserve far faster than people do; the limit itself is tested with its own setting
                     "MARQUEE_RESERVATIONS_PER_MINUTE": "1000000"})
    if database_url:
        full_env["DATABASE_URL"] = database_url
    full_env.update(env or {})
    process = subprocess.Popen(
        [marquee_bin(), "serve", "--port", "0", "--data-dir", data_dir, *(args or [])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env, cwd=ROOT,
        preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))) if max_open_files else None,
    )
    server = ServerProcess(process=process, base_url="", data_dir=data_dir)

    def pump():
        for line in process.stdout:
            server.output.append(line)
            server.lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = server.wait_for_output(r"listening on http://", timeout=timeout)
    except AssertionError:
        server.stop()
        raise
    server.base_url = re.search(r"(http://\S+)", line).group(1)
    return server


@pytest.fixture(scope="module")
def server(database):
    """A server on the module's database."""
    srv = start_server(database.url)
    yield srv
    srv.stop()


@pytest.fixture
def token():
    return make_token
