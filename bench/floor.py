#!/usr/bin/env python3
"""The floor: the least a Python reverse proxy can do per request on this machine (uvloop + httptools).

Each client connection gets one keep-alive connection to the single backend. A request head is parsed
(httptools, one callback per header, as ferryman's) and written out again unchanged; its body follows as
it arrives. Response bytes are relayed to the client as they arrive while httptools finds where each
response ends (Content-Length, chunked). Reading pauses on either side while the other side's write buffer
is full. No validation, routing, forwarded headers, rewriting, access log or error handling: whatever
ferryman spends per request above this floor is the price of its work and of its own code.

    python bench/floor.py --listen 127.0.0.1:8000 --backend 127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import asyncio

import httptools
import uvloop


class Backend(asyncio.Protocol):
    """The backend side of one client connection: response bytes go straight to the client."""

    def __init__(self, client: Client) -> None:
        self.client, self.parser = client, httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"".join(self.client.pending))  # type: ignore[attr-defined]
        self.transport = transport  # type: ignore[assignment]
        self.client.pending = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)  # framing only: where each response ends
        self.client.transport.write(data)

    def on_message_complete(self) -> None:
        self.client.answered += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()

    def pause_writing(self) -> None:
        self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()


class Client(asyncio.Protocol):
    """One client connection: request heads re-serialised, bodies passed on, in order."""

    transport: asyncio.Transport

    def __init__(self, backend_addr: tuple[str, int]) -> None:
        self.backend_addr, self.parser = backend_addr, httptools.HttpRequestParser(self)
        self.backend = Backend(self)
        self.pending: list[bytes] = []
        self.head: list[bytes] = []
        self.chunked = False
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        loop.create_task(loop.create_connection(lambda: self.backend, *self.backend_addr))

    def send(self, data: bytes) -> None:
        if self.backend.transport is None:
            self.pending.append(data)
        else:
            self.backend.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.head, self.chunked = [self.parser.get_method(), b" ", url, b" HTTP/1.1\r\n"], False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head += (name, b": ", value, b"\r\n")
        if name.lower() == b"transfer-encoding":
            self.chunked = True

    def on_headers_complete(self) -> None:
        self.send(b"".join(self.head) + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.send(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body)  # httptools de-chunks

    def on_message_complete(self) -> None:
        if self.chunked:
            self.send(b"0\r\n\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.backend.transport is not None:
            self.backend.transport.close()

    def pause_writing(self) -> None:
        if self.backend.transport is not None:
            self.backend.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.backend.transport is not None:
            self.backend.transport.resume_reading()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="host:port to listen on")
    parser.add_argument("--backend", required=True, help="host:port of the one backend")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    bhost, bport = args.backend.rsplit(":", 1)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Client((bhost, int(bport))), host, int(port), backlog=4096)
        await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
