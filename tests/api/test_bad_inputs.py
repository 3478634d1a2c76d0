"""Bad requests get the right status and error code, in the API's error shape, and write nothing (issue item 5)."""

import uuid

import pytest

from conftest import make_token
from apihelpers import client, sql  # noqa: F401 (fixtures)
from apihelpers import act, assert_error, assert_invariants, auth, new_event, reserve, service_token, user_headers

pytestmark = pytest.mark.timeout(120)

RANDOM_ID = "6f1c2a4e-0d1b-4c3e-9a57-2b8e3c1d4f60"


@pytest.fixture(scope="module")
def world(client):
    """Two events; `held` is a reservation of user `owner` on the first."""
    event = new_event(client, [("GA", 1500, 20), ("VIP", 9000, 4)])
    other = new_event(client, [("Other GA", 1500, 20)])
    held = reserve(client, event["id"], event["ticket_types"][0]["id"], "owner", quantity=2)
    assert held.status_code == 201, held.text
    return {"event": event, "type": event["ticket_types"][0], "other_type": other["ticket_types"][0],
            "held": held.json()}


def snapshot(sql):
    """Everything a bad request could have half-written."""
    return (sql.execute("select id, capacity, sold, reserved, available, version from event_tickets order by id").fetchall(),
            sql.execute("select id, status, quantity from tickets order by id").fetchall(),
            sql.execute("select id, name from events order by id").fetchall())


@pytest.fixture
def unchanged(sql, world):
    """Fails the test if the counts, tickets or events changed while it ran."""
    before = snapshot(sql)
    yield
    assert snapshot(sql) == before, "a refused request wrote to the database"
    assert_invariants(sql)


def post_reservation(client, world, body=None, raw=None, user="buyer", key=None, headers=None, event_id=None):
    if headers is None:
        headers = user_headers(user, key or uuid.uuid4().hex)
    path = f"/api/events/{event_id or world['event']['id']}/reservations"
    if raw is not None:
        return client.post(path, content=raw, headers={**headers, "Content-Type": "application/json"})
    if body is None:
        body = {"ticket_type_id": world["type"]["id"], "quantity": 1}
    return client.post(path, json=body, headers=headers)


@pytest.mark.parametrize("raw, code", [
    (b'{"ticket_type_id": ', "invalid_json"),
    (b"not json at all", "invalid_json"),
    (b"", "invalid_json"),
    (b'{"quantity": 1}', "missing_field"),
    (b'{"ticket_type_id": "%(type)s"}', "missing_field"),
    (b'{"ticket_type_id": null, "quantity": 1}', "missing_field"),
    (b'{"ticket_type_id": "%(type)s", "quantity": "two"}', "invalid_field"),
    (b'{"ticket_type_id": "%(type)s", "quantity": 1.5}', "invalid_field"),
    (b'{"ticket_type_id": "not-a-uuid", "quantity": 1}', "invalid_field"),
    (b'[{"ticket_type_id": "%(type)s", "quantity": 1}]', "invalid_field"),
    (b'{"ticket_type_id": "%(type)s", "quantity": 1, "holder_email": "nobody"}', "invalid_field"),
])
def test_malformed_reservation_bodies(client, world, unchanged, raw, code):
    raw = raw.replace(b"%(type)s", world["type"]["id"].encode())
    assert_error(post_reservation(client, world, raw=raw), 400, code)


@pytest.mark.parametrize("quantity, code", [(0, "invalid_quantity"), (-1, "invalid_quantity"), (-100, "invalid_quantity"),
                                            (11, "quantity_too_large"), (1000, "quantity_too_large")])
def test_quantity_out_of_range(client, world, unchanged, quantity, code):
    response = post_reservation(client, world, body={"ticket_type_id": world["type"]["id"], "quantity": quantity})
    assert_error(response, 400, code)


def test_the_largest_allowed_quantity_is_10(client):
    big = new_event(client, [("Big", 100, 50)])
    response = reserve(client, big["id"], big["ticket_types"][0]["id"], "bulk", quantity=10)
    assert response.status_code == 201, response.text


def test_unknown_event(client, world, unchanged):
    assert_error(client.get(f"/api/events/{RANDOM_ID}"), 404, "event_not_found")
    assert_error(client.get(f"/api/events/{RANDOM_ID}/availability"), 404, "event_not_found")
    assert_error(post_reservation(client, world, event_id=RANDOM_ID), 404, "event_not_found")


def test_unknown_ticket_type(client, world, unchanged):
    body = {"ticket_type_id": RANDOM_ID, "quantity": 1}
    assert_error(post_reservation(client, world, body=body), 404, "ticket_type_not_found")


def test_ticket_type_of_another_event(client, world, unchanged):
    body = {"ticket_type_id": world["other_type"]["id"], "quantity": 1}
    assert_error(post_reservation(client, world, body=body), 404, "ticket_type_not_found")


@pytest.mark.parametrize("path", ["/api/events/not-a-uuid", "/api/events/123/availability",
                                  "/api/events/6f1c2a4e-0d1b-4c3e-9a57/availability"])
def test_non_uuid_event_ids(client, unchanged, path):
    assert_error(client.get(path), 400, "invalid_id")


