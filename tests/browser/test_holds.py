"""Holds in the page with short holds (MARQUEE_HOLD_SECONDS): the countdown, the hold surviving a reload, expiry
releasing the seats in every page, and the browser going offline and back."""

import pytest

from conftest import start_server
from pagekit import (SERVER_ENV, browser, context, create_event, expect, expect_available, expect_indicator,  # noqa: F401
                     expect_status, history, login, open_event, reserve, reserve_in_page, row)

pytestmark = pytest.mark.timeout(120)
HOLD_SECONDS = 6


@pytest.fixture(scope="module")
def short_hold_server(database):
    srv = start_server(database.url, env={**SERVER_ENV, "MARQUEE_HOLD_SECONDS": str(HOLD_SECONDS), "MARQUEE_NODE": "holds"})
    yield srv
    srv.stop()


def test_an_expired_hold_gives_the_seats_back_to_everyone(short_hold_server, context):
    base = short_hold_server.base_url
    event = create_event(base, capacities=(2,))
    ticket = event["ticket_types"][0]
    buyer = open_event(context, base, event["id"])
    watcher = open_event(context, base, event["id"])
    login(buyer, "Hedy")
    reserve_in_page(buyer, ticket["id"], quantity=2)
    hold = buyer.locator(".hold[data-hold-status=reserved]")
    expect(hold).to_be_visible()
    seconds = int(hold.locator(".countdown").get_attribute("data-seconds-left"))
    assert 0 < seconds <= HOLD_SECONDS
    expect_indicator(watcher, ticket["id"], "sold_out")

    # the hold is still there after a reload, with its countdown
    buyer.reload()
    expect_status(buyer, "live")
    expect(buyer.locator(".hold[data-hold-status=reserved]")).to_be_visible()

    expect(buyer.locator(".hold[data-hold-status=expired]")).to_contain_text("Expired", timeout=(HOLD_SECONDS + 5) * 1000)
    expect(buyer.locator(".hold button")).to_have_count(0)
    for page in (buyer, watcher):
        expect_available(page, ticket["id"], 2)
        expect_indicator(page, ticket["id"], "few_left")
        expect(row(page, ticket["id"]).locator("button.reserve")).to_be_enabled()
    # the watcher saw it sell out and come back
    assert history(watcher)["counts"][ticket["id"]][-2:] == [0, 2]


def test_going_offline_shows_offline_and_coming_back_resyncs(short_hold_server, context):
    base = short_hold_server.base_url
    event = create_event(base, capacities=(10,))
    ticket = event["ticket_types"][0]
    page = open_event(context, base, event["id"])
    context.set_offline(True)
    expect_status(page, "offline")
    reserve(base, event["id"], ticket["id"], quantity=3)  # meanwhile, elsewhere
    context.set_offline(False)
    expect_status(page, "live", timeout=20_000)
    expect_available(page, ticket["id"], 7)
    assert "offline" in history(page)["status"]
