"""Tokens at every door: the socket's `apikey`, a join's `access_token`, a refresh with `access_token`, and the REST
API's `Authorization: Bearer`. Each bad token is wrong in exactly one way (see sechelpers.bad_tokens); the error must
name the problem, and a refused token must never act with some other identity (e.g. fall back to the apikey's)."""

import asyncio
import time
import uuid

import httpx
import pytest

from conftest import make_token
from sechelpers import (OTHER_SECRET, act, assert_error_shape, bad_tokens, create_event, open_socket, reserve)

pytestmark = pytest.mark.timeout(120)

# what a join reason must contain for each bad token (Supabase Realtime's codes, docs/realtime-protocol.md §4)
JOIN_REASONS = {
    "expired": ["Token has expired"],
    "wrong_signature": ["JwtSignatureError"],
    "unknown_role": ["InvalidJWTToken", "role"],
    "missing_role": ["InvalidJWTToken", "role"],
    "malformed": ["MalformedJWT"],
    "garbage": ["MalformedJWT"],
    "alg_none": ["JwtSignatureError|MalformedJWT"],
    "nbf_future": ["InvalidJWTToken", "nbf|not valid yet|not before"],
}

# the REST API's 401 codes for the same tokens
REST_CODES = {
    "expired": "token_expired",
    "wrong_signature": "invalid_token",
    "unknown_role": ("invalid_token", "invalid_claims"),  # invalid_claims: the code being introduced for role problems
    "missing_role": ("invalid_token", "invalid_claims"),
    "malformed": "invalid_token",
    "garbage": "invalid_token",
    "alg_none": "invalid_token",
    "nbf_future": "token_not_yet_valid",
}


def reason_matches(reason, needles):
    """Every needle (alternatives separated by |) occurs in the reason, case-insensitively."""
    return all(any(alt.lower() in reason.lower() for alt in needle.split("|")) for needle in needles)


def assert_join_refused(reply, needles, what):
    assert reply["event"] == "phx_reply" and reply["payload"]["status"] == "error", f"{what}: expected an error reply, got {reply}"
    reason = reply["payload"]["response"].get("reason", "")
    assert isinstance(reason, str) and reason_matches(reason, needles), f"{what}: reason {reason!r} does not name {needles}"


def run(coro):
    return asyncio.run(coro)


# --- connect (apikey) ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(JOIN_REASONS))
def test_bad_apikey_upgrades_but_every_join_without_its_own_token_is_refused(server, kind):
    async def scenario():
        s = await open_socket(server, apikey=bad_tokens()[kind], name=kind)
        assert (await s.heartbeat())["payload"]["status"] == "ok"  # the socket itself works
        for topic in ("realtime:a", "realtime:b"):
            assert_join_refused(await s.join(topic), JOIN_REASONS[kind], f"apikey {kind}, join {topic}")
        # a join that carries a valid token of its own is accepted, with that token's identity
        assert (await s.join("realtime:c", token=make_token(role="anon")))["payload"]["status"] == "ok"
        # and one that carries another bad token is refused with that token's reason
        assert_join_refused(await s.join("realtime:d", token=make_token(sub="x", expires_in=-5)), ["Token has expired"], "expired join token")
        # a private topic is not opened by the bad apikey either
        reply = await s.join("realtime:user:alice:reservations", {"private": True})
        assert reply["payload"]["status"] == "error", reply
        await s.close()

    run(scenario())


@pytest.mark.parametrize("apikey", [None, ""], ids=["absent", "empty"])
def test_missing_apikey_is_reported_on_join(server, apikey):
    async def scenario():
        s = await open_socket(server, apikey=apikey)
        assert_join_refused(await s.join("realtime:nokey"), ["API key is missing"], "no apikey")
        assert (await s.join("realtime:withtoken", token=make_token(role="anon")))["payload"]["status"] == "ok"
        await s.close()

    run(scenario())


def test_valid_apikey_in_query_or_header_joins(server):
    async def scenario():
        for s in (await open_socket(server), await open_socket(server, apikey=None, headers={"x-api-key": make_token(role="anon")})):
            reply = await s.join("realtime:fine")
            assert reply["payload"] == {"status": "ok", "response": {"postgres_changes": []}}, reply
            await s.close()

    run(scenario())


