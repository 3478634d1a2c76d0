"""Helpers shared by the API tests: tokens, requests, error assertions, counts from SQL, a deadline-bound poll, and
the `client` / `sql` fixtures (imported by the test modules; a tests/api/conftest.py would shadow tests/conftest.py
for `from conftest import ...`)."""

import asyncio
import time
import uuid

import httpx
import pytest

from conftest import make_token


@pytest.fixture(scope="module")
def client(server):
    """An HTTP client on the module's server."""
    with httpx.Client(base_url=server.base_url, timeout=30.0) as c:
        yield c


@pytest.fixture(scope="module")
def sql(database):
    """An autocommit connection to the module's database."""
    with database.connect() as conn:
        yield conn


def service_token() -> str:
    return make_token(sub="service", role="service_role")


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def user_headers(user: str, key: str | None = None) -> dict:
    headers = auth(make_token(sub=user))
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """Checks the status and the error shape `{"error":{"code","message"}}` with a non-empty message."""
    assert response.status_code == status, f"expected {status} {code}, got {response.status_code}: {response.text}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, f"expected code {code}, got {body}"
    assert isinstance(error["message"], str) and error["message"].strip(), body
    return error


def new_event(client: httpx.Client, types: list, name: str | None = None, starts_at: str = "2030-06-01T19:30:00Z",
              venue: str = "Test Hall") -> dict:
    """Creates an event through the API with the service role; `types` is a list of (name, price_cents, capacity)."""
    body = {
        "name": name or f"Event {uuid.uuid4().hex[:8]}",
        "starts_at": starts_at,
        "venue": venue,
        "ticket_types": [{"name": n, "price_cents": p, "capacity": c} for n, p, c in types],
    }
    response = client.post("/api/events", json=body, headers=auth(service_token()))
    assert response.status_code == 201, response.text
    return response.json()


def reserve(client: httpx.Client, event_id: str, type_id: str, user: str, quantity: int = 1, key: str | None = None,
            email: str | None = None) -> httpx.Response:
    body = {"ticket_type_id": type_id, "quantity": quantity}
    if email is not None:
        body["holder_email"] = email
    return client.post(f"/api/events/{event_id}/reservations", json=body,
                       headers=user_headers(user, key or uuid.uuid4().hex))


def act(client: httpx.Client, reservation_id: str, action: str, user: str | None = None, token: str | None = None):
    """POST /api/reservations/{id}/confirm|cancel as `user` (or with an explicit token)."""
    token = token or make_token(sub=user)
    return client.post(f"/api/reservations/{reservation_id}/{action}", headers=auth(token))


def counts(conn, type_id: str) -> dict:
    """The stored counts of one ticket type."""
    row = conn.execute(
        "select capacity, sold, reserved, available, version from event_tickets where id = %s", (type_id,)).fetchone()
    assert row is not None, f"no event_tickets row {type_id}"
    return dict(zip(["capacity", "sold", "reserved", "available", "version"], row))


def api_type(client: httpx.Client, event_id: str, type_id: str) -> dict:
    """One ticket type from GET /api/events/{id}/availability."""
    response = client.get(f"/api/events/{event_id}/availability")
    assert response.status_code == 200, response.text
    matches = [t for t in response.json()["ticket_types"] if t["id"] == type_id]
    assert len(matches) == 1, response.json()
    return matches[0]


def ticket_rows(conn, type_id: str) -> list:
    return conn.execute(
        "select id::text, user_id, quantity, status from tickets where event_ticket_id = %s order by created_at",
        (type_id,)).fetchall()


def assert_invariants(conn):
    """For every ticket type: the counts add up, none is negative, and sold/reserved match the tickets rows."""
    bad = conn.execute("""
        select et.id, et.capacity, et.sold, et.reserved, et.available,
               coalesce(sum(t.quantity) filter (where t.status = 'confirmed'), 0) as tickets_sold,
               coalesce(sum(t.quantity) filter (where t.status = 'reserved'), 0) as tickets_held
          from event_tickets et left join tickets t on t.event_ticket_id = et.id
         group by et.id
        having et.sold + et.reserved + et.available <> et.capacity
            or et.sold < 0 or et.reserved < 0 or et.available < 0
            or et.sold <> coalesce(sum(t.quantity) filter (where t.status = 'confirmed'), 0)
            or et.reserved <> coalesce(sum(t.quantity) filter (where t.status = 'reserved'), 0)
    """).fetchall()
    assert bad == [], f"event_tickets rows whose counts are wrong: {bad}"


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"):
    """Polls `predicate` until it returns something truthy, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        time.sleep(interval)


def run_concurrently(base_url: str, requests: list, timeout: float = 60.0) -> list:
    """Sends every (method, path, kwargs) at once over separate connections; returns the responses in order."""

    async def main():
        limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:
            start = asyncio.Event()

            async def one(method, path, kwargs):
                await start.wait()
                return await client.request(method, path, **kwargs)

            tasks = [asyncio.create_task(one(m, p, k)) for m, p, k in requests]
            await asyncio.sleep(0)  # let every task reach the gate, then release them together
            start.set()
            return await asyncio.gather(*tasks)

    return asyncio.run(main())
