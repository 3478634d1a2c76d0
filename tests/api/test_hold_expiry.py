"""Holds expire after MARQUEE_HOLD_SECONDS: reads release them at once, the sweeper writes it down, the seats sell
again, and an expired hold cannot be confirmed (issue item 3)."""

import datetime

import httpx
import pytest

from conftest import start_server
from apihelpers import client, sql  # noqa: F401 (fixtures)
from apihelpers import act, api_type, assert_error, assert_invariants, counts, new_event, reserve, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def short_server(database, server):
    """A second server on the module's database whose holds last one second (`server` has migrated it already)."""
    srv = start_server(database.url, env={"MARQUEE_HOLD_SECONDS": "1"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def short_client(short_server):
    with httpx.Client(base_url=short_server.base_url, timeout=30.0) as c:
        yield c


def status_of(sql, reservation_id):
    return sql.execute("select status from tickets where id = %s", (reservation_id,)).fetchone()[0]


def test_hold_lasts_marquee_hold_seconds(client, short_client, sql):
    event = new_event(client, [("GA", 1000, 10)])
    ga = event["ticket_types"][0]
    short = reserve(short_client, event["id"], ga["id"], "short-holder").json()
    long = reserve(client, event["id"], ga["id"], "long-holder").json()
    lengths = dict(sql.execute(
        "select user_id, extract(epoch from hold_expires_at - created_at)::float from tickets where id in (%s, %s)",
        (short["id"], long["id"])).fetchall())
    assert lengths == {"short-holder": pytest.approx(1.0, abs=0.01), "long-holder": pytest.approx(600.0, abs=0.01)}
    expires = datetime.datetime.fromisoformat(short["hold_expires_at"].replace("Z", "+00:00"))
    stored = sql.execute("select hold_expires_at from tickets where id = %s", (short["id"],)).fetchone()[0]
    assert abs((expires - stored).total_seconds()) < 0.001


def test_expired_hold_is_released_then_swept_and_its_seats_sell_again(client, short_client, database, sql):
    event = new_event(client, [("Pair", 5000, 2)])
    pair = event["ticket_types"][0]
    held = reserve(short_client, event["id"], pair["id"], "slow-buyer", quantity=2)
    assert held.status_code == 201, held.text
    hold = held.json()

    # Keep the sweeper from writing the expiry down (its UPDATE waits on this row lock), to see that reads alone
    # already treat the hold as released once hold_expires_at has passed.
    with database.connect(autocommit=False) as blocker:
        blocker.execute("select 1 from tickets where id = %s for update", (hold["id"],))
        try:
            after_hold = counts(sql, pair["id"])
            assert (after_hold["reserved"], after_hold["available"]) == (2, 0)
            snapshot_during = api_type(client, event["id"], pair["id"])
            still_held = sql.execute("select now() < hold_expires_at from tickets where id = %s", (hold["id"],)).fetchone()[0]
            if still_held:  # read before the hold ran out, so it must still count
                assert (snapshot_during["reserved"], snapshot_during["available"], snapshot_during["status"]) == (2, 0, "sold_out")

            def released_in_snapshot():
                shown = api_type(client, event["id"], pair["id"])
                return shown if shown["available"] == 2 else None

            released = wait_until(released_in_snapshot, timeout=5, what="availability to release the expired hold")
            assert (released["sold"], released["reserved"], released["status"]) == (0, 0, "few_left")
            assert status_of(sql, hold["id"]) == "reserved"  # the sweeper has not run: the read did this
            assert sql.execute("select now() >= hold_expires_at from tickets where id = %s", (hold["id"],)).fetchone()[0]
            detail = client.get(f"/api/events/{event['id']}").json()
            assert [(t["reserved"], t["available"]) for t in detail["ticket_types"]] == [(0, 2)]
        finally:
            blocker.rollback()

    wait_until(lambda: status_of(sql, hold["id"]) == "expired", timeout=5, what="the sweeper to expire the hold")
    swept = counts(sql, pair["id"])
    assert (swept["sold"], swept["reserved"], swept["available"]) == (0, 0, 2)
    assert swept["version"] == after_hold["version"] + 1
    assert_invariants(sql)

    # the seats go to someone else
    next_buyer = reserve(client, event["id"], pair["id"], "quick-buyer", quantity=2)
    assert next_buyer.status_code == 201, next_buyer.text
    assert counts(sql, pair["id"])["reserved"] == 2
    assert_invariants(sql)


def test_sweeper_expires_holds_on_its_own_and_not_early(client, short_client, sql):
    event = new_event(client, [("GA", 1000, 10)])
    ga = event["ticket_types"][0]
    hold = reserve(short_client, event["id"], ga["id"], "idle-buyer", quantity=4).json()
    assert counts(sql, ga["id"])["reserved"] == 4

    wait_until(lambda: status_of(sql, hold["id"]) == "expired", timeout=5, what="the sweeper to expire the hold")
    early = sql.execute("select updated_at < hold_expires_at from tickets where id = %s", (hold["id"],)).fetchone()[0]
    assert not early, "the sweeper expired the hold before its time was up"
    assert counts(sql, ga["id"])["reserved"] == 0
    assert api_type(client, event["id"], ga["id"])["available"] == 10


def test_confirming_an_expired_hold_is_refused_with_hold_expired(client, short_client, sql):
    event = new_event(client, [("GA", 1000, 3)])
    ga = event["ticket_types"][0]
    hold = reserve(short_client, event["id"], ga["id"], "too-late", quantity=2).json()
    wait_until(lambda: status_of(sql, hold["id"]) == "expired", timeout=5, what="the sweeper to expire the hold")
    before = counts(sql, ga["id"])
    # the buyer's hold ran out; the answer must say so, whether or not the sweeper has written it down yet
    assert_error(act(client, hold["id"], "confirm", "too-late"), 409, "hold_expired")
    assert status_of(sql, hold["id"]) == "expired"
    assert counts(sql, ga["id"]) == before


def test_cancelling_an_expired_hold_is_refused_and_moves_nothing(client, short_client, sql):
    event = new_event(client, [("GA", 1000, 3)])
    ga = event["ticket_types"][0]
    hold = reserve(short_client, event["id"], ga["id"], "late-canceller", quantity=3).json()
    wait_until(lambda: status_of(sql, hold["id"]) == "expired", timeout=5, what="the sweeper to expire the hold")
    before = counts(sql, ga["id"])
    assert_error(act(client, hold["id"], "cancel", "late-canceller"), 409, "invalid_transition")
    assert counts(sql, ga["id"]) == before
    assert before["available"] == 3
