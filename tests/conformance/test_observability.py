"""Product analytics per event (GET /api/events/{id}/stats, service role), the counters in /metrics, and JSON
connection logs without sensitive values."""

import asyncio
import json
import re
import uuid

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from conftest import make_token, start_server
from helpers import act, create_event, reserve

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def json_server(database):
    srv = start_server(database.url, env={"MARQUEE_LOG_FORMAT": "json"})
    yield srv
    srv.stop()


def metric(server, name, labels=""):
    text = httpx.get(server.base_url + "/metrics").text
    match = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(labels)), text, re.M)
    return float(match.group(1)) if match else None


def test_event_stats_count_views_subscriptions_attempts_and_holds(json_server):
    server = json_server
    event = create_event(server.base_url, capacities=(2,))
    event_id, type_id = event["id"], event["ticket_types"][0]["id"]
    assert httpx.get(f"{server.base_url}/api/events/{event_id}/stats").status_code == 401
    assert httpx.get(f"{server.base_url}/api/events/{event_id}/stats",
                     headers={"Authorization": "Bearer " + make_token(sub="someone")}).status_code == 403

    assert httpx.get(f"{server.base_url}/events/{event_id}").status_code == 200

    async def watch():
        url = f"{server.ws_url}/realtime/v1/websocket?apikey={make_token(role='anon')}&vsn=1.0.0"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"topic": f"realtime:event-{event_id}-tickets", "event": "phx_join", "ref": "1", "join_ref": "1",
                                      "payload": {"config": {"postgres_changes": [{"event": "UPDATE", "schema": "public",
                                                                                   "table": "event_tickets", "filter": f"event_id=eq.{event_id}"}]}}}))
            while json.loads(await asyncio.wait_for(ws.recv(), 5))["event"] != "system":
                pass

    asyncio.run(watch())
    held = reserve(server.base_url, event_id, type_id, user="sam", quantity=2, email="sam@example.com")
    refused = httpx.post(f"{server.base_url}/api/events/{event_id}/reservations", json={"ticket_type_id": type_id, "quantity": 1},
                         headers={"Authorization": "Bearer " + make_token(sub="tom"), "Idempotency-Key": str(uuid.uuid4())})
    assert refused.status_code == 409
    act(server.base_url, held["id"], "confirm", user="sam")
    assert httpx.get(f"{server.base_url}/events/{event_id}").status_code == 200  # now sold out

    stats = httpx.get(f"{server.base_url}/api/events/{event_id}/stats",
                      headers={"Authorization": "Bearer " + make_token(role="service_role")}).json()
    assert stats["event_id"] == event_id
    assert stats["page_views"] == 2 and stats["sold_out_impressions"] == 1
    assert stats["subscriptions"] == 1
    assert stats["reserve_attempts"]["created"] == 1 and stats["reserve_attempts"]["sold_out"] == 1
    assert stats["reservations"]["confirmed"] == 1 and stats["tickets"]["confirmed"] == 2
    assert stats["confirmed_share_of_finished_holds"] == 1.0
    assert metric(server, "marquee_reservations_total", '{outcome="sold_out"}') >= 1
    assert metric(server, "marquee_event_page_views_total") >= 2


def test_json_logs_carry_connections_and_never_secrets(json_server):
    server = json_server
    token = make_token(sub="lara")

    async def connect_and_leave():
        url = f"{server.ws_url}/realtime/v1/websocket?apikey={token}&vsn=1.0.0"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"topic": "realtime:logs", "event": "phx_join", "ref": "1", "join_ref": "1", "payload": {"config": {}}}))
            await asyncio.wait_for(ws.recv(), 5)

    asyncio.run(connect_and_leave())
    line = server.wait_for_output(r'"message":"realtime disconnected"', timeout=10)
    record = json.loads(line)
    assert record["level"] == "info" and "duration" in record and "connection" in record
    assert float(record["duration"]) >= 0 and record["reason"] == "client closed"
    joined = json.loads(server.wait_for_output(r'"message":"realtime joined".*"topic":"realtime:logs"', timeout=10))
    assert joined["topic"] == "realtime:logs"
    logged = "".join(server.output)
    assert token not in logged and "sam@example.com" not in logged
    for text in server.output:
        if text.startswith("{"):
            json.loads(text)  # every structured line is one JSON object


def test_http_requests_are_counted_by_route_template_and_status(json_server):
    server = json_server
    missing = "00000000-0000-0000-0000-000000000000"
    assert httpx.get(f"{server.base_url}/api/events/{missing}").status_code == 404
    assert httpx.get(f"{server.base_url}/api/events").status_code == 200
    text = httpx.get(server.base_url + "/metrics").text
    assert re.search(r'marquee_http_requests_total\{method="GET",route="/api/events/\{id\}",status="404"\} [1-9]', text), text[-2000:]
    assert re.search(r'marquee_http_requests_total\{method="GET",route="/api/events",status="200"\} [1-9]', text)
    assert missing not in text  # routes are templates, never raw paths
    assert "marquee_database_up 1" in text


