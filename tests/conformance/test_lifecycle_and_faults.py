"""What a realtime-py subscriber sees over a reservation's whole life (including expiry), with supabase-py's
async client too, and across a restart of PostgreSQL under a running server."""

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import uuid

import httpx
import psycopg
import pytest
from realtime import AsyncRealtimeClient

from conftest import admin_url, make_token, marquee_bin, start_server, with_database
from helpers import Inbox, act, create_event, reserve, subscribe

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def short_hold_server(database):
    srv = start_server(database.url, env={"MARQUEE_HOLD_SECONDS": "1"})
    yield srv
    srv.stop()


def test_every_step_of_a_reservation_arrives_including_expiry(short_hold_server):
    server = short_hold_server
    event = create_event(server.base_url, capacities=(4,))
    event_id, ticket_type = event["id"], event["ticket_types"][0]

    async def scenario():
        client = AsyncRealtimeClient(server.ws_url + "/realtime/v1", make_token(role="anon"))
        await client.connect()
        counts, reservations = Inbox(), Inbox()
        tickets = client.channel(f"event-{event_id}-tickets")
        tickets.on_postgres_changes("UPDATE", schema="public", table="event_tickets", filter=f"event_id=eq.{event_id}", callback=counts)
        rchan = client.channel(f"event-{event_id}-reservations")
        rchan.on_postgres_changes("*", schema="public", table="tickets", filter=f"event_id=eq.{event_id}", callback=reservations)
        await subscribe(tickets)
        await subscribe(rchan)

        held = reserve(server.base_url, event_id, ticket_type["id"], user="ann", quantity=2)
        await reservations.wait_for(lambda p: p["data"]["type"] == "INSERT" and p["data"]["record"]["id"] == held["id"])
        await counts.wait_for(lambda p: p["data"]["record"]["reserved"] == 2)
        # nobody confirms: the sweeper expires the hold within about a second of its expiry
        expired = await reservations.wait_for(
            lambda p: p["data"]["type"] == "UPDATE" and p["data"]["record"]["status"] == "expired", timeout=10, what="the expiry")
        assert expired["data"]["old_record"]["status"] == "reserved"
        released = await counts.wait_for(lambda p: p["data"]["record"]["reserved"] == 0 and p["data"]["record"]["available"] == 4,
                                         what="the seats coming back")
        assert released["data"]["record"]["version"] > 2

        second = reserve(server.base_url, event_id, ticket_type["id"], user="ben", quantity=4)
        act(server.base_url, second["id"], "confirm", user="ben")
        await reservations.wait_for(lambda p: p["data"]["record"]["status"] == "confirmed")
        sold_out = await counts.wait_for(lambda p: p["data"]["record"]["sold"] == 4)
        assert sold_out["data"]["record"]["available"] == 0
        act(server.base_url, second["id"], "cancel", user="ben")
        await reservations.wait_for(lambda p: p["data"]["record"]["status"] == "cancelled")
        await counts.wait_for(lambda p: p["data"]["record"]["sold"] == 0 and p["data"]["record"]["available"] == 4)
        await client.close()

    asyncio.run(scenario())


def test_supabase_async_client_subscribes_unchanged(server):
    from supabase import acreate_client

    event = create_event(server.base_url, capacities=(6,))
    event_id, ticket_type = event["id"], event["ticket_types"][0]

    async def scenario():
        supabase = await acreate_client(server.base_url, make_token(role="anon"))
        updates = Inbox()
        channel = supabase.channel(f"event-{event_id}-tickets")
        channel.on_postgres_changes("UPDATE", schema="public", table="event_tickets", filter=f"event_id=eq.{event_id}", callback=updates)
        await subscribe(channel)
        reserve(server.base_url, event_id, ticket_type["id"], user="sam", quantity=1)
        got = await updates.wait_for(lambda p: p["data"]["record"]["available"] == 5)
        assert got["data"]["table"] == "event_tickets"
        await supabase.remove_all_channels()

    asyncio.run(scenario())


def test_feed_survives_a_postgres_restart():
    """A private cluster on a fixed port, restarted under a running server: the feed reconnects, resumes from its slot,
    and subscribers keep receiving changes (including one committed while the server was cut off from the database)."""
    work = tempfile.mkdtemp(prefix="marquee-restart-")
    os.chmod(work, 0o755)
    db_dir = os.path.join(work, "db")
    url = subprocess.check_output([marquee_bin(), "db", "start", "--data-dir", db_dir, "--log-level", "warning"], text=True).strip()
    port = int(re.search(r":(\d+)/", url).group(1))
    server = None
    try:
        server = start_server(url)
        event = create_event(server.base_url, capacities=(10,))
        event_id, ticket_type = event["id"], event["ticket_types"][0]

        async def scenario():
            client = AsyncRealtimeClient(server.ws_url + "/realtime/v1", make_token(role="anon"))
            await client.connect()
            updates = Inbox()
            channel = client.channel(f"event-{event_id}-tickets")
            channel.on_postgres_changes("UPDATE", schema="public", table="event_tickets", filter=f"event_id=eq.{event_id}", callback=updates)
            await subscribe(channel)
            reserve(server.base_url, event_id, ticket_type["id"], user="pre")
            await updates.wait_for(lambda p: p["data"]["record"]["available"] == 9)

            subprocess.run([marquee_bin(), "db", "stop", "--data-dir", db_dir], check=True, capture_output=True)
            server.wait_for_output(r"change feed interrupted", timeout=15)
            r = httpx.get(server.base_url + "/readyz")
            assert r.status_code == 503 and r.json()["change_feed"] == "disconnected"

            restarted = subprocess.check_output([marquee_bin(), "db", "start", "--data-dir", db_dir, "--port", str(port),
                                                 "--log-level", "warning"], text=True).strip()
            assert restarted == url
            # a change made while the server's feed may still be reconnecting is not lost
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("insert into tickets (event_id, event_ticket_id, user_id, quantity, hold_expires_at) "
                             "values (%s, %s, 'during', 2, now() + interval '5 minutes')", (event_id, ticket_type["id"]))
            await updates.wait_for(lambda p: p["data"]["record"]["available"] == 7, timeout=20, what="the change made around the restart")
            reserve(server.base_url, event_id, ticket_type["id"], user="post")
            await updates.wait_for(lambda p: p["data"]["record"]["available"] == 6, timeout=20, what="a change after the restart")
            ready = httpx.get(server.base_url + "/readyz")
            assert ready.status_code == 200, ready.text
            await client.close()

        asyncio.run(scenario())
    finally:
        if server:
            server.stop()
        subprocess.run([marquee_bin(), "db", "stop", "--data-dir", db_dir], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
