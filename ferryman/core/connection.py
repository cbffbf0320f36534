"""The two HTTP/1.1 connection state machines: a client's requests and a backend's responses.

Theory of operation
-------------------
The I/O layer owns the sockets and feeds every byte it reads to a machine: `RequestReader` for a client
connection, `ResponseReader` for a backend connection. A machine answers with events (a list of
`(kind, value)` pairs) and keeps, in `phase`, where the connection stands. Every phase change goes
through `_move`, which checks it against the table `TRANSITIONS`; a change not listed there raises
`IllegalTransition` (a bug in ferryman, never a peer's fault).

Bytes are split into messages here, to the byte. A head ends at the first CRLF CRLF; what lies before it
goes to a `HeadTokenizer` (the I/O layer's fast C tokenizer, injected so this module stays pure), which
reports method, target or status, version and header list, and refuses malformed lines as it goes. The
body is decoded by `ferryman.core.bodies` (fixed length, chunked, or until close), so the machine knows
exactly where the next message starts.

- **Keep-alive and pipelining.** A client may send its next request before the answer to the current one.
  Its bytes are held, not parsed, until the I/O layer calls `RequestReader.next_request()` after the answer
  is written; so requests are answered strictly in order, a bad request is refused only in its turn, and a
  request line is always checked whole, however the bytes were split across reads.
- **Request line.** Exactly `method SP target SP version` (RFC 9112 3): a doubled space is refused here
  from the head's own bytes (the tokenizer tolerates it); body bytes are never looked at for it.
- **100-continue.** The machine reports the head; whether and when to send `100 Continue` is the
  exchange's decision (see `ferryman.core.decisions`).
- **HEAD, 1xx, 204, 304.** A backend's answer to HEAD, and 204/304, have no body whatever they declare
  (RFC 9112 6.3 rule 1). Interim 100/102/103 answers are read and dropped; ferryman answers `Expect` itself.
  At most `max_interim` of them are taken per request: a backend sending more before its final answer is
  a protocol error as soon as the interim head past the bound is complete, so a stream of interim heads
  cannot hold an exchange until its response timeout.
- **A close before the final head.** Nothing of the answer has been relayed yet, whether no byte or part
  of a head (or interim answers only) arrived: it is the same event, `EARLY_CLOSE`, and the retry rule
  decides as for a close before any byte.
- **Close-delimited bodies.** A response with neither Content-Length nor chunked framing ends when the
  backend closes (rule 8); such a connection is never reused.
- **Bytes after a message.** From a backend, any byte after a response's declared end, in the same read
  or while the connection is idle, is a protocol error: the connection is closed, never reused, and the
  bytes are never relayed (response queue poisoning). From a client, they are the next request.
- **Upgrade.** A request asking to switch protocols (`Connection: upgrade` + `Upgrade`) must have no body
  (a body would be skipped by intermediaries that switch, and smuggled into the next request): 400. If the
  backend answers 101 to such a request, both machines move to TUNNEL and every later byte is data to
  relay as it is. A 101 to a request that did not ask for it is a backend protocol error.
"""

from __future__ import annotations

import enum
from typing import Callable, Protocol

from ferryman.core.bodies import Body, ChunkedBody, LengthBody, UntilCloseBody
from ferryman.core.http import (
    BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE, RequestHead, ResponseHead, check_response_head,
)
from ferryman.errors import BadRequest, HttpError, UpstreamError, UpstreamProtocolError


class Phase(enum.IntEnum):
    """Where a connection stands, for either machine (an IntEnum: checked on every message, and int
    hashing is several times cheaper than Enum's)."""

    IDLE = 0       # between messages; for a backend: pooled, no request outstanding
    HEAD = 1       # a head is being read (for a backend: a request was sent, its answer awaited)
    BODY = 2       # the body of the current message is being read
    DONE = 3       # the message is complete; the connection waits for its other half
    TUNNEL = 4     # protocols were switched (101): bytes are relayed as they are
    CLOSED = 5     # nothing more is read: closed, refused, or a protocol error


class Role(enum.Enum):
    CLIENT = "client"      # the machine reads requests from a client
    BACKEND = "backend"    # the machine reads responses from a backend


_I, _H, _B, _D, _T, _C = Phase.IDLE, Phase.HEAD, Phase.BODY, Phase.DONE, Phase.TUNNEL, Phase.CLOSED

