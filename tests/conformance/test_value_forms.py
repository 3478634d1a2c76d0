"""Column values on the wire are exactly what `to_jsonb` gives, with PostgreSQL itself as the oracle.

A table with a column of every kind of type (tests/fixtures/value_forms.sql) gets rows of random and edge values,
inserted, updated and deleted by SQL; every value Marquee sends (record, old_record, and the rows of a join snapshot)
must equal `to_jsonb(column)` of the same row, read from the database in a session with the settings Supabase's
servers use (TimeZone UTC, IntervalStyle postgres, bytea_output hex), compared as JSON with exact numbers.

The database's own defaults are set to something else (a half-hour time zone, SQL dates, SQL-standard intervals,
escaped bytea, rounded floats), so Marquee must not depend on them. Then the typed-model test: the unmodified PyPI
`realtime` client receives a row with date, numeric, json and timestamp columns and it decodes into pydantic models.
"""

import asyncio
import datetime
import json
import os
import random
import re
import subprocess
from decimal import Decimal

import psycopg
import pydantic
import pytest
import websockets
from realtime import AsyncRealtimeClient

from conftest import ROOT, make_token, marquee_bin, start_server
from helpers import Inbox, subscribe

pytestmark = pytest.mark.timeout(120)

ROWS = 120
ORACLE_SETTINGS = ("set timezone = 'UTC'; set intervalstyle = 'postgres'; set bytea_output = 'hex'; set datestyle = 'ISO, MDY'; "
                   "set extra_float_digits = 1")


def exact(text):
    """JSON with every number as a Decimal, so 1.50 equals 1.5 but no digit is lost."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


@pytest.fixture(scope="module")
def forms_server(database):
    env = dict(os.environ, DATABASE_URL=database.url)
    subprocess.run([marquee_bin(), "migrate"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)
    with database.connect() as conn:
        with open(os.path.join(ROOT, "tests", "fixtures", "value_forms.sql"), encoding="utf-8") as f:
            conn.execute(f.read())
        conn.execute("alter publication marquee add table value_forms")
        for setting in ("timezone = 'America/St_Johns'", "datestyle = 'SQL, DMY'", "intervalstyle = 'sql_standard'",
                        "bytea_output = 'escape'", "extra_float_digits = -3"):
            conn.execute(f'alter database "{database.name}" set {setting}')
    server = start_server(database.url, env={"MARQUEE_PUBLIC_TABLES": "public.value_forms"})
    yield server
    server.stop()


def oracle(database):
    """Each row's columns as `to_jsonb` gives them, by id."""
    with database.connect() as conn:
        conn.execute(ORACLE_SETTINGS)
        rows = conn.execute("select id, to_jsonb(v)::text from value_forms v").fetchall()
        return {row_id: exact(text) for row_id, text in rows}


def column_types(database):
    """`columns` as Supabase sends them: each column's `pg_type.typname` (a domain's own name, too)."""
    with database.connect() as conn:
        return [{"name": name, "type": typname} for name, typname in conn.execute(
            "select a.attname::text, t.typname::text from pg_attribute a join pg_type t on t.oid = a.atttypid "
            "where a.attrelid = 'value_forms'::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum")]


