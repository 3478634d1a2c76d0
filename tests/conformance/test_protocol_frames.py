"""Frame-level checks with a plain WebSocket client: both serializers, heartbeats, leave, broadcast, errors, and
hostile frames that must never take down the socket or the server."""

import asyncio
import json

import pytest
import websockets

from conftest import make_token
from helpers import create_event, reserve

pytestmark = pytest.mark.timeout(60)


class Socket:
    def __init__(self, ws, vsn):
        self.ws, self.vsn = ws, vsn
        self.ref = 0
        self.backlog = []  # received but not yet asked for

    def frame(self, topic, event, payload, join_ref=None, ref=None):
        if ref is None:
            self.ref += 1
            ref = str(self.ref)
        if self.vsn == "2.0.0":
            return json.dumps([join_ref, ref, topic, event, payload]), ref
        return json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}), ref

    async def send(self, topic, event, payload, join_ref=None):
        text, ref = self.frame(topic, event, payload, join_ref)
        await self.ws.send(text)
        return ref

    async def recv(self, predicate=lambda m: True, timeout=5.0):
        """The first message that matches (earlier ones are kept for later calls), as a dict
        {join_ref, ref, topic, event, payload}."""
        for i, msg in enumerate(self.backlog):
            if predicate(msg):
                return self.backlog.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - loop.time()))
            data = json.loads(raw)
            if self.vsn == "2.0.0":
                assert isinstance(data, list) and len(data) == 5, raw
                msg = dict(zip(["join_ref", "ref", "topic", "event", "payload"], data))
            else:
                assert isinstance(data, dict) and "ref" in data and "join_ref" not in data, raw
                msg = data
            if predicate(msg):
                return msg
            self.backlog.append(msg)

    async def join(self, topic, config=None, token=None):
        payload = {"config": config or {"broadcast": {"self": False, "ack": False}, "presence": {"key": "", "enabled": False},
                                         "postgres_changes": [], "private": False}}
        if token:
            payload["access_token"] = token
        ref = await self.send(topic, "phx_join", payload, join_ref=str(self.ref + 1))
        return await self.recv(lambda m: m["event"] == "phx_reply" and m["ref"] == ref)


async def open_socket(server, vsn="1.0.0", token=None):
    url = f"{server.ws_url}/realtime/v1/websocket?apikey={token or make_token(role='anon')}"
    if vsn:
        url += f"&vsn={vsn}"
    ws = await websockets.connect(url, max_size=None)
    return Socket(ws, vsn or "1.0.0")


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("vsn", ["1.0.0", "2.0.0", None])
def test_join_reply_echoes_bindings_then_system_message(server, vsn):
    async def scenario():
        s = await open_socket(server, vsn)
        bindings = [{"event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": "event_id=eq.00000000-0000-0000-0000-000000000001"},
                    {"event": "*", "schema": "public", "table": "tickets"}]
        reply = await s.join("realtime:room1", {"postgres_changes": bindings})
        assert reply["payload"]["status"] == "ok"
        echoed = reply["payload"]["response"]["postgres_changes"]
        assert [{k: v for k, v in b.items() if k != "id"} for b in echoed] == bindings
        assert all(isinstance(b["id"], int) and b["id"] != 0 for b in echoed)
        system = await s.recv(lambda m: m["event"] == "system")
        assert system["payload"] == {"extension": "postgres_changes", "status": "ok", "message": "Subscribed to PostgreSQL", "channel": "room1"}
        assert system["ref"] is None
        await s.ws.close()

    run(scenario())


