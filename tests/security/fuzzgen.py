"""Input generators for test_security_fuzz.py. Each takes a `random.Random`, so a seed fixes the whole sequence.

ws_case -> (kind, data): kind "text" (str), "rawtext" (bytes sent as a text frame, maybe not UTF-8) or "binary".
http_case -> (method, path, headers, body bytes, may_succeed)."""

import json
import uuid

from conftest import make_token

TOPICS = ["phoenix", "realtime:fuzz-a", "realtime:fuzz-b", "realtime:", "realtime:user:fuzzer-0:reservations",
          "realtime:event:x:availability", "", "elsewhere", "realtime:" + "é" * 50, "realtime:\u0000", "realtime:a:b:c"]
EVENTS = ["heartbeat", "phx_join", "phx_leave", "broadcast", "presence", "access_token", "phx_reply", "phx_close",
          "system", "postgres_changes", "no_such_event", "", "PHX_JOIN", "heartbeat\u0000"]
OPS = ["eq", "neq", "lt", "lte", "gt", "gte", "in", "like", "ilike", "is", "match", "imatch", "isdistinct", "not.eq", "fts", "", "eq.eq"]
COLUMNS = ["event_id", "available", "id", "name", "version", "capacity", "nope", "", "user_id", "holder_email", "a=b"]
WEIRD_STRINGS = ["", " ", "null", "\u0000", "\ud83d\ude00", "%s%n%x", "' or 1=1 --", "\"; drop table tickets; --", "../../etc/passwd",
                 "\u202e", "a" * 300, "1e999", "NaN", "(", ")", ",", "in.(", "eq.", "\\", "*"]


def scalar(rng):
    return rng.choice([None, True, False, 0, -1, 1, 2 ** 53 + 1, -2 ** 63, 2 ** 64, 1.5, -0.0, 1e308,
                       rng.choice(WEIRD_STRINGS), str(uuid.UUID(int=rng.getrandbits(128))), rng.randint(-10 ** 6, 10 ** 6)])


def value(rng, depth=0):
    roll = rng.random()
    if depth > 4 or roll < 0.5:
        return scalar(rng)
    if roll < 0.75:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["event", "config", "payload", "type", "x", "", "postgres_changes"]): value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def filter_text(rng, event_id):
    parts = []
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(OPS)
        val = rng.choice([event_id, "1", "(1,2,3)", "(" + ",".join(str(i) for i in range(rng.randint(0, 150))) + ")", "null",
                          "%a%", "(a+)+$", "[unclosed", rng.choice(WEIRD_STRINGS), "x" * rng.randint(0, 5000)])
        parts.append(f"{rng.choice(COLUMNS)}={op}.{val}" if rng.random() < 0.9 else rng.choice(WEIRD_STRINGS))
    return ",".join(parts)


def join_payload(rng, event_id):
    bindings = []
    for _ in range(rng.choice([0, 1, 2, 5, 120])):
        b = {"event": rng.choice(["*", "INSERT", "UPDATE", "DELETE", "insert", "", "TRUNCATE"]),
             "schema": rng.choice(["public", "*", "realtime", "pg_catalog", ""]),
             "table": rng.choice(["event_tickets", "tickets", "events", "*", "schema_migrations", "messages", ""]),
             "filter": filter_text(rng, event_id)}
        if rng.random() < 0.2:
            b["select"] = rng.choice([["id"], [], ["holder_email", "user_id"], "id", [1, None]])
        if rng.random() < 0.2:
            b[rng.choice(["event", "schema", "table", "filter"])] = value(rng)
        bindings.append(b)
    config = {"broadcast": {"self": rng.choice([True, False, "TRUE", "nope", None]), "ack": rng.choice([True, "false", 1]),
                            "replay": rng.choice([None, {"since": rng.randint(-10 ** 15, 10 ** 15), "limit": rng.randint(-5, 10 ** 9)}])},
              "presence": {"key": rng.choice(["", "k", None, 1]), "enabled": rng.choice([True, False, "yes"])},
              "private": rng.choice([True, False, "true", None]), "postgres_changes": bindings,
              "marquee": {"snapshot": rng.choice([True, False, "x"])}}
    payload = {"config": config}
    if rng.random() < 0.3:
        payload["access_token"] = rng.choice([make_token(sub="fuzzer", expires_in=rng.choice([-5, 3600])), "sb_x", "a.b.c", "", 7])
    return payload


