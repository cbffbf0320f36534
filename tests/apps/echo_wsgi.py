"""A small plain-WSGI app for integration tests, served by gunicorn.

Mounted under the prefixes `/webapps` and `/other` (the app strips them itself), and at the root, so member
URLs like `http://127.0.0.1:PORT/webapps` work. Every response carries `X-Member: <host:port it listens on>`.

Endpoints (after the prefix):
  /echo                JSON: method, path, raw_uri, prefix, query, headers (HTTP_* as Header-Names and raw
                       environ keys), remote_addr, host, body_length, body_sha256, member
  /bytes?size=N        N pattern bytes with Content-Length
  /stream?size=N       N pattern bytes, no length (gunicorn sends chunked to HTTP/1.1 clients)
  /upload              reads the body in chunks: JSON length, sha256, content_length, transfer_encoding
  /redirect?to=PATH&abs=1&status=302&header=Location
                       Location = PATH (default <prefix>/target), absolute with the app's own host:port if abs=1
  /setcookie?c=RAW...  one Set-Cookie per `c`; default two cookies with Path under the prefix and a Domain
  /status/<code>       that status
  /slow?ms=N           answers after N ms (a deadline wait on an Event nobody sets)
  /slowbody?ms=N&size= head + first byte at once, the rest after N ms
  /head                GET: body "head-body"; HEAD: same headers, no body
  /respheaders?h=Name:Value...   adds those response headers

`pattern(size)` / `pattern_sha256(size)` give the exact bytes /bytes and /stream produce.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from urllib.parse import parse_qs

PREFIXES = ("/webapps", "/other")
_PERIOD = 65521  # prime, so 64 KiB chunks never line up with the pattern: reordering is detectable
_BASE = random.Random(20240601).randbytes(_PERIOD)
_BIG = _BASE * 18  # ~1.2 MB: any chunk up to 1 MiB is one slice at any offset
CHUNK = 65536
_NEVER = threading.Event()


def pattern(size: int, chunk: int = CHUNK):
    """Yield `size` deterministic bytes in chunks of `chunk` (at most 1 MiB)."""
    if not 0 < chunk <= len(_BIG) - _PERIOD:
        raise ValueError(f"chunk must be 1..{len(_BIG) - _PERIOD}")
    pos = 0
    while pos < size:
        n = min(chunk, size - pos)
        off = pos % _PERIOD
        yield _BIG[off:off + n]
        pos += n


def pattern_sha256(size: int) -> str:
    h = hashlib.sha256()
    for block in pattern(size, 1 << 17):
        h.update(block)
    return h.hexdigest()


def pattern_bytes(size: int) -> bytes:
    return b"".join(pattern(size))


def _member(environ) -> str:
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        try:
            host, port = sock.getsockname()[:2]
            return f"{host}:{port}"
        except OSError:
            pass
    return f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"


def _headers(environ) -> dict[str, str]:
    out = {}
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            out["-".join(p.capitalize() for p in k[5:].split("_"))] = v
    if "CONTENT_TYPE" in environ and environ["CONTENT_TYPE"]:
        out["Content-Type"] = environ["CONTENT_TYPE"]
    if "CONTENT_LENGTH" in environ and environ["CONTENT_LENGTH"]:
        out["Content-Length"] = environ["CONTENT_LENGTH"]
    return out


def _read_body(environ) -> tuple[int, str]:
    stream = environ["wsgi.input"]
    h = hashlib.sha256()
    n = 0
    while True:
        block = stream.read(CHUNK)
        if not block:
            break
        n += len(block)
        h.update(block)
    return n, h.hexdigest()


def _json(start_response, status: str, obj, extra=()):
    body = json.dumps(obj, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra])
    return [body]


def app(environ, start_response):
    member = _member(environ)
    path = environ.get("PATH_INFO", "")
    prefix = ""
    for p in PREFIXES:
        if path == p or path.startswith(p + "/"):
            prefix, path = p, path[len(p):]
            break
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    method = environ["REQUEST_METHOD"]
    base = [("X-Member", member)]

    def q(name: str, default: str | None = None) -> str | None:
        return query.get(name, [default])[0]

    def start(status, headers, exc_info=None):
        return start_response(status, [*headers, *base], exc_info)

    if path == "/echo":
        length, sha = _read_body(environ)
        return _json(start, "200 OK", {
            "method": method,
            "path": environ.get("PATH_INFO", ""),
            "raw_uri": environ.get("RAW_URI", ""),
            "prefix": prefix,
            "rest": path,
            "query": environ.get("QUERY_STRING", ""),
            "headers": _headers(environ),
            "environ_http": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
            "remote_addr": environ.get("REMOTE_ADDR"),
            "host": environ.get("HTTP_HOST"),
            "body_length": length,
            "body_sha256": sha,
            "member": member,
            "protocol": environ.get("SERVER_PROTOCOL"),
        })
    if path == "/upload":
        length, sha = _read_body(environ)
        return _json(start, "200 OK", {
            "length": length, "sha256": sha,
            "content_length": environ.get("CONTENT_LENGTH"),
            "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
            "member": member,
        })
    if path == "/bytes":
        size = int(q("size", "0"))
        start("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
        return pattern(size)
    if path == "/stream":
        size = int(q("size", "0"))
        start("200 OK", [("Content-Type", "application/octet-stream")])
        return pattern(size)
    if path == "/redirect":
        target = q("to") or f"{prefix}/target"
        if q("abs") == "1":
            target = f"http://{member}{target}"
        status = int(q("status", "302"))
        header = q("header", "Location")
        body = b"moved\n"
        start(f"{status} Redirect", [(header, target), ("Content-Type", "text/plain"),
                                     ("Content-Length", str(len(body)))])
        return [body]
    if path == "/setcookie":
        cookies = query.get("c") or [
            f"a=1; Path={prefix}/sub; HttpOnly",
            f"b=2; Domain=app1.internal; Path={prefix or '/'}; Secure",
        ]
        body = b"cookies\n"
        start("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                         *[("Set-Cookie", c) for c in cookies]])
        return [body]
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        if code in (204, 304):
            start(f"{code} Status", [])
            return [b""]
        body = f"status {code}\n".encode()
        start(f"{code} Status", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/slow":
        ms = int(q("ms", "1000"))
        _NEVER.wait(ms / 1000)
        return _json(start, "200 OK", {"slept_ms": ms, "member": member})
    if path == "/slowbody":
        ms = int(q("ms", "1000"))
        size = int(q("size", "2"))
        start("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])

        def gen():
            yield b"x"
            _NEVER.wait(ms / 1000)
            yield b"x" * (size - 1)
        return gen()
    if path == "/head":
        body = b"head-body"
        start("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                         ("X-Head-Test", "yes")])
        return [b""] if method == "HEAD" else [body]
    if path == "/respheaders":
        hs = []
        for item in query.get("h", []):
            name, _, value = item.partition(":")
            hs.append((name, value.strip()))
        body = b"headers\n"
        start("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *hs])
        return [body]
    body = f"not found: {path}\n".encode()
    start("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