def test_heartbeat_leave_and_close(server):
    async def scenario():
        s = await open_socket(server, "2.0.0")
        ref = await s.send("phoenix", "heartbeat", {})
        hb = await s.recv(lambda m: m["ref"] == ref)
        assert hb["topic"] == "phoenix" and hb["payload"] == {"status": "ok", "response": {}}
        await s.join("realtime:lobby")
        ref = await s.send("realtime:lobby", "phx_leave", {}, join_ref="2")
        leave = await s.recv(lambda m: m["ref"] == ref)
        assert leave["event"] == "phx_reply" and leave["payload"]["status"] == "ok"
        close = await s.recv(lambda m: m["event"] == "phx_close")
        assert close["topic"] == "realtime:lobby"
        # a push to the left topic is refused, the socket stays usable
        ref = await s.send("realtime:lobby", "broadcast", {"type": "broadcast", "event": "x", "payload": {}})
        refused = await s.recv(lambda m: m["ref"] == ref)
        assert refused["payload"] == {"status": "error", "response": {"reason": "unmatched topic"}}
        await s.ws.close()

    run(scenario())


def test_broadcast_between_clients_with_self_and_ack(server):
    async def scenario():
        a = await open_socket(server, "1.0.0")
        b = await open_socket(server, "2.0.0")
        await a.join("realtime:chat", {"broadcast": {"self": True, "ack": True}})
        await b.join("realtime:chat", {"broadcast": {"self": False, "ack": False}})
        ref = await a.send("realtime:chat", "broadcast", {"type": "broadcast", "event": "ping", "payload": {"n": 1}})
        ack = await a.recv(lambda m: m["event"] == "phx_reply" and m["ref"] == ref)
        assert ack["payload"]["status"] == "ok"
        mine = await a.recv(lambda m: m["event"] == "broadcast")
        theirs = await b.recv(lambda m: m["event"] == "broadcast")
        for m in (mine, theirs):
            assert m["payload"] == {"type": "broadcast", "event": "ping", "payload": {"n": 1}}
        # b did not ask for its own messages, and gets no ack
        await b.send("realtime:chat", "broadcast", {"type": "broadcast", "event": "pong", "payload": {}})
        pong = await a.recv(lambda m: m["event"] == "broadcast" and m["payload"]["event"] == "pong")
        assert pong["payload"]["payload"] == {}
        with pytest.raises(asyncio.TimeoutError):
            await b.recv(lambda m: m["event"] in ("broadcast", "phx_reply"), timeout=0.3)
        await a.ws.close()
        await b.ws.close()

    run(scenario())


def test_bad_frames_get_errors_and_do_not_disturb_other_channels(server):
    event = create_event(server.base_url, capacities=(9,))

    async def scenario():
        s = await open_socket(server, "1.0.0")
        reply = await s.join("realtime:watch", {"postgres_changes": [
            {"event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": f"event_id=eq.{event['id']}"}]})
        assert reply["payload"]["status"] == "ok"
        await s.recv(lambda m: m["event"] == "system")
        for garbage in ["not json", "[1,2]", "42", json.dumps({"topic": "", "event": "x", "payload": {}, "ref": "9"}),
                        json.dumps({"topic": "realtime:watch", "payload": {}, "ref": "9"}), "{" * 5000]:
            await s.ws.send(garbage)
            err = await s.recv(lambda m: m["event"] == "phx_reply")
            assert err["payload"]["status"] == "error" and err["payload"]["response"]["reason"]
        ref = await s.send("realtime:nope", "broadcast", {})
        assert (await s.recv(lambda m: m["ref"] == ref))["payload"]["response"]["reason"] == "unmatched topic"
        ref = await s.send("realtime:watch", "no_such_event", {})
        assert "unknown event" in (await s.recv(lambda m: m["ref"] == ref))["payload"]["response"]["reason"]
        ref = await s.send("elsewhere:x", "phx_join", {})
        assert (await s.recv(lambda m: m["ref"] == ref))["payload"]["status"] == "error"
        ref = await s.send("realtime:bad", "phx_join", {"config": "nope"})
        assert (await s.recv(lambda m: m["ref"] == ref))["payload"]["status"] == "error"
        # the joined channel still delivers
        reserve(server.base_url, event["id"], event["ticket_types"][0]["id"], user="zed")
        change = await s.recv(lambda m: m["event"] == "postgres_changes")
        assert change["payload"]["data"]["record"]["available"] == 8
        await s.ws.close()

    run(scenario())


