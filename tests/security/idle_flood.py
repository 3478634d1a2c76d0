"""One worker of the idle-connection flood (tests/security/test_security_connections.py): opens `count` TCP connections
to HOST:PORT from each given source address, sends nothing, and watches which of them the server closes.

    python idle_flood.py HOST PORT COUNT RATE SOURCE [SOURCE…]

RATE is connects per second (0: as fast as possible). A flood faster than the server accepts mostly fills the
kernel's accept queue, and what overflows it is dropped there: its client believes it connected, the server never
hears of it. Pacing near the server's accept rate makes it hold the connections.

Talks on stdin/stdout, one JSON object a line: prints {"connected": n, "failed": f} once every connect has finished
(established or failed), then answers each `report` line with {"connected", "failed", "open", "closed", "bytes"}
(`closed`: connections the server closed, `bytes`: what it sent on them), and closes everything and exits on `quit`
or when stdin ends (so that it never outlives the test)."""

import errno
import json
import os
import resource
import select
import socket
import sys
import threading
import time

IP_BIND_ADDRESS_NO_PORT = 24


def main():
    host, port, count, rate, sources = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = count * len(sources) + 64
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    poller = select.epoll()
    pending, established = {}, {}
    failed = 0
    started, made = time.monotonic(), 0
    for _ in range(count):
        for source in sources:
            if rate > 0:
                ahead = made / rate - (time.monotonic() - started)
                if ahead > 0.01:
                    time.sleep(ahead)  # the flood's pace
            made += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((source, 0))
            s.setblocking(False)
            code = s.connect_ex((host, port))
            if code not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            pending[s.fileno()] = s
            poller.register(s.fileno(), select.EPOLLOUT)

    lock = threading.Lock()
    closed, received = 0, 0
    reported = False

    def watch():
        nonlocal failed, closed, received, reported
        while True:
            events = poller.poll(0.2)
            with lock:
                for fd, mask in events:
                    if fd in pending:
                        s = pending.pop(fd)
                        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                            failed += 1
                            poller.unregister(fd)
                            s.close()
                        else:
                            established[fd] = s
                            poller.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                    elif fd in established:
                        s = established[fd]
                        try:
                            data = s.recv(65536)
                        except OSError:
                            data = b""
                        received += len(data)
                        if not data:
                            closed += 1
                            poller.unregister(fd)
                            del established[fd]
                            s.close()
                if not pending and not reported:
                    reported = True
                    print(json.dumps({"connected": closed + len(established), "failed": failed}), flush=True)

    threading.Thread(target=watch, daemon=True).start()
    for line in sys.stdin:
        command = line.strip()
        if command == "report":
            with lock:
                print(json.dumps({"connected": closed + len(established), "failed": failed, "open": len(established),
                                  "closed": closed, "bytes": received}), flush=True)
        elif command == "quit":
            break
    os._exit(0)  # the kernel closes every socket at once


if __name__ == "__main__":
    main()