def test_non_uuid_ids_in_reservation_routes(client, world, unchanged):
    assert_error(post_reservation(client, world, event_id="tonight"), 400, "invalid_id")
    for action in ("confirm", "cancel"):
        assert_error(act(client, "r-1", action, "owner"), 400, "invalid_id")


@pytest.mark.parametrize("key", [None, ""])
def test_missing_idempotency_key(client, world, unchanged, key):
    headers = auth(make_token(sub="buyer"))
    if key is not None:
        headers["Idempotency-Key"] = key
    assert_error(post_reservation(client, world, headers=headers), 400, "missing_idempotency_key")


def test_overlong_idempotency_key(client, world, unchanged):
    assert_error(post_reservation(client, world, key="k" * 201), 400, "invalid_idempotency_key")


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_token"),
    ({"Authorization": "Bearer"}, "missing_token"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_token"),
    ({"Authorization": "Bearer " + make_token(sub="buyer", expires_in=-120)}, "token_expired"),
    ({"Authorization": "Bearer " + make_token(sub="buyer", secret="another-secret-0123456789abcdef0123456789")}, "invalid_token"),
    ({"Authorization": "Bearer not.a.jwt"}, "invalid_token"),
    ({"Authorization": "Bearer " + make_token(sub="buyer", role="admin")}, "invalid_token"),
    ({"Authorization": "Bearer " + make_token(role="anon")}, "login_required"),
    ({"Authorization": "Bearer " + make_token(sub="buyer", role="anon")}, "login_required"),
    ({"Authorization": "Bearer " + make_token(role="authenticated")}, "login_required"),
])
def test_reservations_need_a_valid_user_token(client, world, unchanged, headers, code):
    response = post_reservation(client, world, headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
    assert_error(response, 401, code)


@pytest.mark.parametrize("action", ["confirm", "cancel"])
def test_confirm_and_cancel_by_someone_else(client, world, unchanged, action):
    assert_error(act(client, world["held"]["id"], action, "intruder"), 403, "not_owner")
    assert_error(act(client, world["held"]["id"], action, token=make_token(role="anon")), 401, "login_required")
    assert_error(client.post(f"/api/reservations/{world['held']['id']}/{action}"), 401, "missing_token")


@pytest.mark.parametrize("action", ["confirm", "cancel"])
def test_unknown_reservation(client, unchanged, action):
    assert_error(act(client, RANDOM_ID, action, "owner"), 404, "reservation_not_found")
    assert_error(act(client, RANDOM_ID, action, token=service_token()), 404, "reservation_not_found")


VALID_EVENT = {"name": "Gala", "starts_at": "2030-01-01T20:00:00Z", "venue": "Hall",
               "ticket_types": [{"name": "GA", "price_cents": 1000, "capacity": 10}]}


@pytest.mark.parametrize("headers, status, code", [
    ({}, 401, "missing_token"),
    ({"Authorization": "Bearer " + make_token(sub="organiser")}, 403, "service_role_required"),
    ({"Authorization": "Bearer " + make_token(role="anon")}, 403, "service_role_required"),
    ({"Authorization": "Bearer " + make_token(sub="x", role="service_role", expires_in=-60)}, 401, "token_expired"),
])
def test_creating_events_needs_the_service_role(client, unchanged, headers, status, code):
    assert_error(client.post("/api/events", json=VALID_EVENT, headers=headers), status, code)


def with_changes(**changes):
    body = {**VALID_EVENT, "ticket_types": [dict(t) for t in VALID_EVENT["ticket_types"]]}
    for key, value in changes.items():
        if key.startswith("type_"):
            body["ticket_types"][0][key[5:]] = value
        elif value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


@pytest.mark.parametrize("body, code", [
    (with_changes(name=None), "missing_field"),
    (with_changes(starts_at=None), "missing_field"),
    (with_changes(ticket_types=None), "missing_field"),
    (with_changes(name="   "), "invalid_field"),
    (with_changes(ticket_types=[]), "invalid_field"),
    (with_changes(starts_at="next friday"), "invalid_field"),
    (with_changes(type_capacity=-1), "invalid_field"),
    (with_changes(type_price_cents=-5), "invalid_field"),
    (with_changes(type_name=""), "invalid_field"),
    (with_changes(type_capacity="many"), "invalid_field"),
    (with_changes(ticket_types=[{"name": "A", "price_cents": 1, "capacity": 1}, {"name": "A", "price_cents": 2, "capacity": 2}]),
     "invalid_field"),
    (with_changes(ticket_types=[{"name": "A", "price_cents": 1}]), "missing_field"),
])
def test_invalid_event_bodies(client, unchanged, body, code):
    assert_error(client.post("/api/events", json=body, headers=auth(service_token())), 400, code)


def test_malformed_event_json(client, unchanged):
    headers = {**auth(service_token()), "Content-Type": "application/json"}
    assert_error(client.post("/api/events", content=b'{"name": "x"', headers=headers), 400, "invalid_json")
    assert_error(client.post("/api/events", content=b"", headers=headers), 400, "invalid_json")


@pytest.mark.parametrize("method, path", [("GET", "/api/nothing-here"), ("GET", "/api/events/x/y/z"),
                                          ("POST", "/api/reservations"), ("GET", "/api")])
def test_unknown_routes_under_api_answer_json(client, unchanged, method, path):
    assert_error(client.request(method, path), 404, "not_found")
