"""A static route: ferryman itself serves the files of a directory, over real sockets."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from pathlib import Path

import pytest

from tests.support import REPO, ClientConn, Ferryman, build_request, wait_until

BODY = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


def toml(media: Path, extra_route: str = "", listener: str = "", member: str = "http://127.0.0.1:9/") -> str:
    return (f'[[listener]]\nname = "http"\nbind = "127.0.0.1:0"\naccess_log = {{ format = "json" }}\n{listener}\n\n'
            f'[pool.app]\nmembers = [{{ url = "{member}" }}]\n\n[[route]]\npath = "/webapps"\npool = "app"\n\n'
            f'[[route]]\npath = "/media"\nstatic = "{media}"\nstatic_max_age = "1h"\n{extra_route}')


@pytest.fixture()
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    (root / "file.bin").write_bytes(BODY)
    (root / "page.html").write_text("<p>hi</p>")
    (root / "sub" / "note.txt").write_text("inside\n")
    (root / ".hidden").write_text("hidden\n")
    (tmp_path / "secret.txt").write_text("SECRET-OUTSIDE\n")
    os.symlink(root / "sub" / "note.txt", root / "link-in.txt")
    os.symlink(tmp_path / "secret.txt", root / "link-out.txt")
    os.symlink(tmp_path, root / "dir-out")
    return root


@pytest.fixture()
def front(media: Path):
    with Ferryman(toml(media)) as f:
        yield f


def test_a_file_is_served_with_its_type_validators_and_cache_control(front) -> None:
    with ClientConn(front.port()) as c:
        r = c.request("GET", "/media/file.bin")
        assert r.status == 200 and r.body == BODY
        assert r.header("content-type") == "application/octet-stream"
        assert r.header("x-content-type-options") == "nosniff"
        assert r.header("accept-ranges") == "bytes"
        assert r.header("cache-control") == "max-age=3600"
        assert r.header("etag", "").startswith('"') and r.header("last-modified", "").endswith(" GMT")
        page = c.request("GET", "/media/page.html")
        assert page.header("content-type") == "text/html; charset=utf-8" and page.body == b"<p>hi</p>"


def test_a_matching_etag_or_an_unchanged_date_gets_304_without_a_body(front) -> None:
    with ClientConn(front.port()) as c:
        first = c.request("GET", "/media/file.bin")
        etag, modified = first.header("etag"), first.header("last-modified")
        by_tag = c.request("GET", "/media/file.bin", {"If-None-Match": f'"nope", {etag}'})
        assert by_tag.status == 304 and by_tag.body == b"" and by_tag.header("etag") == etag
        by_date = c.request("GET", "/media/file.bin", {"If-Modified-Since": modified})
        assert by_date.status == 304 and by_date.body == b""
        changed = c.request("GET", "/media/file.bin", {"If-None-Match": '"other"'})
        assert changed.status == 200 and changed.body == BODY


def test_ranges_give_206_with_the_right_bytes_and_content_range(front) -> None:
    size = len(BODY)
    with ClientConn(front.port()) as c:
        first = c.request("GET", "/media/file.bin", {"Range": "bytes=0-99"})
        assert first.status == 206 and first.body == BODY[:100]
        assert first.header("content-range") == f"bytes 0-99/{size}"
        suffix = c.request("GET", "/media/file.bin", {"Range": "bytes=-300"})
        assert suffix.status == 206 and suffix.body == BODY[-300:]
        assert suffix.header("content-range") == f"bytes {size - 300}-{size - 1}/{size}"
        open_ended = c.request("GET", "/media/file.bin", {"Range": "bytes=10000-"})
        assert open_ended.status == 206 and open_ended.body == BODY[10000:]
        assert open_ended.header("content-length") == str(size - 10000)


def test_an_unsatisfiable_range_gets_416_naming_the_size(front) -> None:
    with ClientConn(front.port()) as c:
        r = c.request("GET", "/media/file.bin", {"Range": f"bytes={len(BODY)}-"})
        assert r.status == 416 and r.header("content-range") == f"bytes */{len(BODY)}"
        assert c.request("GET", "/media/page.html").status == 200  # the connection goes on


def test_if_range_with_a_stale_validator_gets_the_whole_file(front) -> None:
    with ClientConn(front.port()) as c:
        etag = c.request("HEAD", "/media/file.bin").header("etag")
        stale = c.request("GET", "/media/file.bin", {"Range": "bytes=0-9", "If-Range": '"stale"'})
        assert stale.status == 200 and stale.body == BODY
        fresh = c.request("GET", "/media/file.bin", {"Range": "bytes=0-9", "If-Range": etag})
        assert fresh.status == 206 and fresh.body == BODY[:10]


def test_head_gets_the_headers_of_get_and_no_body(front) -> None:
    with ClientConn(front.port()) as c:
        r = c.request("HEAD", "/media/file.bin")
        assert r.status == 200 and r.header("content-length") == str(len(BODY)) and r.body == b""
        assert c.request("GET", "/media/page.html").body == b"<p>hi</p>"  # no stray body bytes


def test_other_methods_get_405_with_allow(front) -> None:
    with ClientConn(front.port()) as c:
        r = c.request("POST", "/media/file.bin", body=b"x=1")
        assert r.status == 405 and r.header("allow") == "GET, HEAD"
        assert c.request("GET", "/media/page.html").status == 200


def test_a_body_on_a_get_is_read_and_discarded_and_the_connection_stays_open(front) -> None:
    with ClientConn(front.port()) as c:
        r = c.request("GET", "/media/page.html", body=b"ignored body")
        assert r.status == 200 and r.body == b"<p>hi</p>" and r.header("connection") is None
        assert c.request("GET", "/media/file.bin", {"Range": "bytes=0-0"}).body == BODY[:1]


def test_symlinks_inside_are_served_and_symlinks_leading_out_are_404(front) -> None:
    with ClientConn(front.port()) as c:
        assert c.request("GET", "/media/link-in.txt").body == b"inside\n"
        out = c.request("GET", "/media/link-out.txt")
        assert out.status == 404 and b"SECRET" not in out.body
        through = c.request("GET", "/media/dir-out/secret.txt")
        assert through.status == 404 and b"SECRET" not in through.body


@pytest.mark.parametrize("target", [
    "/media/../secret.txt", "/media/%2e%2e/secret.txt", "/media/%2E%2E/secret.txt", "/media/sub/..%2f..%2fsecret.txt",
    "/media/secret.txt%00", "/media/%00", "/media/.hidden", "/media/%2ehidden", "/media/sub%5c..%5c..%5csecret.txt",
])
def test_paths_naming_something_outside_or_hidden_are_refused(front, target: str) -> None:
    with ClientConn(front.port()) as c:
        c.send(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        r = c.read_response()
        assert r.status in (400, 404), target
        assert b"SECRET" not in r.body and b"hidden" not in r.body


def test_a_directory_is_404_with_or_without_a_trailing_slash(front) -> None:
    with ClientConn(front.port()) as c:
        for target in ("/media/sub", "/media/sub/", "/media", "/media/"):
            r = c.request("GET", target)
            assert r.status == 404 and b"note.txt" not in r.body, target


def test_a_static_answer_is_in_the_access_log_with_pool_static(front) -> None:
    with ClientConn(front.port()) as c:
        c.request("GET", "/media/file.bin?logged=1", {"Range": "bytes=0-9"})
    entry = json.loads(front.wait_for_access_log("logged=1"))
    assert entry["status"] == 206 and entry["pool"] == "static"


def _vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(key)


def _read_bytes(pid: int) -> int:
    """Bytes the process has read from files and sockets so far (/proc/PID/io, every thread)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


