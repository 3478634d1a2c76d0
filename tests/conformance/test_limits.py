"""Each realtime and API limit: exceeded → an error that names it, the connection still usable for allowed work
where that applies, and the hit counted in /metrics."""

import asyncio
import json
import re
import time
import uuid

import httpx
import pytest
import websockets

from conftest import make_token, start_server
from helpers import create_event

pytestmark = pytest.mark.timeout(90)

LIMITS = {
    "MARQUEE_MAX_CHANNELS": "3",
    "MARQUEE_JOINS_PER_SECOND": "2",
    "MARQUEE_MESSAGES_PER_SECOND": "20",
    "MARQUEE_MAX_CONNECTIONS_PER_IP": "6",
    "MARQUEE_MAX_CONNECTIONS_PER_USER": "2",
    "MARQUEE_BROADCASTS_PER_SECOND": "2",
    "MARQUEE_MAX_FRAME_BYTES": "65536",
    "MARQUEE_RESERVATIONS_PER_MINUTE": "3",
}


@pytest.fixture(scope="module")
def limited(database):
    srv = start_server(database.url, env=LIMITS)
    yield srv
    srv.stop()


def metrics_text(server, timeout=10.0):
    """/metrics; while the server is at a connection limit the request itself is refused (429/503), so it is asked
    again until the connections a test closed have been uncounted."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(server.base_url + "/metrics")
        if r.status_code == 200:
            return r.text
        assert r.status_code in (429, 503) and time.monotonic() < deadline, (r.status_code, r.text)
        time.sleep(0.02)


def metric_value(server, name):
    match = re.search(r"^%s (\S+)$" % re.escape(name), metrics_text(server), re.M)
    return float(match.group(1)) if match else None


def limit_hits(server, name):
    text = metrics_text(server)
    match = re.search(r'marquee_limit_hits_total\{limit="%s"\} (\d+)' % name, text)
    return int(match.group(1)) if match else 0


class Conn:
    def __init__(self, ws):
        self.ws, self.ref, self.backlog = ws, 0, []

    async def push(self, topic, event, payload, join_ref=None):
        self.ref += 1
        ref = str(self.ref)
        await self.ws.send(json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}))
        return ref

    async def reply(self, ref, timeout=5.0):
        for i, m in enumerate(self.backlog):
            if m.get("ref") == ref and m["event"] == "phx_reply":
                return self.backlog.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - loop.time())))
            if m.get("ref") == ref and m["event"] == "phx_reply":
                return m
            self.backlog.append(m)


async def open_conn(server, token=None):
    ws = await websockets.connect(f"{server.ws_url}/realtime/v1/websocket?apikey={token or make_token(role='anon')}&vsn=1.0.0")
    return Conn(ws)


async def open_admitted(server, timeout=10.0):
    """A socket, once there is room for it again: connections closed just before are uncounted when the server has
    seen them close, a moment after the client has."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await open_conn(server)
        except websockets.InvalidStatus as refused:
            assert refused.response.status_code in (429, 503) and loop.time() < deadline, refused
            await asyncio.sleep(0.02)


def test_too_many_channels(limited):
    async def scenario():
        c = await open_conn(limited)
        before = limit_hits(limited, "ChannelRateLimitReached")
        replies = []
        for n in range(4):
            ref = await c.push(f"realtime:ch{n}", "phx_join", {"config": {}}, join_ref=str(n))
            replies.append(await c.reply(ref))
            await asyncio.sleep(0.6)  # pacing below the join rate, so that only the channel limit applies
        assert [r["payload"]["status"] for r in replies] == ["ok", "ok", "ok", "error"]
        assert replies[3]["payload"]["response"]["reason"] == "ChannelRateLimitReached: Too many channels"
        ref = await c.push("phoenix", "heartbeat", {})
        assert (await c.reply(ref))["payload"]["status"] == "ok"
        assert limit_hits(limited, "ChannelRateLimitReached") == before + 1
        await c.ws.close()

    asyncio.run(scenario())


