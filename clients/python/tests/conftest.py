"""Fixtures: a loopback Zoho, a fresh tokend per test, and a client for it."""

import pytest

from daemon import daemon_has_refresher, serve
from fake_zoho import FakeZoho


@pytest.fixture
def zoho():
    """The loopback imitation of Zoho's accounts server and CRM API."""
    with FakeZoho() as z:
        yield z


@pytest.fixture
def daemon(zoho):
    """The real daemon on a temporary socket and database, stopped with SIGTERM after.

    A daemon that refreshes tokens is sent to the loopback accounts server; one without
    a refresher is not told, as it would reject the unknown setting.
    """
    env = {"TOKEND_REFRESH__ACCOUNTS_URL": zoho.url} if daemon_has_refresher() else {}
    with serve(env) as d:
        yield d


@pytest.fixture
def client(daemon):
    with daemon.client() as c:
        yield c
