"""The live dashboard at /admin: refused without a service token, then shows sockets, channels per event and
rates, updating by itself."""

import asyncio
import json
import threading

import websockets
from playwright.sync_api import expect

from conftest import make_token
from pagekit import DEADLINE_MS, browser, context, create_event, web_server  # noqa: F401


def test_dashboard_shows_live_numbers_for_a_service_token(web_server, context):
    event = create_event(web_server.base_url, capacities=(10,), name="Dashboard Gala")
    page = context.new_page()
    page.goto(f"{web_server.base_url}/admin")
    page.fill("#admin-token", make_token(sub="not-an-admin"))
    page.click("#admin-login button")
    expect(page.locator("#admin-error")).to_contain_text("service_role", timeout=DEADLINE_MS)

    joined = threading.Event()
    release = threading.Event()

    def hold_a_socket():
        async def run():
            url = f"{web_server.ws_url}/realtime/v1/websocket?apikey={make_token(role='anon')}&vsn=1.0.0"
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"topic": f"realtime:event-{event['id']}-tickets", "event": "phx_join", "ref": "1",
                                          "join_ref": "1", "payload": {"config": {"postgres_changes": [
                                              {"event": "UPDATE", "schema": "public", "table": "event_tickets",
                                               "filter": f"event_id=eq.{event['id']}"}]}}}))
                while json.loads(await asyncio.wait_for(ws.recv(), 5))["event"] != "system":
                    pass
                joined.set()
                while not release.is_set():
                    await asyncio.sleep(0.05)  # keeping the socket open until the test is done
        asyncio.run(run())

    holder = threading.Thread(target=hold_a_socket, daemon=True)
    holder.start()
    try:
        assert joined.wait(10)
        page.fill("#admin-token", make_token(role="service_role"))
        page.click("#admin-login button")
        expect(page.locator("#admin-status")).to_have_attribute("data-connection-status", "live", timeout=DEADLINE_MS)
        expect(page.locator("#admin-events")).to_contain_text("Dashboard Gala", timeout=DEADLINE_MS)
        row = page.locator("#admin-events tr", has_text="Dashboard Gala")
        expect(row.locator("td").nth(1)).to_have_text("1")
        expect(page.locator('[data-stat="connections"]')).not_to_have_text("–")
        # rates appear once two samples were taken
        expect(page.locator('[data-stat="deliveries_per_s"]')).not_to_have_text("–", timeout=DEADLINE_MS)
        expect(page.locator('[data-stat="feed"]')).to_contain_text("reading")
    finally:
        release.set()
        holder.join(10)