def test_joins_per_second(limited):
    async def scenario():
        c = await open_conn(limited)
        before = limit_hits(limited, "ClientJoinRateLimitReached")
        reasons = []
        for n in range(6):
            ref = await c.push(f"realtime:j{n}", "phx_join", {"config": {}}, join_ref=str(n))
            reply = await c.reply(ref)
            reasons.append(reply["payload"]["response"].get("reason"))
        assert "ClientJoinRateLimitReached: Too many joins per second" in reasons
        assert limit_hits(limited, "ClientJoinRateLimitReached") > before
        await c.ws.close()

    asyncio.run(scenario())


def test_messages_per_second_then_usable_again(limited):
    async def scenario():
        c = await open_conn(limited)
        before = limit_hits(limited, "ClientMessageRateLimitReached")
        refs = [await c.push("phoenix", "heartbeat", {}) for _ in range(80)]
        replies = [await c.reply(ref) for ref in refs]
        refused = [r for r in replies if r["payload"]["status"] == "error"]
        assert refused and refused[0]["payload"]["response"]["reason"] == "ClientMessageRateLimitReached: Too many messages per second"
        assert limit_hits(limited, "ClientMessageRateLimitReached") > before
        # the bucket refills: a heartbeat a second later is answered
        await asyncio.sleep(1.0)
        ref = await c.push("phoenix", "heartbeat", {})
        assert (await c.reply(ref))["payload"]["status"] == "ok"
        await c.ws.close()

    asyncio.run(scenario())


def test_connections_per_user_and_per_ip(limited):
    async def scenario():
        token = make_token(sub="greedy")
        kept = [await open_conn(limited, token) for _ in range(2)]
        third = await open_conn(limited, token)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(third.ws.recv(), 5)
        assert closed.value.rcvd.reason.startswith("UserConnectionRateLimitReached")
        for c in kept:
            await c.ws.close()
        # 6 connections per address, HTTP and WebSocket together: the 7th is refused when it is accepted, with a 429
        # that names the limit (the realtime per-address limit, ConnectionRateLimitReached, counts the client behind a
        # trusted proxy: tests/security/test_security_connections.py)
        refused_before = metric_value(limited, 'marquee_connections_refused_total{reason="per_address"}')
        many = [await open_admitted(limited) for _ in range(6)]
        with pytest.raises(websockets.InvalidStatus) as refused:
            await open_conn(limited)
        assert refused.value.response.status_code == 429
        assert json.loads(refused.value.response.body)["error"]["code"] == "too_many_connections"
        ref = await many[0].push("phoenix", "heartbeat", {})
        assert (await many[0].reply(ref))["payload"]["status"] == "ok"
        for c in many:
            await c.ws.close()
        assert metric_value(limited, 'marquee_connections_refused_total{reason="per_address"}') > refused_before
        assert limit_hits(limited, "UserConnectionRateLimitReached") >= 1

    asyncio.run(scenario())


def test_broadcasts_per_topic(limited):
    async def scenario():
        c = await open_conn(limited)
        ref = await c.push("realtime:loud", "phx_join", {"config": {"broadcast": {"ack": True}}}, join_ref="1")
        assert (await c.reply(ref))["payload"]["status"] == "ok"
        replies = []
        for n in range(8):
            ref = await c.push("realtime:loud", "broadcast", {"type": "broadcast", "event": "x", "payload": {"n": n}}, join_ref="1")
            replies.append(await c.reply(ref))
        statuses = [r["payload"]["status"] for r in replies]
        assert "ok" in statuses and "error" in statuses
        refused = next(r for r in replies if r["payload"]["status"] == "error")
        assert refused["payload"]["response"]["reason"].startswith("BroadcastRateLimitReached")
        await c.ws.close()

    asyncio.run(scenario())


def test_frame_size(limited):
    async def scenario():
        c = await open_conn(limited)
        await c.ws.send("x" * 100_000)
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(5):
                await asyncio.wait_for(c.ws.recv(), 5)
        other = await open_conn(limited)
        ref = await other.push("phoenix", "heartbeat", {})
        assert (await other.reply(ref))["payload"]["status"] == "ok"
        await other.ws.close()

    asyncio.run(scenario())


