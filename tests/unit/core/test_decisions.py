"""The exchange's decisions as plain functions: framing, keep-alive, retry, status, blame, route cookie,
tunnelling."""

from __future__ import annotations

import pytest

from ferryman.core import decisions as d
from ferryman.core.http import BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE


@pytest.mark.parametrize("body,method,version,want", [
    (BODY_LENGTH, b"GET", b"1.1", (BODY_LENGTH, True)),
    (BODY_CHUNKED, b"GET", b"1.1", (BODY_CHUNKED, True)),
    (BODY_UNTIL_CLOSE, b"GET", b"1.1", (BODY_CHUNKED, True)),
    (BODY_CHUNKED, b"GET", b"1.0", (BODY_UNTIL_CLOSE, False)),
    (BODY_UNTIL_CLOSE, b"GET", b"1.0", (BODY_UNTIL_CLOSE, False)),
    (BODY_LENGTH, b"HEAD", b"1.1", (BODY_NONE, True)),
    (BODY_NONE, b"GET", b"1.0", (BODY_NONE, True)),
])
def test_the_client_framing_keeps_a_length_chunks_the_unknown_and_closes_for_http_1_0(body, method, version, want):
    assert d.client_framing(body, 10, method, version) == want


def test_the_client_connection_stays_only_when_everything_allows_it():
    assert d.keep_client(True, True, True, False)
    assert not d.keep_client(False, True, True, False)
    assert not d.keep_client(True, False, True, False)  # unread body bytes
    assert not d.keep_client(True, True, False, False)  # close-delimited
    assert not d.keep_client(True, True, True, True)    # shutting down


def test_a_request_that_never_reached_a_backend_may_always_be_retried_within_max_tries():
    assert d.may_retry(reached_backend=False, idempotent=False, replayable=False, request_done=False,
                       tries=1, max_tries=2)
    assert not d.may_retry(reached_backend=False, idempotent=True, replayable=True, request_done=True,
                           tries=2, max_tries=2)


@pytest.mark.parametrize("idempotent,replayable,done,want", [
    (True, True, True, True), (False, True, True, False), (True, False, True, False), (True, True, False, False),
])
def test_a_request_that_may_have_reached_a_backend_is_retried_only_when_idempotent_and_replayable(
        idempotent, replayable, done, want):
    assert d.may_retry(reached_backend=True, idempotent=idempotent, replayable=replayable, request_done=done,
                       tries=1, max_tries=3) is want


@pytest.mark.parametrize("kind,status", [
    (d.CONNECT_REFUSED, 503), (d.CONNECT_TIMEOUT, 504), (d.TIMEOUT, 504), (d.PROTOCOL, 502),
    (d.NO_ANSWER, 502), (d.RESET_BEFORE_USE, 502), (d.INTERNAL, 500),
])
def test_each_failure_kind_has_its_status(kind, status):
    assert d.failure_status(kind) == status


def test_ferrymans_own_faults_never_count_against_a_member():
    assert not d.counts_against_member(d.INTERNAL)
    assert d.counts_against_member(d.PROTOCOL) and d.counts_against_member(d.NO_ANSWER)


def test_a_reused_connection_lost_counts_when_reset_but_not_when_closed_cleanly():
    assert d.counts_reused_failure(reused=False, reset=False)
    assert d.counts_reused_failure(reused=True, reset=True)
    assert not d.counts_reused_failure(reused=True, reset=False)


def test_a_success_after_a_failed_reused_connection_does_not_end_a_run_of_failures():
    assert d.reports_success(False) and not d.reports_success(True)


def test_failonstatus_and_the_route_cookie_reissue():
    assert d.fails_on_status(503, frozenset({503})) and not d.fails_on_status(200, frozenset({503}))
    assert d.reissue_route_cookie(True, None, "r1")      # first visit
    assert d.reissue_route_cookie(True, "r2", "r1")      # failover
    assert not d.reissue_route_cookie(True, "r1", "r1")  # already pinned there
    assert not d.reissue_route_cookie(False, None, "r1")


@pytest.mark.parametrize("upgrade,allowed,want", [
    (b"websocket", True, True), (b"WebSocket", True, True), (b"h2c, websocket", True, True),
    (b"websocket", False, False), (b"h2c", True, False), (None, True, False), (b"websocket/13", True, True),
])
def test_only_websocket_upgrades_are_tunnelled_and_only_where_the_route_allows(upgrade, allowed, want):
    assert d.tunnels(upgrade, allowed) is want
