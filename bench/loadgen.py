"""Subscriber load generator: many WebSocket subscribers in several worker processes, for Marquee (Supabase Realtime,
vsn 1.0.0, the seed's `event-<id>-tickets` pattern) and for an Nchan peer (plain WebSocket subscriber).

Each worker runs one event loop (uvloop) with `picows` (default) or `websockets` sockets, spread over loopback source
addresses 127.0.0.x when there are many. Every received change is parsed without a full JSON decode: the
`commit_timestamp` (latency = receive time − commit time), the record's `version` (gaps = lost updates, repeats =
duplicates) and `available` (the last state each subscriber saw, compared with the database at the end).

The parent talks to a worker over a pipe: `Workers(...).open()`, `.start()`, `.wait_final(seq, deadline)`, `.stop()`.
"""

import array
import asyncio
import math
import multiprocessing as mp
import os
import resource
import socket
import time
from collections import Counter
from datetime import datetime

HEARTBEAT_SECONDS = 25.0
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: bind() picks the port at connect(), per destination
SOCKETS_PER_SOURCE = 20000


def raise_nofile():
    """Raises RLIMIT_NOFILE to the hard limit (children, such as the servers this script starts, inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:  # as root the hard limit itself can go up to fs.nr_open
        with open("/proc/sys/fs/nr_open") as f:
            wanted = min(int(f.read()), 1 << 20)
        if hard < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            soft, hard = wanted, wanted
    except (OSError, ValueError):
        pass
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def source_addresses(total):
    """Loopback source addresses for `total` sockets: 127.0.0.1 alone for a few, then 127.0.0.2.. one per 20k."""
    if total <= SOCKETS_PER_SOURCE:
        return ["127.0.0.1"]
    return [f"127.0.0.{2 + i}" for i in range(math.ceil(total / SOCKETS_PER_SOURCE))]


_ts_cache = {}


def parse_ts(raw):
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` (bytes) → Unix time; every subscriber gets the same stamps, so they are cached."""
    value = _ts_cache.get(raw)
    if value is None:
        if len(_ts_cache) > 100000:
            _ts_cache.clear()
        value = datetime.fromisoformat(raw.decode().replace("Z", "+00:00")).timestamp()
        _ts_cache[raw] = value
    return value


def read_int(data, key, start):
    i = data.find(key, start)
    if i < 0:
        return None
    i += len(key)
    j = i
    n = len(data)
    while j < n and data[j] in b"-0123456789":
        j += 1
    return int(data[i:j]) if j > i else None


class Subscriber:
    """One socket's view: what it received, in order."""

    __slots__ = ("stats", "last_seq", "last_available", "received", "ready", "closed", "send")

    def __init__(self, stats):
        self.stats = stats
        self.last_seq = None
        self.last_available = None
        self.received = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = False
        self.send = None

    def attach(self, send, join):
        """The socket is open: `send` writes a text frame; a Marquee subscriber joins, a plain one is ready at once."""
        self.send = send
        if join:
            send(join)
        else:
            self.ready.set_result(True)

    def on_text(self, data, now):
        stats = self.stats
        i = data.find(b'"commit_timestamp":"')
        if i < 0:
            if not self.ready.done() and (b'"event":"system"' in data or b'"event":"phx_reply"' in data and b'"error"' in data):
                if b'"status":"ok"' in data:
                    self.ready.set_result(True)
                else:
                    self.ready.set_exception(RuntimeError(data[:300].decode(errors="replace")))
            return
        if not stats.measuring:
            stats.before_start += 1
        r = data.find(b'"record":', i)
        seq = read_int(data, b'"version":', r)
        available = read_int(data, b'"available":', r)
        stats.latencies.append(now - parse_ts(bytes(data[i + 20:i + 44])))
        stats.delivered += 1
        stats.frame_bytes += len(data)
        self.received += 1
        last = self.last_seq
        if last is not None and seq is not None:
            if seq <= last:
                stats.duplicates += 1
                return
            if seq > last + 1:
                stats.gaps += seq - last - 1
        self.last_seq = seq
        self.last_available = available
        target = stats.target
        if target is not None and seq is not None and seq >= target and (last is None or last < target):
            stats.reached += 1
            if stats.reached >= stats.need:
                stats.done.set()


class Stats:
    def __init__(self):
        self.latencies = array.array("d")
        self.delivered = 0
        self.duplicates = 0
        self.gaps = 0
        self.before_start = 0
        self.frame_bytes = 0
        self.measuring = False
        self.target = None
        self.reached = 0
        self.need = 0
        self.done = None