# --- join (access_token in phx_join) -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(JOIN_REASONS))
def test_bad_join_token_is_refused_even_with_a_valid_apikey(server, kind):
    async def scenario():
        s = await open_socket(server, apikey=make_token(sub="alice"))
        assert_join_refused(await s.join("realtime:t1", token=bad_tokens("alice")[kind]), JOIN_REASONS[kind], f"join token {kind}")
        # the same private topic the apikey's user could open stays closed with the bad join token
        reply = await s.join("realtime:user:alice:reservations", {"private": True}, token=bad_tokens("alice")[kind])
        assert reply["payload"]["status"] == "error", reply
        # the socket and its other joins are unaffected
        assert (await s.join("realtime:t2"))["payload"]["status"] == "ok"
        assert (await s.heartbeat())["payload"]["status"] == "ok"
        await s.close()

    run(scenario())


def test_valid_join_token_decides_the_identity(server):
    async def scenario():
        s = await open_socket(server)  # anon apikey
        reply = await s.join("realtime:user:bob:reservations", {"private": True}, token=make_token(sub="bob"))
        assert reply["payload"]["status"] == "ok", reply
        reply = await s.join("realtime:user:carol:reservations", {"private": True}, token=make_token(sub="bob"))
        assert reply["payload"]["status"] == "error" and "Unauthorized" in reply["payload"]["response"]["reason"], reply
        await s.close()

    run(scenario())


# --- expiry while joined, and refresh ------------------------------------------------------------------------------

