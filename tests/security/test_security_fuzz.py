"""Seeded fuzzing of the realtime socket and the HTTP API: the server must answer every hostile input with an error
(a `phx_reply` error, a clean close, or a 4xx with the JSON error shape), never a 5xx, a crash, a hang, or runaway
memory; afterwards a fresh socket heartbeats, joins and receives a change.

Longer runs:

    MARQUEE_FUZZ_CASES=50000 MARQUEE_FUZZ_SEED=7 .venv/bin/python -m pytest tests/security/test_security_fuzz.py -q

MARQUEE_FUZZ_CASES is the total number of cases (default 5000: two thirds socket frames, one third HTTP requests);
MARQUEE_FUZZ_SEED the seed (default 1234). A failure names the case number and the input, so the same seed and count
reproduce it. Rate-limit refusals (`...RateLimitReached` replies, sockets closed or upgrades refused with 429) are
acceptable outcomes: the fuzzer reconnects and carries on.
"""

import asyncio
import json
import os
import random
import re
import time
import uuid

import httpx
import pytest
import websockets

from conftest import make_token
from sechelpers import create_event, open_socket, reserve, rss_kb, tickets_binding
from fuzzgen import http_case, ws_case

CASES = int(os.environ.get("MARQUEE_FUZZ_CASES", "5000"))
SEED = int(os.environ.get("MARQUEE_FUZZ_SEED", "1234"))
SOCKETS = 4
RSS_GROWTH_LIMIT_KB = 200 * 1024

pytestmark = pytest.mark.timeout(max(300, CASES // 10))


class FuzzSocket:
    """One fuzzing socket that drains everything the server sends and reconnects when the server closes it."""

    def __init__(self, server, index, event_id, stats):
        self.server, self.index, self.event_id, self.stats = server, index, event_id, stats
        self.vsn = "2.0.0" if index % 2 else "1.0.0"
        self.ws = None
        self.reader = None
        self.last_case = None  # the last input sent, to name what a close followed

    async def connect(self):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        delay = 0.05
        while True:
            try:
                s = await open_socket(self.server, apikey=make_token(sub=f"fuzzer-{self.index}"), vsn=self.vsn)
                break
            except (websockets.InvalidStatus, OSError, asyncio.TimeoutError) as error:
                # a refused upgrade (e.g. 429 for too many connections) is allowed; the server must come back
                self.stats["refused_upgrades"] += 1
                if loop.time() > deadline:
                    raise AssertionError(f"socket {self.index}: the server refused new sockets for 30 s: {error!r}")
                await asyncio.sleep(delay)  # back-off before retrying a refused connection
                delay = min(1.0, delay * 2)
        self.ws = s.ws
        self.stats["connections"] += 1
        self.reader = asyncio.create_task(self.drain(s.ws))
        config = {"broadcast": {"self": True, "ack": True}, "presence": {"key": "", "enabled": True},
                  "postgres_changes": [{"event": "*", "schema": "public", "table": "event_tickets", "filter": f"event_id=eq.{self.event_id}"}]}
        await self.send_text(self.frame("realtime:fuzz-a", "phx_join", {"config": config}))

    def frame(self, topic, event, payload):
        if self.vsn == "2.0.0":
            return json.dumps(["1", "1", topic, event, payload])
        return json.dumps({"topic": topic, "event": event, "payload": payload, "ref": "1", "join_ref": "1"})

    async def drain(self, ws):
        try:
            async for message in ws:
                self.stats["frames_in"] += 1
                if isinstance(message, str) and "RateLimitReached" in message:
                    self.stats["rate_limited"] += 1
        except websockets.ConnectionClosed:
            pass
        code = ws.close_code  # 1006 when the connection ended without a close frame
        self.stats["closes"][code] = self.stats["closes"].get(code, 0) + 1
        if code not in (1000, 1009) and self.last_case is not None:
            self.stats["close_causes"].append((code, self.last_case[0], self.last_case[1][:160]))

    async def send_text(self, data, text=None):
        await self.ws.send(data, text=text)

    async def send(self, case):
        """Sends one case; reconnects first if the server has closed this socket."""
        for attempt in range(2):
            if self.ws is None or self.reader.done():
                await self.connect()
            try:
                kind, data = case
                self.last_case = case
                await self.send_text(data, text=(kind != "binary"))
                return
            except websockets.ConnectionClosed:
                self.ws = None
            except AttributeError:
                # the server failed the connection (e.g. invalid UTF-8 in a text frame, RFC 6455 8.1) while the
                # client was sending: websockets then aborts a transport that asyncio has already detached from
                # its loop and raises AttributeError instead of ConnectionClosed; the socket is closed either way
                if self.ws.state is websockets.protocol.State.OPEN:
                    raise
                self.ws = None

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 10)


async def fuzz_sockets(server, event_id, ws_cases, stats):
    rng = random.Random(SEED)
    sockets = [FuzzSocket(server, i, event_id, stats) for i in range(SOCKETS)]
    for n in range(ws_cases):
        case = ws_case(rng, event_id)
        stats["last_ws_case"] = (n, case[0], case[1][:200])
        await sockets[rng.randrange(SOCKETS)].send(case)
    for s in sockets:
        await s.close()


async def fuzz_http(server, world, http_cases, failures, stats):
    rng = random.Random(SEED + 1)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        for n in range(http_cases):
            method, path, headers, body, may_succeed = http_case(rng, world)
            try:
                r = await client.request(method, path, headers=headers, content=body)
            except httpx.HTTPError as error:
                failures.append((n, path, body, f"transport error {error!r}"))
                continue
            stats["http_status"][r.status_code] = stats["http_status"].get(r.status_code, 0) + 1
            problem = None
            if r.status_code >= 500:
                problem = "5xx"
            elif r.status_code < 300:
                if not may_succeed:
                    problem = "accepted a request it should refuse"
            elif r.status_code < 400 or r.status_code >= 500:
                problem = "unexpected status"
            else:
                try:
                    error = r.json()["error"]
                    assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str) and error["message"]
                    assert set(r.json()) == {"error"}
                except Exception:  # noqa: BLE001 — any deviation from the shape is the failure
                    problem = "not the JSON error shape"
            if problem:
                failures.append((n, f"{method} {path}", body, f"{problem}: {r.status_code} {r.text[:200]!r}"))


