"""The events API: create, list, read, the availability snapshot, and the display status rule (issue item 6)."""

import datetime

import pytest

from apihelpers import client, sql  # noqa: F401 (fixtures)
from apihelpers import api_type, auth, counts, new_event, reserve, service_token

pytestmark = pytest.mark.timeout(120)

TYPE_KEYS = {"id", "name", "price_cents", "capacity", "sold", "reserved", "available", "status", "version"}


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def sell(sql, event_id, type_id, quantity, user="box-office"):
    """Sells seats by hand, through the same triggers as any sale."""
    if quantity:
        sql.execute("insert into tickets (event_id, event_ticket_id, user_id, quantity, status) values (%s, %s, %s, %s, 'confirmed')",
                    (event_id, type_id, user, quantity))


def test_create_event_returns_it_as_get_does(client, sql):
    body = {"name": "Summer Opera", "starts_at": "2031-07-14T18:30:00Z", "venue": "Open-Air Stage",
            "ticket_types": [{"name": "Stalls", "price_cents": 8900, "capacity": 300},
                             {"name": "Gallery", "price_cents": 2900, "capacity": 120},
                             {"name": "Box", "price_cents": 25000, "capacity": 4}]}
    response = client.post("/api/events", json=body, headers=auth(service_token()))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    created = response.json()
    assert {"id", "name", "starts_at", "venue", "ticket_types"} <= set(created)
    assert created["name"] == "Summer Opera" and created["venue"] == "Open-Air Stage"
    assert parse_time(created["starts_at"]) == parse_time("2031-07-14T18:30:00Z")
    assert response.headers.get("location") == f"/api/events/{created['id']}"
    types = {t["name"]: t for t in created["ticket_types"]}
    assert set(types) == {"Stalls", "Gallery", "Box"}
    for t in created["ticket_types"]:
        assert set(t) == TYPE_KEYS, t
        assert (t["sold"], t["reserved"], t["available"]) == (0, 0, t["capacity"])
        assert t["status"] == ("few_left" if t["name"] == "Box" else "available")
        assert isinstance(t["version"], int) and t["version"] >= 1
    assert (types["Stalls"]["price_cents"], types["Stalls"]["capacity"]) == (8900, 300)
    stored = sql.execute("select name, venue, starts_at from events where id = %s", (created["id"],)).fetchone()
    assert stored[:2] == ("Summer Opera", "Open-Air Stage")
    assert stored[2] == parse_time("2031-07-14T18:30:00Z")
    assert sql.execute("select count(*) from event_tickets where event_id = %s", (created["id"],)).fetchone()[0] == 3

    fetched = client.get(f"/api/events/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created

    listed = client.get("/api/events")
    assert listed.status_code == 200
    matches = [e for e in listed.json()["events"] if e["id"] == created["id"]]
    assert matches == [created]


def test_venue_is_optional(client):
    body = {"name": "Pop-up", "starts_at": "2031-01-01T00:00:00Z", "ticket_types": [{"name": "GA", "price_cents": 0, "capacity": 5}]}
    response = client.post("/api/events", json=body, headers=auth(service_token()))
    assert response.status_code == 201, response.text
    assert response.json()["venue"] == ""
    assert response.json()["ticket_types"][0]["price_cents"] == 0


def test_events_are_listed_by_start_time(client):
    late = new_event(client, [("GA", 100, 1)], name="Late show", starts_at="2040-01-02T22:00:00Z")
    early = new_event(client, [("GA", 100, 1)], name="Early show", starts_at="2040-01-02T08:00:00Z")
    ids = [e["id"] for e in client.get("/api/events").json()["events"]]
    assert ids.index(early["id"]) < ids.index(late["id"])


def test_availability_snapshot_shape_and_version(client, sql):
    event = new_event(client, [("Standing", 3000, 40), ("Seated", 6000, 10)])
    seated = next(t for t in event["ticket_types"] if t["name"] == "Seated")
    standing = next(t for t in event["ticket_types"] if t["name"] == "Standing")
    response = client.get(f"/api/events/{event['id']}/availability")
    assert response.status_code == 200
    assert response.headers.get("cache-control") == "no-store"
    snap = response.json()
    assert set(snap) == {"event_id", "version", "ticket_types"}
    assert snap["event_id"] == event["id"]
    assert [t["name"] for t in snap["ticket_types"]] == ["Seated", "Standing"]  # dearest first
    for t in snap["ticket_types"]:
        assert set(t) == TYPE_KEYS
    assert snap["version"] == max(t["version"] for t in snap["ticket_types"])

    assert reserve(client, event["id"], seated["id"], "snapshot-user", quantity=2).status_code == 201
    after = client.get(f"/api/events/{event['id']}/availability").json()
    assert after["version"] > snap["version"]
    assert after["version"] == max(t["version"] for t in after["ticket_types"]) == counts(sql, seated["id"])["version"]
    now_seated = api_type(client, event["id"], seated["id"])
    assert (now_seated["reserved"], now_seated["available"]) == (2, 8)
    assert api_type(client, event["id"], standing["id"]) == next(t for t in snap["ticket_types"] if t["id"] == standing["id"])


def test_event_with_no_seats_left_anywhere(client, sql):
    event = new_event(client, [("Zero", 100, 0), ("One", 100, 1)])
    one = next(t for t in event["ticket_types"] if t["name"] == "One")
    sell(sql, event["id"], one["id"], 1)
    statuses = {t["name"]: t["status"] for t in client.get(f"/api/events/{event['id']}/availability").json()["ticket_types"]}
    assert statuses == {"Zero": "sold_out", "One": "sold_out"}


@pytest.mark.parametrize("capacity, available, expected", [
    (100, 100, "available"), (100, 11, "available"), (100, 10, "few_left"), (100, 1, "few_left"), (100, 0, "sold_out"),
    (20, 6, "available"), (20, 5, "few_left"), (20, 0, "sold_out"),
    (1000, 101, "available"), (1000, 100, "few_left"),
    (105, 11, "available"), (105, 10, "few_left"),  # 10% of 105 is 10.5: 10 is at most that, 11 is not
    (55, 6, "available"), (55, 5, "few_left"),
    (3, 3, "few_left"), (5, 5, "few_left"), (6, 6, "available"), (0, 0, "sold_out"),
])
def test_status_rule(client, sql, capacity, available, expected):
    event = new_event(client, [("T", 1000, capacity)])
    t = event["ticket_types"][0]
    sell(sql, event["id"], t["id"], capacity - available)
    shown = api_type(client, event["id"], t["id"])
    assert (shown["capacity"], shown["available"], shown["status"]) == (capacity, available, expected)
    detail = client.get(f"/api/events/{event['id']}").json()["ticket_types"][0]
    assert (detail["available"], detail["status"]) == (available, expected)


def test_holds_count_against_the_status_too(client, sql):
    event = new_event(client, [("T", 1000, 20)])
    t = event["ticket_types"][0]
    sell(sql, event["id"], t["id"], 10)
    assert api_type(client, event["id"], t["id"])["status"] == "available"
    assert reserve(client, event["id"], t["id"], "holder", quantity=5).status_code == 201
    shown = api_type(client, event["id"], t["id"])
    assert (shown["sold"], shown["reserved"], shown["available"], shown["status"]) == (10, 5, 5, "few_left")
