"""Attacks on the realtime endpoint by one anonymous (or ordinary) client, each with a well-behaved subscriber whose
update latency must stay within the bound while it runs (tests/security/attackkit.py): runaway filters, huge and
unreadable frames, crosstalk between public and private channels of one name, forged availability, tokens that
change or expire under a joined channel, presence and payload sizes, and what reaches the log and the metrics."""

import asyncio
import json
import re
import time
import uuid

import httpx
import pytest

from attackkit import Watcher, assert_alive, measured
from conftest import make_token, start_server
from sechelpers import create_event, open_socket, reserve, tickets_binding

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def hardened(database):
    srv = start_server(database.url)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def event(hardened):
    return create_event(hardened.base_url, capacities=(100000,))


def run(coro):
    return asyncio.run(coro)


def ticket_types_binding(event_id, flt=None):
    return {"event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": flt or f"event_id=eq.{event_id}"}


def test_a_backtracking_regex_filter_does_not_stall_anyone(hardened, event):
    async def scenario():
        watcher = await Watcher(hardened, event).start()
        attacker = await open_socket(hardened, name="attacker")
        # each binding's pattern is matched against every event_tickets change: as many as one socket may have
        evil = [ticket_types_binding(event["id"], "id=match.^([0-9a-f-]+)+Z$"),
                ticket_types_binding(event["id"], "name=imatch.^(a|aa|a?)+(b|bb)*$")]
        for n in range(5):
            reply = await attacker.join(f"realtime:evil-{n}", {"postgres_changes": evil})
            assert reply["payload"]["status"] == "ok", reply
        # and no more: the socket's pattern conditions are capped
        reply = await attacker.join("realtime:evil-more", {"postgres_changes": evil})
        assert reply["payload"]["status"] == "error" and "TooManyPatternFilters" in reply["payload"]["response"]["reason"], reply

        async def attack(started):
            # the bindings do the harm on every change the watcher's probes make; the attacker only stays connected
            started.set()
            while True:
                await attacker.heartbeat()
                await asyncio.sleep(0.5)  # pacing (and a yield to the other coroutines), not a wait for an event

        await measured(hardened, watcher, attack, "regex filters")
        await attacker.close()
        await watcher.close()

    run(scenario())


def test_filters_are_bounded(hardened, event):
    async def scenario():
        s = await open_socket(hardened, name="bounds")
        huge = ",".join(f"version=gt.{n}" for n in range(3000))  # ~40 KB: under the frame cap, over the filter's
        cases = {
            "conditions": ticket_types_binding(event["id"], huge),
            "pattern": ticket_types_binding(event["id"], "name=match." + "a" * 5000),
            "in list": ticket_types_binding(event["id"], "version=in.(" + ",".join(str(n) for n in range(500)) + ")"),
            "backreference": ticket_types_binding(event["id"], r"name=match.(a)\1"),
        }
        for what, binding in cases.items():
            topic = "realtime:bounds-" + what.replace(" ", "-")
            reply = await s.join(topic, {"postgres_changes": [binding]})
            # the join is answered; the binding is refused with a reason a developer can act on
            system = await s.recv(lambda m: m["event"] == "system" and m["topic"] == topic, 5, f"the {what} refusal")
            assert reply["payload"]["status"] == "ok" and system["payload"]["status"] == "error", (what, reply, system)
            assert system["payload"]["message"], (what, system)
        many = [ticket_types_binding(event["id"]) for _ in range(200)]
        reply = await s.join("realtime:bounds-bindings", {"postgres_changes": many})
        assert reply["payload"]["status"] == "error" and "at most" in reply["payload"]["response"]["reason"], reply
        await s.close()

    run(scenario())


def test_huge_frames_and_unreadable_frames_do_not_hold_up_others(hardened, event):
    async def scenario():
        watcher = await Watcher(hardened, event).start()
        attacker = await open_socket(hardened, name="attacker")
        # a frame just under the 1 MiB limit, made of many small JSON values (the costliest kind to parse)
        big = json.dumps({"topic": "realtime:flood", "event": "broadcast", "ref": "1",
                          "payload": {"type": "broadcast", "event": "x", "payload": {"v": [0] * 300000}}})
        assert len(big) < (1 << 20)

        async def attack(started):
            while True:
                await attacker.ws.send(big)
                for _ in range(50):
                    await attacker.ws.send("{not json")
                started.set()
                await asyncio.sleep(0)  # let the other coroutines run when the socket's buffer never fills

        await measured(hardened, watcher, attack, "1 MiB frames")
        await watcher.close()

    run(scenario())


