"""Prometheus metrics: cheap per-request accumulation, flushed to prometheus-client once a second.

A request costs a dict lookup, two bisects and a few integer additions (`Metrics.observe`); the sums
reach prometheus-client's metric objects in `Metrics.flush`, which `app` runs every second, before
each scrape and at stop. Gauges (in-flight requests, member state, backend connections) are read
from the live objects at flush time, never updated per request. Metrics are process-wide: one
`Metrics` per process (`ferryman.server.app.process_metrics`), kept across configuration reloads, so
counters only go up.

Multi-process mode (several worker processes behind one admin listener): when the environment
variable ``PROMETHEUS_MULTIPROC_DIR`` names a writable directory before the metrics are created,
prometheus-client keeps every value in a memory-mapped file of that directory, one set per
process; `metrics_registry_for_admin` then returns a registry whose `MultiProcessCollector`
sums them (counters and histograms add up, gauges say how: ``livesum`` or ``livemax``), and the
process that owns the workers calls `mark_process_dead(pid)` when one exits. Without the variable
each process has its own registry and its admin listener shows only its own numbers.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess, values
from prometheus_client.exposition import generate_latest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Upper bounds (seconds) of both latency histograms: 1 ms to 60 s, roughly x2.5 apart.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_NB = len(LATENCY_BUCKETS) + 1  # with +Inf
_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")

#: Member states as `ferryman.core.balancer.member_state` names them.
MEMBER_STATES = ("usable", "standby", "draining", "error", "held-down", "disabled", "stopped")


def is_multiprocess() -> bool:
    """Values live in ``PROMETHEUS_MULTIPROC_DIR`` (set in the environment before metrics are made)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def _value_class_is_current() -> None:
    # prometheus-client picks its value class when it is first imported; a master that sets the
    # variable later (before making any metric) gets the memory-mapped class from here on
    if is_multiprocess() and values.ValueClass.__name__ == "MutexValue":
        values.ValueClass = values.get_value_class()


def metrics_registry_for_admin(local: Metrics | None = None) -> CollectorRegistry:
    """The registry an admin listener renders: every process's values in multi-process mode, else
    `local`'s (this process's `Metrics`)."""
    if is_multiprocess() or local is None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return local.registry


def mark_process_dead(pid: int) -> None:
    """A worker exited: drop its live gauges (multi-process mode; nothing to do otherwise)."""
    if is_multiprocess():
        multiprocess.mark_process_dead(pid)


def render(registry: CollectorRegistry) -> bytes:
    """Prometheus text exposition format (version 0.0.4)."""
    return generate_latest(registry)


