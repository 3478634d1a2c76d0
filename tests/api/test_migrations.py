"""`marquee migrate` is safe to run again, and two at once apply each file once (issue item 7)."""

import os
import subprocess
import uuid

import psycopg
import pytest

from conftest import ROOT, admin_url, marquee_bin, with_database

pytestmark = pytest.mark.timeout(180)

MIGRATIONS_DIR = os.environ.get("MARQUEE_MIGRATIONS_DIR") or os.path.join(ROOT, "db", "migrations")  # as the binary finds it
MIGRATIONS = sorted(f for f in os.listdir(MIGRATIONS_DIR) if f.endswith(".sql"))


def migrate_command(url):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["MARQUEE_LOG_LEVEL"] = "warning"
    return [marquee_bin(), "migrate", "--database-url", url], env


def migrate(url):
    command, env = migrate_command(url)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def recorded(url):
    with psycopg.connect(url) as conn:
        return conn.execute("select version, name from schema_migrations order by version").fetchall()


def expected_rows():
    return [tuple(f[:-4].split("_", 1)) for f in MIGRATIONS]


@pytest.fixture
def fresh_database():
    name = "mq_mig_" + uuid.uuid4().hex[:10]
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield with_database(admin_url(), name)
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def test_migrate_twice(database):
    assert MIGRATIONS, "no migration files found"
    first = migrate(database.url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1] == "applied " + ", ".join(v for v, _ in expected_rows())
    assert recorded(database.url) == expected_rows()

    second = migrate(database.url)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == "up to date"
    assert recorded(database.url) == expected_rows()

    with psycopg.connect(database.url) as conn:
        tables = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")}
        assert {"events", "event_tickets", "tickets", "schema_migrations"} <= tables
        triggers = {r[0] for r in conn.execute("select tgname from pg_trigger where not tgisinternal")}
        assert {"event_tickets_derive", "tickets_validate", "tickets_count"} <= triggers
        assert conn.execute("select count(*) from pg_publication where pubname = 'marquee'").fetchone()[0] == 1


def test_two_migrations_at_once_apply_each_file_once(fresh_database):
    command, env = migrate_command(fresh_database)
    processes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    assert [code for code, _, _ in results] == [0, 0], results
    outputs = sorted(out.strip().splitlines()[-1] for _, out, _ in results)
    assert outputs == sorted(["applied " + ", ".join(v for v, _ in expected_rows()), "up to date"]), outputs
    assert recorded(fresh_database) == expected_rows()


def test_migrate_reports_an_unreachable_database():
    result = migrate("postgres://nobody:wrong@127.0.0.1:1/none")
    assert result.returncode != 0
    assert result.stderr.startswith("error: "), result.stderr
