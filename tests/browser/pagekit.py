"""Fixtures and helpers for the browser tests: Debian's Chromium driven by Playwright against a real `marquee serve`.

Test modules import the fixtures they use from here (a module name of its own, so it never shadows the shared
conftest.py). Every wait is a wait-for-condition with a deadline; nothing sleeps."""

import os
import shutil
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from conftest import create_event as shared_create_event, make_token, start_server

CHROMIUM = os.environ.get("MARQUEE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DEADLINE_MS = 10_000
SERVER_ENV = {"MARQUEE_DEV_LOGIN": "1"}
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# Records every value the page shows for the connection status and the counts, so a test can assert on a
# sequence (e.g. live → reconnecting → live) however briefly a state lasted.
HISTORY_SCRIPT = """
window.__history = {status: [], counts: {}, mutations: {}};
new MutationObserver((records) => {
  for (const r of records) {
    const el = r.target;
    if (r.type !== 'attributes') continue;
    if (r.attributeName === 'data-connection-status') window.__history.status.push(el.dataset.connectionStatus);
    if (r.attributeName === 'data-available') {
      const row = el.closest('[data-ticket-type-id]');
      if (!row) continue;
      (window.__history.counts[row.dataset.ticketTypeId] ??= []).push(Number(el.dataset.available));
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-connection-status', 'data-available']});
new MutationObserver((records) => {
  for (const r of records) {
    const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
    const row = node && node.closest && node.closest('[data-ticket-type-id]');
    if (row) window.__history.mutations[row.dataset.ticketTypeId] = (window.__history.mutations[row.dataset.ticketTypeId] || 0) + 1;
  }
}).observe(document, {subtree: true, attributes: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def web_server(database):
    """`marquee serve` on the module's database, with the demo login enabled."""
    srv = start_server(database.url, env=SERVER_ENV)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport=DESKTOP)
    ctx.add_init_script(HISTORY_SCRIPT)
    yield ctx
    ctx.close()


def create_event(base_url, capacities=(20,), name=None):
    return shared_create_event(base_url, capacities, name, label="Browser test", starts_at="2030-06-01T19:30:00Z",
                               price=lambda i, n: 1500 * (n - i))


def reserve(base_url, event_id, ticket_type_id, quantity=1, user="bob", expect_status=201):
    r = httpx.post(
        f"{base_url}/api/events/{event_id}/reservations",
        json={"ticket_type_id": ticket_type_id, "quantity": quantity},
        headers={"Authorization": "Bearer " + make_token(sub=user), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert r.status_code == expect_status, r.text
    return r.json()


def act(base_url, reservation_id, action, user="bob"):
    r = httpx.post(f"{base_url}/api/reservations/{reservation_id}/{action}", headers={"Authorization": "Bearer " + make_token(sub=user)})
    assert r.status_code == 200, r.text
    return r.json()


def db_available(database, ticket_type_id):
    with database.connect() as conn:
        return conn.execute("select available from event_tickets where id = %s", (ticket_type_id,)).fetchone()[0]


def open_event(context, base_url, event_id, status="live") -> Page:
    page = context.new_page()
    page.goto(f"{base_url}/events/{event_id}")
    expect_status(page, status)
    return page


def expect_status(page, status, timeout=DEADLINE_MS):
    expect(page.locator("[data-connection-status]")).to_have_attribute("data-connection-status", status, timeout=timeout)


def row(page, ticket_type_id):
    return page.locator(f'[data-ticket-type-id="{ticket_type_id}"]')


def expect_available(page, ticket_type_id, count, timeout=DEADLINE_MS):
    expect(row(page, ticket_type_id).locator("[data-available]")).to_have_attribute("data-available", str(count), timeout=timeout)


def expect_indicator(page, ticket_type_id, status, timeout=DEADLINE_MS):
    expect(row(page, ticket_type_id).locator(".badge[data-status]")).to_have_attribute("data-status", status, timeout=timeout)


def login(page, name="Ada"):
    page.fill("#login-name", name)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#signed-in")).to_be_visible(timeout=DEADLINE_MS)


def reserve_in_page(page, ticket_type_id, quantity=1):
    r = row(page, ticket_type_id)
    r.locator("select").select_option(str(quantity))
    r.locator("button.reserve").click()


def history(page):
    return page.evaluate("window.__history")


__all__ = ["browser", "context", "web_server", "expect", "DEADLINE_MS", "PHONE", "DESKTOP"]
