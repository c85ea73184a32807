"""TokendStore's six methods with the SDK's own OAuthToken, against the real daemon.

The expected behaviour is the SDK's FileStore (zohocrmsdk/.../store/file_store.py).
Expiry times are an hour ahead so that no refresher has a reason to touch the tokens,
and the api_domain is no Zoho host, so that none ever could reach a real one.
"""

import time

import pytest
from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.crm.api.exception.sdk_exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature

from tokend_client import zoho
from tokend_client.zoho import TokendStore

CLIENT_ID = "1000.CLIENTID"
SECRET = "client-secret-value"


def expiry_in_an_hour():
    return str(int(time.time() * 1000) + 3_600_000)


def full_token(n, **overrides):
    """A token as the SDK saves it after a grant exchange."""
    token = OAuthToken(client_id=CLIENT_ID, client_secret=SECRET, refresh_token=f"1000.refresh.{n}",
                       redirect_url="https://app.example.com/cb", api_domain="https://crm.example.invalid")
    token.set_access_token(f"1000.access.{n}")
    token.set_expires_in(expiry_in_an_hour())
    token.set_user_signature(UserSignature(f"user{n}@example.com"))
    for name, value in overrides.items():
        getattr(token, "set_" + name)(value)
    return token


@pytest.fixture
def store(client):
    return TokendStore(client=client)


def fields(token):
    sig = token.get_user_signature()
    return (token.get_id(), sig.get_name() if sig else None, token.get_client_id(),
            token.get_client_secret(), token.get_refresh_token(), token.get_access_token(),
            token.get_grant_token(), token.get_expires_in(), token.get_redirect_url(),
            token.get_api_domain())


def test_save_token_sets_the_stored_id_on_the_callers_token(store):
    token = full_token(1)
    assert token.get_id() is None
    store.save_token(token)
    assert token.get_id() is not None
    assert fields(store.find_token_by_id(token.get_id())) == fields(token)


def test_find_token_by_id_returns_a_new_complete_token(store):
    token = full_token(1)
    store.save_token(token)
    found = store.find_token_by_id(token.get_id())
    assert isinstance(found, OAuthToken) and found is not token
    assert found.get_user_signature().get_name() == "user1@example.com"
    assert isinstance(found.get_expires_in(), str) and found.get_expires_in() == token.get_expires_in()
    assert found.get_redirect_url() == "https://app.example.com/cb"


def test_find_token_by_id_raises_sdk_exception_for_an_unknown_id(store):
    with pytest.raises(SDKException) as e:
        store.find_token_by_id("424242")
    assert e.value.code == "TOKEN_STORE"


def test_find_token_by_refresh_token_fills_only_empty_fields_in_place(store):
    store.save_token(full_token(1))
    query = OAuthToken(client_id=CLIENT_ID, client_secret=SECRET, refresh_token="1000.refresh.1",
                       redirect_url="https://other.example.com/cb")
    result = store.find_token(query)
    assert result is query
    assert query.get_access_token() == "1000.access.1"
    assert query.get_user_signature().get_name() == "user1@example.com"
    assert isinstance(query.get_expires_in(), str)
    assert query.get_redirect_url() == "https://other.example.com/cb"  # the caller's value wins


def test_refresh_token_without_client_credentials_matches_nothing(store):
    store.save_token(full_token(1))
    query = OAuthToken(id="ignored-for-matching")
    query.set_id(None)
    query.set_refresh_token("1000.refresh.1")
    assert store.find_token(query) is None


def test_find_token_by_user_name(store):
    store.save_token(full_token(1))
    store.save_token(full_token(2))
    query = OAuthToken(user_signature=UserSignature("user2@example.com"))
    assert store.find_token(query) is query
    assert query.get_refresh_token() == "1000.refresh.2"
    assert query.get_id() is not None


def test_find_token_by_access_token_without_client_credentials(store):
    store.save_token(full_token(1))
    query = OAuthToken(access_token="1000.access.1")
    assert store.find_token(query) is query
    assert query.get_refresh_token() == "1000.refresh.1"


def test_find_token_by_grant_token(store):
    store.save_token(full_token(1, grant_token="1000.grant.1"))
    query = OAuthToken(client_id=CLIENT_ID, client_secret=SECRET, grant_token="1000.grant.1")
    assert store.find_token(query) is query
    assert query.get_refresh_token() == "1000.refresh.1"


