"""The ticket selection page in a real headless Chromium against a real server: live counts across pages,
sold out and back, the optimistic reserve flow with its rollback, holds, and the phone layout."""

import re

import pytest

from pagekit import (PHONE, HISTORY_SCRIPT, act, browser, context, create_event, db_available, expect, expect_available,  # noqa: F401
                     expect_indicator, history, login, open_event, reserve, reserve_in_page, row, web_server)

pytestmark = pytest.mark.timeout(120)


def test_a_reservation_in_one_page_updates_the_other_without_reload(web_server, context):
    event = create_event(web_server.base_url, capacities=(40, 30))
    first, second = event["ticket_types"]
    buyer = open_event(context, web_server.base_url, event["id"])
    watcher = open_event(context, web_server.base_url, event["id"])
    expect_available(watcher, first["id"], 40)
    expect_indicator(watcher, first["id"], "available")
    watcher.evaluate("window.__history.mutations = {}")  # count from here: the first render built every row

    login(buyer, "Ada")
    reserve_in_page(buyer, first["id"], quantity=3)
    expect(buyer.locator(".hold[data-hold-status=reserved]")).to_be_visible()
    expect_available(buyer, first["id"], 37)
    expect_available(watcher, first["id"], 37)  # live, no reload

    # only the type that changed was re-rendered in the watching page
    mutations = history(watcher)["mutations"]
    assert mutations.get(first["id"], 0) > 0
    assert mutations.get(second["id"], 0) == 0, f"the unchanged ticket type was re-rendered: {mutations}"
    expect(row(watcher, first["id"]).locator(".count")).to_have_class("count flash-down")
    # one navigation, no reloads
    assert watcher.evaluate("performance.getEntriesByType('navigation').length") == 1