def test_unreadable_frames_count_against_the_message_rate(hardened, event):
    async def scenario():
        watcher = await Watcher(hardened, event).start()
        s = await open_socket(hardened, name="garbage")

        async def attack(started):
            started.set()
            for _ in range(1500):
                await s.ws.send("{oops")

        await measured(hardened, watcher, attack, "unreadable frames", finish=True)
        await watcher.close()
        # the server answers at most the burst of the message rate (200 frames), then drops them unanswered; once the
        # bucket has refilled a heartbeat is answered again
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while (await s.heartbeat())["payload"]["status"] != "ok":
            assert loop.time() < deadline, "the socket's message rate never recovered"
            await asyncio.sleep(0.2)  # pacing: the bucket refills at the message rate
        answers = [m for m in s.messages if m["event"] == "phx_reply" and m["topic"] == "phoenix" and m.get("ref") is None]
        assert 1 <= len(answers) < 400, len(answers)
        assert all(m["payload"]["status"] == "error" and "JSON" in m["payload"]["response"]["reason"] for m in answers), answers[:3]
        await s.close()

    run(scenario())


def test_public_and_private_channels_of_one_name_share_nothing(hardened):
    async def scenario():
        owner = "ivy-" + uuid.uuid4().hex[:6]
        mine = await open_socket(hardened, apikey=make_token(sub=owner), name="owner")
        service = await open_socket(hardened, apikey=make_token(role="service_role"), name="service")
        snoop = await open_socket(hardened, name="snoop")
        # a user's topics cannot be joined publicly at all
        for topic in (f"realtime:user:{owner}:reservations", f"realtime:user:{owner}:devices"):
            reply = await snoop.join(topic, {"private": False, "broadcast": {"self": False}, "presence": {"enabled": True}})
            assert reply["payload"]["status"] == "error" and "PrivateOnly" in reply["payload"]["response"]["reason"], reply
        # another name, joined privately by the service role and publicly by an anonymous socket
        topic = "realtime:room-" + uuid.uuid4().hex[:6]
        config = {"private": True, "broadcast": {"self": False, "ack": True}, "presence": {"key": "staff", "enabled": True}}
        assert (await service.join(topic, config))["payload"]["status"] == "ok"
        public = {"private": False, "broadcast": {"self": False, "ack": True}, "presence": {"key": "anon", "enabled": True}}
        assert (await snoop.join(topic, public))["payload"]["status"] == "ok"
        ref = await service.send(topic, "presence", {"type": "presence", "event": "track", "payload": {"who": "staff"}}, join_ref="1")
        await service.recv(lambda m: m.get("ref") == ref)
        ref = await service.send(topic, "broadcast", {"type": "broadcast", "event": "secret", "payload": {"n": 1}})
        assert (await service.recv(lambda m: m.get("ref") == ref))["payload"]["status"] == "ok"
        ref = await snoop.send(topic, "broadcast", {"type": "broadcast", "event": "forged", "payload": {"n": 2}})
        assert (await snoop.recv(lambda m: m.get("ref") == ref))["payload"]["status"] == "ok"
        # both sides answer a heartbeat: anything crossing over would have arrived before it
        await snoop.heartbeat()
        await service.heartbeat()
        assert not any(m["event"] in ("broadcast", "presence_diff") and m["topic"] == topic for m in snoop.messages), snoop.raw
        assert not any(m["event"] == "broadcast" and m["topic"] == topic for m in service.messages), service.raw
        state = [m for m in snoop.messages if m["event"] == "presence_state" and m["topic"] == topic]
        assert state and state[-1]["payload"] == {}, state
        for s in (mine, service, snoop):
            await s.close()

    run(scenario())