def test_errors_fanout_and_bytes_are_in_the_metrics(json_server):
    server = json_server
    event = create_event(server.base_url, capacities=(5,))

    async def scenario():
        url = f"{server.ws_url}/realtime/v1/websocket?apikey={make_token(role='anon')}&vsn=1.0.0"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"topic": "nope", "event": "phx_join", "ref": "1", "payload": {}}))
            await asyncio.wait_for(ws.recv(), 5)
            await ws.send(json.dumps({"topic": f"realtime:fan-{event['id']}", "event": "phx_join", "ref": "2", "join_ref": "2",
                                      "payload": {"config": {"postgres_changes": [{"event": "UPDATE", "schema": "public",
                                                                                   "table": "event_tickets", "filter": f"event_id=eq.{event['id']}"}]}}}))
            while json.loads(await asyncio.wait_for(ws.recv(), 5))["event"] != "system":
                pass
            reserve(server.base_url, event["id"], event["ticket_types"][0]["id"], user="fan")
            while json.loads(await asyncio.wait_for(ws.recv(), 5))["event"] != "postgres_changes":
                pass

    asyncio.run(scenario())
    text = httpx.get(server.base_url + "/metrics").text
    assert re.search(r'marquee_errors_total\{reason="unmatched topic"\} [1-9]', text)
    assert re.search(r"^marquee_realtime_bytes_out_total [1-9]", text, re.M)
    assert re.search(r'^marquee_fanout_sockets_bucket\{le="1.0"\} [1-9]', text, re.M)
    assert re.search(r"^marquee_change_feed_wal_behind_bytes \d+", text, re.M)


def families(server):
    response = httpx.get(server.base_url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def sample(found, family, suffix="", **labels):
    for s in found[family].samples:
        if s.name == family + suffix and s.labels == labels:
            return s.value
    return 0.0


def test_metrics_parse_as_prometheus_text_and_move_with_a_watcher(json_server):
    """Parsed with prometheus_client's own parser: the families have their types, and a watcher's connect, join,
    change and leave move the numbers by exactly what happened."""
    server = json_server
    event = create_event(server.base_url, capacities=(9,))
    event_id = event["id"]
    before = families(server)
    types = {name: family.type for name, family in before.items()}
    assert types["marquee_realtime_connections"] == "gauge"
    assert types["marquee_realtime_deliveries"] == "counter"  # the parser names counters without _total
    assert types["marquee_commit_to_send_seconds"] == "histogram"
    assert types["marquee_fanout_sockets"] == "histogram"
    assert types["marquee_http_request_seconds"] == "histogram"
    assert types["marquee_reservations"] == "counter"
    assert {s.labels["outcome"] for s in before["marquee_reservations"].samples} >= {
        "created", "sold_out", "confirmed", "cancelled", "expired"}
    assert {s.labels["limit"] for s in before["marquee_limit_hits"].samples} >= {"ClientJoinRateLimitReached", "FrameTooLarge"}
    table = {"table": "public.event_tickets"}

    async def scenario():
        url = f"{server.ws_url}/realtime/v1/websocket?apikey={make_token(role='anon')}&vsn=1.0.0"
        async with websockets.connect(url) as ws:
            topic = f"realtime:event-{event_id}-tickets"
            await ws.send(json.dumps({"topic": topic, "event": "phx_join", "ref": "1", "join_ref": "1",
                                      "payload": {"config": {"postgres_changes": [{"event": "UPDATE", "schema": "public",
                                                                                   "table": "event_tickets", "filter": f"event_id=eq.{event_id}"}]}}}))
            while json.loads(await asyncio.wait_for(ws.recv(), 5))["event"] != "system":
                pass
            joined = families(server)
            reserve(server.base_url, event_id, event["ticket_types"][0]["id"], user="watcher")
            while json.loads(frame := await asyncio.wait_for(ws.recv(), 5))["event"] != "postgres_changes":
                pass
            # the writer writes in order: the heartbeat's reply comes after the change's write was observed
            await ws.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "hb"}))
            while json.loads(await asyncio.wait_for(ws.recv(), 5)).get("ref") != "hb":
                pass
            changed = families(server)
            await ws.send(json.dumps({"topic": topic, "event": "phx_leave", "ref": "2", "join_ref": "1", "payload": {}}))
            while json.loads(await asyncio.wait_for(ws.recv(), 5))["event"] != "phx_close":
                pass
            left = families(server)
            return joined, changed, left, frame

    joined, changed, left, frame = asyncio.run(scenario())
    assert sample(joined, "marquee_realtime_connections") - sample(before, "marquee_realtime_connections") == 1
    assert sample(joined, "marquee_realtime_channels") - sample(before, "marquee_realtime_channels") == 1
    assert sample(joined, "marquee_realtime_subscriptions", **table) - sample(before, "marquee_realtime_subscriptions", **table) == 1
    assert sample(joined, "marquee_event_channels", event_id=event_id) == 1

    def delta(name, suffix="", **labels):
        return sample(changed, name, suffix, **labels) - sample(joined, name, suffix, **labels)

    assert delta("marquee_realtime_deliveries", "_total") == 1
    assert delta("marquee_realtime_bytes_out", "_total") == len(frame.encode())
    assert delta("marquee_commit_to_send_seconds", "_count") == 1
    assert delta("marquee_commit_to_queue_seconds", "_count") == 1
    assert delta("marquee_fanout_sockets", "_count") == 1
    assert delta("marquee_reservations", "_total", outcome="created") == 1
    assert sample(left, "marquee_realtime_channels") == sample(before, "marquee_realtime_channels")
    assert sample(left, "marquee_realtime_subscriptions", **table) == sample(before, "marquee_realtime_subscriptions", **table)
    assert not [s for s in left.get("marquee_event_channels", before["marquee_realtime_connections"]).samples
                if s.labels.get("event_id") == event_id]


def test_feed_lag_and_database_gauges(json_server):
    found = families(json_server)
    assert sample(found, "marquee_database_up") == 1
    assert sample(found, "marquee_change_feed_connected") == 1
    assert sample(found, "marquee_change_feed_lag_seconds") >= 0
    assert "marquee_change_feed_wal_behind_bytes" in found