class Socket:
    def __init__(self, ws):
        self.ws = ws
        self.ref = 0

    async def join(self, topic, config):
        self.ref += 1
        ref = str(self.ref)
        await self.ws.send(json.dumps({"topic": topic, "event": "phx_join", "payload": {"config": config}, "ref": ref, "join_ref": ref}))
        while True:
            message = exact(await asyncio.wait_for(self.ws.recv(), 10))
            if message["event"] == "system":
                assert message["payload"]["status"] == "ok", message
                return

    async def changes(self, count, timeout=30.0):
        """The next `count` postgres_changes payloads' `data`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        found = []
        while len(found) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"got {len(found)} of {count} changes within {timeout}s")
            message = exact(await asyncio.wait_for(self.ws.recv(), remaining))
            if message["event"] == "postgres_changes":
                found.append(message["payload"]["data"])
        return found


def mismatches(sent, expected, what):
    """The columns whose value differs, described for a failure message."""
    problems = []
    for name in sorted(set(sent) | set(expected)):
        if name not in sent:
            problems.append(f"{what}: {name} missing (to_jsonb: {expected[name]!r})")
        elif name not in expected:
            problems.append(f"{what}: {name} not a column")
        elif sent[name] != expected[name]:
            problems.append(f"{what}: {name} sent {sent[name]!r}, to_jsonb gives {expected[name]!r}")
    return problems


def test_every_value_is_what_to_jsonb_gives(forms_server, database):
    seed = random.random()
    types = column_types(database)

    async def scenario():
        url = f"{forms_server.ws_url}/realtime/v1/websocket?apikey={make_token(role='anon')}&vsn=1.0.0"
        async with websockets.connect(url, max_size=None) as ws:
            socket = Socket(ws)
            await socket.join("realtime:forms", {"postgres_changes": [{"event": "*", "schema": "public", "table": "value_forms"}]})
            problems = []
            with database.connect() as writer:
                # the generator's literals are ISO text; its zone (St John's, from the database) stays as it is
                writer.execute("set datestyle = 'ISO, MDY'; set intervalstyle = 'postgres'; set extra_float_digits = 1")
                writer.execute("select setseed(%s)", (seed * 2 - 1,))
                writer.execute("select value_forms_insert(1, %s)", (ROWS,))
                inserted = oracle(database)
                for data in await socket.changes(ROWS):
                    assert data["type"] == "INSERT" and data["columns"] == types
                    problems += mismatches(data["record"], inserted[data["record"]["id"]], f"INSERT {data['record']['id']}")

                writer.execute("select value_forms_update()")
                updated = oracle(database)
                for data in await socket.changes(ROWS):
                    assert data["type"] == "UPDATE"
                    row_id = data["record"]["id"]
                    problems += mismatches(data["record"], updated[row_id], f"UPDATE {row_id} record")
                    problems += mismatches(data["old_record"], inserted[row_id], f"UPDATE {row_id} old_record")

                # the rows of a join snapshot are rendered the same way
                await socket.join("realtime:forms-snapshot", {
                    "postgres_changes": [{"event": "*", "schema": "public", "table": "value_forms"}], "marquee": {"snapshot": True}})
                for data in await socket.changes(ROWS):
                    assert data.get("snapshot") is True
                    problems += mismatches(data["record"], updated[data["record"]["id"]], f"snapshot {data['record']['id']}")

                writer.execute("delete from value_forms")
                for data in await socket.changes(ROWS):
                    assert data["type"] == "DELETE"
                    row_id = data["old_record"]["id"]
                    problems += mismatches(data["old_record"], updated[row_id], f"DELETE {row_id} old_record")
            assert not problems, f"seed {seed}: {len(problems)} values differ from to_jsonb:\n" + "\n".join(problems[:40])

    asyncio.run(scenario())


DOC_NAMES = {"char(n)": "bpchar", "bit": "varbit"}
DOC_KINDS = {"ranges": "r", "multiranges": "m", "enums": "e", "domains": "d", "composite types": "c"}


def test_every_type_the_protocol_doc_lists_is_in_the_oracle_table(database, forms_server):
    """docs/realtime-protocol.md's table of column values names only types the oracle test above exercises."""
    with open(os.path.join(ROOT, "docs", "realtime-protocol.md"), encoding="utf-8") as f:
        doc = f.read()
    table = doc[doc.index("**Column values.**"):doc.index("Notes:", doc.index("**Column values.**"))]
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and not line.startswith("| type")]
    with database.connect() as conn:
        present = conn.execute(
            "select t.typname::text, t.typtype::text, t.typcategory::text from pg_attribute a join pg_type t on t.oid = a.atttypid "
            "where a.attrelid = 'value_forms'::regclass and a.attnum > 0 and not a.attisdropped").fetchall()
    names = {name for name, _, _ in present}
    kinds = {kind for _, kind, _ in present} | ({"A"} if any(category == "A" for _, _, category in present) else set())
    missing = []
    for cell in rows:
        for name in re.findall(r"`([^`]+)`", cell):
            if DOC_NAMES.get(name, name) not in names:
                missing.append(name)
        for word, kind in DOC_KINDS.items():
            if word in cell and kind not in kinds:
                missing.append(word)
        if cell.startswith("arrays") and "A" not in kinds:
            missing.append("arrays")
    assert len(rows) > 15 and not missing, f"the doc lists types the oracle table has no column of: {missing}"


class Pair(pydantic.BaseModel):
    n: int | None
    label: str | None
    at: datetime.datetime | None
    doc: dict | list | None
    amounts: list[Decimal | None] | None
    mood: str | None


class TypedRow(pydantic.BaseModel):
    id: int
    c_date: datetime.date
    c_numeric: Decimal
    c_jsonb: dict
    c_json: list
    c_timestamptz: datetime.datetime
    c_timestamp: datetime.datetime
    c_float8: float
    c_bool: bool
    c_int8: int
    c_uuid: str
    c_date_array: list[datetime.date | None]
    c_numeric_array: list[Decimal | None]
    c_pair: Pair


