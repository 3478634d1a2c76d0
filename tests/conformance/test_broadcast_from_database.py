"""Broadcast from the database: realtime.send / realtime.broadcast_changes reach `on_broadcast` listeners of the
unmodified PyPI `realtime` client; private topics are authorized at join; replay; Marquee's ticketing triggers."""

import asyncio
import json
import time
import uuid

import psycopg
import pytest
from realtime import AsyncRealtimeClient

from conftest import make_token
from helpers import Inbox, act, create_event, reserve, subscribe

pytestmark = pytest.mark.timeout(90)


async def connect(server, token=None):
    client = AsyncRealtimeClient(server.ws_url + "/realtime/v1", token or make_token(role="anon"))
    await client.connect()
    return client


def broadcast_channel(client, name, inbox, event="*", private=False, replay=None):
    config = {"broadcast": {"self": False, "ack": False}, "private": private}
    if replay is not None:
        config["broadcast"]["replay"] = replay
    channel = client.channel(name, {"config": config})
    channel.on_broadcast(event, inbox)
    return channel


def test_send_and_broadcast_changes_reach_listeners_of_that_topic_only(server, database):
    async def scenario():
        client = await connect(server)
        here, elsewhere = Inbox(), Inbox()
        await subscribe(broadcast_channel(client, "room:a", here))
        await subscribe(broadcast_channel(client, "room:b", elsewhere))
        # broadcast_changes stores private messages, as Supabase's does: a private listener (the service role may
        # join any private topic) receives them
        admin = await connect(server, make_token(role="service_role"))
        changes = Inbox()
        await subscribe(broadcast_channel(admin, "room:a", changes, private=True))
        with database.connect() as conn:
            conn.execute("select realtime.send(%s::jsonb, 'greeting', 'room:a', false)", (json.dumps({"hello": "world"}),))
            conn.execute("create table if not exists public.notes (id serial primary key, body text)")
            conn.execute("""
                create or replace function notes_broadcast() returns trigger language plpgsql as $$
                begin
                    perform realtime.broadcast_changes('room:a', tg_op, tg_op, tg_table_name, tg_table_schema, new, old);
                    return null;
                end $$""")
            conn.execute("drop trigger if exists notes_broadcast on public.notes")
            conn.execute("create trigger notes_broadcast after insert or update on public.notes for each row execute function notes_broadcast()")
            conn.execute("insert into public.notes (body) values ('first')")
            conn.execute("update public.notes set body = 'second'")
        greeting = await here.wait_for(lambda m: m["event"] == "greeting")
        assert greeting["payload"] == {"hello": "world"}
        inserted = await changes.wait_for(lambda m: m["event"] == "INSERT")
        assert inserted["payload"]["operation"] == "INSERT" and inserted["payload"]["table"] == "notes"
        assert inserted["payload"]["schema"] == "public" and inserted["payload"]["record"]["body"] == "first"
        assert inserted["payload"]["old_record"] is None
        updated = await changes.wait_for(lambda m: m["event"] == "UPDATE")
        assert updated["payload"]["record"]["body"] == "second" and updated["payload"]["old_record"]["body"] == "first"
        # the public channel got the public message only, the other topic nothing
        assert [m["event"] for m in here.items] == ["greeting"]
        assert all(m["event"] != "greeting" for m in changes.items)
        assert elsewhere.items == []
        await client.close()
        await admin.close()

    asyncio.run(scenario())


def test_private_topic_is_only_for_its_owner(server, database):
    async def scenario():
        owner = await connect(server, make_token(sub="olivia"))
        mine = Inbox()
        await subscribe(broadcast_channel(owner, "user:olivia:reservations", mine, private=True))

        for token in (make_token(sub="mallory"), make_token(role="anon")):
            intruder = await connect(server, token)
            channel = broadcast_channel(intruder, "user:olivia:reservations", Inbox(), private=True)
            with pytest.raises(AssertionError, match="CHANNEL_ERROR|TIMED_OUT"):
                await subscribe(channel, timeout=5)
            await intruder.close()

        with database.connect() as conn:
            conn.execute("select realtime.send('{\"n\": 1}'::jsonb, 'ping', 'user:olivia:reservations', true)")
        got = await mine.wait_for(lambda m: m["event"] == "ping")
        assert got["payload"] == {"n": 1}
        await owner.close()

    asyncio.run(scenario())