def summarize(failures):
    """One line per (endpoint, outcome), with a count and the first case, so distinct bugs stand out."""
    groups = {}
    for n, where, body, problem in failures:
        size = "body > 64 KB" if len(body) > 64 * 1024 else "body <= 64 KB"
        key = (re.sub(r"/[^/]+/(reservations|confirm|cancel)$", r"/{id}/\1", where) + f" ({size})", problem[:120])
        groups.setdefault(key, []).append((n, f"{len(body)} bytes: {body[:200]!r}", problem))
    return "\n".join(f"  {len(items)}x {where} -> {items[0][2]}\n      e.g. case {items[0][0]}: {items[0][1]}"
                     for (where, _), items in groups.items())


def test_fuzzed_frames_and_bodies_never_break_the_server(server):
    event = create_event(server.base_url, capacities=(1000, 5))
    mine = reserve(server.base_url, event["id"], event["ticket_types"][0]["id"], "fuzzer-http")
    theirs = reserve(server.base_url, event["id"], event["ticket_types"][0]["id"], "bystander")
    assert mine.status_code == theirs.status_code == 201, (mine.text, theirs.text)
    world = {"event_id": event["id"], "type_ids": [t["id"] for t in event["ticket_types"]],
             "own": mine.json()["id"], "others": theirs.json()["id"],
             "user_token": make_token(sub="fuzzer-http"), "service_token": make_token(sub="svc", role="service_role")}
    ws_cases = CASES * 2 // 3
    http_cases = CASES - ws_cases
    stats = {"connections": 0, "refused_upgrades": 0, "frames_in": 0, "rate_limited": 0, "closes": {}, "close_causes": [], "http_status": {}}
    failures = []
    pid = server.process.pid
    rss_before = rss_kb(pid)
    started = time.monotonic()

    async def fuzz():
        await asyncio.gather(fuzz_sockets(server, event["id"], ws_cases, stats), fuzz_http(server, world, http_cases, failures, stats))

    try:
        asyncio.run(fuzz())
    finally:
        print(f"\nfuzz: seed {SEED}, {CASES} cases in {time.monotonic() - started:.1f}s; {stats}")
    assert server.process.poll() is None, "the server died while fuzzed; last socket case: %r\n%s" % (
        stats.get("last_ws_case"), "".join(server.output[-30:]))
    assert 1011 not in stats["closes"], f"a socket was closed with 1011 (internal error): {stats['closes']}"

    # the server still works: a fresh socket heartbeats, joins, and receives a change
    async def still_works():
        s = await open_socket(server, name="after-fuzz")
        assert (await s.heartbeat(timeout=5))["payload"]["status"] == "ok"
        reply = await s.join("realtime:after-fuzz", {"postgres_changes": [
            {"event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": f"event_id=eq.{event['id']}"}]})
        assert reply["payload"]["status"] == "ok", reply
        assert (await s.recv(lambda m: m["event"] == "system"))["payload"]["status"] == "ok"
        r = reserve(server.base_url, event["id"], event["ticket_types"][0]["id"], "after-fuzz")
        assert r.status_code == 201, r.text
        change = await s.recv(lambda m: m["event"] == "postgres_changes", timeout=10)
        assert change["payload"]["data"]["record"]["event_id"] == event["id"]
        await s.close()

    asyncio.run(still_works())
    assert server.process.poll() is None
    growth = rss_kb(pid) - rss_before
    assert growth < RSS_GROWTH_LIMIT_KB, f"the server's RSS grew by {growth // 1024} MB during fuzzing ({rss_before // 1024} MB before)"
    with httpx.Client(base_url=server.base_url) as client:
        assert client.get("/healthz").status_code == 200
    assert not failures, f"{len(failures)} HTTP cases failed (seed {SEED}); one example per kind:\n" + summarize(failures)


