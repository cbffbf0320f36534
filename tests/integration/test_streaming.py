"""Large bodies stream through ferryman both ways, intact (sha256 end to end), with Content-Length and chunked.

Normal tier: 64 MiB each way. `slow` tier: 1 GiB each way.
Rule: bodies are streamed both ways with backpressure, never buffered whole.
"""

from __future__ import annotations

import pytest

from tests.apps.echo_wsgi import pattern, pattern_sha256
from tests.support import Ferryman, config, stream_exchange

pytestmark = pytest.mark.integration

MiB = 1 << 20
GiB = 1 << 30


@pytest.fixture(scope="module")
def proxy(echo_a):
    with Ferryman(config([echo_a.url("/webapps")], "/public")) as f:
        yield f


def download(proxy, endpoint: str, size: int):
    head = b"GET /public/%s?size=%d HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n" % (
        endpoint.encode(), size)
    return stream_exchange(proxy.port(), head, timeout=300)


def _check_upload_answer(proxy, size, chunked):
    # the app's answer is a small JSON document (length and sha256 of what it read)
    import json
    import socket
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
    head = b"POST /public/upload HTTP/1.1\r\nHost: test.local\r\n" + framing + b"\r\nConnection: close\r\n\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", proxy.port()), timeout=300) as s:
        buf = bytearray()
        try:
            s.sendall(head)
            for piece in pattern(size, 1 << 18):
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except OSError as exc:
            # ferryman stopped reading the body: show what it answered instead of only the socket error
            try:
                buf += s.recv(1 << 16)
            except OSError:
                pass
            pytest.fail(f"upload cut after {sent} of {size} body bytes ({exc!r}); ferryman answered {bytes(buf[:200])!r}")
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    from tests.support import parse_responses
    [resp] = parse_responses(bytes(buf))
    assert resp.status == 200, resp
    return json.loads(resp.body)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_64_mib_upload_reaches_the_app_intact(proxy, chunked):
    answer = _check_upload_answer(proxy, 64 * MiB, chunked)
    assert answer["length"] == 64 * MiB
    assert answer["sha256"] == pattern_sha256(64 * MiB)


@pytest.mark.parametrize("endpoint, framing", [("bytes", "content-length"), ("stream", "chunked")])
def test_a_64_mib_download_reaches_the_client_intact(proxy, endpoint, framing):
    result = download(proxy, endpoint, 64 * MiB)
    assert result.status == 200
    assert result.complete
    assert result.framing == framing
    assert result.length == 64 * MiB
    assert result.sha256 == pattern_sha256(64 * MiB)


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_1_gib_upload_reaches_the_app_intact(proxy, chunked):
    answer = _check_upload_answer(proxy, GiB, chunked)
    assert answer["length"] == GiB
    assert answer["sha256"] == pattern_sha256(GiB)


@pytest.mark.slow
@pytest.mark.parametrize("endpoint, framing", [("bytes", "content-length"), ("stream", "chunked")])
def test_a_1_gib_download_reaches_the_client_intact(proxy, endpoint, framing):
    result = download(proxy, endpoint, GiB)
    assert (result.status, result.complete, result.framing) == (200, True, framing)
    assert result.length == GiB
    assert result.sha256 == pattern_sha256(GiB)