def test_replay_sends_missed_messages_once_then_live_ones(server, database):
    topic = f"user:rita:reservations"

    async def scenario():
        since = int(time.time() * 1000) - 1000
        with database.connect() as conn:
            for n in range(3):
                conn.execute("select realtime.send(%s::jsonb, 'missed', %s, true)", (json.dumps({"n": n}), topic))
        client = await connect(server, make_token(sub="rita"))
        inbox = Inbox()
        await subscribe(broadcast_channel(client, topic, inbox, private=True, replay={"since": since, "limit": 10}))
        with database.connect() as conn:
            conn.execute("select realtime.send('{\"n\": 3}'::jsonb, 'live', %s, true)", (topic,))
        await inbox.wait_for(lambda m: m["event"] == "live")
        numbers = [m["payload"]["n"] for m in inbox.items]
        assert numbers == [0, 1, 2, 3], numbers
        assert all(m.get("meta", {}).get("replayed") for m in inbox.items[:3])
        assert not inbox.items[3].get("meta", {}).get("replayed")
        await client.close()

    asyncio.run(scenario())


def test_ticketing_triggers_broadcast_availability_status_and_reservations(server):
    event = create_event(server.base_url, capacities=(3,))
    event_id, ticket_type = event["id"], event["ticket_types"][0]

    async def scenario():
        public = await connect(server)
        availability = Inbox()
        await subscribe(broadcast_channel(public, f"event:{event_id}:availability", availability))
        buyer = await connect(server, make_token(sub="uma"))
        private = Inbox()
        await subscribe(broadcast_channel(buyer, "user:uma:reservations", private, private=True))

        held = reserve(server.base_url, event_id, ticket_type["id"], user="uma", quantity=3)
        created = await private.wait_for(lambda m: m["event"] == "created")
        assert created["payload"]["id"] == held["id"] and created["payload"]["status"] == "reserved"
        update = await availability.wait_for(lambda m: m["event"] == "availability" and m["payload"]["available"] == 0)
        assert update["payload"]["ticket_type_id"] == ticket_type["id"] and update["payload"]["status"] == "sold_out"
        status = await availability.wait_for(lambda m: m["event"] == "status" and m["payload"]["status"] == "sold_out")
        assert status["payload"]["previous_status"] == "few_left"

        act(server.base_url, held["id"], "confirm", user="uma")
        await private.wait_for(lambda m: m["event"] == "confirmed")
        act(server.base_url, held["id"], "cancel", user="uma")
        await private.wait_for(lambda m: m["event"] == "cancelled")
        back = await availability.wait_for(lambda m: m["event"] == "status" and m["payload"]["previous_status"] == "sold_out")
        assert back["payload"]["status"] == "few_left" and back["payload"]["available"] == 3
        # the public topic never carries who bought
        assert all("holder_email" not in m["payload"] and "user_id" not in m["payload"] for m in availability.items)
        await public.close()
        await buyer.close()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def short_hold_server(database):
    from conftest import start_server
    srv = start_server(database.url, env={"MARQUEE_HOLD_SECONDS": "2", "MARQUEE_HOLD_WARNING_SECONDS": "1"})
    yield srv
    srv.stop()


def test_hold_expiring_warning_and_expiry_reach_the_holder(short_hold_server):
    server = short_hold_server
    event = create_event(server.base_url, capacities=(5,))

    async def scenario():
        buyer = await connect(server, make_token(sub="vic"))
        private = Inbox()
        await subscribe(broadcast_channel(buyer, "user:vic:reservations", private, private=True))
        held = reserve(server.base_url, event["id"], event["ticket_types"][0]["id"], user="vic")
        warning = await private.wait_for(lambda m: m["event"] == "hold_expiring", timeout=10)
        assert warning["payload"]["id"] == held["id"]
        expired = await private.wait_for(lambda m: m["event"] == "expired", timeout=10)
        assert expired["payload"]["status"] == "expired"
        await buyer.close()

    asyncio.run(scenario())


def test_retention_removes_old_messages(database):
    with database.connect() as conn:
        conn.execute("insert into realtime.messages (topic, event, payload, private, inserted_at) values "
                     "('old:topic', 'x', '{}', false, now() - interval '4 days'), ('new:topic', 'x', '{}', false, now())")
        removed = conn.execute("select realtime.prune_messages()").fetchone()[0]
        assert removed >= 1
        topics = {r[0] for r in conn.execute("select topic from realtime.messages where topic in ('old:topic', 'new:topic')")}
        assert topics == {"new:topic"}
