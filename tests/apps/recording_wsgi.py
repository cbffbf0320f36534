"""A WSGI app that records every request it receives, for the load-with-failures scenario.

Each request appends one line `METHOD ID` to the file named by `$RECORD_FILE` (one `os.write` on an
`O_APPEND` descriptor: whole lines even from several threads, and on disk before the answer is sent, so a
member killed mid-request has recorded it or not, never half). The id is the `id` query parameter for a GET
and the request body for a POST. `/ready` answers without recording (the readiness probe).
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs

_fd: int | None = None


def _record(line: bytes) -> None:
    global _fd
    if _fd is None:
        _fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, line)


def app(environ, start_response):  # noqa: ANN001, ANN201
    method = environ["REQUEST_METHOD"]
    if environ.get("PATH_INFO", "").endswith("/ready"):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"ready"]
    if method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        ident = environ["wsgi.input"].read(length)
    else:
        ident = parse_qs(environ.get("QUERY_STRING", "")).get("id", [""])[0].encode()
    _record(method.encode() + b" " + ident + b"\n")
    body = b"ok " + ident
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