def test_availability_cannot_be_forged(hardened, event):
    async def scenario():
        topic = f"realtime:event:{event['id']}:availability"
        watcher = await open_socket(hardened, name="watcher")
        assert (await watcher.join(topic, {"broadcast": {"self": False}, "private": False}))["payload"]["status"] == "ok"
        forger = await open_socket(hardened, apikey=make_token(sub="forger"), name="forger")
        assert (await forger.join(topic, {"broadcast": {"self": True, "ack": True}, "private": False}))["payload"]["status"] == "ok"
        forged = {"type": "broadcast", "event": "availability",
                  "payload": {"ticket_type_id": event["ticket_types"][0]["id"], "available": 0, "status": "sold_out", "version": 10**9}}
        ref = await forger.send(topic, "broadcast", forged, join_ref="1")
        refusal = await forger.recv(lambda m: m.get("ref") == ref)
        assert refusal["payload"]["status"] == "error" and "only from the database" in refusal["payload"]["response"]["reason"], refusal
        # realtime-js's binary user broadcast (kind 3): the lengths of join ref, ref, topic, event and meta, the payload
        # encoding (1: JSON), the fields, then the payload
        name = topic.encode()
        payload = json.dumps(forged["payload"]).encode()
        await forger.ws.send(bytes([3, 1, 1, len(name), len(b"availability"), 0, 1]) + b"1" + b"9" + name + b"availability" + payload)
        binary = await forger.recv(lambda m: m.get("ref") == "9")
        assert binary["payload"]["status"] == "error", binary
        status = {"type": "broadcast", "event": "status", "payload": {"status": "sold_out"}}
        ref = await forger.send(topic, "broadcast", status, join_ref="1")
        await forger.recv(lambda m: m.get("ref") == ref)
        # a real change does arrive, and nothing forged came before it
        reserve(hardened.base_url, event["id"], event["ticket_types"][0]["id"], "buyer-" + uuid.uuid4().hex[:6])
        real = await watcher.recv(lambda m: m["event"] == "broadcast" and m["topic"] == topic, 10, "the database's availability")
        assert real["payload"]["payload"].get("version") != 10**9
        assert all(m["payload"]["payload"].get("version") != 10**9 and m["payload"].get("event") != "status"
                   for m in watcher.messages if m["event"] == "broadcast"), watcher.raw
        await forger.close()
        await watcher.close()

    run(scenario())


def test_redaction_follows_the_token(hardened, event):
    async def scenario():
        owner = "rae-" + uuid.uuid4().hex[:6]
        email = f"{owner}@example.com"
        s = await open_socket(hardened, apikey=make_token(role="anon"), name="refresher")
        topic = "realtime:mine-" + owner
        reply = await s.join(topic, {"postgres_changes": [tickets_binding(event["id"])]}, token=make_token(sub=owner))
        assert reply["payload"]["status"] == "ok", reply
        await s.recv(lambda m: m["event"] == "system" and m["topic"] == topic)
        type_id = event["ticket_types"][0]["id"]
        assert reserve(hardened.base_url, event["id"], type_id, owner, email=email).status_code == 201
        full = await s.recv(lambda m: m["event"] == "postgres_changes" and m["payload"]["data"]["record"].get("user_id") == owner, 10)
        assert full["payload"]["data"]["record"]["holder_email"] == email
        # the same socket hands its channel the anon key: from now on it sees redacted rows
        await s.send(topic, "access_token", {"access_token": make_token(role="anon")}, join_ref="1")
        await s.heartbeat()
        count = len(s.messages)
        assert reserve(hardened.base_url, event["id"], type_id, owner, email=email).status_code == 201
        later = await s.recv(lambda m: m["event"] == "postgres_changes" and m["topic"] == topic and s.messages.index(m) >= count, 10)
        record = later["payload"]["data"]["record"]
        assert "holder_email" not in record and "user_id" not in record, record
        assert email not in "".join(s.raw[count:])
        await s.close()

    run(scenario())


def test_an_expired_token_ends_its_channel_without_any_frame_from_the_client(hardened, event):
    async def scenario():
        owner = "exp-" + uuid.uuid4().hex[:6]
        s = await open_socket(hardened, name="quiet")
        topic = "realtime:quiet-" + owner
        expires_at = time.time() + 2
        reply = await s.join(topic, {"postgres_changes": [tickets_binding(event["id"])]}, token=make_token(sub=owner, expires_in=2))
        assert reply["payload"]["status"] == "ok", reply
        # no frame is sent from here on: the server's timer ends the channel
        system = await s.recv(lambda m: m["event"] == "system" and m["topic"] == topic and m["payload"]["status"] == "error", 8)
        assert "expired" in system["payload"]["message"], system
        await s.recv(lambda m: m["event"] == "phx_close" and m["topic"] == topic, 2)
        assert time.time() - expires_at < 2.0, "the channel outlived its token by more than a second (plus JWT's whole-second exp)"
        await s.close()

    run(scenario())


