"""``[signing] keys``: secrets from a file, an environment variable or the TOML, each problem reported
as file:line: key: what is wrong; what would be valid (docs/configuration.md, "signing")."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.config.loader import load_config_text
from ferryman.errors import ConfigError

BASE = """\
[[listener]]
name = "http"
bind = "127.0.0.1:8080"

[pool.app]
members = [{ url = "http://127.0.0.1:9001" }]

[[route]]
path = "/"
pool = "app"
"""


def load(signing: str, base_dir: Path) -> object:
    return load_config_text(signing + "\n" + BASE, "ferryman.toml", base_dir)


def issues(signing: str, base_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(signing, base_dir)
    return [str(i) for i in err.value.issues]


def test_keys_are_read_from_a_file_an_environment_variable_and_the_toml(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "signing.key").write_text("f" * 32 + "\n")
    monkeypatch.setenv("FM_SIGNING_OLD", "e" * 24)
    config = load('[signing]\nkeys = [{ file = "signing.key" }, { env = "FM_SIGNING_OLD" }]', tmp_path)
    assert config.signing.secrets == (b"f" * 32, b"e" * 24)  # type: ignore[attr-defined]
    assert load('[signing]\nkeys = [{ value = "' + "v" * 16 + '" }]', tmp_path).signing.secrets == (b"v" * 16,)  # type: ignore[attr-defined]


def test_without_signing_there_is_no_signing(tmp_path: Path) -> None:
    assert load("", tmp_path).signing is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("table,expected", [
    ('keys = [{ env = "FM_SIGNING_UNSET" }]',
     "ferryman.toml:2: signing.keys[0]: environment variable FM_SIGNING_UNSET is not set; export it"),
    ('keys = [{ value = "short" }]', "ferryman.toml:2: signing.keys[0]: value holds 5 bytes; a signing key "
                                     "needs 16 or more"),
    ('keys = [{ file = "missing.key" }]', "ferryman.toml:2: signing.keys[0]: file 'missing.key' cannot be read"),
    ('keys = [{ file = "a", env = "B" }]', "signing.keys[0]: sets file and env; give exactly one of file, env "
                                          "or value"),
    ("keys = [{}]", "signing.keys[0]: is empty; give one of file, env or value"),
    ("keys = []", "signing.keys"),
])
def test_a_bad_key_is_reported_with_its_line_and_the_fix(table: str, expected: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FM_SIGNING_UNSET", raising=False)
    found = issues("[signing]\n" + table, tmp_path)
    assert any(expected in i for i in found), found


def test_three_keys_are_one_too_many(tmp_path: Path) -> None:
    v = '{ value = "' + "k" * 16 + '" }'
    found = issues(f"[signing]\nkeys = [{v}, {v}, {v}]", tmp_path)
    assert any(i.startswith("ferryman.toml:2: signing.keys") for i in found), found


def test_ferryman_check_names_the_signing_key_by_its_public_id(tmp_path: Path) -> None:
    from ferryman.config.summary import summarize
    from ferryman.core.signing import key_id

    a, b = "a" * 20, "b" * 20
    config = load(f'[signing]\nkeys = [{{ value = "{a}" }}, {{ value = "{b}" }}]', tmp_path)
    line = summarize(config).splitlines()[-1]  # type: ignore[arg-type]
    assert line == f"signing: Ferryman-Signature with key {key_id(a.encode())} (also listed: {key_id(b.encode())})"
    assert a not in summarize(config)  # type: ignore[arg-type]