def marquee_join(event_id):
    return ('{"topic":"realtime:event-%s-tickets","event":"phx_join","ref":"1","join_ref":"1","payload":{"config":'
            '{"postgres_changes":[{"event":"UPDATE","schema":"public","table":"event_tickets","filter":"event_id=eq.%s"}]}}}'
            % (event_id, event_id)).encode()


async def open_picows(sub, url, source, join):
    from picows import WSListener, WSMsgType, ws_connect

    class Listener(WSListener):
        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.TEXT:
                sub.on_text(frame.get_payload_as_bytes(), time.time())
            elif frame.msg_type == WSMsgType.CLOSE:
                sub.closed = True
                transport.disconnect()

        def on_ws_disconnected(self, transport):
            sub.closed = True
            if not sub.ready.done():
                sub.ready.set_exception(ConnectionError("closed before subscribed"))

    def factory(_parsed):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((source, 0))
        s.setblocking(False)
        return s

    transport, _ = await ws_connect(Listener, url, socket_factory=factory, websocket_handshake_timeout=60,
                                    max_frame_size=16 * 1024 * 1024)
    sub.attach(lambda data: transport.send(WSMsgType.TEXT, data), join)

    async def close():
        transport.disconnect()
        await transport.wait_disconnected()
    return close


async def open_websockets(sub, url, source, join):
    import websockets

    ws = await websockets.connect(url, max_size=None, open_timeout=60, local_addr=(source, 0), compression=None,
                                  ping_interval=None)

    async def reader():
        try:
            async for message in ws:
                sub.on_text(message.encode() if isinstance(message, str) else message, time.time())
        except Exception:
            pass
        sub.closed = True
        if not sub.ready.done():
            sub.ready.set_exception(ConnectionError("closed before subscribed"))

    task = asyncio.get_running_loop().create_task(reader())
    sub.attach(lambda data: asyncio.ensure_future(ws.send(data.decode())), join)

    async def close():
        task.cancel()
        await ws.close()
    return close