def test_buying_the_last_tickets_sells_out_the_type_and_cancelling_brings_it_back(web_server, context):
    event = create_event(web_server.base_url, capacities=(4,))
    ticket = event["ticket_types"][0]
    buyer = open_event(context, web_server.base_url, event["id"])
    watcher = open_event(context, web_server.base_url, event["id"])
    expect_indicator(watcher, ticket["id"], "few_left")

    login(buyer, "Grace")
    reserve_in_page(buyer, ticket["id"], quantity=4)
    for page in (buyer, watcher):
        expect_available(page, ticket["id"], 0)
        expect_indicator(page, ticket["id"], "sold_out")
        expect(row(page, ticket["id"]).locator("button.reserve")).to_be_disabled()
        expect(row(page, ticket["id"]).locator("select")).to_be_disabled()
        expect(row(page, ticket["id"]).locator("button.reserve")).to_have_text("Sold out")

    hold = buyer.locator(".hold[data-hold-status=reserved]")
    expect(hold.locator(".countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))
    hold.get_by_role("button", name="Cancel").click()
    expect(buyer.locator(".hold[data-hold-status=cancelled]")).to_be_visible()
    for page in (buyer, watcher):
        expect_available(page, ticket["id"], 4)
        expect_indicator(page, ticket["id"], "few_left")
        expect(row(page, ticket["id"]).locator("button.reserve")).to_be_enabled()
    assert db_available_via_api(web_server, event["id"], ticket["id"]) == 4


def db_available_via_api(server, event_id, ticket_type_id):
    import httpx

    snapshot = httpx.get(f"{server.base_url}/api/events/{event_id}/availability").json()
    return next(t["available"] for t in snapshot["ticket_types"] if t["id"] == ticket_type_id)


def test_a_409_rolls_back_the_optimistic_count_and_says_why(web_server, context, database):
    event = create_event(web_server.base_url, capacities=(5,))
    ticket = event["ticket_types"][0]
    page = open_event(context, web_server.base_url, event["id"])
    login(page, "Linus")
    expect_available(page, ticket["id"], 5)

    # While the page's request is in flight, someone else takes 4 of the 5 seats; the page asked for 2.
    def sell_out_first(route):
        expect_available(page, ticket["id"], 3)  # the optimistic count shows while the request is held here
        reserve(web_server.base_url, event["id"], ticket["id"], quantity=4, user="rival")
        route.continue_()

    page.route("**/api/events/*/reservations", sell_out_first)
    reserve_in_page(page, ticket["id"], quantity=2)
    message = row(page, ticket["id"]).locator(".ticket-message")
    expect(message).to_be_visible()
    expect(message).to_contain_text("nothing was reserved")
    expect(message).to_contain_text("Only 1")
    expect_available(page, ticket["id"], 1)
    expect_indicator(page, ticket["id"], "few_left")
    seen = history(page)["counts"][ticket["id"]]
    assert 3 in seen, f"the optimistic decrement (5 → 3) was never shown: {seen}"
    assert seen[-1] == 1 == db_available(database, ticket["id"])
    expect(page.locator(".hold")).to_have_count(0)
    # the picker offers only what is left
    assert row(page, ticket["id"]).locator("select option").count() == 1


def test_confirm_keeps_the_seats_sold(web_server, context, database):
    event = create_event(web_server.base_url, capacities=(30,))
    ticket = event["ticket_types"][0]
    page = open_event(context, web_server.base_url, event["id"])
    login(page, "Katherine")
    reserve_in_page(page, ticket["id"], quantity=2)
    hold = page.locator(".hold[data-hold-status=reserved]")
    expect(hold).to_be_visible()
    hold.get_by_role("button", name="Confirm").click()
    expect(page.locator(".hold[data-hold-status=confirmed]")).to_contain_text("Confirmed")
    expect_available(page, ticket["id"], 28)
    with database.connect() as conn:
        sold = conn.execute("select sold from event_tickets where id = %s", (ticket["id"],)).fetchone()[0]
    assert sold == 2


def test_phone_viewport_reserve_flow_by_keyboard_and_touch(web_server, browser):
    event = create_event(web_server.base_url, capacities=(12,))
    ticket = event["ticket_types"][0]
    ctx = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        ctx.add_init_script(HISTORY_SCRIPT)
        page = open_event(ctx, web_server.base_url, event["id"])
        # nothing overflows sideways on a phone
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # sign in with the keyboard only
        page.locator("#login-name").focus()
        page.keyboard.type("Margaret")
        page.keyboard.press("Enter")
        expect(page.locator("#signed-in")).to_be_visible()
        r = row(page, ticket["id"])
        r.locator("select").select_option("2")
        r.locator("button.reserve").tap()
        hold = page.locator(".hold[data-hold-status=reserved]")
        expect(hold).to_be_visible()
        expect(hold).to_contain_text("2 × Type 0")
        expect_available(page, ticket["id"], 10)
        box = hold.get_by_role("button", name="Confirm").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] and box["height"] >= 36
        # focus moved to the new hold's Confirm button; Enter confirms
        expect(hold.get_by_role("button", name="Confirm")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator(".hold[data-hold-status=confirmed]")).to_be_visible()
        expect(page.locator("#announcer")).to_contain_text("Confirmed")
    finally:
        ctx.close()


def test_a_burst_of_changes_is_rendered_once_per_frame_and_older_versions_are_ignored(web_server, context):
    event = create_event(web_server.base_url, capacities=(500, 50))
    busy, quiet = event["ticket_types"]
    page = open_event(context, web_server.base_url, event["id"])
    result = page.evaluate("""async ([id]) => {
        const {store, list, batcher} = window.marquee;
        const row = store.row(id);
        const before = {renders: list.renders, flushes: batcher.flushes};
        // 100 changes inside one task: a burst as the socket delivers it
        for (let i = 1; i <= 100; i++) store.apply({...row, version: row.version + i, available: row.available - i});
        store.apply({...row, version: row.version + 50, available: 1});  // older than what the page has: ignored
        await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
        return {renders: list.renders - before.renders, flushes: batcher.flushes - before.flushes,
                shown: document.querySelector(`[data-ticket-type-id="${id}"] [data-available]`).dataset.available};
    }""", [busy["id"]])
    assert result == {"renders": 1, "flushes": 1, "shown": "400"}
    expect_available(page, quiet["id"], 50)
