"""CPU time per proxied request with no sockets: ferryman's own Python path, steady and load-independent.

A client connection and a pooled backend connection get fake transports; each iteration feeds one GET
to the client side and one small response to the backend side, exactly as the event loop would, and
the minimum over several rounds of process CPU time is reported. What it leaves out is the kernel
(socket reads and writes) and the event loop; what it keeps is everything ferryman decides and parses.

    python bench/request_cpu.py [--requests 30000] [--rounds 7] [--access-log] [--uvloop]

`--access-log` writes the combined access log to a temporary file (as proxy_bench does for every peer);
`--uvloop` runs on uvloop's loop (ferryman's own), whose clock and timers are C. `--shared` runs it as
one worker of several does: its members bound to a shared member table, whose generation is read once per
request. `--vary` makes every
request and response head differ from the one before (a counter in the target and in a response header),
so no head is ever read twice: the path when the connection machines' last-head memo never hits.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ferryman.config.loader import load_config_text  # noqa: E402
from ferryman.plan import compile_plan  # noqa: E402
from ferryman.server.proxy import ClientConnection  # noqa: E402
from ferryman.server.runtime import Server  # noqa: E402
from ferryman.server.upstream import BackendConnection  # noqa: E402

CONFIG = """
[[listener]]
name = "http"
bind = "127.0.0.1:0"
access_log = { format = "ACCESS" }
max_requests_per_connection = 0  # one connection carries every measured request

[pool.app]
members = [{ url = "http://127.0.0.1:9/m" }]

[[route]]
path = "/p"
pool = "app"
"""
REQUEST = b"GET /p/x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.out.append(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--access-log", action="store_true", help="combined access log to a temporary file")
    ap.add_argument("--uvloop", action="store_true", help="uvloop's event loop instead of asyncio's")
    ap.add_argument("--vary", action="store_true", help="every head differs from the one before (no memo hits)")
    ap.add_argument("--shared", action="store_true",
                    help="as a worker of several: members bound to a shared member table, read once per request")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    access = f'combined", path = "{Path(tmp.name) / "access.log"}' if args.access_log else "off"
    config = load_config_text(CONFIG.replace("ACCESS", access), "bench.toml", Path(tmp.name))
    if args.uvloop:
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(compile_plan(config), loop)
    if args.shared:
        from ferryman.server.member_table import MemberTable, SharedMembers

        server.shared = SharedMembers(MemberTable.create(), {key: i for i, key in enumerate(server.members)},
                                      server.members)
        server.shared.refresh()
    member = server.pools["app"].members[0]
    backend = BackendConnection(member, member.max_response_head, loop)
    backend_transport = FakeTransport()
    backend.connection_made(backend_transport)
    member.conns.idle.append(backend)
    client = ClientConnection(server, server.listeners[0])
    client_transport = FakeTransport()
    client.connection_made(client_transport)

    def one() -> None:
        client.data_received(REQUEST)
        backend.data_received(RESPONSE)

    if args.vary:
        requests = [REQUEST.replace(b"/p/x", b"/p/x%d" % i) for i in range(2)]
        responses = [RESPONSE.replace(b"Content-Type", b"X-N: %d\r\nContent-Type" % i) for i in range(2)]
        turn = [0]

        def one() -> None:
            i = turn[0] = 1 - turn[0]
            client.data_received(requests[i])
            backend.data_received(responses[i])

    flush = [access.flush for access in server._logs.values()]

    def batch(n: int) -> None:
        # access-log lines go to the writer thread every 0.1 s (accesslog.FLUSH_DELAY): thousands of requests
        # at full load; here every 500, so the hand-over's cost still shows
        for i in range(n):
            one()
            if i % 500 == 499:
                for f in flush:
                    f()

    batch(2000)
    assert client_transport.out[-1].endswith(b"hello"), client_transport.out[-2:]
    best = float("inf")
    for _ in range(args.rounds):
        client_transport.out.clear()
        backend_transport.out.clear()
        t0 = time.process_time()
        batch(args.requests)
        best = min(best, time.process_time() - t0)
    what = ", ".join(["access log " + ("on" if args.access_log else "off"), "uvloop" if args.uvloop else "asyncio",
                      "every head differs" if args.vary else "heads repeat"]
                     + (["shared member table"] if args.shared else []))
    print(f"{best / args.requests * 1e6:.2f} us CPU per request (ferryman's Python path, no sockets; {what})")
    tmp.cleanup()


if __name__ == "__main__":
    main()