def test_a_64_mib_file_is_streamed_with_memory_bounded_and_stops_being_read_for_a_stalled_client(
        tmp_path: Path) -> None:
    media = tmp_path / "big"
    media.mkdir()
    size = 64 * 1024 * 1024
    with open(media / "big.bin", "wb") as fh:
        block = os.urandom(1 << 20)
        for _ in range(64):
            fh.write(block)
    with Ferryman(toml(media)) as f:
        with ClientConn(f.port()) as c:
            c.request("GET", "/media/missing")  # warm up: everything imported, one answer made
            before, read_before = _vm(f.pid, "VmHWM"), _read_bytes(f.pid)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            c.send(build_request("GET", "/media/big.bin"))
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.sock.recv(65536)
            # the client stops reading: ferryman must stop reading the file once its buffers are full
            seen = [-1, 0]

            def settled() -> bool:
                now = _read_bytes(f.pid)
                seen[1] = seen[1] + 1 if now == seen[0] else 0
                seen[0] = now
                return seen[1] >= 30

            wait_until(settled, 20, 0.01, "ferryman kept reading the file for a client that reads nothing")
            stalled_at = seen[0] - read_before
            assert stalled_at < 16 * 1024 * 1024, f"read {stalled_at / 2**20:.1f} MiB for a stalled client"
            got = len(head.partition(b"\r\n\r\n")[2])
            while got < size:
                data = c.sock.recv(1 << 20)
                assert data, "connection closed early"
                got += len(data)
            assert got == size
            assert b"content-length: 67108864" in head.lower()
            grown = _vm(f.pid, "VmHWM") - before
        assert grown < 24 * 1024 * 1024, f"ferryman grew {grown / 2**20:.1f} MiB serving a 64 MiB file"