def worker_main(conn, spec):
    """Runs in a worker process: opens spec['count'] subscribers, then answers the parent's commands."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    raise_nofile()
    asyncio.run(_worker(conn, spec))


async def _worker(conn, spec):
    loop = asyncio.get_running_loop()
    stats = Stats()
    subs = []
    closers = []
    join = marquee_join(spec["event_id"]).replace(b"\n", b"") if spec["kind"] == "marquee" else None
    opener = open_picows if spec["client"] == "picows" else open_websockets
    gate = asyncio.Semaphore(spec.get("concurrency", 100))
    errors = Counter()

    async def one(i):
        sub = Subscriber(stats)
        source = spec["sources"][i % len(spec["sources"])]
        async with gate:
            try:
                closers.append(await opener(sub, spec["urls"][i % len(spec["urls"])], source, join))
                await asyncio.wait_for(sub.ready, 120)
                subs.append(sub)
            except Exception as exc:  # counted and reported; the run says how many failed
                errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1

    await asyncio.gather(*(one(i) for i in range(spec["count"])))
    conn.send(("ready", len(subs), dict(errors.most_common(5)), sum(errors.values())))

    async def heartbeats():
        ref = 0
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)  # the protocol's period, not a wait for a result
            ref += 1
            frame = ('{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"hb%d"}' % ref).encode()
            for sub in subs:
                if not sub.closed:
                    sub.send(frame)

    hb = loop.create_task(heartbeats()) if join else None
    commands = asyncio.Queue()

    def on_command():
        os.set_blocking(conn.fileno(), True)  # the event loop makes the pipe non-blocking; replies are sent whole
        commands.put_nowait(conn.recv())
    loop.add_reader(conn.fileno(), on_command)
    cpu0 = None
    while True:
        command = await commands.get()
        if command[0] == "start":
            stats.measuring = True
            stats.latencies = array.array("d")
            stats.delivered = stats.duplicates = stats.gaps = stats.frame_bytes = 0
            cpu0 = os.times()
            conn.send(("started",))
        elif command[0] == "final":
            _, seq, timeout = command
            stats.done = asyncio.Event()
            stats.need = sum(1 for s in subs if not s.closed)
            stats.reached = sum(1 for s in subs if not s.closed and s.last_seq is not None and s.last_seq >= seq)
            stats.target = seq
            if stats.reached >= stats.need:
                stats.done.set()
            try:
                await asyncio.wait_for(stats.done.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            stats.target = None
            conn.send(("final", sum(1 for s in subs if s.last_seq is not None and s.last_seq >= seq)))
        elif command[0] == "stop":
            cpu1 = os.times()
            last = Counter((s.last_seq, s.last_available) for s in subs)
            result = {"subscribed": len(subs), "closed": sum(1 for s in subs if s.closed), "delivered": stats.delivered,
                      "duplicates": stats.duplicates, "gaps": stats.gaps, "frame_bytes": stats.frame_bytes,
                      "latencies": stats.latencies.tobytes(), "last": dict(last),
                      "cpu_user": cpu1.user - cpu0.user if cpu0 else 0.0, "cpu_system": cpu1.system - cpu0.system if cpu0 else 0.0}
            if hb:
                hb.cancel()
            # close every socket and wait until each is closed (bounded), so that nothing is cut when the process exits
            try:
                await asyncio.wait_for(asyncio.gather(*(close() for close in closers), return_exceptions=True), 30)
            except asyncio.TimeoutError:
                pass
            loop.remove_reader(conn.fileno())
            os.set_blocking(conn.fileno(), True)
            conn.send(("stopped", result))
            return


class Workers:
    """A set of subscriber worker processes, driven from the parent. `url` is one server's socket URL, or a list of
    them (several nodes): each worker spreads its subscribers over the list."""

    def __init__(self, kind, url, total, workers=2, client="picows", event_id=None, concurrency=100):
        self.ctx = mp.get_context("spawn")
        sources = source_addresses(total)
        per = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
        self.procs, self.conns = [], []
        for n in per:
            if not n:
                continue
            parent, child = self.ctx.Pipe()
            spec = {"kind": kind, "urls": [url] if isinstance(url, str) else list(url), "count": n, "client": client, "event_id": event_id, "sources": sources,
                    "concurrency": concurrency}
            p = self.ctx.Process(target=worker_main, args=(child, spec), daemon=True)
            p.start()
            self.procs.append(p)
            self.conns.append(parent)
        self.sources = sources

    def _recv(self, conn, timeout):
        if not conn.poll(timeout):
            raise TimeoutError("a load generator worker did not answer in time")
        return conn.recv()

    def open(self, timeout=600):
        """Waits until every worker has opened and subscribed its sockets; returns (subscribed, failed, errors)."""
        ok, failed, errors = 0, 0, {}
        deadline = time.monotonic() + timeout
        for conn in self.conns:
            _, n, errs, nfailed = self._recv(conn, max(1, deadline - time.monotonic()))
            ok += n
            failed += nfailed
            errors.update(errs)
        return ok, failed, errors

    def start(self):
        for conn in self.conns:
            conn.send(("start",))
        for conn in self.conns:
            self._recv(conn, 30)

    def wait_final(self, seq, timeout):
        """Waits (up to `timeout` s) until every subscriber has seen version `seq`; returns how many did."""
        for conn in self.conns:
            conn.send(("final", seq, timeout))
        return sum(self._recv(conn, timeout + 30)[1] for conn in self.conns)

    def stop(self):
        results = []
        for conn in self.conns:
            conn.send(("stop",))
        for conn in self.conns:
            results.append(self._recv(conn, 120)[1])
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join()
        merged = {"subscribed": 0, "closed": 0, "delivered": 0, "duplicates": 0, "gaps": 0, "frame_bytes": 0,
                  "cpu_user": 0.0, "cpu_system": 0.0, "last": Counter()}
        latencies = array.array("d")
        for r in results:
            for key in ("subscribed", "closed", "delivered", "duplicates", "gaps", "frame_bytes", "cpu_user", "cpu_system"):
                merged[key] += r[key]
            merged["last"].update(r["last"])
            latencies.frombytes(r["latencies"])
        merged["latencies"] = latencies
        return merged

    def kill(self):
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join()


def percentiles(values, ps=(50, 90, 99)):
    if not len(values):
        return {p: float("nan") for p in ps} | {"max": float("nan")}
    ordered = sorted(values)
    out = {p: ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] for p in ps}
    out["max"] = ordered[-1]
    return out


def proc_cpu(pid):
    """(user, system) CPU seconds of a process from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def proc_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


class ProcessGroup:
    """CPU and RSS of a server: one process, or a master and its workers (nginx), or a postmaster and its backends."""

    def __init__(self, pid, with_children=False):
        self.pid = pid
        self.with_children = with_children

    def pids(self):
        return [self.pid] + (children(self.pid) if self.with_children else [])

    def cpu(self):
        """Counts the group's exited children too (the parent's cutime/cstime), e.g. PostgreSQL backends that ended."""
        user = system = 0.0
        if self.with_children:
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                tck = os.sysconf("SC_CLK_TCK")
                user += int(fields[13]) / tck
                system += int(fields[14]) / tck
            except OSError:
                pass
        for pid in self.pids():
            try:
                u, s = proc_cpu(pid)
            except OSError:
                continue
            user += u
            system += s
        return user, system

    def rss(self):
        total = 0
        for pid in self.pids():
            try:
                total += proc_rss(pid)
            except OSError:
                pass
        return total
