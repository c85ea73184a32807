"""`TokendStore`: the Zoho CRM Python SDK's `TokenStore`, kept by tokend.

A drop-in for the SDK's FileStore and DBStore: pass `TokendStore()` as `store=` to
`Initializer.initialize` and every SDK process on the machine shares one store.

The six methods follow the SDK's built-in stores (the reference is FileStore,
zohocrmsdk/src/com/zoho/api/authenticator/store/file_store.py). Matching a token is done by the daemon with
the same rules, so this module only converts between the SDK's `OAuthToken` and the
wire's token object:

    OAuthToken                          wire
    get_id()                            id
    get_user_signature().get_name()     user_name
    get_client_id(), ..._secret()       client_id, client_secret
    get_refresh/access/grant_token()    refresh_token, access_token, grant_token
    get_expires_in()                    expiry_time   (epoch ms as a string, both sides)
    get_redirect_url()                  redirect_url
    get_api_domain()                    api_domain

When the daemon refreshes tokens (its `access_token` operation), a token about to
expire is renewed through the daemon before the SDK sees it, so the SDK never refreshes
on its own; several processes asking at once share the daemon's single refresh. With a
daemon that does not refresh, the SDK refreshes and saves back as it always has.

Needs the SDK (`pip install tokend-client[zoho]`).
"""

import time

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.token_store import TokenStore
from zohocrmsdk.src.com.zoho.crm.api.exception.sdk_exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.user_signature import UserSignature
from zohocrmsdk.src.com.zoho.crm.api.util.constants import Constants

from .connection import Client, TokendError

__all__ = ["TokendStore"]

#: Tokens fetched per `get_tokens` request; keeps each reply line small.
PAGE_SIZE = 200

#: A looked-up token with less validity than this is renewed through the daemon first.
#: Anything well above the SDK's own 5 s margin works; the daemon, which refreshes
#: ahead of expiry, rarely lets a token get this close.
RENEW_BELOW_MS = 60_000

#: The SDK refreshes by itself a token with less than 5 s left; below this margin a
#: token is not handed over when the daemon could not renew it.
SDK_MARGIN_MS = 10_000


class TokendStore(TokenStore):
    """A `TokenStore` whose tokens live in the tokend daemon.

    `socket_path` defaults to `TOKEND_SOCKET`, else the daemon's default path. Pass
    `client` instead to share one `Client` with other code.
    """

    def __init__(self, socket_path=None, client=None):
        self.client = client if client is not None else Client(socket_path)

    def find_token(self, token):
        """Fill `token`'s empty fields from the stored token it matches and return it,
        or return None when nothing matches."""
        if not isinstance(token, OAuthToken):
            return token  # as FileStore: other Token kinds are not stored
        stored = self._call("find_token", token=to_wire(token))["token"]
        if stored is None:
            return None
        merge_into(token, self._renewed(stored))
        return token

    def save_token(self, token):
        """Insert or update `token`; on return it carries the stored id, and its empty
        fields are filled from the stored token as FileStore does."""
        if not isinstance(token, OAuthToken):
            return
        stored = self._call("save_token", token=to_wire(token))["token"]
        merge_into(token, stored)

    def find_token_by_id(self, id):
        """A new, complete `OAuthToken`; `SDKException` when the id is unknown."""
        stored = self._call("find_token_by_id", token_id=str(id))["token"]
        if stored is None:
            raise SDKException(Constants.TOKEN_STORE, f"tokend: no token with id {id!r}")
        return from_wire(self._renewed(stored))

    def delete_token(self, id):
        """Delete one token; `SDKException` when the id is unknown, as FileStore (so
        `OAuthToken.remove()` returns False for a token that was not stored)."""
        if not self._call("delete_token", token_id=str(id))["deleted"]:
            raise SDKException(Constants.TOKEN_STORE, f"tokend: no token with id {id!r}")

    def get_tokens(self):
        """Every stored token, as `OAuthToken` objects in id order."""
        tokens, after = [], None
        while True:
            args = {"limit": PAGE_SIZE} if after is None else {"limit": PAGE_SIZE, "after": after}
            page = self._call("get_tokens", **args)
            tokens.extend(from_wire(t) for t in page["tokens"])
            after = page.get("next")
            if after is None:
                return tokens

    def delete_tokens(self):
        """Delete every stored token."""
        self._call("delete_tokens")

    def _renewed(self, stored):
        """`stored`, with a fresh access token from the daemon if it is about to expire."""
        now_ms = int(time.time() * 1000)
        if not needs_renewal(stored, now_ms):
            return stored
        api_domain = sdk_api_domain()
        if not stored.get("api_domain") and api_domain:
            # A token from the SDK's older CSV has none. The SDK would use its
            # environment's (`OAuthToken.get_token`); the daemon needs it stored to know
            # where to refresh.
            patch = {"id": stored["id"], "api_domain": api_domain}
            try:
                stored = self.client.request("save_token", token=patch)["token"]
            except TokendError as e:
                if e.code != "incomplete_token":  # deleted meanwhile: hand over what was read
                    raise SDKException(Constants.TOKEN_STORE, f"tokend save_token failed: {e}") from e
                return stored
        try:
            fresh = self.client.request("access_token", token_id=stored["id"])
        except TokendError as e:
            if e.code in ("bad_request", "not_found") or valid_for(stored, now_ms) >= SDK_MARGIN_MS:
                # A daemon without a refresher (unknown op), a token deleted meanwhile, or
                # one that still works: hand over what is stored.
                return stored
            # Otherwise the SDK would refresh by itself, and a daemon that says
            # `throttled` or `needs_reauth` means that must not happen.
            raise SDKException(Constants.TOKEN_STORE, f"tokend access_token failed: {e}") from e
        keys = ("access_token", "expiry_time", "api_domain")
        return {**stored, **{k: fresh[k] for k in keys if fresh.get(k) is not None}}

    def _call(self, op, **args):
        try:
            return self.client.request(op, **args)
        except TokendError as e:
            # The daemon's messages never hold token values; neither does the request
            # description here, so the exception is safe to log.
            raise SDKException(Constants.TOKEN_STORE, f"tokend {op} failed: {e}") from e