def base_frame(rng, event_id):
    event = rng.choice(EVENTS)
    topic = rng.choice(TOPICS) if rng.random() < 0.8 else "realtime:" + rng.choice(WEIRD_STRINGS)
    if event == "heartbeat" and rng.random() < 0.6:
        topic = "phoenix"
    if event == "phx_join":
        payload = join_payload(rng, event_id)
    elif event == "broadcast":
        payload = {"type": "broadcast", "event": rng.choice(["ping", "", 1, None]), "payload": value(rng)}
    elif event == "presence":
        payload = {"type": "presence", "event": rng.choice(["track", "untrack", "x"]), "payload": value(rng)}
    elif event == "access_token":
        payload = {"access_token": rng.choice([make_token(sub="fuzzer"), make_token(role="anon", expires_in=-1), "garbage", None])}
    else:
        payload = value(rng) if rng.random() < 0.3 else {}
    return {"topic": topic, "event": event, "payload": payload, "ref": str(rng.randint(0, 99)), "join_ref": rng.choice(["1", None])}


def mutate(rng, frame):
    roll = rng.random()
    key = rng.choice(["topic", "event", "payload", "ref", "join_ref"])
    if roll < 0.25:
        frame[key] = value(rng)  # wrong types, numbers as refs, null payloads
    elif roll < 0.3:
        frame[key] = "x" * rng.randint(10_000, 300_000)  # huge strings
    elif roll < 0.35:
        frame.pop(key)
    elif roll < 0.4:
        frame["payload"] = None
    elif roll < 0.45:
        frame["ref"] = rng.randint(-10 ** 20, 10 ** 20)
    return frame


def encode(rng, frame, v2):
    if v2 or rng.random() < 0.05:
        return json.dumps([frame.get("join_ref"), frame.get("ref"), frame.get("topic"), frame.get("event"), frame.get("payload")])
    return json.dumps(frame)


def ws_case(rng, event_id):
    roll = rng.random()
    if roll < 0.01:
        return "text", "[" * 10000 + "]" * 10000  # deep nesting
    if roll < 0.015:
        return "text", '{"topic":"realtime:fuzz-a","event":"broadcast","ref":"1","payload":{"event":"big","payload":{"s":"' + "y" * (2 << 20) + '"}}}'
    if roll < 0.03:
        return "binary", rng.randbytes(rng.randint(0, 2000))  # random bytes
    if roll < 0.05:
        fields = [rng.randbytes(rng.randint(0, 8)) for _ in range(5)]
        header = bytes([3] + [len(f) if rng.random() < 0.9 else rng.randint(0, 255) for f in fields] + [rng.choice([0, 1, 1, 2])])
        tail = rng.choice([b'{"a":1}', b"\xff\xfe", json.dumps(value(rng)).encode(), b"[" * 600])
        return "binary", header + b"".join(fields) + tail  # kind-3 broadcast pushes with bad lengths, UTF-8, JSON
    if roll < 0.07:
        text = json.dumps(base_frame(rng, event_id)).encode()
        cut = rng.randrange(len(text))
        return "rawtext", text[:cut] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]) + text[cut:]  # invalid UTF-8
    if roll < 0.07 + 0.05:
        text = encode(rng, base_frame(rng, event_id), rng.random() < 0.5)
        return "text", text[: rng.randrange(max(1, len(text)))]  # truncated JSON
    if roll < 0.14:
        depth = rng.choice([50, 300, 511, 512, 513, 2000])  # nested broadcast payloads around the parser's limit
        return "text", ('{"topic":"realtime:fuzz-a","event":"broadcast","ref":"1","payload":{"type":"broadcast","event":"deep",'
                        '"payload":{"n":' + "[" * depth + "]" * depth + "}}}")
    if roll < 0.16:
        return "text", rng.choice(['{"topic":"phoenix","event":"heartbeat","payload":{"s":"\\ud800\\udc00\\ud800"},"ref":"1"}',
                                   '{"topic":"realtime:fuzz-a","event":"broadcast","payload":{"event":"e","payload":{"n":1e999}},"ref":"1"}',
                                   '{"topic":"phoenix","topic":"realtime:fuzz-a","event":"heartbeat","payload":{},"ref":"1"}',
                                   "", " ", "null", "[]", "[null,null,null,null,null]", '{"ref":null}', "\u0000"])
    frame = mutate(rng, base_frame(rng, event_id))
    return "text", encode(rng, frame, rng.random() < 0.3)


