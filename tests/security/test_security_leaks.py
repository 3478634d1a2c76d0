"""Who sees what: a buyer's `holder_email` and `user_id` reach only the buyer's own sockets, never anonymous
watchers or other users, on any path (postgres_changes fan-out in both serializers, `select` lists, the snapshot
extension, the public availability topic, the HTTP API) and never the server's log.

Every raw frame each socket received is kept (exact text), and the checks run over the text and the decoded JSON."""

import asyncio
import json
import uuid

import httpx
import pytest

from conftest import make_token
from sechelpers import act, create_event, open_socket, reserve, tickets_binding

pytestmark = pytest.mark.timeout(120)


def values_of(value, key):
    """Every value stored under `key` anywhere in a decoded JSON document."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                found.append(v)
            found += values_of(v, key)
    elif isinstance(value, list):
        for v in value:
            found += values_of(v, key)
    return found


def changes(topic):
    return lambda m: m["event"] == "postgres_changes" and m["topic"] == topic


async def joined_with_bindings(s, topic, bindings, **extra):
    reply = await s.join(topic, {"postgres_changes": bindings, **extra})
    assert reply["payload"]["status"] == "ok", reply
    system = await s.recv(lambda m: m["event"] == "system" and m["topic"] == topic)
    assert system["payload"]["status"] == "ok", system


def test_holder_email_and_user_id_reach_only_their_owner(server):
    event = create_event(server.base_url, capacities=(40,))
    event_id, type_id = event["id"], event["ticket_types"][0]["id"]
    tag = uuid.uuid4().hex[:10]
    owner, other, someone = f"owner-{tag}", f"other-{tag}", f"someone-{tag}"
    marker = f"marker-{uuid.uuid4()}@example.com"
    other_email = f"other-mail-{tag}@example.com"
    someone_email = f"someone-mail-{tag}@example.com"
    owner_token = make_token(sub=owner)
    availability_topic = f"realtime:event:{event_id}:availability"
    private_topic = f"realtime:user:{owner}:reservations"

    async def scenario():
        anon = await open_socket(server, name="anon")
        anon2 = await open_socket(server, name="anon-v2", vsn="2.0.0")
        other_s = await open_socket(server, apikey=make_token(sub=other), name="other")
        owner_s = await open_socket(server, apikey=owner_token, name="owner")
        owner_private = await open_socket(server, apikey=owner_token, name="owner-private")
        for s in (anon, anon2, other_s):
            await joined_with_bindings(s, "realtime:leak", [tickets_binding(event_id)])
            assert (await s.join(availability_topic, {"private": False}))["payload"]["status"] == "ok"
        # asking for the sensitive columns by name gives nothing more
        await joined_with_bindings(anon, "realtime:leak-select", [
            {**tickets_binding(event_id), "select": ["id", "holder_email", "user_id", "status"]}])
        await joined_with_bindings(owner_s, "realtime:leak", [tickets_binding(event_id, f"user_id=eq.{owner}")])
        reply = await owner_private.join(private_topic, {"private": True, "broadcast": {"self": False}})
        assert reply["payload"]["status"] == "ok", reply

        r1, r2, r3 = (reserve(server.base_url, event_id, type_id, owner, email=marker, token=owner_token) for _ in range(3))
        held = []
        for r in (r1, r2, r3):
            assert r.status_code == 201, r.text
            held.append(r.json())
        assert marker not in r1.text  # the reservation response does not echo it either (it is not in the contract)
        act(server.base_url, held[0]["id"], "confirm", owner)
        act(server.base_url, held[1]["id"], "cancel", owner)
        for user, email in ((other, other_email), (someone, someone_email)):
            r = reserve(server.base_url, event_id, type_id, user, email=email)
            assert r.status_code == 201, r.text

        # 5 inserts and 2 updates for the event's watchers; the owner's own rows: 3 inserts, 2 updates
        for s in (anon, anon2, other_s):
            await s.wait_count(changes("realtime:leak"), 7, what="ticket changes")
        await anon.wait_count(changes("realtime:leak-select"), 7, what="ticket changes (select)")
        await owner_s.wait_count(changes("realtime:leak"), 5, what="own ticket changes")
        await owner_private.wait_count(lambda m: m["event"] == "broadcast", 5, what="private reservation messages")
        final = httpx.get(f"{server.base_url}/api/events/{event_id}/availability").json()["ticket_types"][0]["version"]
        for s in (anon, anon2, other_s):
            await s.recv(lambda m: m["event"] == "broadcast" and m["topic"] == availability_topic
                         and m["payload"]["payload"].get("version") == final, timeout=10, what=f"availability version {final}")

        # a late joiner with the snapshot extension gets the current rows, cut to the public columns
        late = await open_socket(server, name="anon-snapshot")
        await joined_with_bindings(late, "realtime:leak-late", [tickets_binding(event_id)], marquee={"snapshot": True})
        await late.wait_count(lambda m: m["event"] == "postgres_changes" and m["payload"]["data"].get("snapshot"), 5,
                              what="snapshot rows")

        # intruders: another user's private topic, and filters that would single out someone's rows
        intruders = []
        for token in (make_token(sub=other), make_token(role="anon")):
            s = await open_socket(server, apikey=token, name="intruder")
            intruders.append(s)
            reply = await s.join(private_topic, {"private": True})
            assert reply["payload"]["status"] == "error", reply
            for i, flt in enumerate([f"user_id=eq.{owner}", "holder_email=eq.victim@example.com", "holder_email=like.marker-%",
                                     f"user_id=neq.{other}", f"user_id=in.({owner},{other})",
                                     f"event_id=eq.{event_id},user_id=eq.{owner}", "holder_email=is.null"]):
                topic = f"realtime:snoop-{i}"
                assert (await s.join(topic, {"postgres_changes": [tickets_binding(event_id, flt)]}))["payload"]["status"] == "ok"
                system = await s.recv(lambda m: m["event"] == "system" and m["topic"] == topic)
                assert system["payload"]["status"] == "error", (flt, system)

        sockets = [anon, anon2, other_s, owner_s, owner_private, late, *intruders]
        for s in sockets:  # everything the server queued before this reply has arrived
            await s.heartbeat()
            await s.close()
        return {s.name + str(i): s for i, s in enumerate(sockets)}

    sockets = asyncio.run(scenario())

    # --- frames ---
    owner_frames = [raw for name, s in sockets.items() if name.startswith("owner") for raw in s.raw]
    assert sum(marker in raw for raw in owner_frames) >= 10, "the owner should see the marker (positive control)"
    for name, s in sockets.items():
        viewer = owner if name.startswith("owner") else other if name.startswith("other") else None
        for raw, msg in zip(s.raw, s.messages):
            if viewer != owner:
                assert marker not in raw, f"{name} received the owner's holder_email: {raw}"
            if viewer != other:
                assert other_email not in raw, f"{name} received another user's holder_email: {raw}"
            assert someone_email not in raw and someone not in raw, f"{name} received a non-subscriber's data: {raw}"
            if name.startswith("intruder"):
                continue  # refusals echo the topic and filter the intruder sent, which name the owner
            if viewer is None:
                assert owner not in raw and other not in raw, f"{name} (anonymous) received a user id: {raw}"
                assert not values_of(msg, "user_id") and not values_of(msg, "holder_email"), f"{name}: {raw}"
            else:
                assert set(values_of(msg, "user_id")) <= {viewer}, f"{name} received another user's user_id: {raw}"
    # the select list did not bring the sensitive columns back (only public columns, and status as asked)
    public = {"id", "event_id", "event_ticket_id", "quantity", "status", "created_at"}
    selected = [m for m in sockets["anon0"].messages if m["event"] == "postgres_changes" and m["topic"] == "realtime:leak-select"]
    assert selected and all(set(m["payload"]["data"]["record"]) <= public for m in selected), selected[:2]
    assert all(m["payload"]["data"]["record"].get("status") for m in selected)

    # --- HTTP ---
    for path in (f"/api/events/{event_id}", f"/api/events/{event_id}/availability", "/api/events", f"/events/{event_id}", "/"):
        r = httpx.get(server.base_url + path)
        assert r.status_code == 200, (path, r.status_code)
        for secret in (marker, other_email, owner, other):
            assert secret not in r.text, f"GET {path} contains {secret}"

    # --- the server's log (info level) ---
    log = "".join(server.output)
    assert "realtime joined" in log, "the log should have been captured"
    for secret in (marker, other_email, someone_email, owner_token):
        assert secret not in log, f"the server's output contains {secret[:40]}…: " + next(l for l in server.output if secret in l)


def test_refused_requests_do_not_echo_secrets_into_errors(server):
    """Error messages for another user's reservation neither confirm the owner nor echo the email."""
    event = create_event(server.base_url, capacities=(5,))
    marker = f"marker-{uuid.uuid4()}@example.com"
    r = reserve(server.base_url, event["id"], event["ticket_types"][0]["id"], "victim-x", email=marker)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    for action in ("confirm", "cancel"):
        resp = httpx.post(f"{server.base_url}/api/reservations/{rid}/{action}", headers={"Authorization": "Bearer " + make_token(sub="mallory-x")})
        assert resp.status_code in (403, 404), resp.text
        assert marker not in resp.text and "victim-x" not in resp.text, resp.text
    # the same idempotency key from another user is a new reservation, not the victim's
    key = str(uuid.uuid4())
    body = {"ticket_type_id": event["ticket_types"][0]["id"], "quantity": 1, "holder_email": marker}
    first = httpx.post(f"{server.base_url}/api/events/{event['id']}/reservations", json=body,
                       headers={"Authorization": "Bearer " + make_token(sub="victim-x"), "Idempotency-Key": key})
    second = httpx.post(f"{server.base_url}/api/events/{event['id']}/reservations", json={**body, "holder_email": "m@example.com"},
                        headers={"Authorization": "Bearer " + make_token(sub="mallory-x"), "Idempotency-Key": key})
    assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)
    assert first.json()["id"] != second.json()["id"]
    assert marker not in second.text and "victim-x" not in json.dumps(second.json())
