"""The connection machines' last-head memo: a head read again as the very same bytes is not tokenized and
checked again, and is read exactly as a fresh machine would read it (same events, same refusals)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.core.connection import END, ERROR, REQUEST, RESPONSE, DATA, Phase, RequestReader, ResponseReader
from ferryman.core.http import check_request_head
from ferryman.server.tokenizer import RequestTokenizer, ResponseTokenizer


class Counting:
    """A real tokenizer that counts the heads it finished."""

    def __init__(self, inner: RequestTokenizer | ResponseTokenizer) -> None:
        self.inner = inner
        self.heads = 0

    def feed(self, data: bytes, final: bool):  # noqa: ANN201
        if final:
            self.heads += 1
        return self.inner.feed(data, final)

    def reset(self) -> None:
        self.inner.reset()


def request_reader() -> tuple[RequestReader, Counting]:
    tok = Counting(RequestTokenizer(8192, 100, 32768))
    return RequestReader(tok, lambda m, t, v, h: check_request_head(m, t, v, h, is_vouched=lambda n: False),
                         8192 + 32768), tok


def read(r: RequestReader, data: bytes) -> list:
    """The events of one read, then the answer is written (the next request may start)."""
    out = []
    for kind, value in r.feed(data):
        if kind == REQUEST:
            out.append((kind, value.method, value.target, value.host, value.keep_alive, value.headers))
        elif kind == ERROR:
            out.append((kind, value.status, str(value)))
        else:
            out.append((kind, value))
    if r.phase is Phase.DONE and r.head is not None and r.head.keep_alive:
        r.next_request()
    return out


GET = b"GET /a?x=1 HTTP/1.1\r\nHost: example.org\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n"


def test_a_repeated_request_head_is_tokenized_and_checked_once():
    r, tok = request_reader()
    first = read(r, GET)
    assert read(r, GET) == first == [
        (REQUEST, b"GET", b"/a?x=1", b"example.org", True,
         [(b"user-agent", b"t"), (b"accept", b"*/*")]), (END, None)]
    assert tok.heads == 1


def test_a_head_differing_by_one_byte_is_tokenized_and_checked_again():
    r, tok = request_reader()
    read(r, GET)
    assert read(r, GET.replace(b"/a?", b"/b?"))[0][2] == b"/b?x=1"
    assert tok.heads == 2


def test_a_refused_head_is_refused_again_when_its_bytes_repeat():
    bad = b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
    for _ in range(2):
        r, _ = request_reader()
        read(r, GET)
        assert read(r, bad)[0][:2] == (ERROR, 400)
        assert r.phase is Phase.CLOSED


def test_a_repeated_response_head_is_read_again_for_the_method_it_answers():
    tok = Counting(ResponseTokenizer())
    r = ResponseReader(tok, 8192)
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    r.expect(b"GET", False)
    events = r.feed(data + b"ok")
    assert [k for k, _ in events] == [RESPONSE, DATA, END]
    r.release()
    r.expect(b"GET", False)
    again = r.feed(data + b"ok")
    assert [k for k, _ in again] == [RESPONSE, DATA, END] and again[0][1] is events[0][1]
    assert tok.heads == 1
    r.release()
    r.expect(b"HEAD", False)  # the same bytes answer a HEAD: no body follows them
    head = r.feed(data)
    assert [k for k, _ in head] == [RESPONSE, END] and r.reusable
    assert tok.heads == 2


HEADS = [
    GET,
    GET.replace(b"/a?x=1", b"/a/../b"),
    b"GET /a HTTP/1.0\r\nHost: a\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET /a HTTP/1.1\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n",
    b"TRACE /a HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET  /a HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(HEADS), min_size=1, max_size=8))
def test_a_connection_reads_every_head_as_a_fresh_connection_would(heads):
    r, _ = request_reader()
    for data in heads:
        if r.phase is not Phase.IDLE:
            break
        fresh, _ = request_reader()
        assert read(r, data) == read(fresh, data)