#: Every allowed phase change, per role. Anything else raises `IllegalTransition`.
TRANSITIONS: dict[Role, frozenset[tuple[Phase, Phase]]] = {
    Role.CLIENT: frozenset({
        (_I, _H),          # the first byte of a request arrived
        (_H, _B),          # head complete, a body follows
        (_H, _D),          # head complete, no body
        (_B, _D),          # body complete
        (_D, _I),          # the answer was written and the connection is kept: the next request may start
        (_D, _T),          # the backend switched protocols for this request
        (_I, _C), (_H, _C), (_B, _C), (_D, _C), (_T, _C),
    }),
    Role.BACKEND: frozenset({
        (_I, _H),          # a request was sent: its answer is awaited
        (_H, _H),          # an interim 1xx answer was read and dropped
        (_H, _B),          # final head read, a body follows
        (_H, _D),          # final head read, no body
        (_B, _D),          # body complete (declared end, or close for a close-delimited body)
        (_D, _I),          # released to the idle pool: reusable
        (_H, _T),          # 101 to an upgrade request
        (_I, _C), (_H, _C), (_B, _C), (_D, _C), (_T, _C),
    }),
}


# The tables as small ints (old * 8 + new), for the check on the hot path.
_ALLOWED: dict[Role, frozenset[int]] = {
    role: frozenset(old * 8 + new for old, new in pairs) for role, pairs in TRANSITIONS.items()}


class IllegalTransition(RuntimeError):
    """A machine was asked for a phase change its table does not allow: ferryman's own bug."""


# -- events ------------------------------------------------------------------------------------------
# Events are (kind, value) pairs: cheap to make on the hot path, easy to match on.

REQUEST = 1        # value: RequestHead
RESPONSE = 2       # value: ResponseHead
DATA = 3           # value: bytes (payload, framing removed)
END = 4            # value: None; the message is complete
ERROR = 5          # value: HttpError (client) or UpstreamError (backend); the machine is CLOSED
SWITCHED = 6       # value: ResponseHead (the 101); the machine is in TUNNEL
TUNNEL_DATA = 7    # value: bytes to relay as they are
EARLY_CLOSE = 8    # value: None; the backend closed before a final head was complete (retry may be allowed)
TRUNCATED = 9      # value: None; the backend closed inside a response's body

Event = tuple[int, object]


RawHead = tuple[bytes, bytes, str, list[tuple[bytes, bytes]]]
"""(method, target, version, headers) of a request; for a response (status as ASCII digits, b"", ...)."""


class HeadTokenizer(Protocol):
    """Tokenises one message head fed in pieces; raises an `HttpError` (client) or
    `UpstreamProtocolError` (backend) as soon as a piece is malformed."""

    def feed(self, data: bytes, final: bool) -> RawHead | None:
        """Take the next piece of a head; `final` is True when the piece ends at the blank line, and then
        the tokenised head is returned (and the tokenizer is ready for the next head)."""

    def reset(self) -> None:
        """Forget a partial head."""


_CRLF2 = b"\r\n\r\n"


class _Machine:
    __slots__ = ("role", "phase", "tokenizer", "max_head", "_head_len", "_carry", "body", "_allowed")

    def __init__(self, role: Role, tokenizer: HeadTokenizer, max_head: int) -> None:
        self.role = role
        self._allowed = _ALLOWED[role]
        self.phase = _I
        self.tokenizer = tokenizer
        self.max_head = max_head
        self._head_len = 0          # head bytes received so far
        self._carry = b""           # the last 3 bytes of a partial head (a CRLF CRLF may straddle reads)
        self.body: Body | None = None

    def _move(self, new: Phase) -> None:
        if self.phase * 8 + new not in self._allowed:
            raise IllegalTransition(f"{self.role.value} connection: {self.phase.name.lower()} -> "
                                    f"{new.name.lower()}")
        self.phase = new

    def _too_large(self) -> Exception:  # pragma: no cover - overridden
        raise NotImplementedError

    def _read_head(self, data: bytes, pos: int) -> tuple[RawHead | None, int]:
        """Feed head bytes from data[pos:] to the tokenizer, up to the CRLF CRLF ending the head.
        Returns (the tokenised head, or None while it goes on past `data`; the new position)."""
        carry = self._carry
        end = -1
        if carry:  # a CRLF CRLF may straddle the previous read and this one
            i = (carry + data[pos:pos + 3]).find(_CRLF2)
            if i >= 0:
                end = pos + i + 4 - len(carry)
        if end < 0:
            end = data.find(_CRLF2, pos)
            if end >= 0:
                end += 4
        stop = len(data) if end < 0 else end
        self._head_len += stop - pos
        if self._head_len > self.max_head:
            # the bytes up to the limit are tokenized first: a malformed byte before it is reported as
            # such however the reads were cut (the same answer for the same bytes)
            room = self.max_head - (self._head_len - (stop - pos))
            if room > 0:
                self.tokenizer.feed(data[pos:pos + room], False)
            raise self._too_large()
        piece = data[pos:stop] if pos or stop != len(data) else data
        if end < 0:
            self._carry = (carry + piece)[-3:]
            self.tokenizer.feed(piece, False)
            return None, stop
        self._carry = b""
        self._head_len = 0
        raw = self.tokenizer.feed(piece, True)
        if raw is None:  # pragma: no cover - a tokenizer that disagrees on where the head ends
            raise self._too_large()
        return raw, stop