def test_oversized_frame_closes_only_that_socket(server):
    async def scenario():
        victim = await open_socket(server, "1.0.0")
        bystander = await open_socket(server, "1.0.0")
        await bystander.join("realtime:calm")
        with pytest.raises(websockets.ConnectionClosed):
            # the server may close the socket (1009) while the client is still sending the frame
            await victim.ws.send("x" * (2 << 20))
            for _ in range(10):
                await asyncio.wait_for(victim.ws.recv(), 5)
        ref = await bystander.send("phoenix", "heartbeat", {})
        assert (await bystander.recv(lambda m: m["ref"] == ref))["payload"]["status"] == "ok"
        await bystander.ws.close()

    run(scenario())


def test_refused_filters_and_tables_are_reported(server):
    async def scenario():
        s = await open_socket(server, "1.0.0", token=make_token(sub="mallory"))
        await s.join("realtime:snoop", {"postgres_changes": [
            {"event": "*", "schema": "public", "table": "tickets", "filter": "holder_email=eq.victim@example.com"}]})
        system = await s.recv(lambda m: m["event"] == "system")
        assert system["payload"]["status"] == "error" and "Unauthorized" in system["payload"]["message"]
        await s.join("realtime:secret", {"postgres_changes": [{"event": "*", "schema": "public", "table": "schema_migrations"}]})
        system = await s.recv(lambda m: m["event"] == "system" and m["topic"] == "realtime:secret")
        assert system["payload"]["status"] == "error" and "Unable to subscribe" in system["payload"]["message"]
        await s.join("realtime:badfilter", {"postgres_changes": [{"event": "*", "schema": "public", "table": "event_tickets", "filter": "available=foo.1"}]})
        system = await s.recv(lambda m: m["event"] == "system" and m["topic"] == "realtime:badfilter")
        assert system["payload"]["status"] == "error" and "filter" in system["payload"]["message"]
        await s.ws.close()

    run(scenario())


def test_bad_api_key_is_reported_on_join(server):
    async def scenario():
        cases = {"": "API key is missing", "garbage": "MalformedJWT",
                 make_token(role="anon", secret="another-secret-another-secret-000000"): "JwtSignatureError",
                 make_token(role="anon", expires_in=-10): "Token has expired"}
        for key, reason in cases.items():
            s = Socket(await websockets.connect(f"{server.ws_url}/realtime/v1/websocket?apikey={key}&vsn=1.0.0"), "1.0.0")
            reply = await s.join("realtime:any")
            assert reply["payload"]["status"] == "error" and reason in reply["payload"]["response"]["reason"], reply
            # a valid token in the join itself is enough
            reply = await s.join("realtime:other", token=make_token(role="anon"))
            assert reply["payload"]["status"] == "ok", reply
            await s.ws.close()

    run(scenario())


def test_snapshot_extension_sends_current_rows(server):
    event = create_event(server.base_url, capacities=(7, 3))

    async def scenario():
        small = next(t for t in event["ticket_types"] if t["capacity"] == 3)
        reserve(server.base_url, event["id"], small["id"], user="fay", quantity=2)
        s = await open_socket(server, "2.0.0")
        await s.join("realtime:snap", {"marquee": {"snapshot": True}, "postgres_changes": [
            {"event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": f"event_id=eq.{event['id']}"}]})
        rows = {}
        while len(rows) < 2:
            # a live change committed just before the join may come too; the snapshot rows are marked
            m = await s.recv(lambda m: m["event"] == "postgres_changes" and m["payload"]["data"].get("snapshot"))
            assert m["payload"]["data"]["snapshot"] is True and m["payload"]["data"]["type"] == "UPDATE"
            rows[m["payload"]["data"]["record"]["id"]] = m["payload"]["data"]["record"]
        by_capacity = {r["capacity"]: r for r in rows.values()}
        assert by_capacity[7]["available"] == 7 and by_capacity[3]["available"] == 1
        assert all(r["version"] >= 1 for r in rows.values())
        await s.ws.close()

    run(scenario())
