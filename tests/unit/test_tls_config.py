"""Configuration of TLS listeners and login hardening: the keys, their defaults and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.config.loader import load_config_text
from ferryman.errors import ConfigError


def conf(tmp_path: Path, listener: str, tls: bool = True, auth: str = "") -> str:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "users").write_text("x")
    tls_line = 'tls = { cert = "c.pem", key = "c.pem" }\n' if tls else ""
    return f'''[[listener]]
name = "l"
bind = "127.0.0.1:0"
{tls_line}{listener}
[pool.app]
members = [{{ url = "http://127.0.0.1:9" }}]

[[route]]
path = "/"
pool = "app"
auth = {{ htpasswd = "users"{auth} }}
'''


def issues(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "f.toml", tmp_path)
    return [str(i) for i in err.value.issues]


def test_defaults_are_the_intermediate_profile_a_10s_handshake_and_a_guarded_login(tmp_path: Path) -> None:
    cfg = load_config_text(conf(tmp_path, ""), "f.toml", tmp_path)
    lst = cfg.listener[0]
    assert (lst.tls_profile, lst.tls_handshake_timeout, lst.tls_client_ca, lst.tls_verify_client,
            lst.tls_user_field, lst.redirect_https, lst.hsts_max_age) == (
        "intermediate", 10.0, None, "require", "CN", None, None)
    auth = cfg.route[0].auth
    assert (auth.max_failures, auth.failure_window, auth.lockout, auth.cache_ttl) == (10, 60.0, 60.0, 300.0)


@pytest.mark.parametrize("value, stored", [("8443", "8443"), ('"https://www.example.com"', "https://www.example.com"),
                                           ('"https://[::1]:8443"', "https://[::1]:8443")])
def test_redirect_https_takes_a_port_or_an_https_origin(tmp_path: Path, value: str, stored: str) -> None:
    cfg = load_config_text(conf(tmp_path, f"redirect_https = {value}", tls=False), "f.toml", tmp_path)
    assert cfg.listener[0].redirect_https == stored


@pytest.mark.parametrize("value, words", [
    ("0", "is not a port"), ("70000", "is not a port"), ('"http://x.example"', "is not a port or an https:// origin"),
    ('"https://x.example/path"', "origin alone"), ('"https://u@x.example"', "origin alone"),
    ('"https://x.example:99999"', "https://x.example:99999"), ("true", "is not a port or an https:// origin"),
])
def test_a_bad_redirect_https_is_refused_with_what_would_be_valid(tmp_path: Path, value: str, words: str) -> None:
    found = issues(tmp_path, conf(tmp_path, f"redirect_https = {value}", tls=False))
    assert len(found) == 1 and "listener[0].redirect_https" in found[0] and words in found[0], found
    assert "8443" in found[0]


@pytest.mark.parametrize("listener, tls, words", [
    ('tls_client_ca = "c.pem"', False, "tls_client_ca is set on a plain HTTP listener"),
    ('hsts_max_age = "365d"', False, "hsts_max_age is set on a plain HTTP listener"),
    ("redirect_https = 8443", True, "redirect_https is set on a TLS listener"),
    ("hsts_include_subdomains = true", True, "hsts_include_subdomains needs hsts_max_age"),
    ('tls_profile = "old"', True, "is not a TLS profile; use one of intermediate, modern"),
    ('tls_verify_client = "maybe"', True, "use one of require, optional"),
    ('tls_user_field = "OU"', True, "use one of CN, emailAddress, SAN:email"),
    ('tls_handshake_timeout = "0s"', True, "tls_handshake_timeout"),
])
def test_tls_keys_that_do_not_fit_the_listener_are_refused(tmp_path: Path, listener: str, tls: bool,
                                                           words: str) -> None:
    found = issues(tmp_path, conf(tmp_path, listener, tls=tls))
    assert any(words in f for f in found), found


def test_login_hardening_keys_are_checked(tmp_path: Path) -> None:
    found = issues(tmp_path, conf(tmp_path, "", auth=', max_failures = -1, lockout = "0s", cache_ttl = 5'))
    assert any("max_failures" in f and "0 or more" in f for f in found), found
    assert any("lockout" in f for f in found), found
    assert any("cache_ttl" in f and "no unit" in f or "cache_ttl" in f and '"5s"' in f for f in found), found


def test_a_client_ca_file_without_certificates_is_named_with_its_line(tmp_path: Path) -> None:
    from ferryman.config.loader import load_config
    from ferryman.plan import compile_plan
    from tests.tls_certs import write_server

    server = write_server(tmp_path)
    (tmp_path / "ca.pem").write_text("junk\n")
    listener = f'tls = {{ cert = "{server.cert}", key = "{server.key}" }}\ntls_client_ca = "ca.pem"'
    text = conf(tmp_path, "").replace('tls = { cert = "c.pem", key = "c.pem" }', listener)
    (tmp_path / "users").write_text("")
    (tmp_path / "f.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        compile_plan(load_config(tmp_path / "f.toml"))
    assert any(str(i).endswith("f.toml:5: listener[0].tls_client_ca: ca.pem holds no PEM certificate; write a PEM "
                               "file of CA certificates") for i in err.value.issues), err.value.issues
