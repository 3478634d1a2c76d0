"""Faults, for real: WebSockets blocked (the page polls), the server restarted under the page (reconnect, resync
to the database's counts), a script error and unreadable realtime frames (a notice; the page keeps working)."""

import json
import re

import httpx
import pytest

from conftest import start_server
from pagekit import (SERVER_ENV, browser, context, create_event, db_available, expect, expect_available,  # noqa: F401
                     expect_status, history, open_event, reserve, web_server)

pytestmark = pytest.mark.timeout(150)


@pytest.mark.parametrize("how", ["socket refused", "no WebSocket in the browser"])
def test_without_websockets_the_page_polls_and_stays_correct(web_server, context, how):
    event = create_event(web_server.base_url, capacities=(25,))
    ticket = event["ticket_types"][0]
    attempts = []
    if how == "socket refused":
        def refuse(ws):
            attempts.append(ws.url)
            ws.close(code=1011, reason="blocked by the test")
        context.route_web_socket(re.compile(r".*/realtime/.*"), refuse)
    else:
        context.add_init_script("delete window.WebSocket;")
    page = open_event(context, web_server.base_url, event["id"], status="polling")
    assert "live" not in history(page)["status"]
    if how == "socket refused":
        assert attempts and "vsn=1.0.0" in attempts[0] and "apikey=" in attempts[0]

    reserve(web_server.base_url, event["id"], ticket["id"], quantity=5)
    expect_available(page, ticket["id"], 20)
    # and the buyer can still reserve
    page.fill("#login-name", "Polly")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#signed-in")).to_be_visible()
    page.locator(f'[data-ticket-type-id="{ticket["id"]}"] button.reserve').click()
    expect(page.locator(".hold[data-hold-status=reserved]")).to_be_visible()
    expect_available(page, ticket["id"], 19)
    expect_status(page, "polling")


def test_a_restarted_server_shows_reconnecting_then_live_and_the_page_converges(database, context):
    env = {**SERVER_ENV, "MARQUEE_NODE": "restart"}
    server = start_server(database.url, env=env)
    try:
        event = create_event(server.base_url, capacities=(50, 8))
        big, small = event["ticket_types"]
        page = open_event(context, server.base_url, event["id"])
        port = server.port
        server.stop()
        expect_status(page, "reconnecting")
        # while the server is away, the database changes behind its back
        with database.connect() as conn:
            for ticket, quantity in ((big, 7), (small, 8)):
                conn.execute(
                    "insert into tickets (event_id, event_ticket_id, user_id, quantity, status, hold_expires_at, idempotency_key)"
                    " values (%s, %s, 'offline-buyer', %s, 'reserved', now() + interval '10 minutes', gen_random_uuid()::text)",
                    (event["id"], ticket["id"], quantity))
        server = start_server(database.url, env=env, args=["--port", str(port)])
        expect_status(page, "live", timeout=30_000)
        expect_available(page, big["id"], db_available(database, big["id"]))
        expect_available(page, small["id"], 0)
        assert db_available(database, big["id"]) == 43
        statuses = history(page)["status"]
        assert "reconnecting" in statuses and statuses[-1] == "live", statuses
        assert statuses.index("reconnecting") < len(statuses) - 1
        # and it is live again: a new change arrives
        reserve(server.base_url, event["id"], big["id"], quantity=3)
        expect_available(page, big["id"], 40)
        assert page.locator('[data-ticket-type-id="%s"] .badge' % small["id"]).get_attribute("data-status") == "sold_out"
    finally:
        server.stop()


def test_a_script_error_or_an_unreadable_message_shows_a_notice_and_the_page_keeps_updating(web_server, context):
    event = create_event(web_server.base_url, capacities=(30,))
    ticket = event["ticket_types"][0]
    sockets = []

    def proxy(ws):
        ws.connect_to_server()  # pass everything through; the test may add frames of its own
        sockets.append(ws)

    context.route_web_socket(re.compile(r".*/realtime/.*"), proxy)
    page = open_event(context, web_server.base_url, event["id"])
    notice = page.locator("#error-notice")
    expect(notice).to_be_hidden()

    page.evaluate("setTimeout(() => { throw new Error('boom from the browser test eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln') })")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("keeps working")
    line = web_server.wait_for_output(r"(?=.*client error reported)(?=.*boom from the browser test)")
    assert "warning" in line and "kind=script" in line
    assert "eyJhbGci" not in line, "a token-like string reached the log"

    # the socket delivers frames the page cannot use
    topic = f"realtime:event-{event['id']}-tickets"
    sockets[-1].send("this is not JSON")
    sockets[-1].send(json.dumps({"topic": topic, "event": "postgres_changes", "ref": None,
                                 "payload": {"ids": [1], "data": {"type": "UPDATE", "record": {"id": ticket["id"], "available": "lots"}}}}))
    sockets[-1].send(json.dumps({"topic": topic, "event": "postgres_changes", "ref": None, "payload": {"ids": [1]}}))
    web_server.wait_for_output(r"(?=.*client error reported)(?=.*kind=message)(?=.*unreadable realtime frame)")
    web_server.wait_for_output(r"(?=.*client error reported)(?=.*kind=message)(?=.*is not a number)")
    web_server.wait_for_output(r"(?=.*client error reported)(?=.*kind=message)(?=.*postgres_changes without a record)")

    reserve(web_server.base_url, event["id"], ticket["id"], quantity=4)
    expect_available(page, ticket["id"], 26)
    expect_status(page, "live")
    # the page is still usable: the notice can be dismissed, the controls work
    notice.get_by_role("button", name="Dismiss this notice").click()
    expect(notice).to_be_hidden()


def test_client_errors_are_counted_in_the_metrics(web_server):
    before = _client_error_count(web_server)
    r = httpx.post(f"{web_server.base_url}/api/client-errors", json={"kind": "render", "message": "counted", "page": "/events/x"})
    assert r.status_code == 204
    assert _client_error_count(web_server) == before + 1


def _client_error_count(server):
    text = httpx.get(f"{server.base_url}/metrics").text
    found = re.findall(r'^marquee_client_errors_total\{kind="(\w+)"\} (\d+)$', text, re.M)
    assert found, ("/metrics has no marquee_client_errors_total: the /metrics route needs "
                   "`text += dependencies.webMetrics.prometheusText()`")
    return sum(int(n) for _, n in found)