def test_single_hostile_frames_get_an_error_or_a_clean_close(server):
    """The headline cases one by one, each on its own socket, so that a failure names the frame."""
    deep = "[" * 10000 + "]" * 10000
    cases = [
        ("text", '{"topic":"phoenix","event":"heartbeat","payload":' + deep + ',"ref":"1"}'),
        ("text", deep),
        ("text", '{"topic":"realtime:x","event":"phx_join","payload":{"config":' + "{\"a\":" * 5000 + "1" + "}" * 5000 + '},"ref":"1"}'),
        ("binary", b"\xff\xfe\xfd" * 100),
        ("rawtext", b'{"topic":"phoenix","event":"heartbeat","payload":{"s":"\xff\xc3"},"ref":"1"}'),
        ("binary", bytes([3, 200, 200, 200, 200, 200, 1]) + b"x" * 10),
        ("text", '{"topic":"realtime:x","event":"broadcast","payload":{"event":"\\ud800","payload":{"s":"\\udfff\\u0000"}},"ref":"1"}'),
        ("text", '{"topic":"realtime:x","event":"phx_join","payload":null,"ref":1}'),
        ("text", '{"topic":"realtime:x","event":"phx_join","payload":{"config":{"postgres_changes":[{"event":"*","schema":"public",'
                 '"table":"event_tickets","filter":"name=match.(a+)+$"}]}},"ref":"1"}'),
        ("text", '{"topic":"realtime:x","event":"phx_join","payload":{"config":{"postgres_changes":[{"event":"*","schema":"public",'
                 '"table":"event_tickets","filter":"name=match.[unclosed"}]}},"ref":"1"}'),
        ("text", '{"topic":"phoenix","event":"heartbeat","payload":{"n":1e999999,"m":-1e-999999,"k":123456789012345678901234567890},"ref":"1"}'),
        ("text", "x" * (2 << 20)),
    ]

    async def scenario():
        for i, (kind, data) in enumerate(cases):
            s = await open_socket(server, name=f"case-{i}")
            assert (await s.join("realtime:x", {"broadcast": {"self": True}}))["payload"]["status"] == "ok"
            try:
                # the server may close the socket while a frame it refuses (too big) is still being sent
                await s.ws.send(data, text=(kind != "binary"))
                ref = await s.send("phoenix", "heartbeat", {})
                await s.recv(lambda m: m.get("ref") == ref and m.get("topic") == "phoenix", timeout=10, what=f"a heartbeat reply after case {i}")
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                assert code != 1011, f"case {i}: closed with an internal error"
            assert server.process.poll() is None, f"case {i} killed the server: {data[:100]!r}"
            await s.close()

    asyncio.run(scenario())
