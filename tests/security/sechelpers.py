"""Helpers for the security tests: a raw Phoenix socket that keeps every frame it received (exact text), tokens
that are wrong in one way each, HTTP helpers, and the server's resident memory.

The name is not `helpers` so that it cannot shadow tests/conformance/helpers.py when the whole tree runs."""

import asyncio
import json
import time
import uuid

import httpx
import jwt
import websockets

from conftest import TEST_SECRET, create_event as shared_create_event, make_token

OTHER_SECRET = "another-secret-another-secret-0123456789abcdef"


def bad_tokens(sub="alice"):
    """name -> token, each wrong in exactly one way (all for the same user)."""
    now = int(time.time())
    return {
        "expired": make_token(sub=sub, expires_in=-30),
        "wrong_signature": make_token(sub=sub, secret=OTHER_SECRET),
        "unknown_role": make_token(sub=sub, role="admin"),
        "missing_role": jwt.encode({"sub": sub, "iat": now, "exp": now + 3600}, TEST_SECRET, algorithm="HS256"),
        "malformed": "this-is.not-a.jwt",
        "garbage": "garbage",
        "alg_none": jwt.encode({"sub": sub, "role": "authenticated", "exp": now + 3600}, None, algorithm="none"),
        "nbf_future": make_token(sub=sub, nbf=now + 3600),
    }


def create_event(base_url, capacities=(50,), name=None):
    return shared_create_event(base_url, capacities, name, label="Security")


def reserve(base_url, event_id, ticket_type_id, user, quantity=1, email=None, token=None):
    return httpx.post(
        f"{base_url}/api/events/{event_id}/reservations",
        json={"ticket_type_id": ticket_type_id, "quantity": quantity, **({"holder_email": email} if email else {})},
        headers={"Authorization": "Bearer " + (token or make_token(sub=user)), "Idempotency-Key": str(uuid.uuid4())},
    )


def act(base_url, reservation_id, action, user):
    r = httpx.post(f"{base_url}/api/reservations/{reservation_id}/{action}", headers={"Authorization": "Bearer " + make_token(sub=user)})
    assert r.status_code == 200, r.text
    return r.json()


def assert_error_shape(response, status=None, code=None):
    """`{"error":{"code","message"}}` with strings; optionally the status and code (or a tuple of acceptable codes)."""
    where = f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:300]!r}"
    if status is not None:
        assert response.status_code == status, where
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, where
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], where
    assert isinstance(error.get("message"), str) and error["message"].strip(), where
    if code is not None:
        assert error["code"] in ((code,) if isinstance(code, str) else code), where
    return error


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class RawSocket:
    """A socket that records the exact text of every frame it receives in `raw`, and each decoded as a dict
    {join_ref?, ref, topic, event, payload} in `messages` (V2 arrays are turned into dicts)."""

    def __init__(self, ws, name="", vsn="1.0.0"):
        self.ws, self.name, self.vsn = ws, name, vsn
        self.ref = 0
        self.raw = []  # every frame's text, in arrival order
        self.messages = []  # the same frames, decoded
        self._consumed = set()  # indices already returned by recv

    async def send(self, topic, event, payload, join_ref=None):
        self.ref += 1
        ref = str(self.ref)
        if self.vsn == "2.0.0":
            await self.ws.send(json.dumps([join_ref, ref, topic, event, payload]))
        else:
            await self.ws.send(json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}))
        return ref

    async def _pump(self, timeout):
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        data = json.loads(raw)
        if isinstance(data, list) and len(data) == 5:
            data = dict(zip(["join_ref", "ref", "topic", "event", "payload"], data))
        assert isinstance(data, dict), f"{self.name}: not a Phoenix frame: {raw[:200]!r}"
        self.raw.append(raw)
        self.messages.append(data)

    async def recv(self, predicate=lambda m: True, timeout=5.0, what="a matching frame"):
        """The first not-yet-returned frame that matches (frames are all kept in `raw`/`messages`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, msg in enumerate(self.messages):
                if i not in self._consumed and predicate(msg):
                    self._consumed.add(i)
                    return msg
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: timed out after {timeout}s waiting for {what}; last frames: {self.raw[-5:]}")
            try:
                await self._pump(remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_count(self, predicate, count, timeout=10.0, what="frames"):
        """Waits until at least `count` received frames match; returns them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [m for m in self.messages if predicate(m)]
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: got {len(found)} of {count} {what} within {timeout}s; last: {self.raw[-5:]}")
            try:
                await self._pump(remaining)
            except asyncio.TimeoutError:
                pass

    async def join(self, topic, config=None, token=None, timeout=5.0):
        payload = {"config": config if config is not None else {"broadcast": {"self": False, "ack": False},
                                                                "presence": {"key": "", "enabled": False},
                                                                "postgres_changes": [], "private": False}}
        if token is not None:
            payload["access_token"] = token
        ref = await self.send(topic, "phx_join", payload, join_ref=str(self.ref + 1))
        return await self.recv(lambda m: m.get("event") == "phx_reply" and m.get("ref") == ref, timeout, f"the reply to joining {topic}")

    async def heartbeat(self, timeout=5.0):
        ref = await self.send("phoenix", "heartbeat", {})
        return await self.recv(lambda m: m.get("topic") == "phoenix" and m.get("ref") == ref, timeout, "the heartbeat reply")

    async def close(self):
        await self.ws.close()


async def open_socket(server, apikey="__anon__", name="", vsn="1.0.0", headers=None):
    """Opens a raw socket; `apikey=None` leaves the parameter out, "__anon__" uses a valid anon token."""
    if apikey == "__anon__":
        apikey = make_token(role="anon")
    url = f"{server.ws_url}/realtime/v1/websocket?vsn={vsn}"
    if apikey is not None:
        url += f"&apikey={apikey}"
    ws = await websockets.connect(url, max_size=None, additional_headers=headers, open_timeout=10)
    return RawSocket(ws, name, vsn)


def tickets_binding(event_id, extra_filter=None, event="*"):
    flt = f"event_id=eq.{event_id}" if extra_filter is None else extra_filter
    return {"event": event, "schema": "public", "table": "tickets", "filter": flt}