def test_in_filter_list_is_capped(limited):
    async def scenario():
        c = await open_conn(limited)
        values = ",".join(str(n) for n in range(101))
        ref = await c.push("realtime:big-in", "phx_join", {"config": {"postgres_changes": [
            {"event": "*", "schema": "public", "table": "event_tickets", "filter": f"capacity=in.({values})"}]}}, join_ref="1")
        assert (await c.reply(ref))["payload"]["status"] == "ok"
        system = None
        while system is None:
            m = json.loads(await asyncio.wait_for(c.ws.recv(), 5))
            if m["event"] == "system":
                system = m
        assert system["payload"]["status"] == "error" and "100" in system["payload"]["message"]
        await c.ws.close()

    asyncio.run(scenario())


def test_reservations_per_user_rate_and_per_user_cap(limited):
    event = create_event(limited.base_url, capacities=(50,))
    type_id = event["ticket_types"][0]["id"]

    def reserve(user, quantity=1):
        return httpx.post(f"{limited.base_url}/api/events/{event['id']}/reservations",
                          json={"ticket_type_id": type_id, "quantity": quantity},
                          headers={"Authorization": "Bearer " + make_token(sub=user), "Idempotency-Key": str(uuid.uuid4())})

    before = limit_hits(limited, "ReservationRateLimitReached")
    statuses = [reserve("hasty").status_code for _ in range(5)]
    assert statuses.count(201) >= 1 and 429 in statuses
    assert limit_hits(limited, "ReservationRateLimitReached") > before
    refused = next(r for r in (reserve("hasty") for _ in range(5)) if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"


def test_per_user_cap_holds_across_requests(server):
    event = create_event(server.base_url, capacities=(50,))
    type_id = event["ticket_types"][0]["id"]

    def reserve(user, quantity=1):
        return httpx.post(f"{server.base_url}/api/events/{event['id']}/reservations",
                          json={"ticket_type_id": type_id, "quantity": quantity},
                          headers={"Authorization": "Bearer " + make_token(sub=user), "Idempotency-Key": str(uuid.uuid4())})

    # 10 per ticket type by default
    assert reserve("collector", 8).status_code == 201
    capped = reserve("collector", 3)
    assert capped.status_code == 409 and capped.json()["error"]["code"] == "per_user_limit"
    assert capped.json()["error"]["limit"] == 10


def test_sockets_past_the_open_file_budget_are_refused_and_the_server_lives(database):
    """With 300 open files the server keeps its connections under 300 - 256 = 44: with 44 sockets open (never shed
    for anything) further connections are refused when they are accepted, with a 503 (running out of descriptors
    would abort the process), and the server goes on serving."""
    server = start_server(database.url, env={"MARQUEE_MAX_CONNECTIONS_PER_IP": "100000"}, max_open_files=300)
    try:
        server.wait_for_output(r"max_connections=44 open_files=300", timeout=10)

        async def scenario():
            kept, refused = [], 0
            for _ in range(120):
                try:
                    conn = await open_conn(server)
                    await conn.reply(await conn.push("phoenix", "heartbeat", {}))
                    kept.append(conn)
                except websockets.InvalidStatus as closed:
                    assert closed.response.status_code == 503, closed
                    assert json.loads(closed.response.body)["error"]["code"] == "server_busy"
                    refused += 1
            assert len(kept) == 44 and refused == 76
            assert server.process.poll() is None
            ref = await kept[0].push("phoenix", "heartbeat", {})
            assert (await kept[0].reply(ref))["payload"]["status"] == "ok"
            for c in kept:
                await c.ws.close()
            # room again once the server has let the sockets go
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while metric_value(server, "marquee_realtime_connections") != 0:
                assert loop.time() < deadline, "the server still counts the closed sockets"
                await asyncio.sleep(0.05)
            again = await open_admitted(server)
            ref = await again.push("phoenix", "heartbeat", {})
            assert (await again.reply(ref))["payload"]["status"] == "ok"
            await again.ws.close()

        asyncio.run(scenario())
        assert metric_value(server, 'marquee_connections_refused_total{reason="server_full"}') == 76
        assert httpx.get(server.base_url + "/readyz").status_code == 200
    finally:
        server.stop()
