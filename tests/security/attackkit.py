"""What every attack test measures: a well-behaved subscriber on the seed's pattern (postgres_changes UPDATEs of an
event's ticket types) whose update latency is taken before and during the attack, `/healthz` during it, and the
server alive, with no trap in its log, after it."""

import asyncio
import time
import uuid

import httpx

from conftest import make_token
from sechelpers import open_socket


class Watcher:
    """Subscribes like the seed's page: `event_tickets` UPDATEs filtered by `event_id`, uncoalesced, and measures
    the time from a reservation's commit (its HTTP answer) to the change reaching the socket."""

    def __init__(self, server, event):
        self.server, self.event = server, event
        self.event_id = event["id"]
        self.type_id = event["ticket_types"][0]["id"]
        self.socket = None
        self.topic = f"realtime:watch-{uuid.uuid4().hex[:8]}"

    async def start(self):
        self.socket = await open_socket(self.server, name="watcher")
        binding = {"event": "UPDATE", "schema": "public", "table": "event_tickets", "filter": f"event_id=eq.{self.event_id}"}
        reply = await self.socket.join(self.topic, {"postgres_changes": [binding], "marquee": {"coalesce": False}})
        assert reply["payload"]["status"] == "ok", reply
        system = await self.socket.recv(lambda m: m["event"] == "system" and m["topic"] == self.topic, 10)
        assert system["payload"]["status"] == "ok", system
        return self

    async def probe(self, timeout=10.0):
        """One reservation; returns the seconds from its commit to the change arriving."""
        user = "watcher-" + uuid.uuid4().hex[:8]

        def reserve():
            r = httpx.post(
                f"{self.server.base_url}/api/events/{self.event_id}/reservations",
                json={"ticket_type_id": self.type_id, "quantity": 1},
                headers={"Authorization": "Bearer " + make_token(sub=user), "Idempotency-Key": str(uuid.uuid4())},
                timeout=timeout)
            assert r.status_code == 201, r.text
            return time.monotonic()

        committed = await asyncio.to_thread(reserve)
        # the hold raises `reserved`: the change with the highest version so far is the one this hold made
        before = self.latest_version()
        await self.socket.recv(
            lambda m: m["event"] == "postgres_changes" and m["topic"] == self.topic
            and (m["payload"]["data"]["record"].get("version") or 0) > before,
            timeout, "the watcher's update")
        return time.monotonic() - committed

    def latest_version(self):
        versions = [m["payload"]["data"]["record"].get("version") or 0 for m in self.socket.messages
                    if m["event"] == "postgres_changes" and m["topic"] == self.topic]
        return max(versions, default=0)

    async def probes(self, count, pause=0.05):
        latencies = []
        for _ in range(count):
            latencies.append(await self.probe())
            await asyncio.sleep(pause)  # pacing between probes, not a wait for an event
        return latencies

    async def close(self):
        await self.socket.close()


def healthz_seconds(server, timeout=5.0):
    """How long `/healthz` takes to answer (fails if it does not within `timeout`)."""
    started = time.monotonic()
    r = httpx.get(f"{server.base_url}/healthz", timeout=timeout)
    assert r.status_code == 200, r.text
    return time.monotonic() - started


def assert_within_bound(baseline, during, what):
    """Each latency during the attack stays within 1 s, or 5x the worst baseline when that is larger."""
    bound = max(1.0, 5 * max(baseline))
    worst = max(during)
    assert worst <= bound, f"{what}: subscriber latency {worst:.3f}s during the attack (baseline {max(baseline):.3f}s, bound {bound:.3f}s)"


def assert_alive(server):
    assert server.process.poll() is None, "the server exited:\n" + "".join(server.output[-40:])
    text = "".join(server.output)
    for trap in ("Signal 4", "Fatal error", "*** Signal", "Illegal instruction"):
        assert trap not in text, f"{trap!r} in the server's log:\n" + text[-4000:]
    healthz_seconds(server)


async def measured(server, watcher, attack, what, probes=6, finish=False):
    """Baseline probes, then the attack (`attack(started)`, which sets `started` once it is under way) running beside
    more probes and a /healthz check; the server alive after. An endless attack is cancelled after the probes; with
    `finish`, the attack runs to its end and its result is returned as well."""
    baseline = await watcher.probes(3)
    started = asyncio.Event()
    task = asyncio.create_task(attack(started))
    try:
        await asyncio.wait_for(started.wait(), 30)  # the attack is under way
        during = await watcher.probes(probes)
        health = await asyncio.to_thread(healthz_seconds, server)
        result = await asyncio.wait_for(task, 120) if finish else None
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
    assert_within_bound(baseline, during, what)
    assert health < 5.0, f"{what}: /healthz took {health:.2f}s"
    assert_alive(server)
    return result if finish else (baseline, during)
