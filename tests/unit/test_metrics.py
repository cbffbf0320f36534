"""Metrics: per-request sums flushed into prometheus-client render exactly as direct observations would;
the admin listener's loopback rule; the admin table's checks."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from ferryman.plan import is_loopback_host
from ferryman.server.admin import is_loopback_peer
from ferryman.server.metrics import LATENCY_BUCKETS, Metrics, _add, render


def _samples(registry):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(render(registry).decode()) for s in fam.samples
            if not s.name.endswith("_created")}


class _Pool:
    name = "app"


class _Route:
    prefix = b"/webapps"
    pool = _Pool()


class _Member:
    name = "http://m1/webapps"


DURATIONS = [0.0004, 0.001, 0.0031, 0.02, 0.02, 0.7, 3.0, 45.0, 61.0]


def test_a_bulk_add_of_bucket_counts_renders_as_observing_one_value_at_a_time():
    direct, bulk = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("lat_seconds", "x", ("pool",), buckets=LATENCY_BUCKETS, registry=direct)
    h2 = Histogram("lat_seconds", "x", ("pool",), buckets=LATENCY_BUCKETS, registry=bulk)
    m = Metrics()
    route, member = _Route(), _Member()
    for d in DURATIONS:
        h1.labels("a").observe(d)
        m.observe(route, member, 200, d, -1.0)
    [acc] = m._pending.values()
    _add(h2.labels("a"), acc, 1)
    assert _samples(direct) == _samples(bulk)


def test_observed_requests_reach_the_counters_and_histograms_at_flush_only():
    m = Metrics()
    route, member = _Route(), _Member()
    for d in DURATIONS:
        m.observe(route, member, 200, d, d / 2)
    m.observe(route, member, 503, 0.01, -1.0)  # no member answered: no backend time
    m.observe(None, None, 404, 0.0, -1.0)
    before = _samples(m.registry)
    assert not any(name == "ferryman_requests_total" for name, _ in before)
    m.flush()
    after = _samples(m.registry)
    labels = (("code", "2xx"), ("member", member.name), ("pool", "app"), ("route", "/webapps"))
    assert after[("ferryman_requests_total", labels)] == len(DURATIONS)
    assert after[("ferryman_requests_total", (("code", "5xx"),) + labels[1:])] == 1
    assert after[("ferryman_requests_total", (("code", "4xx"), ("member", "-"), ("pool", "-"), ("route", "-")))] == 1
    assert after[("ferryman_request_duration_seconds_count", (("pool", "app"), ("route", "/webapps")))] == 10
    assert after[("ferryman_backend_response_seconds_count", (("member", member.name), ("pool", "app")))] == 9
    assert after[("ferryman_backend_response_seconds_sum", (("member", member.name), ("pool", "app")))] == \
        pytest.approx(sum(DURATIONS) / 2)
    m.flush()  # nothing new: nothing added twice
    assert _samples(m.registry)[("ferryman_requests_total", labels)] == len(DURATIONS)


def test_retries_reloads_and_access_log_losses_are_counted():
    m = Metrics()
    m.retry("app")
    m.retry("app")
    m.reload(True)
    m.reload(False)
    m.reload(False)
    m.access_log_failed("/var/log/a.log", 5)
    m.access_log_dropped("/var/log/a.log", 2)
    m.flush()
    s = _samples(m.registry)
    assert s[("ferryman_retries_total", (("pool", "app"),))] == 2
    assert s[("ferryman_reloads_total", (("result", "ok"),))] == 1
    assert s[("ferryman_reloads_total", (("result", "refused"),))] == 2
    assert m.reload_counts == {"ok": 1, "refused": 2}
    assert s[("ferryman_access_log_write_errors_total", (("path", "/var/log/a.log"),))] == 1
    assert s[("ferryman_access_log_lost_lines_total", (("path", "/var/log/a.log"),))] == 7


@pytest.mark.parametrize("ip,loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("192.0.2.2", False), ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False),
    ("2001:db8::1", False), ("not-an-ip", False), ("-", False),
])
def test_only_loopback_peers_are_served_without_credentials(ip, loopback):
    assert is_loopback_peer(ip) is loopback


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False),
    ("192.0.2.2", False), ("admin.example", False),
])
def test_an_admin_bind_needs_htpasswd_unless_it_is_loopback(host, loopback):
    assert is_loopback_host(host) is loopback
