"""Fixtures of the HTTP layer's tests: real tinyproxy instances (tests/http/tinyproxy.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.http.tinyproxy import TinyProxy


@pytest.fixture(scope="session")
def proxy() -> Iterator[TinyProxy]:
    """An open forwarding proxy shared by the session: assert on targets only your test requests."""
    p = TinyProxy().start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def second_proxy() -> Iterator[TinyProxy]:
    p = TinyProxy().start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def auth_proxy() -> Iterator[TinyProxy]:
    """A proxy demanding Basic auth (user `crawler`, password `s3cret`)."""
    p = TinyProxy(auth=("crawler", "s3cret")).start()
    yield p
    p.stop()
