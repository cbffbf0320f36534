"""ferryman signs what it vouches for (``[signing] keys``): every request reaching a member carries one
Ferryman-Signature that verifies with the key and states the client, Host, scheme, port, prefix,
method and user; a client's own Ferryman-Signature never crosses, whatever its spelling.

Sources: invariant 4 of docs/request-safety.md; docs/configuration.md ("signing");
ferryman.core.signing (format).
"""

from __future__ import annotations

import time

import bcrypt
import pytest

from ferryman.core.signing import verify
from tests.support import Ferryman, config

pytestmark = pytest.mark.integration

KEY = "integration-signing-key-0123456789"
OLD = "integration-old-key-abcdefghijklmn"


def signature_of(response) -> str | None:  # noqa: ANN001
    return response.json()["headers"].get("Ferryman-Signature")


def test_each_request_carries_a_fresh_signature_of_the_public_facts(echo_a) -> None:  # noqa: ANN001
    users = "carol:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode() + "\n"
    toml = config([echo_a.url("/webapps")], path="/public",
                  top='[signing]\nkeys = [{ env = "FM_IT_KEY" }]\n',
                  route_options='auth = { htpasswd = "users.htpasswd" }')
    with Ferryman(toml, files={"users.htpasswd": users}, env={"FM_IT_KEY": KEY}) as fm:
        import base64
        auth = {"Authorization": "Basic " + base64.b64encode(b"carol:pw").decode(),
                "Ferryman-Signature": "v1;forged", "Ferryman_Signature": "v1;forged-alias"}
        first = fm.request("POST", "/public/echo", auth, body=b"x", host="www.example.com")
        second = fm.request("POST", "/public/echo", auth, body=b"x", host="www.example.com")
        values = [signature_of(first), signature_of(second)]
        assert all(v is not None and "forged" not in v for v in values), values
        assert values[0] != values[1]  # a new nonce each time
        assert "Ferryman_Signature" not in first.json()["headers"]
        signed = verify(values[0].encode(), [KEY.encode(), OLD.encode()], now=time.time(), max_skew=30)  # type: ignore[union-attr]
        facts = signed.facts
        assert (facts.client, facts.host, facts.scheme, facts.port, facts.prefix, facts.user, facts.method) == (
            "127.0.0.1", "www.example.com", "http", fm.port(), "/public", "carol", "POST")


def test_without_signing_no_signature_is_written_and_a_clients_is_removed(echo_a) -> None:  # noqa: ANN001
    with Ferryman(config([echo_a.url("/webapps")])) as fm:
        r = fm.request("GET", "/webapps/echo", {"Ferryman-Signature": "v1;forged"})
        assert r.status == 200 and signature_of(r) is None
