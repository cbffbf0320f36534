"""The decisions an exchange makes between a client and a backend, as plain functions.

Each takes plain values and returns plain values: how a response is framed for the client, whether a
connection may be kept, whether a failed request may be sent again, which status a failure becomes,
whether a member must be told it failed, and whether the route cookie is (re-)issued.
"""

from __future__ import annotations

from ferryman.core.http import BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE
from ferryman.errors import (
    FerrymanError, InternalError, UpstreamConnectError, UpstreamError, UpstreamTimeout,
)

#: Failure kinds, from the I/O layer's point of view.
CONNECT_REFUSED = "connect refused"     # the request provably never reached the backend
CONNECT_TIMEOUT = "connect timeout"     # same
RESET_BEFORE_USE = "reset before use"   # a connection closed before any byte was written
NO_ANSWER = "no answer"                 # written, then closed without any byte of an answer
PROTOCOL = "protocol"                   # the answer broke HTTP
TIMEOUT = "timeout"                     # the backend did not answer (or stalled) in time
INTERNAL = "internal"                   # ferryman's own bug


def client_framing(resp_body: int, content_length: int, method: bytes, client_version: bytes) -> tuple[int, bool]:
    """How the response body is framed towards the client, and whether the client connection may stay.

    HEAD answers and bodiless statuses carry no body; a known length is kept; an unknown length is
    chunked for HTTP/1.1 clients and delimited by close for HTTP/1.0 ones (RFC 9112 6.3, 7).
    """
    if resp_body == BODY_NONE or method == b"HEAD":
        return BODY_NONE, True
    if resp_body == BODY_LENGTH:
        return BODY_LENGTH, True
    if client_version == b"1.1":
        return BODY_CHUNKED, True
    return BODY_UNTIL_CLOSE, False


def keep_client(request_keep_alive: bool, request_done: bool, framing_keeps: bool, stopping: bool) -> bool:
    """Whether the client connection stays open after this answer: the client asked for it, the whole
    request was read (else unread bytes would be taken for the next request), the framing allows it and
    ferryman is not shutting down."""
    return request_keep_alive and request_done and framing_keeps and not stopping


def may_retry(*, reached_backend: bool, idempotent: bool, replayable: bool, request_done: bool,
              tries: int, max_tries: int) -> bool:
    """Proxy-safety invariant 8: a request that never reached a backend may always be tried again (within
    `max_tries`); one that may have reached it only when idempotent with its whole body kept."""
    if tries >= max_tries:
        return False
    if not reached_backend:
        return True
    return idempotent and replayable and request_done


def failure_error(kind: str, reason: str) -> FerrymanError:
    """The error a failure becomes when nothing better is left: 503 when no backend could be reached,
    504 for a timeout, 500 for ferryman's own fault, 502 for anything the backend did wrong."""
    if kind == CONNECT_REFUSED:
        return UpstreamConnectError(reason)
    if kind in (CONNECT_TIMEOUT, TIMEOUT):
        return UpstreamTimeout(reason)
    if kind == INTERNAL:
        return InternalError(reason)
    return UpstreamError(reason)


def failure_status(kind: str) -> int:
    """The status of `failure_error(kind)`."""
    return failure_error(kind, kind).status


def counts_against_member(kind: str) -> bool:
    """Whether a failure is the member's: ferryman's own faults never are."""
    return kind != INTERNAL


def counts_reused_failure(reused: bool, reset: bool) -> bool:
    """Whether a connection lost before any byte of the answer counts against the member. On a fresh
    connection it always does. On a reused keep-alive connection a clean close (FIN) is the race every
    client knows (the member closed the idle connection as the request went out): retried, not counted;
    a reset (RST) after the request went out counts, so a member that resets every reused connection is
    ejected in time."""
    return not reused or reset


def reports_success(retried_after_reused_failure: bool) -> bool:
    """Whether an answer counts as a success for passive health. A success on the fresh connection that
    replaced a failed keep-alive connection says nothing about the member's reused connections, so it
    does not end a run of failures: a member that resets every reused connection is ejected in time."""
    return not retried_after_reused_failure


def fails_on_status(status: int, failonstatus: frozenset[int]) -> bool:
    """Apache failonstatus: these answers put the member in error (and are still passed on)."""
    return status in failonstatus


def reissue_route_cookie(has_route_cookie: bool, sticky_route: str | None, member_route: str | None) -> bool:
    """Set the route cookie when the request did not already carry this member's route: a first visit,
    or a failover (so the user does not bounce back when the old member recovers)."""
    return has_route_cookie and sticky_route != member_route


def tunnels(upgrade: bytes | None, route_websocket: bool) -> bool:
    """Whether a request's protocol switch is forwarded: only WebSocket (RFC 6455), only where the route
    allows it (Apache ProxyPass upgrade=websocket). Any other switch (h2c...) is answered as plain HTTP."""
    if upgrade is None or not route_websocket:
        return False
    return any(token.strip().lower().split(b"/")[0] == b"websocket" for token in upgrade.split(b","))