async def heartbeat_until(s, predicate, deadline_s, what):
    """Sends heartbeats (the server checks expiry on each frame it receives) until a frame matches, or fails."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while loop.time() < deadline:
        await s.heartbeat()
        try:
            return await s.recv(predicate, timeout=0.25)
        except AssertionError:
            continue
    raise AssertionError(f"{what} did not happen within {deadline_s}s; last frames: {s.raw[-5:]}")


def test_token_that_expires_while_joined_ends_the_channel(server):
    async def scenario():
        s = await open_socket(server)
        short = make_token(sub="dora", expires_in=2)
        assert (await s.join("realtime:user:dora:reservations", {"private": True}, token=short))["payload"]["status"] == "ok"
        assert (await s.join("realtime:public-long"))["payload"]["status"] == "ok"  # apikey token: valid for an hour
        system = await heartbeat_until(s, lambda m: m["event"] == "system" and m["topic"] == "realtime:user:dora:reservations",
                                       10, "the expiry of the joined channel")
        assert system["payload"]["status"] == "error" and "Token has expired" in system["payload"]["message"], system
        await s.recv(lambda m: m["event"] == "phx_close" and m["topic"] == "realtime:user:dora:reservations")
        # the expired channel is gone; the other channel on the socket is not
        ref = await s.send("realtime:user:dora:reservations", "broadcast", {"type": "broadcast", "event": "x", "payload": {}})
        gone = await s.recv(lambda m: m.get("ref") == ref)
        assert gone["payload"] == {"status": "error", "response": {"reason": "unmatched topic"}}, gone
        assert not any(m["event"] in ("system", "phx_close") and m["topic"] == "realtime:public-long" for m in s.messages)
        await s.close()

    run(scenario())


def test_refreshed_token_keeps_the_channel(server):
    async def scenario():
        s = await open_socket(server)
        topic = "realtime:user:erin:devices"  # a private topic of erin's own that clients may send on
        config = {"private": True, "broadcast": {"self": True, "ack": True}}
        assert (await s.join(topic, config, token=make_token(sub="erin", expires_in=2)))["payload"]["status"] == "ok"
        await s.send(topic, "access_token", {"access_token": make_token(sub="erin", expires_in=3600)})
        expired_at = time.time() + 3.5
        # heartbeats past the first token's expiry: no system error, no close
        while time.time() < expired_at:
            await s.heartbeat()
            try:
                ended = await s.recv(lambda m: m["event"] in ("system", "phx_close"), timeout=0.25)
            except AssertionError:
                continue
            pytest.fail(f"the refreshed channel was ended: {ended}")
        # the channel still delivers
        ref = await s.send(topic, "broadcast", {"type": "broadcast", "event": "still", "payload": {"n": 1}})
        ack = await s.recv(lambda m: m.get("ref") == ref)
        assert ack["payload"]["status"] == "ok", ack
        echo = await s.recv(lambda m: m["event"] == "broadcast" and m["topic"] == topic)
        assert echo["payload"]["payload"] == {"n": 1}
        await s.close()

    run(scenario())


@pytest.mark.parametrize("kind", ["expired", "wrong_signature", "malformed", "unknown_role"])
def test_refresh_with_a_bad_token_closes_the_channel(server, kind):
    async def scenario():
        s = await open_socket(server)
        topic = "realtime:refresh-" + kind
        assert (await s.join(topic, token=make_token(sub="fay")))["payload"]["status"] == "ok"
        await s.send(topic, "access_token", {"access_token": bad_tokens("fay")[kind]})
        system = await s.recv(lambda m: m["event"] == "system" and m["topic"] == topic)
        assert system["payload"]["status"] == "error", system
        await s.recv(lambda m: m["event"] == "phx_close" and m["topic"] == topic)
        await s.close()

    run(scenario())


def test_refresh_to_another_user_loses_the_private_topic(server):
    async def scenario():
        s = await open_socket(server)
        topic = "realtime:user:gus:reservations"
        assert (await s.join(topic, {"private": True}, token=make_token(sub="gus")))["payload"]["status"] == "ok"
        await s.send(topic, "access_token", {"access_token": make_token(sub="mallory")})
        system = await s.recv(lambda m: m["event"] == "system" and m["topic"] == topic)
        assert system["payload"]["status"] == "error" and "Unauthorized" in system["payload"]["message"], system
        await s.close()

    run(scenario())


# --- REST ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def event(server):
    return create_event(server.base_url, capacities=(100,))


def held_count(server, event):
    r = httpx.get(f"{server.base_url}/api/events/{event['id']}/availability")
    return r.json()["ticket_types"][0]["reserved"]


@pytest.mark.parametrize("kind", sorted(REST_CODES))
def test_rest_refuses_bad_tokens_and_writes_nothing(server, event, kind):
    before = held_count(server, event)
    r = reserve(server.base_url, event["id"], event["ticket_types"][0]["id"], user="alice", token=bad_tokens("alice")[kind])
    assert_error_shape(r, 401, REST_CODES[kind])
    assert held_count(server, event) == before


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_token"),
    ({"Authorization": "Bearer"}, "missing_token"),
    ({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, "missing_token"),
    ({"Authorization": "Bearer " + make_token(role="anon")}, "login_required"),
    ({"Authorization": "Bearer " + make_token(role="authenticated")}, "login_required"),  # no sub
    ({"Authorization": "Bearer " + make_token(sub="", role="authenticated")}, "login_required"),
])
def test_rest_needs_a_signed_in_user(server, event, headers, code):
    before = held_count(server, event)
    r = httpx.post(f"{server.base_url}/api/events/{event['id']}/reservations",
                   json={"ticket_type_id": event["ticket_types"][0]["id"], "quantity": 1},
                   headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
    assert_error_shape(r, 401, code)
    assert held_count(server, event) == before


def test_rest_valid_token_and_ownership(server, event):
    r = reserve(server.base_url, event["id"], event["ticket_types"][0]["id"], user="hana")
    assert r.status_code == 201, r.text
    held = r.json()
    # another user cannot confirm or cancel it; bad tokens cannot either
    for action in ("confirm", "cancel"):
        other = httpx.post(f"{server.base_url}/api/reservations/{held['id']}/{action}",
                           headers={"Authorization": "Bearer " + make_token(sub="mallory")})
        assert other.status_code in (403, 404), other.text
        assert_error_shape(other)
        for kind, code in REST_CODES.items():
            if kind == "nbf_future":
                continue  # its own test above
            bad = httpx.post(f"{server.base_url}/api/reservations/{held['id']}/{action}",
                             headers={"Authorization": "Bearer " + bad_tokens("hana")[kind]})
            assert_error_shape(bad, 401, code)
    assert act(server.base_url, held["id"], "confirm", user="hana")["status"] == "confirmed"


def test_creating_events_needs_a_valid_service_token(server):
    body = {"name": "Nope", "starts_at": "2030-01-01T20:00:00Z", "venue": "X", "ticket_types": [{"name": "A", "price_cents": 1, "capacity": 1}]}
    url = f"{server.base_url}/api/events"
    cases = [
        (make_token(sub="alice"), 403, "service_role_required"),
        (make_token(role="anon"), 403, "service_role_required"),
        (make_token(role="service_role", expires_in=-30), 401, "token_expired"),
        (make_token(role="service_role", secret=OTHER_SECRET), 401, "invalid_token"),
    ]
    names_before = {e["name"] for e in httpx.get(url).json()["events"]}
    for token, status, code in cases:
        assert_error_shape(httpx.post(url, json=body, headers={"Authorization": "Bearer " + token}), status, code)
    assert_error_shape(httpx.post(url, json=body), 401, "missing_token")
    assert "Nope" not in names_before and "Nope" not in {e["name"] for e in httpx.get(url).json()["events"]}