def test_presence_keeps_every_client_of_a_key_and_payloads_are_capped(hardened):
    async def scenario():
        topic = "realtime:lobby-" + uuid.uuid4().hex[:6]
        config = {"broadcast": {"self": False, "ack": True}, "presence": {"key": "alice", "enabled": True}, "private": False}
        first = await open_socket(hardened, name="first")
        second = await open_socket(hardened, name="second")
        assert (await first.join(topic, config))["payload"]["status"] == "ok"
        assert (await second.join(topic, config))["payload"]["status"] == "ok"
        for s, device in ((first, "phone"), (second, "laptop")):
            ref = await s.send(topic, "presence", {"type": "presence", "event": "track", "payload": {"device": device}}, join_ref="1")
            assert (await s.recv(lambda m: m.get("ref") == ref))["payload"]["status"] == "ok"
        third = await open_socket(hardened, name="third")
        assert (await third.join(topic, config))["payload"]["status"] == "ok"
        state = await third.recv(lambda m: m["event"] == "presence_state" and m["topic"] == topic)
        devices = sorted(meta["device"] for meta in state["payload"]["alice"]["metas"])
        assert devices == ["laptop", "phone"], state
        # payloads over their caps are refused and not relayed
        ref = await first.send(topic, "presence", {"type": "presence", "event": "track", "payload": {"blob": "x" * 20_000}}, join_ref="1")
        refusal = await first.recv(lambda m: m.get("ref") == ref)
        assert refusal["payload"]["status"] == "error" and "PayloadTooLarge" in refusal["payload"]["response"]["reason"], refusal
        # a frame larger than any message the server takes is refused before it is parsed (so without its ref)
        await first.send(topic, "broadcast", {"type": "broadcast", "event": "big", "payload": {"blob": "x" * 500_000}})
        refusal = await first.recv(lambda m: m["topic"] == "phoenix" and m.get("ref") is None)
        assert refusal["payload"]["status"] == "error" and "PayloadTooLarge" in refusal["payload"]["response"]["reason"], refusal
        await third.heartbeat()
        assert not any(m["event"] == "broadcast" for m in third.messages)
        for s in (first, second, third):
            await s.close()

    run(scenario())


def test_client_text_cannot_forge_log_lines_or_metric_labels(hardened):
    first_line = len(hardened.output)

    async def scenario():
        s = await open_socket(hardened, name="logs")
        marker = uuid.uuid4().hex[:8]
        evil = f"realtime:x\nFORGED-{marker} level=error\u001b[31m"
        await s.join(evil)
        ref = await s.send(evil, f"evt-{marker}\n", {})
        await s.recv(lambda m: m.get("ref") == ref)
        for _ in range(300):
            await s.ws.send("{bad")
        ref = await s.send(evil, "phx_leave", {})
        await s.recv(lambda m: m.get("ref") == ref, 15)
        await s.close()
        metrics = httpx.get(f"{hardened.base_url}/metrics").text
        assert marker not in metrics, [line for line in metrics.splitlines() if marker in line]
        return marker

    marker = run(scenario())
    assert_alive(hardened)
    lines = list(hardened.output)[first_line:]
    assert not any(line.startswith(f"FORGED-{marker}") for line in lines), "a client forged a log line"
    assert not any("\u001b" in line for line in lines), "an ANSI escape reached the log"
    unreadable = [line for line in lines if "unreadable frame" in line]
    assert len(unreadable) <= 2, f"{len(unreadable)} log lines for 300 unreadable frames of one socket"


def test_presence_and_broadcast_floods_cannot_grow_memory(hardened, event):
    from sechelpers import rss_kb

    async def flood(n):
        s = await open_socket(hardened, name=f"flooder-{n}")
        config = {"broadcast": {"self": False, "ack": True}, "presence": {"key": f"k{n}", "enabled": True}, "private": False}
        refused = 0
        for c in range(100):
            topic = f"realtime:mem-{n}-{c}"
            while True:
                reply = await s.join(topic, config)
                if reply["payload"]["status"] == "ok":
                    break
                assert "ClientJoinRateLimitReached" in reply["payload"]["response"]["reason"], reply
                await asyncio.sleep(0.1)  # pacing: the join rate refills
            # over the cap (a socket's inbound byte budget makes larger ones slow to send, not cheaper to refuse)
            for blob in ("x" * 20_000, "y" * 3000):
                ref = await s.send(topic, "presence", {"type": "presence", "event": "track", "payload": {"blob": blob}}, join_ref="1")
                answer = await s.recv(lambda m: m.get("ref") == ref, 10)
                refused += answer["payload"]["status"] == "error"
            if c % 10 == 0:
                ref = await s.send(topic, "broadcast", {"type": "broadcast", "event": "big", "payload": {"blob": "z" * 60_000}})
                answer = await s.recv(lambda m: m.get("ref") == ref, 10)
                refused += answer["payload"]["status"] == "error"
        return s, refused

    async def scenario():
        watcher = await Watcher(hardened, event).start()
        before = rss_kb(hardened.process.pid)

        async def attack(started):
            started.set()
            return await asyncio.gather(*(flood(n) for n in range(5)))

        results = await measured(hardened, watcher, attack, "presence and broadcast floods", finish=True)
        after = rss_kb(hardened.process.pid)
        assert all(refused >= 100 for _, refused in results), [refused for _, refused in results]
        # 500 channels with a 3 KB presence each is about 1.5 MB; the refused payloads are not kept
        assert after - before < 96 * 1024, f"RSS grew by {(after - before) // 1024} MB"
        for s, _ in results:
            await s.close()
        await watcher.close()

    run(scenario())