class Metrics:
    """The metric families of one process, and the per-request sums not yet flushed into them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        _value_class_is_current()
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        c = dict(registry=registry)
        self.requests = Counter("ferryman_requests", "Requests answered, by route, pool, member and status class "
                                "(0xx: the client left before an answer).",
                                ("route", "pool", "member", "code"), **c)
        self.duration = Histogram("ferryman_request_duration_seconds", "Time from a request's head to the end "
                                  "of its answer.", ("route", "pool"), buckets=LATENCY_BUCKETS, **c)
        self.backend = Histogram("ferryman_backend_response_seconds", "Time from writing a request's head to a "
                                 "member until its response head arrived.", ("pool", "member"),
                                 buckets=LATENCY_BUCKETS, **c)
        self.in_flight = Gauge("ferryman_requests_in_flight", "Client connections with a request being read or "
                               "answered.", multiprocess_mode="livesum", **c)
        self.client_connections = Gauge("ferryman_client_connections", "Open client connections, by listener.",
                                        ("listener",), multiprocess_mode="livesum", **c)
        self.backend_connections = Gauge("ferryman_backend_connections", "Connections to members: busy (serving "
                                         "a request) or idle (kept alive for the next one).",
                                         ("pool", "member", "state"), multiprocess_mode="livesum", **c)
        self.member_state = Gauge("ferryman_member_state", "1 for the member's current state, 0 for the others "
                                  "(in multi-process mode, 1 when any worker sees that state).",
                                  ("pool", "member", "state"), multiprocess_mode="livemax", **c)
        self.member_healthy = Gauge("ferryman_member_healthy", "1 when the member takes requests (usable, "
                                    "standby or draining), else 0.", ("pool", "member"),
                                    multiprocess_mode="livemin", **c)
        self.member_weight = Gauge("ferryman_member_effective_weight", "The member's weight now (lower during "
                                   "slow start).", ("pool", "member"), multiprocess_mode="livemax", **c)
        self.retries = Counter("ferryman_retries", "Requests sent again, to another member or on a fresh "
                               "connection.", ("pool",), **c)
        self.ejections = Counter("ferryman_member_ejections", "Times a member was taken out of service by "
                                 "its health (passive or active checks).", ("pool", "member"), **c)
        self.tls_handshakes = Counter("ferryman_tls_handshakes", "TLS handshakes with clients, by listener and "
                                      "result (ok, failed).", ("listener", "result"), **c)
        self.reloads = Counter("ferryman_reloads", "Configuration reloads, by result (ok, refused).",
                               ("result",), **c)
        self.access_log_errors = Counter("ferryman_access_log_write_errors", "Access-log writes that failed "
                                         "(their lines are lost).", ("path",), **c)
        self.access_log_lost = Counter("ferryman_access_log_lost_lines", "Access-log lines lost to failed writes "
                                       "or to a full write queue.", ("path",), **c)
        self.start_time = Gauge("ferryman_start_time_seconds", "When this process started, seconds since the "
                                "epoch.", multiprocess_mode="min", **c)
        self.started = time.time()
        self.start_time.set(self.started)
        for result in ("ok", "refused"):
            self.reloads.labels(result)  # both series exist from the start: rate() needs the zero
        self.reload_counts = {"ok": 0, "refused": 0}  # for /status (the counters are per process too)
        # (route, member, status // 100) -> [count, total sum, total buckets..., backend count, backend sum,
        # backend buckets...]; swapped out by flush
        self._pending: dict[tuple[Any, Any, int], list[float]] = {}
        self._retries: dict[str, int] = {}
        self._servers: list[Any] = []

    # -- per request (hot path) --------------------------------------------------------------------

    def observe(self, route: Any, member: Any, status: int, total: float, backend: float) -> None:
        """One answered request: `total` seconds from head to end, `backend` to the response head
        (negative when no member answered)."""
        key = (route, member, status // 100)
        acc = self._pending.get(key)
        if acc is None:
            acc = self._pending[key] = [0] * (2 * _NB + 4)
        acc[0] += 1
        acc[1] += total
        acc[2 + bisect_left(LATENCY_BUCKETS, total)] += 1
        if backend >= 0:
            acc[_NB + 2] += 1
            acc[_NB + 3] += backend
            acc[_NB + 4 + bisect_left(LATENCY_BUCKETS, backend)] += 1

    # -- rare events -------------------------------------------------------------------------------

    def retry(self, pool: str) -> None:
        self._retries[pool] = self._retries.get(pool, 0) + 1

    def ejection(self, pool: str, member: str) -> None:
        self.ejections.labels(pool, member).inc()

    def tls_handshake(self, listener: str, ok: bool) -> None:
        self.tls_handshakes.labels(listener, "ok" if ok else "failed").inc()

    def reload(self, ok: bool) -> None:
        """A configuration reload finished: applied (ok) or refused (the old configuration stays)."""
        result = "ok" if ok else "refused"
        self.reloads.labels(result).inc()
        self.reload_counts[result] += 1

    def access_log_failed(self, path: str, lines: int) -> None:
        self.access_log_errors.labels(path).inc()
        self.access_log_lost.labels(path).inc(lines)

    def access_log_dropped(self, path: str, lines: int) -> None:
        self.access_log_lost.labels(path).inc(lines)

    # -- flushing ----------------------------------------------------------------------------------

    def watch(self, server: Any) -> None:
        """Read the gauges of `server` (its clients, pools and listeners) at each flush."""
        self._servers.append(server)

    def unwatch(self, server: Any) -> None:
        if server in self._servers:
            self._servers.remove(server)

    def flush(self, now: float | None = None) -> None:
        """Move the per-request sums into the metric families and read the gauges."""
        pending, self._pending = self._pending, {}
        for (route, member, klass), acc in pending.items():
            pool = route.pool.name if route is not None else "-"
            prefix = (route.prefix.decode("latin-1") or "/") if route is not None else "-"
            name = member.name if member is not None else "-"
            self.requests.labels(prefix, pool, name, _CLASSES[klass] if 0 <= klass < 6 else "other").inc(acc[0])
            _add(self.duration.labels(prefix, pool), acc, 1)
            if acc[_NB + 2]:
                _add(self.backend.labels(pool, name), acc, _NB + 3)
        retries, self._retries = self._retries, {}
        for pool, n in retries.items():
            self.retries.labels(pool).inc(n)
        for server in self._servers:
            self._read_gauges(server, now)

    def _read_gauges(self, server: Any, now: float | None) -> None:
        from ferryman.core.balancer import member_state

        if now is None:
            now = server.loop.time()
        self.in_flight.set(server.busy_connections())
        for listener in server.listeners:
            self.client_connections.labels(listener.name).set(listener.open_connections)
        for pool in server.pools.values():
            for m in pool.members:
                state = member_state(m, now)
                for s in MEMBER_STATES:
                    self.member_state.labels(pool.name, m.name, s).set(1 if s == state else 0)
                self.member_healthy.labels(pool.name, m.name).set(
                    1 if state in ("usable", "standby", "draining") else 0)
                self.member_weight.labels(pool.name, m.name).set(m.effective_weight(now))
                self.backend_connections.labels(pool.name, m.name, "idle").set(len(m.conns.idle))
                self.backend_connections.labels(pool.name, m.name, "busy").set(m.inflight)


def _add(child: Histogram, acc: list[float], at: int) -> None:
    """Add `acc[at]` (sum) and the bucket counts after it to a histogram child in one go.

    prometheus-client has no bulk observe; its children keep one value per bucket (not cumulative)
    and a sum, the same in plain and multi-process mode, and `observe` adds 1 to one bucket: this
    adds n to each. tests/unit/test_metrics.py checks that it renders as `observe` would.
    """
    child._sum.inc(acc[at])  # noqa: SLF001
    buckets = child._buckets  # noqa: SLF001
    for i in range(_NB):
        n = acc[at + 1 + i]
        if n:
            buckets[i].inc(n)
