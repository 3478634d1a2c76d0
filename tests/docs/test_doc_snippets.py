"""Every fenced block in the operator and developer docs is exercised: Python snippets run with PyPI `realtime`
against a real server, JavaScript snippets run in Chromium with the page's client, Swift snippets are the bodies of
functions compiled with the Swift tests, shell commands run against a server, SQL runs on its database, PromQL and
the Prometheus config pass promtool, the nginx config passes `nginx -t`, and log examples match what the server
prints. A block of a kind no test knows fails here."""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid

import httpx
import psycopg
import pytest

from conftest import TEST_SECRET, make_token, marquee_bin, start_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "browser"))
sys.path.insert(0, os.path.join(ROOT, "tests", "conformance"))
from helpers import create_event, reserve  # noqa: E402

DOCS = ["docs/subscription-patterns.md", "docs/troubleshooting.md", "docs/operations.md", "docs/architecture.md"]
KINDS = {"python", "js", "swift", "sh", "sql", "promql", "yaml", "nginx", "log", "json", "text"}
pytestmark = pytest.mark.timeout(120)


def blocks():
    """(doc, line, language, snippet id or None, code) for every fenced block; fences may be indented in lists."""
    found = []
    for doc in DOCS:
        lines = open(os.path.join(ROOT, doc)).read().split("\n")
        i = 0
        while i < len(lines):
            fence = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
            if not fence:
                i += 1
                continue
            indent, language = fence.group(1), fence.group(2)
            snippet = None
            for back in range(i - 1, max(-1, i - 3), -1):
                marker = re.match(r"^\s*<!-- snippet: ([\w-]+) -->\s*$", lines[back])
                if marker:
                    snippet = marker.group(1)
                    break
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            code = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:end])
            found.append((doc, i + 1, language, snippet, code))
            i = end + 1
    return found


def by_id(snippet):
    matches = [b for b in blocks() if b[3] == snippet]
    assert len(matches) == 1, f"snippet {snippet} appears {len(matches)} times"
    return matches[0][4]


PYTHON = {"python-patterns", "python-filters", "python-broadcast", "python-snapshot", "python-unsubscribe"}
JS = {"js-patterns", "js-broadcast", "js-snapshot"}
SWIFT = {"swift-counts": "docSnippetSwiftCounts", "swift-reservations": "docSnippetSwiftReservations"}


def test_every_block_has_a_kind_that_is_exercised():
    seen = set()
    for doc, line, language, snippet, code in blocks():
        where = f"{doc}:{line}"
        assert language in KINDS, f"{where}: a fenced block needs a language this test exercises, not '{language}'"
        if language == "text":
            assert doc == "docs/architecture.md", f"{where}: text blocks are for diagrams"
        if language in ("python", "js", "swift"):
            assert snippet in PYTHON | JS | set(SWIFT), f"{where}: {language} block without a known <!-- snippet: id -->"
            seen.add(snippet)
    assert seen == PYTHON | JS | set(SWIFT), f"snippets no doc shows: {PYTHON | JS | set(SWIFT) - seen}"


def test_swift_snippets_are_compiled_with_the_tests():
    source = open(os.path.join(ROOT, "Tests", "MarqueeServerTests", "DocSnippets.swift")).read()
    for snippet, function in SWIFT.items():
        match = re.search(r"func %s\(.*?\) async throws \{\n(.*?)\n\}\n" % function, source, re.S)
        assert match, f"DocSnippets.swift has no func {function}"
        assert textwrap.dedent(match.group(1)).strip() == by_id(snippet).strip(), f"{snippet} differs from {function}"


# --- against a running server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(database):
    srv = start_server(database.url, env={"MARQUEE_LOG_FORMAT": "json"})
    yield srv
    srv.stop()


def local(code, server):
    return code.replace("http://127.0.0.1:8080", server.base_url).replace("ws://127.0.0.1:8080", server.ws_url)


async def run_python(code, server, **names):
    namespace = dict(names)
    body = textwrap.indent(local(code, server), "    ")
    exec(compile(f"async def __snippet():\n{body}\n    return locals()\n", "<doc snippet>", "exec"), namespace)
    return await asyncio.wait_for(namespace["__snippet"](), 10)


class Seen(list):
    """A list that wakes waiters whenever something is appended (the snippets' callbacks append)."""

    def __init__(self):
        super().__init__()
        self.changed = asyncio.Event()

    def append(self, item):
        super().append(item)
        self.changed.set()


