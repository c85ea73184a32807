"""Fixtures: a loopback Zoho, a fresh tokend per test, and a client for it."""

import pytest

from daemon import serve
from fake_zoho import FakeZoho


@pytest.fixture
def zoho():
    """The loopback imitation of Zoho's accounts server and CRM API."""
    with FakeZoho() as z:
        yield z


@pytest.fixture
def daemon(zoho):
    """The real daemon on a temporary socket and database, stopped with SIGTERM after; it
    refreshes at the loopback accounts server."""
    with serve({"TOKEND_REFRESH__ACCOUNTS_URL": zoho.url}) as d:
        yield d


@pytest.fixture
def client(daemon):
    with daemon.client() as c:
        yield c