# --- HTTP ----------------------------------------------------------------------------------------------------------

def reservation_body(rng, world):
    body = {"ticket_type_id": rng.choice(world["type_ids"] + [str(uuid.uuid4()), "x", world["event_id"]]),
            "quantity": rng.choice([1, 2, 10, 11, 0, -1, 2 ** 31, 2 ** 63, 1.5, "1", None, True]),
            "holder_email": rng.choice(["a@example.com", None, "no-at", "@", "x" * 400 + "@example.com", 5, "\u0000@x"])}
    for _ in range(rng.randint(0, 2)):
        key = rng.choice(list(body) + ["extra", "id", "user_id", "status"])
        if rng.random() < 0.3:
            body.pop(key, None)
        else:
            body[key] = value(rng)
    return body


def event_body(rng):
    body = {"name": rng.choice(["Fuzz", "", "x" * 5000, None, 1]), "starts_at": rng.choice(["2030-01-01T20:00:00Z", "yesterday", "", 0]),
            "venue": rng.choice(["Hall", "", None]),
            "ticket_types": [{"name": rng.choice(["A", "", None]), "price_cents": rng.choice([0, -1, 100, 2 ** 40, "1"]),
                              "capacity": rng.choice([0, -5, 1, 10 ** 9, 2 ** 63, None])} for _ in range(rng.choice([0, 1, 3, 200]))]}
    if rng.random() < 0.5:
        body[rng.choice(list(body))] = value(rng)
    return body


def raw_body(rng, structured):
    roll = rng.random()
    if roll < 0.5:
        return json.dumps(structured).encode(), True
    if roll < 0.6:
        return json.dumps(value(rng)).encode(), False
    if roll < 0.7:
        text = json.dumps(structured).encode()
        return text[: rng.randrange(max(1, len(text)))], False
    if roll < 0.75:
        return b"[" * 10000 + b"]" * 10000, False
    if roll < 0.8:
        return b'{"s":"' + b"z" * rng.choice([70_000, 1_100_000]) + b'"}', False
    if roll < 0.85:
        return json.dumps(structured).encode().replace(b'"', b'"\xff', 1), False
    if roll < 0.9:
        return b'{"a":' * 3000 + b"1" + b"}" * 3000, False
    return rng.randbytes(rng.randint(0, 500)), False


def accepts_reservation(body):
    return (isinstance(body, dict) and isinstance(body.get("ticket_type_id"), str)
            and type(body.get("quantity")) in (int, float) and 1 <= body["quantity"] <= 10)


def http_case(rng, world):
    """(method, path, headers, body, may_succeed): may_succeed is False when only a 4xx is right."""
    roll = rng.random()
    headers = {"Content-Type": rng.choice(["application/json", "application/json", "text/plain", "application/x-www-form-urlencoded"])}
    if roll < 0.5:
        structured = reservation_body(rng, world)
        body, as_json = raw_body(rng, structured)
        headers["Authorization"] = "Bearer " + world["user_token"]
        key = rng.choice([str(uuid.uuid4()), str(uuid.uuid4()), "", "k" * 201, "ключ"])
        if key.isascii() and rng.random() < 0.95:
            headers["Idempotency-Key"] = key
        event_id = world["event_id"] if rng.random() < 0.85 else rng.choice([str(uuid.uuid4()), "not-a-uuid", "%00", "..%2F..", "x" * 300])
        ok = as_json and accepts_reservation(structured) and event_id == world["event_id"] and bool(headers.get("Idempotency-Key", "").strip())
        return "POST", f"/api/events/{event_id}/reservations", headers, body, ok
    if roll < 0.8:
        structured = event_body(rng)
        body, as_json = raw_body(rng, structured)
        headers["Authorization"] = "Bearer " + world["service_token"]
        return "POST", "/api/events", headers, body, as_json
    rid = rng.choice([world["own"], world["others"], str(uuid.uuid4()), "nope", "%ff", "1" * 100])
    body, _ = raw_body(rng, value(rng))
    headers["Authorization"] = "Bearer " + world["user_token"]
    action = rng.choice(["confirm", "cancel", "confirm"])
    return "POST", f"/api/reservations/{rid}/{action}", headers, body, rid == world["own"]
