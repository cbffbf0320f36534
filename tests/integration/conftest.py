"""Shared fixtures for the integration tests: gunicorn members serving tests/apps/echo_wsgi.py."""

from __future__ import annotations

import pytest

from tests.support import Gunicorn


@pytest.fixture(scope="session")
def echo_a():
    """A gunicorn member (1 worker, 4 threads) serving the echo app; member URL echo_a.url("/webapps")."""
    with Gunicorn() as g:
        yield g


@pytest.fixture(scope="session")
def echo_b():
    """A second, independent gunicorn member."""
    with Gunicorn() as g:
        yield g


# ferryman's pytest plugin (entry point pytest11 once installed); imported here so the fixture is there
# whichever ferryman checkout is installed.
from ferryman.testing import ferryman_chain  # noqa: E402,F401
