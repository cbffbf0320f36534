"""The configuration `ferryman demo` writes has the classic deployment's shape (tests/fixtures/config/seed), key
for key."""

from __future__ import annotations

from pathlib import Path

from ferryman.config.loader import load_config, load_config_text
from ferryman.config.schema import Config
from ferryman.demo.topology import AppServer, Topology, ferryman_toml
from tests.support import REPO

SEED = REPO / "tests" / "fixtures" / "config" / "seed"
TOPOLOGY = Topology("127.0.0.1", 8080, 8443, (AppServer("app-1", 9001, 9443), AppServer("app-2", 9002, 9444)))


def shape(config: Config) -> dict[str, object]:
    """What the contract fixes: listeners, pools with member URLs, routes, weights, stickiness, TLS, auth."""
    return {
        "listeners": [(l.name, l.bind, bool(l.tls_certs)) for l in config.listener],
        "pools": {name: (p.sticky, p.tls is not None and p.tls.ca is not None,
                         [(m.url, m.route, m.weight) for m in p.members]) for name, p in config.pool.items()},
        "routes": [(r.listeners, r.path, r.pool, r.auth is not None) for r in config.route if r.static is None],
    }


def demo_config(tmp_path: Path) -> Config:
    (tmp_path / "certs").mkdir()
    for name in ("ca.pem", "front.pem", "front-key.pem"):
        (tmp_path / "certs" / name).write_text("")
    (tmp_path / "users.htpasswd").write_text("")
    (tmp_path / "media").mkdir()
    return load_config_text(ferryman_toml(TOPOLOGY), "ferryman.toml", tmp_path)


def test_the_demo_configuration_has_the_classic_deployment_shape_on_its_ports(tmp_path: Path) -> None:
    assert shape(demo_config(tmp_path)) == shape(load_config(SEED / "ferryman.toml"))


def test_the_demo_serves_the_shared_media_root_from_the_front_end(tmp_path: Path) -> None:
    """Beyond the seed (whose app servers serve MEDIA_ROOT): the front end's /media static route."""
    media = [r for r in demo_config(tmp_path).route if r.static is not None]
    assert [(r.path, r.static, r.listeners) for r in media] == [("/media", tmp_path / "media", None)]


def test_the_demo_pools_set_their_own_route_cookie_because_django_sessions_carry_no_route(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    assert all(p.route_cookie is not None for p in config.pool.values())
