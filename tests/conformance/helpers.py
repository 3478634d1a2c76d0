"""Helpers for driving real Supabase clients against a running server: events, reservations, and waiting for
callbacks with deadlines."""

import asyncio
import uuid

import httpx

from conftest import create_event as shared_create_event, make_token


def create_event(base_url, capacities=(50,), name=None):
    return shared_create_event(base_url, capacities, name, label="Conformance")


def reserve(base_url, event_id, ticket_type_id, user="alice", quantity=1, email=None):
    r = httpx.post(
        f"{base_url}/api/events/{event_id}/reservations",
        json={"ticket_type_id": ticket_type_id, "quantity": quantity, **({"holder_email": email} if email else {})},
        headers={"Authorization": "Bearer " + make_token(sub=user), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == 201, r.text
    return r.json()


def act(base_url, reservation_id, action, user="alice"):
    r = httpx.post(f"{base_url}/api/reservations/{reservation_id}/{action}", headers={"Authorization": "Bearer " + make_token(sub=user)})
    assert r.status_code == 200, r.text
    return r.json()


class Inbox:
    """Collects callback payloads and lets a test wait for one that matches, with a deadline."""

    def __init__(self):
        self.items = []
        self._changed = asyncio.Event()

    def __call__(self, payload):
        self.items.append(payload)
        self._changed.set()

    async def wait_for(self, predicate, timeout=5.0, what="a matching message"):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for item in self.items:
                if predicate(item):
                    return item
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {len(self.items)}: {self.items[-3:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


async def subscribe(channel, timeout=5.0):
    """Subscribes and waits for SUBSCRIBED; fails with the status the client reported otherwise."""
    done = asyncio.get_running_loop().create_future()

    def on_status(status, error=None):
        if not done.done():
            done.set_result((str(status), error))

    await channel.subscribe(on_status)
    status, error = await asyncio.wait_for(done, timeout)
    assert status.endswith("SUBSCRIBED"), f"subscribe ended with {status}: {error}"