class RequestReader(_Machine):
    """A client connection's requests, one at a time (see the module docstring).

    `check_head(method, target, version, headers)` validates a tokenised head into a `RequestHead`
    (`ferryman.core.http.check_request_head` with the listener's settings) or raises `HttpError`.
    `max_head`: most bytes a head may take (request line plus header block); more is answered 431.
    """

    __slots__ = ("check_head", "head", "_held", "_line", "_cr", "_last_raw", "_last_head")

    def __init__(self, tokenizer: HeadTokenizer, check_head: Callable[[bytes, bytes, str, list[tuple[bytes, bytes]]],
                 RequestHead], max_head: int) -> None:
        super().__init__(Role.CLIENT, tokenizer, max_head)
        self.check_head = check_head
        self.head: RequestHead | None = None
        self._held = b""           # bytes after the current request, read before its answer was written
        self._line: bytes | None = b""  # the request line so far while it spans reads; None once checked
        self._cr = False                # a CR ended the last read between requests
        # The last bodiless head read whole, and what it was checked into: a keep-alive client (a poller,
        # a health checker, a load generator) often sends the same bytes again, and the same bytes
        # always check into the same head (tokenizing and checking are pure functions of them), so
        # those bytes are not tokenized and checked again. Only heads that passed are kept.
        self._last_raw: bytes | None = None
        self._last_head: RequestHead | None = None

    def _too_large(self) -> Exception:
        return HttpError("request head too large", 431)

    def set_check(self, check_head: Callable[[bytes, bytes, str, list[tuple[bytes, bytes]]], RequestHead],
                  max_head: int) -> None:
        """New head rules (a configuration reload) for the heads read from now on; the remembered head
        was checked by the old ones, so it is forgotten."""
        self.check_head = check_head
        self.max_head = max_head
        self._last_raw = None
        self._last_head = None

    @property
    def held(self) -> int:
        """Bytes held for the next request (the I/O layer stops reading past a bound)."""
        return len(self._held)

    def feed(self, data: bytes) -> list[Event]:
        """Bytes from the client. Returns the events they complete."""
        phase = self.phase
        if phase is _D:
            if self.head is not None and self.head.keep_alive:
                self._held += data
            return []  # after a last request (Connection: close) nothing more is read
        if phase is _T:
            return [(TUNNEL_DATA, data)]
        if phase is _C:
            return []
        events: list[Event] = []
        try:
            if phase is _I and not self._cr and self._fast(data, events):
                return events
            self._parse(data, 0, events)
        except HttpError as err:
            self._fail(err, events)
        return events

    def _fast(self, data: bytes, events: list[Event]) -> bool:
        """The common case in one step: a whole bodiless request, alone in `data`. Returns False, having
        changed nothing, for anything else (the general path then reads it)."""
        if data == self._last_raw:  # the very bytes of the last bodiless head: its checked head
            head = self._last_head
            assert head is not None
            self.head = head
            self.phase = _D  # IDLE -> HEAD -> DONE, as below
            events.append((REQUEST, head))
            events.append((END, None))
            return True
        end = data.find(_CRLF2)
        if end < 0 or end + 4 != len(data) or data[0] == 13 or end + 4 > self.max_head:
            return False
        if data.count(b" ", 0, data.find(b"\n")) != 2:
            raise BadRequest("malformed request line")
        raw = self.tokenizer.feed(data, True)
        if raw is None:  # pragma: no cover - a tokenizer that disagrees on where the head ends
            raise self._too_large()
        head = self.check_head(*raw)
        if head.body != BODY_NONE and head.upgrade is not None:  # refused before it is reported, as below
            raise BadRequest("upgrade request with a body")
        self.head = head
        events.append((REQUEST, head))
        if head.body != BODY_NONE:  # a body follows in a later read
            self._move(_H)
            self._line = None
            self.body = LengthBody(head.content_length) if head.body == BODY_LENGTH else ChunkedBody()
            self._move(_B)
            return True
        self.phase = _D  # IDLE -> HEAD -> DONE, both listed: the branch proves the start was IDLE
        events.append((END, None))
        if head.upgrade is None:  # an upgrade is answered by a tunnel, never again on this connection
            self._last_raw = data
            self._last_head = head
        return True

    def _fail(self, err: HttpError, events: list[Event]) -> None:
        self._move(_C)
        self._held = b""
        events.append((ERROR, err))

    def _parse(self, data: bytes, pos: int, events: list[Event]) -> None:
        n = len(data)
        while pos < n:
            phase = self.phase
            if phase is _I:
                if self._cr:  # a CR ended the last read: with its LF it is an empty line
                    self._cr = False
                    if data[pos:pos + 1] == b"\n":
                        pos += 1
                        continue
                    data, pos = b"\r" + data[pos:], 0
                    n = len(data)
                else:
                    # RFC 9112 2.2: empty lines before a request line are ignored
                    while data.startswith(b"\r\n", pos):
                        pos += 2
                    if pos >= n:
                        return
                    if pos == n - 1 and data[pos] == 13:
                        self._cr = True
                        return
                self._move(_H)
                self._line = b""
            elif phase is _H:
                if self._line is not None:
                    line = self._check_line(data, pos)
                    if line is None:
                        return  # the request line goes on in the next read
                    if line:  # its start was held back from earlier reads: rejoined, the tokenizer
                        # reads the whole line in one piece, as when it came in one read
                        data, pos = line + data[pos:], 0
                        n = len(data)
                raw, pos = self._read_head(data, pos)
                if raw is None:
                    return
                head = self.check_head(*raw)
                if head.upgrade is not None and head.body != BODY_NONE:
                    raise BadRequest("upgrade request with a body")
                self.head = head
                events.append((REQUEST, head))
                if head.body == BODY_NONE:
                    self._move(_D)
                    events.append((END, None))
                else:
                    self.body = LengthBody(head.content_length) if head.body == BODY_LENGTH else ChunkedBody()
                    self._move(_B)
            elif phase is _B:
                body = self.body
                assert body is not None
                out: list[bytes] = []
                try:
                    pos, ended = body.feed(data, pos, out)
                finally:
                    for piece in out:  # payload decoded before a framing error is reported too
                        events.append((DATA, piece))
                if ended:
                    self.body = None
                    self._move(_D)
                    events.append((END, None))
            else:  # DONE: the rest waits for the answer
                current = self.head
                if current is not None and current.keep_alive:
                    self._held += data[pos:]
                return

    def _check_line(self, data: bytes, pos: int) -> bytes | None:
        """RFC 9112 3: exactly one SP between method, target and version, checked on the whole line
        before the tokenizer sees any of it (so the outcome never depends on how reads were cut).
        Returns None while the line is still incomplete (its bytes are kept), else the start of the line
        held back from earlier reads (b"" when it all came in this read)."""
        line = self._line
        assert line is not None
        nl = data.find(b"\n", pos)
        if nl < 0:
            line += data[pos:]
            if len(line) > self.max_head:
                raise HttpError("request line too long", 414)
            self._line = line
            return None
        whole = line + data[pos:nl] if line else data[pos:nl]
        self._line = None  # checked: not again for this head
        if whole.count(b" ") != 2:
            raise BadRequest("malformed request line")
        return line

    def next_request(self) -> list[Event]:
        """The answer to the current request is written and the connection stays: parse what was held."""
        if self.phase is _C:
            return []
        if self.phase is _D:
            self.phase = _I  # DONE -> IDLE, listed
        else:
            self._move(_I)  # raises: nothing was answered
        self.head = None
        held, self._held = self._held, b""
        events: list[Event] = []
        if held:
            try:
                self._parse(held, 0, events)
            except HttpError as err:
                self._fail(err, events)
        return events

    def switch(self) -> bytes:
        """The backend accepted the upgrade: from now on bytes are tunnel data. Returns the held bytes."""
        self._move(_T)
        held, self._held = self._held, b""
        return held

    def close(self) -> None:
        if self.phase is not _C:
            self._move(_C)
        self._held = b""

    def in_request(self) -> bool:
        """A request is partly read (its head or its body)."""
        return self.phase is _H or self.phase is _B


