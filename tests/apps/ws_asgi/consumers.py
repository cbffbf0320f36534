"""Channels consumers of the WebSocket test app (paths work under any prefix, as in urls.py).

  ws/echo            echoes every text and binary message back as it came
  ws/big             text "send N": answers one binary message of N pattern bytes (tests.apps.echo_wsgi.pattern);
                     a binary message: answers text JSON {"length", "sha256"} of what arrived
  ws/stall?key=K     takes one message, then stops reading until GET release/?key=K, so everything sent after
                     it piles up in front of the app (uvicorn stops reading its socket while a message waits);
                     after the release it counts binary messages and answers text "done" with JSON
                     {"messages", "bytes", "sha256"} of all of them, the first included
  ws/who             on connect sends JSON: member, port, path, query, headers, client, scheme, subprotocols;
                     then echoes like ws/echo
  ws/refuse          closes before accepting: the handshake is refused (uvicorn answers 403)

Every consumer accepts the first subprotocol the client offers; one opened with ?key=K is listed by
GET open/?key=K until the app sees its disconnect.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer

from tests.apps.echo_wsgi import pattern
from tests.apps.ws_asgi import state


class _Base(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        offered = self.scope.get("subprotocols") or []
        await self.accept(offered[0] if offered else None)
        if self.query("key"):
            state.OPEN.add(self.query("key"))

    async def disconnect(self, code: int) -> None:
        state.OPEN.discard(self.query("key"))

    def query(self, name: str, default: str = "") -> str:
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get(name)
        return values[0] if values else default


class EchoConsumer(_Base):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None:
            await self.send(bytes_data=bytes_data)
        else:
            await self.send(text_data=text_data)


class BigConsumer(_Base):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None:
            await self.send(text_data=json.dumps({"length": len(bytes_data),
                                                  "sha256": hashlib.sha256(bytes_data).hexdigest()}))
        elif text_data and text_data.startswith("send "):
            size = int(text_data.split()[1])
            await self.send(bytes_data=b"".join(pattern(size, 1 << 20)))


class StallConsumer(_Base):
    async def connect(self) -> None:
        self.key = self.query("key")
        self.messages = 0
        self.bytes = 0
        self.sha = hashlib.sha256()
        await super().connect()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.messages == 0:
            state.STALLED[self.key] = 1
            await state.release_event(self.key).wait()  # not reading: backpressure builds behind this
        if bytes_data is not None:
            self.messages += 1
            self.bytes += len(bytes_data)
            self.sha.update(bytes_data)
        elif text_data == "done":
            await self.send(text_data=json.dumps({"messages": self.messages, "bytes": self.bytes,
                                                  "sha256": self.sha.hexdigest()}))


class WhoConsumer(EchoConsumer):
    async def connect(self) -> None:
        await super().connect()
        scope = self.scope
        await self.send(text_data=json.dumps({
            "member": state.MEMBER,
            "port": state.PORT,
            "path": scope.get("path"),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope.get("headers", [])],
            "client": list(scope["client"]) if scope.get("client") else None,
            "scheme": scope.get("scheme"),
            "subprotocols": scope.get("subprotocols") or [],
        }))


class RefuseConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.close()
