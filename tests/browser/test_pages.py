"""The event list page, and what the server does for the pages: HTML and assets (content types, no path traversal),
/api/config, the development login, client error reports."""

import socket
import time

import httpx
import jwt
import pytest

from conftest import TEST_SECRET, start_server
from pagekit import (browser, context, create_event, expect, expect_status, reserve, web_server)  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def test_the_event_list_shows_each_event_with_its_live_status(web_server, context):
    roomy = create_event(web_server.base_url, capacities=(100,), name="Roomy show")
    tight = create_event(web_server.base_url, capacities=(6,), name="Tight show")
    page = context.new_page()
    page.goto(web_server.base_url + "/")
    expect_status(page, "live")
    card = page.locator(f'[data-event-id="{tight["id"]}"]')
    expect(card.locator(".badge")).to_have_attribute("data-status", "available")
    expect(page.locator(f'[data-event-id="{roomy["id"]}"] .badge')).to_have_attribute("data-status", "available")
    expect(card.get_by_role("link", name="Tight show")).to_have_attribute("href", f"/events/{tight['id']}")

    reserve(web_server.base_url, tight["id"], tight["ticket_types"][0]["id"], quantity=2)
    expect(card.locator(".badge")).to_have_attribute("data-status", "few_left")
    expect(card.locator(".count")).to_have_attribute("data-available", "4")
    reserve(web_server.base_url, tight["id"], tight["ticket_types"][0]["id"], quantity=4)
    expect(card.locator(".badge")).to_have_attribute("data-status", "sold_out")
    expect(page.locator("#announcer")).to_contain_text("Tight show: sold out")

    card.get_by_role("link", name="Tight show").click()
    expect(page).to_have_url(f"{web_server.base_url}/events/{tight['id']}")
    expect(page.locator("h1")).to_have_text("Tight show")


def test_pages_and_assets_are_served_safely(web_server):
    base = web_server.base_url
    home = httpx.get(base + "/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in home.headers["content-security-policy"]
    event = create_event(base)
    page = httpx.get(f"{base}/events/{event['id']}")
    assert page.status_code == 200 and 'data-connection-status="connecting"' in page.text
    assert httpx.get(f"{base}/events/00000000-0000-0000-0000-000000000000").status_code == 404
    assert httpx.get(f"{base}/events/not-a-uuid").status_code == 404

    js = httpx.get(base + "/assets/event-page.js")
    assert js.status_code == 200 and js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert httpx.get(base + "/assets/style.css").headers["content-type"] == "text/css; charset=utf-8"
    again = httpx.get(base + "/assets/style.css", headers={"If-None-Match": js.headers["etag"]})
    assert again.status_code == 200
    etag = again.headers["etag"]
    assert httpx.get(base + "/assets/style.css", headers={"If-None-Match": etag}).status_code == 304
    for path in ["/assets/..%2F..%2FPackage.swift", "/assets/%2e%2e%2findex.html", "/assets/..", "/assets/.hidden.js",
                 "/assets/../event.html", "/assets/nothing.js", "/assets/style.css.bak", "/assets/%2fetc%2fpasswd"]:
        status, body = raw_get(web_server.port, path)  # sent as written: HTTP clients would tidy up the dots
        assert status == 404, f"{path} → {status}"
        assert "swift-tools-version" not in body and "<html" not in body


def raw_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


def test_config_gives_an_anonymous_key_for_the_realtime_socket(web_server):
    config = httpx.get(web_server.base_url + "/api/config").json()
    assert config["realtime_url"] == "/realtime/v1" and config["hold_seconds"] == 600 and config["dev_login"] is True
    claims = jwt.decode(config["anon_key"], TEST_SECRET, algorithms=["HS256"])
    assert claims["role"] == "anon" and "sub" not in claims
    assert claims["exp"] > time.time() + 7 * 24 * 3600


def test_dev_login_gives_a_token_for_a_sanitised_name(web_server):
    r = httpx.post(web_server.base_url + "/api/dev/login", json={"name": "  Ada Lovelace!<script> "})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["id"] == "ada-lovelace-script"
    claims = jwt.decode(body["token"], TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "ada-lovelace-script" and claims["role"] == "authenticated"
    assert httpx.post(web_server.base_url + "/api/dev/login", json={"name": "!!!"}).status_code == 400
    assert httpx.post(web_server.base_url + "/api/dev/login", json={}).status_code == 400


def test_dev_login_is_off_when_a_secret_is_configured(database):
    server = start_server(database.url, env={"MARQUEE_NODE": "nologin"})
    try:
        r = httpx.post(server.base_url + "/api/dev/login", json={"name": "mallory"})
        assert r.status_code == 404
        assert httpx.get(server.base_url + "/api/config").json()["dev_login"] is False
    finally:
        server.stop()


def test_client_error_reports_are_limited_and_logged_without_secrets(web_server):
    url = web_server.base_url + "/api/client-errors"
    assert httpx.post(url, content=b"x" * 9000, headers={"Content-Type": "application/json"}).status_code == 413
    assert httpx.post(url, content=b"not json").status_code == 400
    token = jwt.encode({"sub": "alice", "role": "authenticated"}, TEST_SECRET, algorithm="HS256")
    r = httpx.post(url, json={
        "kind": "script", "message": f"TypeError: marker-7731 for alice@example.com with Bearer {token}",
        "page": "http://127.0.0.1/events/abc?access_token=secret123#frag", "source": "/assets/event-page.js?v=1",
        "line": 12, "column": 3, "stack": f"at f (http://host/assets/x.js?apikey={token}:1:2)"})
    assert r.status_code == 204
    line = web_server.wait_for_output(r"(?=.*client error reported)(?=.*marker-7731)")
    assert "warning" in line
    for secret in ("alice@example.com", token, "secret123", "apikey=eyJ", "?v=1"):
        assert secret not in line, f"{secret!r} reached the log: {line}"
    assert "page=/events/abc" in line and "line=12:3" in line
