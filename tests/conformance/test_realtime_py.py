"""The seed's two subscription patterns, with the unmodified PyPI `realtime` client against a real server."""

import asyncio

import pytest
from realtime import AsyncRealtimeClient

from conftest import make_token
from helpers import Inbox, act, create_event, reserve, subscribe

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(coro)


async def connect(server, token=None):
    client = AsyncRealtimeClient(server.ws_url + "/realtime/v1", token or make_token(role="anon"))
    await client.connect()
    return client


def test_ticket_updates_and_reservation_inserts_arrive(server):
    event = create_event(server.base_url, capacities=(10, 5))
    other = create_event(server.base_url, capacities=(10,))
    event_id, ticket_type = event["id"], event["ticket_types"][0]

    async def scenario():
        client = await connect(server)
        updates, inserts, elsewhere = Inbox(), Inbox(), Inbox()
        tickets = client.channel(f"event-{event_id}-tickets")
        tickets.on_postgres_changes("UPDATE", schema="public", table="event_tickets", filter=f"event_id=eq.{event_id}", callback=updates)
        reservations = client.channel(f"event-{event_id}-reservations")
        reservations.on_postgres_changes("INSERT", schema="public", table="tickets", filter=f"event_id=eq.{event_id}", callback=inserts)
        unrelated = client.channel(f"event-{other['id']}-tickets")
        unrelated.on_postgres_changes("UPDATE", schema="public", table="event_tickets", filter=f"event_id=eq.{other['id']}", callback=elsewhere)
        for channel in (tickets, reservations, unrelated):
            await subscribe(channel)

        held = reserve(server.base_url, event_id, ticket_type["id"], user="alice", quantity=3, email="alice@example.com")
        update = await updates.wait_for(lambda p: p["data"]["record"]["id"] == ticket_type["id"], what="the UPDATE of the ticket type")
        data = update["data"]
        assert data["type"] == "UPDATE" and data["schema"] == "public" and data["table"] == "event_tickets"
        assert data["record"]["available"] == ticket_type["capacity"] - 3
        assert data["record"]["reserved"] == 3
        assert data["old_record"]["available"] == ticket_type["capacity"]
        assert data["record"]["version"] == data["old_record"]["version"] + 1
        assert data["errors"] is None and data["commit_timestamp"].endswith("Z")
        assert {"name": "available", "type": "int4"} in data["columns"]

        insert = await inserts.wait_for(lambda p: p["data"]["record"]["id"] == held["id"], what="the INSERT of the reservation")
        record = insert["data"]["record"]
        assert insert["data"]["type"] == "INSERT" and record["quantity"] == 3 and record["status"] == "reserved"
        # an anonymous subscriber never sees who reserved
        assert "holder_email" not in record and "user_id" not in record
        assert "old_record" not in insert["data"]

        act(server.base_url, held["id"], "confirm")
        confirmed = await updates.wait_for(lambda p: p["data"]["record"]["sold"] == 3, what="the confirmation")
        assert confirmed["data"]["record"]["reserved"] == 0

        act(server.base_url, held["id"], "cancel")
        await updates.wait_for(lambda p: p["data"]["record"]["available"] == ticket_type["capacity"] and p["data"]["record"]["sold"] == 0,
                               what="the cancellation")
        # the other event's subscriber heard nothing (its event did not change)
        assert elsewhere.items == []
        await client.close()

    run(scenario())


def test_unsubscribe_stops_delivery_and_resubscribe_resumes(server):
    event = create_event(server.base_url, capacities=(20,))
    event_id, ticket_type = event["id"], event["ticket_types"][0]

    async def scenario():
        client = await connect(server)
        first = Inbox()
        channel = client.channel(f"event-{event_id}-tickets")
        channel.on_postgres_changes("UPDATE", schema="public", table="event_tickets", filter=f"event_id=eq.{event_id}", callback=first)
        await subscribe(channel)
        reserve(server.base_url, event_id, ticket_type["id"], user="bob")
        await first.wait_for(lambda p: p["data"]["record"]["available"] == 19)
        await channel.unsubscribe()
        await client.remove_channel(channel)

        # a new channel on a new connection (as after a page reload) gets the next change, and only that one
        client2 = await connect(server)
        second = Inbox()
        again = client2.channel(f"event-{event_id}-tickets")
        again.on_postgres_changes("UPDATE", schema="public", table="event_tickets", filter=f"event_id=eq.{event_id}", callback=second)
        await subscribe(again)
        reserve(server.base_url, event_id, ticket_type["id"], user="carol")
        await second.wait_for(lambda p: p["data"]["record"]["available"] == 18)
        assert [p["data"]["record"]["available"] for p in first.items] == [19]
        await client2.close()

    run(scenario())


def test_owner_sees_own_reservation_in_full(server):
    event = create_event(server.base_url, capacities=(5,))
    event_id, ticket_type = event["id"], event["ticket_types"][0]

    async def scenario():
        client = await connect(server, make_token(sub="dora"))
        mine = Inbox()
        channel = client.channel(f"user-dora-reservations")
        channel.on_postgres_changes("*", schema="public", table="tickets", filter="user_id=eq.dora", callback=mine)
        await subscribe(channel)
        reserve(server.base_url, event_id, ticket_type["id"], user="erin")  # someone else's
        held = reserve(server.base_url, event_id, ticket_type["id"], user="dora", email="dora@example.com")
        got = await mine.wait_for(lambda p: p["data"]["record"]["id"] == held["id"])
        assert got["data"]["record"]["holder_email"] == "dora@example.com"
        assert got["data"]["record"]["user_id"] == "dora"
        assert all(p["data"]["record"]["user_id"] == "dora" for p in mine.items)
        await client.close()

    run(scenario())