def test_find_token_with_only_an_id_matches_nothing(store):
    token = full_token(1)
    store.save_token(token)
    assert store.find_token(OAuthToken(id=token.get_id())) is None


def test_unknown_token_finds_nothing(store):
    store.save_token(full_token(1))
    assert store.find_token(OAuthToken(user_signature=UserSignature("nobody@example.com"))) is None


def test_saving_the_same_user_again_updates_one_row_and_keeps_unset_fields(store):
    first = full_token(1)
    store.save_token(first)
    again = OAuthToken(user_signature=UserSignature("user1@example.com"), access_token="1000.access.new")
    again.set_expires_in("1895330406683")
    store.save_token(again)
    assert again.get_id() == first.get_id()
    assert len(store.get_tokens()) == 1
    stored = store.find_token_by_id(first.get_id())
    assert stored.get_access_token() == "1000.access.new"
    assert stored.get_expires_in() == "1895330406683"
    assert stored.get_refresh_token() == "1000.refresh.1"  # left unset by `again`, kept


def test_save_matches_by_id_first(store):
    token = full_token(1)
    store.save_token(token)
    update = OAuthToken(id=token.get_id(), access_token="1000.access.by-id")
    store.save_token(update)
    assert store.find_token_by_id(token.get_id()).get_access_token() == "1000.access.by-id"
    assert len(store.get_tokens()) == 1


def test_save_of_a_user_with_no_tokens_raises_sdk_exception(store):
    with pytest.raises(SDKException) as e:
        store.save_token(OAuthToken(user_signature=UserSignature("new@example.com")))
    assert e.value.code == "TOKEN_STORE"


def test_get_tokens_returns_oauth_tokens_across_pages(store, monkeypatch):
    monkeypatch.setattr(zoho, "PAGE_SIZE", 2)  # five tokens take three pages
    saved = [full_token(n) for n in range(5)]
    for t in saved:
        store.save_token(t)
    tokens = store.get_tokens()
    assert all(isinstance(t, OAuthToken) for t in tokens)
    assert sorted(map(fields, tokens)) == sorted(map(fields, saved))


def test_delete_token(store):
    keep, drop = full_token(1), full_token(2)
    store.save_token(keep)
    store.save_token(drop)
    store.delete_token(drop.get_id())
    assert [t.get_id() for t in store.get_tokens()] == [keep.get_id()]
    with pytest.raises(SDKException):
        store.find_token_by_id(drop.get_id())
    with pytest.raises(SDKException):  # as FileStore: an unknown id is an error
        store.delete_token(drop.get_id())


def test_delete_tokens(store):
    for n in range(3):
        store.save_token(full_token(n))
    store.delete_tokens()
    assert store.get_tokens() == []


def test_daemon_errors_become_sdk_exceptions_without_secrets(store):
    token = full_token(1)
    token.set_access_token(12345)  # not a string: the daemon refuses the request
    with pytest.raises(SDKException) as e:
        store.save_token(token)
    assert e.value.code == "TOKEN_STORE"
    text = str(e.value) + repr(e.value.args) + str(e.value.__cause__)
    for secret in (SECRET, "1000.refresh.1", "12345"):
        assert secret not in text


def test_no_daemon_is_an_sdk_exception(tmp_path):
    store = TokendStore(socket_path=str(tmp_path / "absent.sock"))
    with pytest.raises(SDKException) as e:
        store.find_token_by_id("1")
    assert e.value.code == "TOKEN_STORE"


def test_needs_renewal_only_for_refreshable_tokens_near_expiry():
    now = 1_800_000_000_000
    base = {"id": "1", "client_id": "c", "client_secret": "s", "refresh_token": "r", "access_token": "a"}
    assert not zoho.needs_renewal({**base, "expiry_time": str(now + zoho.RENEW_BELOW_MS + 1)}, now)
    assert zoho.needs_renewal({**base, "expiry_time": str(now + zoho.RENEW_BELOW_MS - 1)}, now)
    assert zoho.needs_renewal({**base, "expiry_time": str(now - 1)}, now)
    assert zoho.needs_renewal({**base, "access_token": None, "expiry_time": str(now + 3_600_000)}, now)
    assert zoho.needs_renewal({**base, "expiry_time": None}, now)
    # Without client credentials the daemon cannot refresh: leave the token to the SDK.
    assert not zoho.needs_renewal({**base, "client_secret": None, "expiry_time": str(now - 1)}, now)
