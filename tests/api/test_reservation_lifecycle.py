"""Confirm and cancel move the counts between reserved, sold and available, and bump `version` (issue item 3)."""

import pytest

from apihelpers import client, sql  # noqa: F401 (fixtures)
from apihelpers import act, api_type, assert_error, assert_invariants, counts, new_event, reserve, service_token

pytestmark = pytest.mark.timeout(120)


def moved(before, after):
    """The change of each count between two readings."""
    return {k: after[k] - before[k] for k in ("sold", "reserved", "available", "version")}


def test_reserve_confirm_cancel_move_counts_and_bump_version(client, sql):
    event = new_event(client, [("GA", 2500, 10)])
    ga = event["ticket_types"][0]
    assert (ga["sold"], ga["reserved"], ga["available"], ga["status"]) == (0, 0, 10, "available")
    start = counts(sql, ga["id"])
    assert start["version"] == ga["version"]

    held = reserve(client, event["id"], ga["id"], "alice", quantity=3)
    assert held.status_code == 201, held.text
    hold = held.json()
    assert hold["status"] == "reserved" and hold["quantity"] == 3
    after_hold = counts(sql, ga["id"])
    assert moved(start, after_hold) == {"sold": 0, "reserved": 3, "available": -3, "version": 1}
    shown = api_type(client, event["id"], ga["id"])
    assert (shown["sold"], shown["reserved"], shown["available"], shown["version"]) == (0, 3, 7, after_hold["version"])

    confirmed = act(client, hold["id"], "confirm", "alice")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "confirmed" and confirmed.json()["id"] == hold["id"]
    after_confirm = counts(sql, ga["id"])
    assert moved(after_hold, after_confirm) == {"sold": 3, "reserved": -3, "available": 0, "version": 1}

    second = reserve(client, event["id"], ga["id"], "bob", quantity=2)
    assert second.status_code == 201, second.text
    after_second = counts(sql, ga["id"])
    assert moved(after_confirm, after_second) == {"sold": 0, "reserved": 2, "available": -2, "version": 1}

    cancelled_hold = act(client, second.json()["id"], "cancel", "bob")
    assert cancelled_hold.status_code == 200 and cancelled_hold.json()["status"] == "cancelled"
    after_cancel_hold = counts(sql, ga["id"])
    assert moved(after_second, after_cancel_hold) == {"sold": 0, "reserved": -2, "available": 2, "version": 1}

    cancelled_sale = act(client, hold["id"], "cancel", "alice")
    assert cancelled_sale.status_code == 200 and cancelled_sale.json()["status"] == "cancelled"
    after_cancel_sale = counts(sql, ga["id"])
    assert moved(after_cancel_hold, after_cancel_sale) == {"sold": -3, "reserved": 0, "available": 3, "version": 1}
    assert (after_cancel_sale["sold"], after_cancel_sale["reserved"], after_cancel_sale["available"]) == (0, 0, 10)

    shown = api_type(client, event["id"], ga["id"])
    assert (shown["sold"], shown["reserved"], shown["available"], shown["version"]) == (0, 0, 10, start["version"] + 5)
    assert_invariants(sql)


def test_repeating_a_transition_moves_nothing_twice(client, sql):
    event = new_event(client, [("GA", 2500, 10)])
    ga = event["ticket_types"][0]
    hold = reserve(client, event["id"], ga["id"], "carol", quantity=2).json()
    assert act(client, hold["id"], "confirm", "carol").status_code == 200
    after_confirm = counts(sql, ga["id"])

    again = act(client, hold["id"], "confirm", "carol")
    assert again.status_code == 200 and again.json()["status"] == "confirmed", again.text
    assert counts(sql, ga["id"]) == after_confirm

    assert act(client, hold["id"], "cancel", "carol").status_code == 200
    after_cancel = counts(sql, ga["id"])
    assert after_cancel["sold"] == 0 and after_cancel["available"] == 10
    again = act(client, hold["id"], "cancel", "carol")
    assert again.status_code == 200 and again.json()["status"] == "cancelled", again.text
    assert counts(sql, ga["id"]) == after_cancel
    assert_invariants(sql)


def test_a_cancelled_reservation_cannot_be_confirmed(client, sql):
    event = new_event(client, [("GA", 2500, 10)])
    ga = event["ticket_types"][0]
    hold = reserve(client, event["id"], ga["id"], "dave", quantity=1).json()
    assert act(client, hold["id"], "cancel", "dave").status_code == 200
    before = counts(sql, ga["id"])
    assert_error(act(client, hold["id"], "confirm", "dave"), 409, "invalid_transition")
    assert counts(sql, ga["id"]) == before
    assert sql.execute("select status from tickets where id = %s", (hold["id"],)).fetchone()[0] == "cancelled"


def test_cancelled_seats_go_to_the_next_buyer(client, sql):
    event = new_event(client, [("Box", 9000, 2)])
    box = event["ticket_types"][0]
    first = reserve(client, event["id"], box["id"], "erin")
    second = reserve(client, event["id"], box["id"], "frank")
    assert first.status_code == 201 and second.status_code == 201
    assert act(client, second.json()["id"], "confirm", "frank").status_code == 200
    assert_error(reserve(client, event["id"], box["id"], "gina"), 409, "sold_out")
    assert api_type(client, event["id"], box["id"])["status"] == "sold_out"

    # a released hold frees its seat
    assert act(client, first.json()["id"], "cancel", "erin").status_code == 200
    assert api_type(client, event["id"], box["id"])["available"] == 1
    gina = reserve(client, event["id"], box["id"], "gina")
    assert gina.status_code == 201, gina.text
    assert_error(reserve(client, event["id"], box["id"], "hank"), 409, "sold_out")

    # so does a cancelled sale
    assert act(client, second.json()["id"], "cancel", "frank").status_code == 200
    hank = reserve(client, event["id"], box["id"], "hank")
    assert hank.status_code == 201, hank.text
    assert counts(sql, box["id"]) | {"version": 0} == {"capacity": 2, "sold": 0, "reserved": 2, "available": 0, "version": 0}
    assert_invariants(sql)


def test_insufficient_availability_reports_what_is_left(client, sql):
    event = new_event(client, [("GA", 2500, 5)])
    ga = event["ticket_types"][0]
    assert reserve(client, event["id"], ga["id"], "ivan", quantity=3).status_code == 201
    before = counts(sql, ga["id"])
    error = assert_error(reserve(client, event["id"], ga["id"], "judy", quantity=3), 409, "insufficient_availability")
    assert error["available"] == 2
    assert counts(sql, ga["id"]) == before
    assert reserve(client, event["id"], ga["id"], "judy", quantity=2).status_code == 201
    assert counts(sql, ga["id"])["available"] == 0


def test_service_role_may_confirm_and_cancel_any_reservation(client, sql):
    event = new_event(client, [("GA", 2500, 5)])
    ga = event["ticket_types"][0]
    hold = reserve(client, event["id"], ga["id"], "kate", quantity=2).json()
    confirmed = act(client, hold["id"], "confirm", token=service_token())
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed", confirmed.text
    assert counts(sql, ga["id"])["sold"] == 2
    cancelled = act(client, hold["id"], "cancel", token=service_token())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert counts(sql, ga["id"])["available"] == 5