def test_a_record_decodes_into_typed_models_with_the_realtime_client(forms_server, database):
    async def scenario():
        client = AsyncRealtimeClient(forms_server.ws_url + "/realtime/v1", make_token(role="anon"))
        await client.connect()
        inbox = Inbox()
        channel = client.channel("typed-forms")
        channel.on_postgres_changes("*", schema="public", table="value_forms", filter="id=eq.100001", callback=inbox)
        await subscribe(channel)
        with database.connect() as writer:
            writer.execute("""
                insert into value_forms (id, c_date, c_numeric, c_jsonb, c_json, c_timestamptz, c_timestamp, c_float8, c_bool, c_int8,
                                         c_uuid, c_date_array, c_numeric_array, c_pair)
                values (100001, '2026-12-03', 12.50, '{"seats": [1, 2], "note": "ünïcödé"}', '[1, "two", null]',
                        '2026-12-03 19:52:55.304141+00', '2026-12-03 19:52:55', 0.1, true, 9007199254740993,
                        '7aac0fe5-f2ce-4456-aa32-cb63c73157d8', '{2026-01-01,NULL}', '{1.50,NULL,1e-3}',
                        row(7, 'x y', '2026-12-03 20:00+01', '{"k": 1}', '{2.5}', 'happy'))""")
            writer.execute("update value_forms set c_numeric = 99999999999999999999.99, c_date = 'infinity' where id = 100001")
        insert = await inbox.wait_for(lambda p: p["data"]["type"] == "INSERT", what="the INSERT")
        update = await inbox.wait_for(lambda p: p["data"]["type"] == "UPDATE", what="the UPDATE")
        await client.close()

        row = TypedRow.model_validate(insert["data"]["record"])
        assert row.c_date == datetime.date(2026, 12, 3)
        assert row.c_numeric == Decimal("12.50")
        assert row.c_jsonb == {"seats": [1, 2], "note": "ünïcödé"}
        assert row.c_json == [1, "two", None]
        assert row.c_timestamptz == datetime.datetime(2026, 12, 3, 19, 52, 55, 304141, tzinfo=datetime.timezone.utc)
        assert row.c_timestamp == datetime.datetime(2026, 12, 3, 19, 52, 55)
        assert row.c_float8 == 0.1 and row.c_bool is True and row.c_int8 == 9007199254740993
        assert row.c_date_array == [datetime.date(2026, 1, 1), None]
        assert row.c_numeric_array == [Decimal("1.5"), None, Decimal("0.001")]
        assert row.c_pair == Pair(n=7, label="x y", at=datetime.datetime(2026, 12, 3, 19, 0, tzinfo=datetime.timezone.utc),
                                  doc={"k": 1}, amounts=[Decimal("2.5")], mood="happy")
        # the old row decodes too
        assert TypedRow.model_validate(update["data"]["old_record"]) == row
        assert update["data"]["record"]["c_date"] == "infinity"

    asyncio.run(scenario())


def test_types_created_while_the_server_runs_are_rendered_as_to_jsonb_gives(forms_server, database):
    """A composite and a domain created after the server started: the feed learns them from pg_type when the stream
    first names them, and reads those changes again, so even the first row is an object and a number, not text."""
    async def scenario():
        url = f"{forms_server.ws_url}/realtime/v1/websocket?apikey={make_token(role='anon')}&vsn=1.0.0"
        async with websockets.connect(url, max_size=None) as ws:
            socket = Socket(ws)
            await socket.join("realtime:late", {"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "value_forms"}]})
            with database.connect() as writer:
                writer.execute("""
                    create type value_late as (at timestamptz, amounts numeric[], counts value_count[]);
                    create domain value_late_count as bigint;
                    alter table value_forms add column c_late value_late, add column c_late_count value_late_count,
                        add column c_late_array value_late[]""")
                writer.execute("""
                    insert into value_forms (id, c_late, c_late_count, c_late_array)
                    values (200001, row('2026-12-03 19:52:55.5+02', '{1.50,NULL}', '{7}'), 9007199254740993,
                            array[row('infinity', '{}', null)::value_late, null])""")
            # the INSERT of this row (a change of an earlier test still on its way may come first)
            while (data := (await socket.changes(1))[0])["record"].get("id") != 200001:
                pass
            expected = oracle(database)[200001]
            assert data["record"]["c_late"] == {"at": "2026-12-03T17:52:55.5+00:00", "amounts": [Decimal("1.50"), None], "counts": [7]}
            assert data["record"]["c_late_count"] == 9007199254740993
            assert not mismatches(data["record"], expected, "INSERT 200001")

    asyncio.run(scenario())