def sdk_api_domain():
    """The initialised SDK's API domain (its environment's URL), or None before
    `Initializer.initialize`."""
    initializer = Initializer.get_initializer()
    environment = getattr(initializer, "environment", None)
    return getattr(environment, "url", None)


def needs_renewal(wire, now_ms):
    """True when the daemon could refresh this token and it has (almost) no access
    token left, judged as the SDK would: missing, or expiring within RENEW_BELOW_MS."""
    refreshable = all(wire.get(k) for k in ("refresh_token", "client_id", "client_secret"))
    return refreshable and valid_for(wire, now_ms) < RENEW_BELOW_MS


def valid_for(wire, now_ms):
    """Milliseconds the token's access token has left; 0 when it has none or no
    readable expiry (then the daemon decides)."""
    try:
        return int(wire["expiry_time"]) - now_ms if wire.get("access_token") else 0
    except (KeyError, TypeError, ValueError):
        return 0


def to_wire(token):
    """The wire token object for an `OAuthToken` (None fields stay null)."""
    signature = token.get_user_signature()
    expiry = token.get_expires_in()
    return {
        "id": token.get_id(),
        "user_name": signature.get_name() if signature is not None else None,
        "client_id": token.get_client_id(),
        "client_secret": token.get_client_secret(),
        "refresh_token": token.get_refresh_token(),
        "access_token": token.get_access_token(),
        "grant_token": token.get_grant_token(),
        "expiry_time": str(expiry) if expiry is not None else None,
        "redirect_url": token.get_redirect_url(),
        "api_domain": token.get_api_domain(),
    }


def from_wire(wire):
    """A new `OAuthToken` holding every field of a wire token."""
    # With an id given, the constructor skips the client id/secret checks meant for
    # tokens typed in by a user; every stored token has an id.
    token = OAuthToken(id=wire["id"])
    merge_into(token, wire)
    return token


# (wire key, getter, setter) for every field but user_name, which the SDK wraps in a UserSignature.
_FIELDS = (
    ("id", OAuthToken.get_id, OAuthToken.set_id),
    ("client_id", OAuthToken.get_client_id, OAuthToken.set_client_id),
    ("client_secret", OAuthToken.get_client_secret, OAuthToken.set_client_secret),
    ("refresh_token", OAuthToken.get_refresh_token, OAuthToken.set_refresh_token),
    ("access_token", OAuthToken.get_access_token, OAuthToken.set_access_token),
    ("grant_token", OAuthToken.get_grant_token, OAuthToken.set_grant_token),
    ("expiry_time", OAuthToken.get_expires_in, OAuthToken.set_expires_in),
    ("redirect_url", OAuthToken.get_redirect_url, OAuthToken.set_redirect_url),
    ("api_domain", OAuthToken.get_api_domain, OAuthToken.set_api_domain),
)


def merge_into(token, wire):
    """Copy the wire token's values into `token`'s fields that are None (FileStore's
    `set_merge_data`): what the caller set wins."""
    for key, get, set_ in _FIELDS:
        value = wire.get(key)
        if get(token) is None and value is not None:
            set_(token, str(value) if key == "expiry_time" else value)
    if token.get_user_signature() is None and wire.get("user_name") is not None:
        token.set_user_signature(UserSignature(wire["user_name"]))