class ResponseReader(_Machine):
    """A backend connection's responses, one per request sent (see the module docstring).

    A final head is validated by `ferryman.core.http.check_response_head`. `max_head`: most bytes a
    response head may take; more is a protocol error (502). `max_interim`: most interim (1xx) answers
    taken before the final one of a request; one more is a protocol error (502).
    """

    __slots__ = ("method", "upgrade", "head", "keep_alive", "max_interim", "interim", "_last_raw",
                 "_last_method", "_last_head")

    def __init__(self, tokenizer: HeadTokenizer, max_head: int, max_interim: int = 32) -> None:
        super().__init__(Role.BACKEND, tokenizer, max_head)
        self.method = b"GET"
        self.upgrade = False
        self.head: ResponseHead | None = None
        self.keep_alive = False
        self.max_interim = max_interim
        self.interim = 0            # interim answers dropped for the outstanding request
        # The last head read whole by the fast path, the method it answered and what it was checked
        # into: a member often sends the same head bytes again (same status, length and headers), and
        # the same bytes for the same method always check into the same head, so they are not
        # tokenized and checked again. Only heads that passed are kept.
        self._last_raw: bytes | None = None
        self._last_method = b""
        self._last_head: ResponseHead | None = None

    def _too_large(self) -> Exception:
        return UpstreamProtocolError("response head too large")

    def expect(self, method: bytes, upgrade: bool) -> None:
        """A request was sent on this connection: its answer is awaited."""
        if self.phase is _I:
            self.phase = _H  # IDLE -> HEAD, listed
        else:
            self._move(_H)  # raises unless listed
        self.method = method
        self.upgrade = upgrade
        self.head = None
        self.interim = 0

    def feed(self, data: bytes) -> list[Event]:
        phase = self.phase
        if phase is _T:
            return [(TUNNEL_DATA, data)]
        if phase is _C:
            return []
        events: list[Event] = []
        try:
            if phase is _I or phase is _D:
                raise UpstreamProtocolError("bytes from the backend with no request outstanding")
            if phase is _H and not self._carry and self._fast(data, events):
                return events
            self._parse(data, events)
        except UpstreamError as err:
            self._move(_C)
            events.append((ERROR, err))
        return events

    def _fast(self, data: bytes, events: list[Event]) -> bool:
        """The common case in one step: a whole final response with a Content-Length body (or none),
        alone in `data`. Returns False, having changed nothing, for anything else."""
        end = data.find(_CRLF2)
        if end < 0 or end + 4 > self.max_head or data[9:10] == b"1" or data[:5] != b"HTTP/":
            return False  # 1xx, or a head not starting with its status line: the general path
        last = self._last_raw
        if last is not None and len(last) == end + 4 and data.startswith(last) and self._last_method == self.method:
            head = self._last_head
            assert head is not None
        else:
            raw = self.tokenizer.feed(data[:end + 4] if end + 4 != len(data) else data, True)
            if raw is None:  # pragma: no cover - a tokenizer that disagrees on where the head ends
                raise self._too_large()
            head = check_response_head(int(raw[0]), raw[2], raw[3], request_method=self.method)
            self._last_raw = data[:end + 4] if end + 4 != len(data) else data
            self._last_method = self.method
            self._last_head = head
        self.head = head
        self.keep_alive = head.keep_alive
        rest = len(data) - end - 4
        events.append((RESPONSE, head))
        if head.body == BODY_NONE:
            self.phase = _D  # HEAD -> DONE, listed: _fast runs only in HEAD
            events.append((END, None))
            if rest:
                raise UpstreamProtocolError("bytes after the end of a response")
            return True
        if head.body == BODY_LENGTH and rest == head.content_length:
            self.phase = _D  # HEAD -> BODY -> DONE, listed: the whole body is here
            events.append((DATA, data[end + 4:]))
            events.append((END, None))
            return True
        self.body = (LengthBody(head.content_length) if head.body == BODY_LENGTH else
                     ChunkedBody() if head.body == BODY_CHUNKED else UntilCloseBody())
        self.phase = _B  # HEAD -> BODY, listed
        if rest:
            self._parse(data[end + 4:], events)
        return True

    def _parse(self, data: bytes, events: list[Event]) -> None:
        pos = 0
        n = len(data)
        while pos < n:
            phase = self.phase
            if phase is _H:
                if not self._head_len and data[pos] != 72:  # RFC 9112 4: a response starts "HTTP/"
                    raise UpstreamProtocolError("response does not start with a status line")
                raw, pos = self._read_head(data, pos)
                if raw is None:
                    return
                status = int(raw[0])  # the response tokenizer reports the status as ASCII digits
                if status < 200:
                    if status < 100:  # never an interim answer: RFC 9110 15, valid codes are 100..599
                        raise UpstreamProtocolError(f"backend answered with status {status}")
                    if status == 101:
                        if not self.upgrade:
                            raise UpstreamProtocolError("backend switched protocols without being asked")
                        head = ResponseHead(101)
                        head.headers = raw[3]
                        head.keep_alive = False
                        self.head = head
                        self._move(_T)
                        events.append((SWITCHED, head))
                        if pos < n:
                            events.append((TUNNEL_DATA, data[pos:]))
                        return
                    self.interim += 1
                    if self.interim > self.max_interim:
                        raise UpstreamProtocolError(f"backend sent more than {self.max_interim} interim "
                                                    "responses before its final one")
                    self._move(_H)  # 100/102/103: dropped; ferryman answers Expect itself
                    continue
                head = check_response_head(status, raw[2], raw[3], request_method=self.method)
                self.head = head
                self.keep_alive = head.keep_alive
                events.append((RESPONSE, head))
                if head.body == BODY_NONE:
                    self._move(_D)
                    events.append((END, None))
                else:
                    self.body = (LengthBody(head.content_length) if head.body == BODY_LENGTH else
                                 ChunkedBody() if head.body == BODY_CHUNKED else UntilCloseBody())
                    self._move(_B)
            elif phase is _B:
                body = self.body
                assert body is not None
                out: list[bytes] = []
                try:
                    pos, ended = body.feed(data, pos, out)
                except HttpError as err:
                    raise UpstreamProtocolError(f"malformed response body: {err}") from None
                for piece in out:
                    events.append((DATA, piece))
                if ended:
                    self.body = None
                    self._move(_D)
                    events.append((END, None))
            else:  # DONE with bytes left: never the next response (invariant 3 in docs/request-safety.md)
                raise UpstreamProtocolError("bytes after the end of a response")

    def eof(self) -> list[Event]:
        """The backend closed its side."""
        phase = self.phase
        if phase is _C:
            return []
        events: list[Event] = []
        if phase is _T:
            events.append((END, None))  # the tunnel's backend side closed
        elif phase is _H:
            # no byte, part of a head, or interim answers only: nothing of the answer can have been relayed
            events.append((EARLY_CLOSE, None))
        elif phase is _B:
            body = self.body
            if body is not None and body.eof():
                self._move(_D)
                events.append((END, None))
            else:
                events.append((TRUNCATED, None))
        self.keep_alive = False
        self._move(_C)
        return events

    @property
    def reusable(self) -> bool:
        """The answer is complete, nothing followed it, and the backend keeps the connection."""
        return self.phase is _D and self.keep_alive

    def release(self) -> None:
        """Back to the idle pool (only when `reusable`)."""
        if self.phase is _D:
            self.phase = _I  # DONE -> IDLE, listed
        else:
            self._move(_I)  # raises: the answer was not complete

    def close(self) -> None:
        if self.phase is not _C:
            self._move(_C)


__all__ = [
    "Phase", "Role", "TRANSITIONS", "IllegalTransition", "RequestReader", "ResponseReader", "HeadTokenizer",
    "REQUEST", "RESPONSE", "DATA", "END", "ERROR", "SWITCHED", "TUNNEL_DATA", "EARLY_CLOSE", "TRUNCATED",
    "BODY_UNTIL_CLOSE",
]