async def wait_until(seen, condition, what, seconds=10):
    """Waits, with a deadline, until `condition()` holds, re-checking whenever one of `seen` receives something."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        for s in seen:
            s.changed.clear()
        waiters = [asyncio.ensure_future(s.changed.wait()) for s in seen]
        done, pending = await asyncio.wait(waiters, timeout=max(0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
        if not done and not condition():
            pytest.fail(f"timed out waiting for {what}")


def test_python_snippets_receive_what_the_doc_says(server):
    event = create_event(server.base_url, capacities=(12,))
    event_id, type_id = event["id"], event["ticket_types"][0]["id"]
    user_id = "doc-" + uuid.uuid4().hex[:8]
    changes, reservations, rendered = Seen(), Seen(), Seen()
    seen = (changes, reservations, rendered)

    async def scenario():
        names = dict(anon_key=make_token(role="anon"), event_id=event_id, user_id=user_id, user_token=make_token(sub=user_id),
                     last_seen_ms=0, on_change=changes.append, on_reservation=reservations.append, render=rendered.append)
        state = await run_python(by_id("python-patterns"), server, **names)
        names.update(client=state["client"], channel=state["channel"])
        await run_python(by_id("python-filters"), server, **names)
        await run_python(by_id("python-broadcast"), server, **names)
        synced = await run_python(by_id("python-snapshot"), server, **names)
        assert {row["id"] for row in synced["rows"].values()} == {type_id}  # the snapshot loaded the row

        reserve(server.base_url, event_id, type_id, user=user_id, quantity=8)
        await wait_until(seen, lambda: any(c["data"]["table"] == "event_tickets" for c in changes), "the UPDATE of event_tickets")
        await wait_until(seen, lambda: any(r.get("data", {}).get("table") == "tickets" for r in reservations), "the INSERT of tickets")
        await wait_until(seen, lambda: sum(1 for c in changes if c["data"]["record"]["available"] == 4) == 2,
                         "the change through both the event and the few-left filter")
        await wait_until(seen, lambda: rendered, "the availability broadcast")
        await wait_until(seen, lambda: any("data" not in r for r in reservations), "the private created broadcast")
        # one socket delivers in order: once a later change has arrived, the snapshot channel has seen the first
        reserve(server.base_url, event_id, type_id, user="doc-other", quantity=1)
        await wait_until(seen, lambda: any(c["data"]["record"]["available"] == 3 for c in changes), "a second change")
        assert synced["rows"][type_id]["available"] <= 4
        await run_python(by_id("python-unsubscribe"), server, **names)

    asyncio.run(scenario())
    update = next(c for c in changes if c["data"]["table"] == "event_tickets")
    assert update["data"]["type"] == "UPDATE" and update["data"]["record"]["event_id"] == event_id


def test_js_snippets_run_in_the_browser(server):
    playwright = pytest.importorskip("playwright.sync_api")
    from pagekit import CHROMIUM

    event = create_event(server.base_url, capacities=(10,))
    event_id, type_id = event["id"], event["ticket_types"][0]["id"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(bypass_csp=True)  # the snippet comes as an inline module here
            page.goto(f"{server.base_url}/admin")
            for snippet in sorted(JS):
                page.evaluate("""([key, id]) => { window.anonKey = key; window.eventId = id; window.__seen = [];
                                   window.render = (table, record) => window.__seen.push({table, record}); }""",
                              [make_token(role="anon"), event_id])
                page.add_script_tag(content=by_id(snippet), type="module")
                if snippet == "js-snapshot":
                    page.wait_for_function("window.__seen.some(s => s.table === 'event_tickets')", timeout=10_000)
                else:
                    # joined (the server logs it once the channel is in its index); then a reservation must reach the page
                    topic = "event-" + event_id + "-tickets" if snippet == "js-patterns" else "event:" + event_id + ":availability"
                    server.wait_for_output(r'"message":"realtime joined".*"topic":"realtime:%s"' % re.escape(topic), timeout=10)
                    reserve(server.base_url, event_id, type_id, user="js-" + snippet)
                    page.wait_for_function("window.__seen.some(s => s.table === 'event_tickets')", timeout=10_000)
                    if snippet == "js-patterns":
                        page.wait_for_function("window.__seen.some(s => s.table === 'tickets')", timeout=10_000)
                page.goto(f"{server.base_url}/admin")  # a fresh page (and socket) for the next snippet
        finally:
            browser.close()


def test_shell_snippets_run(server, database):
    bindir = tempfile.mkdtemp()
    os.symlink(marquee_bin(), os.path.join(bindir, "marquee"))
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ["PATH"], "MARQUEE_JWT_SECRET": TEST_SECRET,
           "DATABASE_URL": database.url}
    create_event(server.base_url, capacities=(3,))
    ran = 0
    for doc, line, language, snippet, code in blocks():
        if language != "sh":
            continue
        if "promtool" in code and shutil.which("promtool") is None:
            continue  # tests/docs/test_alert_rules.py says so
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", local(code, server)], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, f"{doc}:{line} failed:\n{code}\n{result.stdout}\n{result.stderr}"
        assert result.stdout.strip() or "promtool" in code, f"{doc}:{line} printed nothing"
        ran += 1
    assert ran >= 2
    stats = subprocess.run(["bash", "-euo", "pipefail", "-c", local(by_id("curl-stats"), server)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert set(json.loads(stats.stdout)) >= {"watching", "page_views", "reserve_attempts", "reservations"}


def test_sql_snippets_run_on_the_database(server, database):
    with psycopg.connect(database.url, autocommit=True) as conn:
        for doc, line, language, snippet, code in blocks():
            if language != "sql":
                continue
            for statement in [s for s in code.split(";") if s.strip()]:
                conn.execute(statement)


def test_promql_and_prometheus_config_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing (Debian package prometheus)")
    with tempfile.TemporaryDirectory() as tmp:
        queries = [q for b in blocks() if b[2] == "promql" for q in b[4].split("\n") if q.strip()]
        assert queries
        rules = os.path.join(tmp, "queries.yml")
        with open(rules, "w") as f:
            f.write("groups:\n  - name: doc\n    rules:\n")
            for n, query in enumerate(queries):
                f.write(f"      - record: doc:query_{n}\n        expr: {json.dumps(query)}\n")
        checked = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        for doc, line, language, snippet, code in blocks():
            if language != "yaml":
                continue
            config = os.path.join(tmp, "prometheus.yml")
            os.makedirs(os.path.join(tmp, "etc"), exist_ok=True)
            shutil.copy(os.path.join(ROOT, "deploy", "alerts.yml"), os.path.join(tmp, "etc", "marquee-alerts.yml"))
            with open(config, "w") as f:
                f.write(code.replace("/etc/prometheus/", os.path.join(tmp, "etc") + "/"))
            checked = subprocess.run([promtool, "check", "config", config], capture_output=True, text=True)
            assert checked.returncode == 0, f"{doc}:{line}: " + checked.stdout + checked.stderr


def test_nginx_config_passes_nginx_t():
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx is missing (scripts/setup.sh installs it)")
    for doc, line, language, snippet, code in blocks():
        if language != "nginx":
            continue
        with tempfile.TemporaryDirectory() as tmp:
            conf = os.path.join(tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(f"pid {tmp}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\naccess_log off;\n{code}\n}}\n")
            checked = subprocess.run([nginx, "-t", "-p", tmp, "-c", conf], capture_output=True, text=True)
            assert checked.returncode == 0, f"{doc}:{line}: {checked.stderr}"


def test_log_examples_match_the_server(server):
    sources = ""
    for folder, _, files in os.walk(os.path.join(ROOT, "Sources")):
        sources += "".join(open(os.path.join(folder, name)).read() for name in files if name.endswith(".swift"))
    for doc, line, language, snippet, code in blocks():
        if language != "log":
            continue
        for text in code.split("\n"):
            match = re.match(r"^(?:\S+ )?(trace|debug|info|notice|warning|error|critical)\s+(marquee:|…)(.*) \[MarqueeServer\] (.+)$", text)
            assert match, f"{doc}:{line}: not a log line: {text}"
            assert f'"{match.group(4)}"' in sources, f"{doc}:{line}: the server never logs '{match.group(4)}'"
    # the JSON example has the keys of the real line
    async def connect_and_close():
        import websockets
        async with websockets.connect(f"{server.ws_url}/realtime/v1/websocket?apikey={make_token(role='anon')}&vsn=1.0.0"):
            pass
    asyncio.run(connect_and_close())
    real = json.loads(server.wait_for_output(r'"message":"realtime disconnected"', timeout=10))
    example = json.loads(by_id("log-json"))
    assert set(example) == set(real) and example["message"] == real["message"] and real["reason"] == example["reason"]