def test_pipelined_requests_mixing_static_and_proxied_routes_are_answered_in_order(media: Path, echo_a) -> None:
    with Ferryman(toml(media, member=echo_a.url("/webapps"))) as f:
        with ClientConn(f.port()) as c:
            c.send(build_request("GET", "/media/page.html") + build_request("GET", "/webapps/echo?one")
                   + build_request("HEAD", "/media/file.bin") + build_request("GET", "/media/file.bin", {"Range": "bytes=5-9"})
                   + build_request("GET", "/webapps/echo?two") + build_request("GET", "/media/sub/note.txt"))
            answers = [c.read_response(m) for m in ("GET", "GET", "HEAD", "GET", "GET", "GET")]
    assert [a.status for a in answers] == [200, 200, 200, 206, 200, 200]
    assert answers[0].body == b"<p>hi</p>" and answers[3].body == BODY[5:10] and answers[5].body == b"inside\n"
    assert answers[1].json()["query"] == "one" and answers[4].json()["query"] == "two"
    assert answers[2].body == b""


def test_a_tls_listener_serves_a_file_with_ranges(media: Path, tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "front.pem"))
    big = media / "tls.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    listener = f'tls = {{ cert = "{tmp_path / "front.pem"}", key = "{tmp_path / "front.pem"}" }}'
    with Ferryman(toml(media, listener=listener)) as f:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        conn = http.client.HTTPSConnection("127.0.0.1", f.port(), context=ctx, timeout=15)
        conn.request("GET", "/media/tls.bin")
        whole = conn.getresponse()
        assert whole.status == 200 and whole.read() == big.read_bytes()
        conn.request("GET", "/media/tls.bin", headers={"Range": "bytes=-1000"})
        part = conn.getresponse()
        assert part.status == 206 and part.read() == big.read_bytes()[-1000:]
        conn.close()


def _open_files(pid: int, under: Path) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(under))
        except OSError:
            pass
    return count


def test_a_client_leaving_mid_file_releases_the_file_and_the_next_client_is_served(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    with Ferryman(toml(media)) as f:
        for _ in range(3):
            with ClientConn(f.port()) as c:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                c.send(build_request("GET", "/media/big.bin"))
                assert c.sock.recv(65536).startswith(b"HTTP/1.1 200")
                wait_until(lambda: _open_files(f.pid, media) == 1, 10, 0.02, "the file is not open while sent")
        wait_until(lambda: _open_files(f.pid, media) == 0, 10, 0.02, "the file stays open after the client left")
        with ClientConn(f.port()) as c:
            assert c.request("GET", "/media/big.bin", {"Range": "bytes=-4"}).body == (media / "big.bin").read_bytes()[-4:]


def test_on_asyncio_s_own_loop_a_plain_listener_sends_files_with_sendfile_and_keeps_pipelining(media: Path,
                                                                                                tmp_path: Path) -> None:
    """Without uvloop, asyncio's loop.sendfile has the kernel copy the file on plain transports."""
    blocker = tmp_path / "no-uvloop" / "uvloop"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("uvloop left out: this ferryman runs on asyncio")\n')
    big = os.urandom(5 * 1024 * 1024 + 3)
    (media / "big.bin").write_bytes(big)
    env = {"PYTHONPATH": f"{blocker.parent}{os.pathsep}{REPO}"}
    with Ferryman(toml(media), env=env) as f:
        with ClientConn(f.port()) as c:
            c.send(build_request("GET", "/media/big.bin") + build_request("GET", "/media/file.bin", {"Range": "bytes=1-2"})
                   + build_request("HEAD", "/media/page.html"))
            whole, part, head = c.read_response(), c.read_response(), c.read_response("HEAD")
        assert whole.status == 200 and whole.body == big
        assert part.status == 206 and part.body == BODY[1:3]
        assert head.status == 200 and head.header("content-length") == "9"
        line = json.loads(f.wait_for_access_log("big.bin"))
        assert line["status"] == 200


def test_a_static_route_with_auth_asks_for_credentials_before_any_file(media: Path, tmp_path: Path) -> None:
    import base64
    import hashlib

    (tmp_path / "users.htpasswd").write_text("ann:{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode() + "\n")
    auth = f'auth = {{ htpasswd = "{tmp_path / "users.htpasswd"}", realm = "media" }}\n'
    with Ferryman(toml(media, extra_route=auth)) as f:
        with ClientConn(f.port()) as c:
            denied = c.request("GET", "/media/file.bin")
            assert denied.status == 401 and denied.header("www-authenticate", "").startswith("Basic")
            assert BODY not in denied.body
            token = base64.b64encode(b"ann:pw").decode()
            ok = c.request("GET", "/media/file.bin", {"Authorization": f"Basic {token}", "Range": "bytes=0-3"})
            assert ok.status == 206 and ok.body == BODY[:4]
