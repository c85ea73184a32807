"""The real Zoho SDK, in separate processes, with TokendStore, the real daemon and a
loopback imitation of Zoho (tests/fake_zoho.py)."""

import time

import pytest

from daemon import serve
from fake_zoho import CLIENT_ID, CLIENT_SECRET, USER_NAME
from sdk import run_sdk

@pytest.fixture
def granted(daemon, zoho, tmp_path):
    """The first process: the SDK initialised with a grant token. Returns (report, stored token)."""
    [report] = run_sdk(daemon, zoho, tmp_path, {"grant_token": zoho.new_grant()})
    with daemon.client() as c:
        [stored] = c.request("get_tokens")["tokens"]
    return report, stored


def test_sdk_initialises_with_a_grant_token_through_tokend(granted, zoho):
    report, stored = granted
    # At init the SDK looked the grant up, exchanged it, and saved what it got.
    assert report["init_calls"] == ["find_token", "save_token"]
    assert [c[0] for c in zoho.token_calls] == ["authorization_code"]
    assert report["statuses"] == [200] and report["emails"] == ["admin@example.com"]
    assert report["id"] == stored["id"]
    assert stored["user_name"] == USER_NAME == report["user_name"]
    assert stored["refresh_token"] in zoho.refresh_tokens
    assert stored["access_token"] in zoho.access_tokens
    assert stored["api_domain"] == zoho.url  # loopback, never a Zoho host
    assert stored["expiry_time"].isdigit()  # epoch ms as a string, as the SDK writes it


def test_every_api_call_goes_through_find_token_by_id(daemon, zoho, tmp_path, granted):
    _, stored = granted
    [report] = run_sdk(daemon, zoho, tmp_path, {"id": stored["id"]}, calls=3)
    assert report["statuses"] == [200, 200, 200]
    assert report["call_calls"] == ["find_token_by_id"] * 3


def test_later_processes_find_the_token_by_refresh_token_user_name_and_id(daemon, zoho, tmp_path, granted):
    _, stored = granted
    by_refresh, by_user, by_id = run_sdk(
        daemon, zoho, tmp_path,
        {"refresh_token": stored["refresh_token"]}, {"user_name": USER_NAME}, {"id": stored["id"]})

    assert by_refresh["init_calls"] == ["find_token"]
    assert by_user["init_calls"] == ["find_token"]
    assert by_id["init_calls"] == ["find_token_by_id"]
    for report in (by_refresh, by_user, by_id):
        assert report["id"] == stored["id"]
        assert report["statuses"] == [200]
    # Nobody needed the accounts server again: the stored access token was used.
    assert [c[0] for c in zoho.token_calls] == ["authorization_code"]
    assert {access for _, access in zoho.crm_calls} == {stored["access_token"]}
    with daemon.client() as c:
        assert c.ping()["tokens"] == 1


def test_token_remove_deletes_the_row(daemon, zoho, tmp_path, granted):
    _, stored = granted
    [report] = run_sdk(daemon, zoho, tmp_path, {"id": stored["id"]}, remove=True)
    assert report["removed"] is True
    with daemon.client() as c:
        assert c.request("find_token_by_id", token_id=stored["id"])["token"] is None
        assert c.ping()["tokens"] == 0


def test_an_expired_token_is_refreshed_once_and_saved_back(daemon, zoho, tmp_path, granted):
    # Without the daemon's refresher the SDK refreshes as it always has; with it, the
    # daemon does. Either way once, and the new access token reaches the store.
    _, stored = granted
    with daemon.client() as c:
        c.request("save_token", token={"id": stored["id"], "expiry_time": "1000"})
    [report] = run_sdk(daemon, zoho, tmp_path, {"id": stored["id"]})
    assert report["statuses"] == [200]
    with daemon.client() as c:
        after = c.request("find_token_by_id", token_id=stored["id"])["token"]
    assert after["access_token"] != stored["access_token"] and after["access_token"] in zoho.access_tokens
    assert int(after["expiry_time"]) > time.time() * 1000 + 3_000_000  # a fresh hour, not "1000"
    assert after["refresh_token"] == stored["refresh_token"]
    assert len(zoho.refreshes()) == 1


def test_eight_sdk_processes_across_expiry_cause_exactly_one_refresh(daemon, zoho, tmp_path, granted):
    _, stored = granted
    old_access = stored["access_token"]
    # The access token now expires in 2 s: the SDK alone would refresh at once (it does
    # below 5 s), in every process. The fake CRM stops accepting it at that moment too.
    expiry = time.time() + 2
    zoho.access_tokens[old_access] = expiry
    with daemon.client() as c:
        c.request("save_token", token={"id": stored["id"], "expiry_time": str(int(expiry * 1000))})

    reports = run_sdk(daemon, zoho, tmp_path, *[{"id": stored["id"]}] * 8, calls=5)

    assert all(r["statuses"] == [200] * 5 for r in reports)
    refreshes = zoho.refreshes()
    assert len(refreshes) == 1
    # The SDK refreshes with python-requests; tokend does not.
    assert not any(agent.startswith("python-requests") for _, agent in refreshes)
    with daemon.client() as c:
        after = c.request("find_token_by_id", token_id=stored["id"])["token"]
    assert after["access_token"] != old_access and int(after["expiry_time"]) > expiry * 1000


def test_a_token_stored_without_api_domain_is_refreshed_where_the_sdk_environment_says(zoho, tmp_path):
    # Tokens from the SDK's older CSV have no api_domain; the SDK fills it in from its
    # environment, and so must the store, or the daemon cannot tell where to refresh.
    # No fallback accounts URL here: only the loopback api_domain maps to one.
    config = f'[refresh]\naccounts = [{{ api_domain = "{zoho.url}", url = "{zoho.url}" }}]\n'
    with serve(config=config) as daemon:
        with daemon.client() as c:
            token = {"user_name": USER_NAME, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                     **zoho.authorised_user(), "expiry_time": "1000"}
            stored = c.request("save_token", token=token)["token"]
        [report] = run_sdk(daemon, zoho, tmp_path, {"id": stored["id"]})
        assert report["statuses"] == [200]
        with daemon.client() as c:
            after = c.request("find_token_by_id", token_id=stored["id"])["token"]
        assert after["api_domain"] == zoho.url
        assert after["access_token"] != stored["access_token"]
        assert len(zoho.refreshes()) == 1
